"""`dse compact`: reclaim the space of deleted pages (their vectors and BM25 statistics)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `compact` subcommand."""
    p = sub.add_parser("compact", help="rewrite an index's engines without the deleted pages (reclaims space)")
    p.add_argument("--index", required=True, metavar="DIR")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`dse compact`: one switch to the compacted engines; searches keep answering meanwhile."""
    import os

    from dse.backends import open_backend

    def stage(name: str) -> None:
        if not args.quiet:
            print(f"compact: {name}", file=sys.stderr)

    with open_backend(os.path.expanduser(args.index)) as index:
        report = index.compact(on_stage=stage)
    if args.json:
        print(json.dumps(asdict(report), indent=2, sort_keys=True))
    else:
        print(report.message)
        if report.compacted:
            print(f"pages {report.pages}  rows removed {report.rows_removed}  sources removed {report.sources_removed}  "
                  f"bytes {report.bytes_before} -> {report.bytes_after}  generation {report.generation}")
    return 0
