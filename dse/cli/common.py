"""Helpers shared by the `dse` subcommands."""

from __future__ import annotations

import argparse
from typing import Any

RUNTIME_OPTIONS = ("device", "batch_size", "dtype")  # options that do not change the vectors


class CLIError(Exception):
    """A user error: printed as `dse: error: ...`, exit status 2."""


def runtime_flags(p: argparse.ArgumentParser) -> None:
    """Add --device and --batch-size."""
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--batch-size", type=int, dest="batch_size", help="encoder batch size")


def runtime(args: argparse.Namespace) -> dict[str, Any]:
    """The runtime encoder options given on the command line."""
    return {k: getattr(args, k) for k in RUNTIME_OPTIONS if getattr(args, k, None) is not None}
