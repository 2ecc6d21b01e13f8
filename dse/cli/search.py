"""`dse search`: search an index with one query or a file of queries."""

from __future__ import annotations

import argparse
import json
import sys

from dse.cli.common import CLIError, runtime, runtime_flags


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `search` subcommand."""
    p = sub.add_parser("search", help="search an index with text queries")
    p.add_argument("query", nargs="?", help="the query (or use --queries)")
    p.add_argument("--index", required=True, metavar="DIR")
    p.add_argument("--queries", metavar="FILE", help="one query per line; writes one JSON line per query")
    p.add_argument("-k", type=int, default=10, help="number of pages to return (default 10)")
    p.add_argument("--json", action="store_true", help="print the hits as JSON")
    runtime_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`dse search`: one query, or a file of queries (JSON lines out)."""
    from dse.retrieve.retriever import Retriever

    if (args.query is None) == (args.queries is None):
        raise CLIError("give either a QUERY or --queries FILE")
    if args.k < 1:
        raise CLIError(f"-k must be >= 1, got {args.k}")
    with Retriever.open(args.index, **runtime(args)) as retriever:
        if args.queries:
            queries = _read_queries(args.queries)
            for query, hits in zip(queries, retriever.search_many(queries, args.k) if queries else []):
                print(json.dumps({"query": query, "hits": [h.to_json() for h in hits]}))
            return 0
        hits = retriever.search(args.query, args.k)
    if args.json:
        print(json.dumps([h.to_json() for h in hits], indent=2))
    elif not hits:
        print("no matching pages", file=sys.stderr)
    else:
        for h in hits:
            print(f"{h.rank:>3}. {h.score:9.4f}  {h.source}  page {h.page}  [{h.page_id}]")
    return 0


def _read_queries(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            return [line.strip() for line in fh if line.strip()]
    except OSError as exc:
        raise CLIError(f"{path}: cannot read queries: {exc}") from exc
