"""The `dse` command: each subcommand lives in its own module of `dse.cli`."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from dse.cli.common import CLIError

# modules with a `register(subparsers)` function; each sets `func` on its parser
COMMAND_MODULES = ("dse.cli.index", "dse.cli.search", "dse.cli.info", "dse.cli.eval", "dse.cli.delete",
                   "dse.cli.compact", "dse.cli.serve", "dse.cli.mcp", "dse.cli.export_vectors", "dse.cli.export")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `dse` command."""
    parser = argparse.ArgumentParser(prog="dse", description="Find the right page in PDFs and images.")
    parser.add_argument("--version", action="version", version=f"dse {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def _version() -> str:
    from dse import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dse` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("dse: interrupted; every source committed before is kept", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - user-facing errors become one clear line
        if not _is_user_error(exc):
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"dse: error: {msg}", file=sys.stderr)
        return 2


def _is_user_error(exc: Exception) -> bool:
    from dse.config import ConfigError
    from dse.encoders.hub import ModelLoadError
    from dse.extras import MissingExtraError
    from dse.storage.lock import IndexLockedError
    from dse.storage.manifest import EncoderMismatchError, IndexFormatError
    from ingest.errors import IngestError, MissingToolError

    return isinstance(
        exc,
        (CLIError, ConfigError, ModelLoadError, EncoderMismatchError, IndexFormatError, IndexLockedError,
         IngestError, MissingToolError, MissingExtraError, FileExistsError, FileNotFoundError, KeyError, ValueError),
    )


if __name__ == "__main__":
    sys.exit(main())
