"""`dse mcp`: serve an index's search to agents as MCP tools over stdio.

`python -m dse.cli.mcp --index DIR` runs the same server without the rest of the `dse` command.
The server itself is `dse.serve.mcp_server`; it never imports the CLI.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from dse.cli.common import CLIError, index_model_flags, open_options, rewrite_flags, runtime_flags


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `mcp` subcommand."""
    p = sub.add_parser("mcp", help="serve an index as MCP tools over stdio (for an agent's config)",
                       description="Serve an index's search as MCP tools (search_pages, get_page_image) over "
                                   "stdio. stdout carries the protocol; logs go to stderr.")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `dse mcp`: --index, the runtime encoder flags and the rewriters offered."""
    p.add_argument("--index", required=True, metavar="DIR", help="the index directory to search")
    runtime_flags(p)
    index_model_flags(p)
    rewrite_flags(p, repeatable=True)  # search_pages(rewrite=NAME), as dse serve's "rewrite" field


def run(args: argparse.Namespace) -> int:
    """`dse mcp`: serve until the client closes stdin."""
    from dse.cli.serve import offered_rewriters
    from dse.serve.mcp_server import serve  # the MCP SDK is imported only here

    options = offered_rewriters(args)
    serve(args.index, rewrite=tuple(args.rewrite), rewrite_options=options, **open_options(args))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m dse.cli.mcp --index DIR`: the same as `dse mcp`."""
    parser = argparse.ArgumentParser(prog="dse mcp", description="Serve an index's search as MCP tools over stdio.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - user errors become one clear line on stderr
        from dse.serve.mcp_server import error_message, is_user_error

        if not (isinstance(exc, CLIError) or is_user_error(exc)):
            raise
        print(f"dse: error: {error_message(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
