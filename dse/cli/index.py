"""`dse index`: create an index or add sources to it."""

from __future__ import annotations

import argparse
import sys

from dse.cli.common import runtime, runtime_flags


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `index` subcommand."""
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
    runtime_flags(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`dse index`: create or append; exit 1 only if nothing could be indexed."""
    from dse.config import IndexConfig, load_config
    from dse.encoders.registry import load_encoder
    from dse.indexes.store import PageIndex
    from dse.retrieve.retriever import Retriever

    config = load_config(args.config) if args.config else IndexConfig()
    chose_encoder = bool(args.config or args.encoder or args.model or args.dim)
    config = config.with_overrides(args.encoder, model=args.model, dim=args.dim, **runtime(args))
    dpi = args.dpi or config.ingest.get("dpi")
    password = args.password or config.ingest.get("password")
    if PageIndex.exists(args.index):
        if chose_encoder:
            retriever = Retriever.open(args.index, load_encoder(config.encoder, **config.options))
        else:
            retriever = Retriever.open(args.index, **runtime(args))
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
