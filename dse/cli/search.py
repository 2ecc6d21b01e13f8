"""`dse search`: search an index with one query or a file of queries."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dse.cli.common import CLIError, index_model_flags, load_rewrites, open_options, rewrite_flags, runtime, runtime_flags


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `search` subcommand."""
    p = sub.add_parser("search", help="search an index with text queries")
    p.add_argument("query", nargs="?", help="the query (or use --queries); with --image, the text beside the picture")
    p.add_argument("--index", required=True, metavar="DIR")
    p.add_argument("--queries", metavar="FILE", help="one query per line; writes one JSON line per query")
    p.add_argument("--image", metavar="FILE",
                   help="a picture as the query (a photo of a page, a chart, a slide), with QUERY as its text if "
                        "given; for dse-qwen2, gme-qwen2 and qwen3-vl-embedding indexes")
    p.add_argument("-k", type=int, default=10, help="number of pages to return (default 10)")
    p.add_argument("--json", action="store_true", help="print the hits as JSON")
    p.add_argument("--where", action="append", default=[], metavar="COND",
                   help="metadata filter, repeatable (all must hold): kind=pdf, page>=2, source~'docs/*', "
                        "collection=legal|tax; operators = != > >= < <= ~ (glob)")
    _ranking_flags(p)
    runtime_flags(p)
    index_model_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`dse search`: one query, or a file of queries (JSON lines out)."""
    from dse.retrieve.retriever import Retriever

    if args.image is not None and (args.queries or args.explain):
        raise CLIError("--image takes one query: not with --queries or --explain")
    if args.image is None and (args.query is None) == (args.queries is None):
        raise CLIError("give either a QUERY or --queries FILE")
    if args.k < 1:
        raise CLIError(f"-k must be >= 1, got {args.k}")
    if args.explain:
        return _explain(args)
    options = _ranking_options(args)
    if args.where:
        from dse.storage.filters import parse_conditions

        options["where"] = parse_conditions(args.where)
    rewriter = options.pop("rewrite", None)
    with Retriever.open(args.index, **open_options(args)) as retriever:
        if args.queries:
            queries = _read_queries(args.queries)
            rewrites = _rewrite(retriever, rewriter, queries, options.get("where"))
            searched = [r.text for r in rewrites] if rewrites else queries
            found = retriever.search_many(searched, args.k, **options) if queries else []
            for i, (query, hits) in enumerate(zip(queries, found)):
                line: dict[str, Any] = {"query": query, "hits": [h.to_json() for h in hits]}
                if rewrites:
                    line["rewritten"] = _summary(rewrites[i]).to_json()
                print(json.dumps(line))
            return 0
        query = args.query if args.image is None else _image_query(args.image, args.query)
        try:
            rewrites = _rewrite(retriever, rewriter, [query], options.get("where"))
            hits = retriever.search(rewrites[0].text if rewrites else query, args.k, **options)
        except (TypeError, ValueError) as exc:
            if args.image is None:
                raise
            raise CLIError(str(exc)) from exc
    if rewrites:  # what was searched, readable; beside --json's list, on stderr
        summary = _summary(rewrites[0])
        print(f"searched as (rewritten by {summary.rewriter}): {summary.text}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps([h.to_json() for h in hits], indent=2))
    elif not hits:
        print("no matching pages", file=sys.stderr)
    else:
        for h in hits:
            print(f"{h.rank:>3}. {h.score:9.4f}  {h.source}  page {h.page}  [{h.page_id}]")
    return 0


def _ranking_flags(p: argparse.ArgumentParser) -> None:
    """Add the hybrid, rerank and explain flags."""
    g = p.add_argument_group("ranking")
    g.add_argument("--mode", choices=("visual", "text", "hybrid"),
                   help="visual (the index's encoder), text (BM25 over the text layers) or hybrid (both fused); "
                        "default: the index's own")
    g.add_argument("--fusion", choices=("rrf", "weighted"), default="rrf",
                   help="hybrid fusion: reciprocal rank (default) or normalised BM25 + weight * similarity")
    g.add_argument("--weight", type=float, default=1.0, help="weighted fusion: lambda, the visual side's weight")
    g.add_argument("--rrf-k", type=float, default=60, dest="rrf_k", help="RRF constant (default 60)")
    g.add_argument("--rerank", metavar="ENCODER",
                   help="rerank the top --depth pages by MaxSim with this multi-vector encoder (e.g. colqwen2)")
    g.add_argument("--rerank-model", metavar="MODEL", help="hub id or local directory for --rerank")
    g.add_argument("--alpha", type=float, default=0.5, help="reranking: weight of the first stage (default 0.5)")
    g.add_argument("--depth", type=int, default=50, help="reranking: first-stage pages rescored (default 50)")
    rewrite_flags(g)
    g.add_argument("--explain", metavar="PAGE_ID",
                   help="write the similarity map of QUERY over this page to --out (multi-vector indexes)")
    g.add_argument("--out", metavar="PNG", help="with --explain: the image to write")


def _ranking_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword options of `Retriever.search` from the ranking flags."""
    options: dict[str, Any] = {"mode": args.mode, "fusion": args.fusion, "weight": args.weight, "rrf_k": args.rrf_k}
    rewriters = load_rewrites(args)
    if rewriters:
        options["rewrite"] = next(iter(rewriters.values()))
    if args.rerank:
        from dse.encoders.registry import load_encoder
        from dse.retrieve.rerank import MaxSimReranker

        extra = {"model": args.rerank_model} if args.rerank_model else {}
        options.update(rerank=MaxSimReranker(load_encoder(args.rerank, **extra, **{k: v for k, v in runtime(args).items() if k != "trust_remote_code"})),
                       alpha=args.alpha, depth=args.depth)
    return options


def _rewrite(retriever: Any, rewriter: Any, queries: list[Any], where: Any) -> list[Any]:
    """The queries rewritten by `rewriter` (`dse.rewrite.Rewrite`s; [] without one): `Retriever.search(rewrite=)`'s step."""
    if rewriter is None:
        return []
    from dse.retrieve.rewriting import rewrite_queries

    return rewrite_queries(queries, rewriter, retriever.index, where)


def _summary(rewrite: Any) -> Any:
    from dse.rewrite.summary import summarize

    return summarize(rewrite)


def _explain(args: argparse.Namespace) -> int:
    """`dse search --explain PAGE_ID --out PNG QUERY`: write a similarity map."""
    from dse.retrieve.explain import explain
    from dse.retrieve.retriever import Retriever

    if args.query is None or not args.out:
        raise CLIError("--explain PAGE_ID needs a QUERY and --out PNG")
    with Retriever.open(args.index, **open_options(args)) as retriever:
        path = explain(retriever, args.query, args.explain).save(args.out)
    print(path)
    return 0


def _image_query(path: str, text: str | None) -> Any:
    """The picture at `path` (loaded whole), alone or paired with `text`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            image = im.copy()
            image.load()
    except (OSError, UnidentifiedImageError) as exc:
        raise CLIError(f"{path}: cannot read the image: {exc}") from exc
    return image if text is None else (image, text)


def _read_queries(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            return [line.strip() for line in fh if line.strip()]
    except OSError as exc:
        raise CLIError(f"{path}: cannot read queries: {exc}") from exc
