"""`dse delete`: remove pages by id, or whole sources by path, from an index."""

from __future__ import annotations

import argparse
import sys

from dse.cli.common import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `delete` subcommand."""
    p = sub.add_parser("delete", help="delete pages (by id) or sources (by path) from an index")
    p.add_argument("--index", required=True, metavar="DIR")
    p.add_argument("--page-id", nargs="+", default=[], metavar="ID", dest="page_ids", help="page ids to delete")
    p.add_argument("--source", nargs="+", default=[], metavar="PATH", dest="sources",
                   help="sources to delete: any spelling of the file's path (relative, absolute, ~), or the "
                        "URL or path as indexed (see `dse info --sources`)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`dse delete`: one commit; exit 1 if something named matched nothing."""
    import os

    from dse.backends import open_backend

    if not args.page_ids and not args.sources:
        raise CLIError("give --page-id ID... or --source PATH...")
    with open_backend(os.path.expanduser(args.index)) as index:
        report = index.delete(args.page_ids, args.sources)
        live = len(index)
    print(
        f"deleted {report.pages} page(s), {report.sources} source(s); {live} page(s) left in {args.index}",
        file=sys.stderr,
    )
    for name in report.missing:
        print(f"  not found: {name}", file=sys.stderr)
    return 1 if report.missing else 0
