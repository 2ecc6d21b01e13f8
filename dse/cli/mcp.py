"""`dse mcp`: serve an index's search to agents as MCP tools over stdio."""

from __future__ import annotations

import argparse

from dse.cli.common import index_model_flags, open_options, runtime_flags


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `mcp` subcommand."""
    p = sub.add_parser("mcp", help="serve an index as MCP tools over stdio (for an agent's config)",
                       description="Serve an index's search as MCP tools (search_pages, get_page_image) over "
                                   "stdio. stdout carries the protocol; logs go to stderr.")
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `dse mcp`: --index and the runtime encoder flags."""
    p.add_argument("--index", required=True, metavar="DIR", help="the index directory to search")
    runtime_flags(p)
    index_model_flags(p)


def run(args: argparse.Namespace) -> int:
    """`dse mcp`: serve until the client closes stdin."""
    from dse.serve.mcp_server import serve  # the MCP SDK is imported only here

    serve(args.index, **open_options(args))
    return 0
