"""Helpers shared by the `dse` subcommands."""

from __future__ import annotations

import argparse
from typing import Any

RUNTIME_OPTIONS = ("device", "batch_size", "dtype", "trust_remote_code")  # options that do not change the vectors


class CLIError(Exception):
    """A user error: printed as `dse: error: ...`, exit status 2."""


def runtime_flags(p: argparse.ArgumentParser) -> None:
    """Add --device, --batch-size, --dtype and --trust-remote-code."""
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--batch-size", type=int, dest="batch_size", help="encoder batch size")
    p.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16", "int8"],
                   help="encoder precision (default auto: bfloat16 on cuda, else float32); int8: dynamic int8 "
                        "linear layers on the CPU, faster queries (vectors close to float32's)")
    p.add_argument("--trust-remote-code", action="store_const", const=True, default=None,
                   help="allow a checkpoint that ships its own Python code to run it (jina-v4); never the default")


def index_model_flags(p: argparse.ArgumentParser) -> None:
    """Add --model and --allow-index-model: which weights open an existing index."""
    p.add_argument("--model", metavar="ID_OR_DIR",
                   help="the weights the index was built with (hub id or local directory, at any path); "
                        "confirms a model the index names")
    p.add_argument("--allow-index-model", action="store_true",
                   help="load the hub model the index's manifest names without naming it (an index from "
                        "elsewhere: dse otherwise asks first)")


def open_options(args: argparse.Namespace) -> dict[str, Any]:
    """`Retriever.open` options from the command line: runtime options, --model, --allow-index-model."""
    options = runtime(args)
    if getattr(args, "model", None):
        options["model"] = args.model
    if getattr(args, "allow_index_model", False):
        options["allow_index_model"] = True
    return options


def runtime(args: argparse.Namespace) -> dict[str, Any]:
    """The runtime encoder options given on the command line."""
    return {k: getattr(args, k) for k in RUNTIME_OPTIONS if getattr(args, k, None) is not None}
