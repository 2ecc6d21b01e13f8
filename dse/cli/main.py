"""The `dse` command: index sources, search an index, describe it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

RUNTIME_OPTIONS = ("device", "batch_size", "dtype")  # options that do not change the vectors


class CLIError(Exception):
    """A user error: printed as `dse: error: ...`, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `dse` command."""
    parser = argparse.ArgumentParser(prog="dse", description="Find the right page in PDFs and images.")
    parser.add_argument("--version", action="version", version=f"dse {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="create an index or add sources to it")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="PDFs, images or folders")
    p.add_argument("--index", required=True, metavar="DIR", help="index directory (created if absent)")
    p.add_argument("--encoder", metavar="NAME", help="registered encoder (default: bm25; see `dse encoders`)")
    p.add_argument("--model", metavar="ID_OR_DIR", help="hub id or local directory of the weights")
    p.add_argument("--config", metavar="FILE", help="YAML config (see configs/); flags override it")
    p.add_argument("--dim", type=int, help="single-vector dimension (Matryoshka truncation)")
    p.add_argument("--dpi", type=int, help="PDF rendering resolution")
    p.add_argument("--password", help="password for encrypted PDFs")
    p.add_argument("--hnsw", action="store_true", default=None, help="approximate HNSW search (single vectors)")
    _runtime_flags(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("search", help="search an index with text queries")
    p.add_argument("query", nargs="?", help="the query (or use --queries)")
    p.add_argument("--index", required=True, metavar="DIR")
    p.add_argument("--queries", metavar="FILE", help="one query per line; writes one JSON line per query")
    p.add_argument("-k", type=int, default=10, help="number of pages to return (default 10)")
    p.add_argument("--json", action="store_true", help="print the hits as JSON")
    _runtime_flags(p)

    p = sub.add_parser("info", help="describe an index")
    p.add_argument("--index", required=True, metavar="DIR")
    p.add_argument("--json", action="store_true", help="print the manifest and counts as JSON")

    sub.add_parser("encoders", help="list the registered encoders")
    return parser


def _runtime_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--batch-size", type=int, dest="batch_size", help="encoder batch size")


def _version() -> str:
    from dse import __version__

    return __version__


def _runtime(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in RUNTIME_OPTIONS if getattr(args, k, None) is not None}


def cmd_index(args: argparse.Namespace) -> int:
    """`dse index`: create or append; exit 1 only if nothing could be indexed."""
    from dse.config import IndexConfig, load_config
    from dse.encoders.registry import load_encoder
    from dse.indexes.store import PageIndex
    from dse.retrieve.retriever import Retriever

    config = load_config(args.config) if args.config else IndexConfig()
    chose_encoder = bool(args.config or args.encoder or args.model or args.dim)
    config = config.with_overrides(args.encoder, model=args.model, dim=args.dim, **_runtime(args))
    dpi = args.dpi or config.ingest.get("dpi")
    password = args.password or config.ingest.get("password")
    if PageIndex.exists(args.index):
        if chose_encoder:
            retriever = Retriever.open(args.index, load_encoder(config.encoder, **config.options))
        else:
            retriever = Retriever.open(args.index, **_runtime(args))
    else:
        hnsw = bool(args.hnsw if args.hnsw is not None else config.index.get("hnsw", False))
        image_size = int(config.index.get("image_size", 768))
        encoder = load_encoder(config.encoder, **config.options)
        retriever = Retriever.create(args.index, encoder, hnsw=hnsw, image_size=image_size)
    with retriever:
        report = retriever.add(args.sources, dpi=dpi, password=password, progress=not args.no_progress)
        total = len(retriever)
    print(
        f"indexed {len(report.added)} source(s), {report.pages} page(s); "
        f"skipped {len(report.skipped)} already indexed; {len(report.failures)} failed; "
        f"{total} page(s) in {args.index}",
        file=sys.stderr,
    )
    for failure in report.failures:
        print(f"  failed: {failure.error}", file=sys.stderr)
    return 0 if report.ok and (report.added or report.skipped) else 1


def cmd_search(args: argparse.Namespace) -> int:
    """`dse search`: one query, or a file of queries (JSON lines out)."""
    from dse.retrieve.retriever import Retriever

    if (args.query is None) == (args.queries is None):
        raise CLIError("give either a QUERY or --queries FILE")
    if args.k < 1:
        raise CLIError(f"-k must be >= 1, got {args.k}")
    with Retriever.open(args.index, **_runtime(args)) as retriever:
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


def cmd_info(args: argparse.Namespace) -> int:
    """`dse info`: the manifest and counts."""
    from dse.indexes.store import PageIndex

    with PageIndex.open(args.index) as index:
        info = index.manifest.to_json()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    enc = info["encoder"]
    print(f"index      {args.index}")
    shape = {"single": f"one {enc['dim']}-d vector per page", "multi": f"{enc['dim']}-d vectors per patch",
             "text": "text tokens (BM25)"}.get(enc["kind"], enc["kind"])
    print(f"encoder    {enc['name']} ({shape})")
    print(f"model      {enc['model']}" + (f" @ {enc['revision']}" if enc.get("revision") else ""))
    print(f"prompts    version {enc['prompt_version']}")
    print(f"pages      {info['pages']}")
    print(f"sources    {info['sources']}")
    print(f"updated    {info['updated']}  (dse {info['dse_version']}, format {info['format_version']})")
    return 0


def cmd_encoders(args: argparse.Namespace) -> int:
    """`dse encoders`: the registry."""
    from dse.encoders.registry import list_encoders

    for name, spec in list_encoders().items():
        print(f"{name:<16} {spec.description}")
    return 0


COMMANDS = {"index": cmd_index, "search": cmd_search, "info": cmd_info, "encoders": cmd_encoders}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dse` console script."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
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
    from dse.indexes.manifest import EncoderMismatchError, IndexFormatError
    from dse.indexes.store import IndexLockedError

    return isinstance(
        exc,
        (CLIError, ConfigError, ModelLoadError, EncoderMismatchError, IndexFormatError, IndexLockedError,
         FileExistsError, FileNotFoundError, KeyError, ValueError),
    )


if __name__ == "__main__":
    sys.exit(main())
