"""`dse eval`: score retrieval on test sets, score a TREC run, or compare two results."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dse.cli.common import CLIError, load_rewrites, rewrite_flags, runtime, runtime_flags


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `eval` subcommand."""
    p = sub.add_parser(
        "eval",
        help="evaluate retrieval on ViDoRe or local test sets; score TREC runs; compare results",
        description="dse eval DATASET... [--encoder NAME]   |   dse eval --qrels FILE --run FILE   |   "
        "dse eval --compare A.json B.json",
    )
    p.add_argument("datasets", nargs="*", metavar="DATASET",
                   help="ViDoRe hub id or local directory, or a folder with questions.jsonl + pdfs/")
    p.add_argument("--encoder", metavar="NAME", help="registered encoder (default: bm25; see `dse encoders`)")
    p.add_argument("--model", metavar="ID_OR_DIR", help="hub id or local directory of the weights")
    p.add_argument("--config", metavar="FILE", help="YAML encoder config (see configs/); flags override it")
    p.add_argument("--dim", type=int, help="single-vector dimension (Matryoshka truncation)")
    p.add_argument("--dpi", type=int, help="PDF rendering resolution (default: the config's, else ingest's)")
    p.add_argument("--ocr", choices=("auto", "always", "never"),
                   help="OCR of pages without a text layer while indexing (default: the config's, else auto)")
    p.add_argument("--index-dir", metavar="DIR", help="keep the indexes here, one per dataset (default: temporary)")
    p.add_argument("-k", type=int, default=100, help="pages retrieved per query (default 100)")
    p.add_argument("--scope", choices=("corpus", "document", "both"), default="both",
                   help="rank over the whole corpus, within each question's document, or both (default)")
    p.add_argument("--mode", choices=("visual", "text", "hybrid"), help="search mode (default: the index's own)")
    p.add_argument("--fusion", choices=("rrf", "weighted"), help="hybrid mode: how the two rankings are fused "
                   "(default rrf)")
    p.add_argument("--weight", type=float, help="hybrid mode, weighted fusion: lambda in norm(bm25) + lambda * "
                   "norm(visual) (default 1)")
    p.add_argument("--rrf-k", type=float, help="hybrid mode with rrf: the constant k in 1/(k + rank) (default 60)")
    rewrite_flags(p)
    p.add_argument("--split", default="test", help="dataset split (default: test)")
    p.add_argument("--half", choices=("a", "b"), help="local sets: keep the questions about one half of the "
                   "documents (split by sha1 of the document's file name) over the whole corpus; tune on one half, "
                   "report the other")
    p.add_argument("--output", "-o", metavar="FILE", help="write the full result (JSON) here")
    p.add_argument("--qrels", metavar="FILE", help="TREC qrels file (with --run)")
    p.add_argument("--run", metavar="FILE", help="TREC run file to score against --qrels")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two result JSON files: show B - A")
    p.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    runtime_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`dse eval` in one of its three forms."""
    forms = [bool(args.datasets), bool(args.qrels or args.run), bool(args.compare)]
    if sum(forms) != 1:
        raise CLIError("give DATASET..., or --qrels FILE --run FILE, or --compare A.json B.json (one of them)")
    if args.compare:
        return _compare(args)
    if args.qrels or args.run:
        return _score_files(args)
    return _evaluate(args)


def _score_files(args: argparse.Namespace) -> int:
    from dse.evaluate.metrics import METRICS, score_run
    from dse.evaluate.trec import read_qrels, read_run

    if not (args.qrels and args.run):
        raise CLIError("--qrels and --run go together")
    qrels, run_ = read_qrels(args.qrels), read_run(args.run)
    scores = score_run(qrels, run_)
    if args.json:
        print(json.dumps(scores, indent=2))
    else:
        unanswered = sum(1 for q in qrels if not run_.get(q))
        print(f"{len(qrels)} queries in the qrels ({unanswered} without results, scored 0)")
        for name in METRICS:
            print(f"{name:<11}{scores[name]:.4f}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from dse.evaluate.report import EvalResult, compare, comparison

    a, b = (EvalResult.load(path) for path in args.compare)
    if args.json:
        print(json.dumps(comparison(a, b), indent=2))
    else:
        print(f"B = {args.compare[1]}, A = {args.compare[0]}; cells: B (B - A)\n")
        print(compare(a, b), end="")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from dse.config import IndexConfig, load_config
    from dse.encoders.registry import load_encoder
    from dse.evaluate.load import load_dataset
    from dse.evaluate.runner import evaluate

    if args.k < 1:
        raise CLIError(f"-k must be >= 1, got {args.k}")
    config = load_config(args.config) if args.config else IndexConfig()
    config = config.with_overrides(args.encoder, model=args.model, dim=args.dim, **runtime(args))
    sets = [load_dataset(spec, split=args.split, half=args.half) for spec in args.datasets]
    encoder = load_encoder(config.encoder, **config.options)
    scopes = ("corpus", "document") if args.scope == "both" else (args.scope,)
    dpi = args.dpi or config.ingest.get("dpi")
    fused = {key: value for key, value in (("fusion", args.fusion), ("weight", args.weight), ("rrf_k", args.rrf_k))
             if value is not None}
    if fused and args.mode != "hybrid":
        raise CLIError(f"--{'/--'.join(k.replace('_', '-') for k in fused)} need --mode hybrid")
    rewriters = load_rewrites(args)
    if rewriters:
        fused["rewrite"] = next(iter(rewriters.values()))  # recorded by its describe() in the result
    result = evaluate(sets, encoder, index_dir=args.index_dir, k=args.k, mode=args.mode, scopes=scopes, dpi=dpi,
                      progress=True, search_options=fused, ocr=_ocr(config.ingest, args.ocr))
    if args.output:
        result.save(args.output)
    if args.json:
        print(json.dumps(result.to_json(), indent=1))
    else:
        print(_header(result.config), end="")
        print(result.table(), end="")
    for s in result.scores:
        for failure in s.info.get("failures", []) if s.scope == "corpus" else []:
            print(f"  failed: {failure}", file=sys.stderr)
    return 0


def _header(config: dict[str, Any] | Any) -> str:
    enc = config["encoder"]
    model = f" ({enc.get('model')})" if enc.get("model") else ""
    mode = f", mode {config['mode']}" if config.get("mode") else ""
    fused = config.get("search_options") or {}
    mode += "".join(f", {key} {value['name'] if isinstance(value, dict) and 'name' in value else value}"
                    for key, value in fused.items())
    return f"encoder {enc['name']}{model}, k={config['k']}{mode}, dse {config['dse_version']}\n\n"


def _ocr(ingest_config: Any, flag: str | None) -> Any:
    """The OCR options of the config's `ingest:` keys and `--ocr` (None: neither sets any)."""
    from ingest.ocr import CONFIG_KEYS, OcrOptions

    values = {key: ingest_config.get(key) for key in CONFIG_KEYS}
    if flag is not None:
        values["ocr"] = flag
    if all(value is None for value in values.values()):
        return None
    try:
        return OcrOptions.from_config(values)
    except ValueError as exc:
        raise CLIError(f"ingest OCR options: {exc}") from None
