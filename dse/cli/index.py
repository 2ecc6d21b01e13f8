"""`dse index`: create an index or add sources to it."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, Mapping

from dse.cli.common import CLIError, runtime, runtime_flags

if TYPE_CHECKING:
    from ingest.limits import Limits
    from ingest.ocr import OcrOptions
    from ingest.web.pages import WebOptions


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `index` subcommand."""
    p = sub.add_parser("index", help="create an index or add sources to it")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="PDFs, office documents, images, folders or http(s) URLs")
    p.add_argument("--index", required=True, metavar="DIR", help="index directory (created if absent)")
    p.add_argument("--encoder", metavar="NAME", help="registered encoder (default: bm25; see `dse encoders`)")
    p.add_argument("--model", metavar="ID_OR_DIR", help="hub id or local directory of the weights")
    p.add_argument("--config", metavar="FILE", help="YAML config (see configs/); flags override it")
    p.add_argument("--dim", type=int, help="single-vector dimension (Matryoshka truncation)")
    p.add_argument("--dpi", type=int, help="PDF rendering resolution")
    p.add_argument("--password", help="password for encrypted PDFs")
    p.add_argument("--max-pages", type=int, metavar="N", help="refuse documents with more pages (default 5000)")
    p.add_argument("--max-file-mb", type=float, metavar="MB", help="refuse larger files (default 500)")
    p.add_argument("--max-image-pixels", type=int, metavar="N",
                   help="refuse larger image files (default: Pillow's limit, 89478485)")
    p.add_argument("--convert-timeout", type=float, metavar="S",
                   help="seconds LibreOffice may take to convert one office document (default 300)")
    p.add_argument("--page-timeout", type=float, metavar="S",
                   help="seconds poppler may spend per PDF page (default 30)")
    p.add_argument("--file-timeout", type=float, metavar="S",
                   help="seconds one file's rendering and text extraction may take in all (default 900)")
    p.add_argument("--max-memory-mb", type=int, metavar="MB",
                   help="memory cap of each render worker, poppler call and LibreOffice run (default 4096)")
    p.add_argument("--sandbox", choices=["auto", "require", "strict", "off"],
                   help="how LibreOffice is contained: auto (no network when the machine allows it; the "
                        "default), require (no network or fail), strict (no network, sees only the "
                        "document), off")
    p.add_argument("--ocr", choices=["auto", "always", "never"],
                   help="OCR with tesseract: auto (PDF pages without a usable text layer, and images; the "
                        "default), always (every page; the OCR text replaces the text layer), never")
    p.add_argument("--ocr-language", metavar="LANGS",
                   help="tesseract language(s), e.g. eng or eng+deu (default eng; each needs tesseract-ocr-LANG)")
    p.add_argument("--web-timeout", type=float, metavar="S",
                   help="seconds one web page may take, loading and capture (default 90); a page out of "
                        "time keeps the tiles captured")
    p.add_argument("--no-browser-sandbox", action="store_true",
                   help="run Chromium without its sandbox (trusted pages only; for machines where it "
                        "cannot start)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes rendering PDF pages (default: one per CPU; 0: in the main process)")
    p.add_argument("--commit-pages", type=int, metavar="N",
                   help="commit encoded files together once they hold N pages: one transaction and one "
                        "index shard per group; a killed run redoes at most that group (default 1024; "
                        "1: one file per commit)")
    p.add_argument(
        "--allow-private-urls",
        action="store_true",
        help="let web pages reach loopback, private and link-local addresses (refused by default)",
    )
    p.add_argument("--hnsw", action="store_true", default=None, help="approximate HNSW search (single vectors)")
    p.add_argument("--engine-mode", choices=["cascade", "binary", "int8"],
                   help="approximate engine: cascade (multi-vector), binary or int8 (single-vector)")
    p.add_argument("--pool-factor", type=int, help="cascade mode: hierarchical token pooling factor (e.g. 2)")
    p.add_argument("--n-lists", type=int, help="binary/int8 mode: IVF lists (about sqrt(pages) to 4*sqrt(pages))")
    p.add_argument("--n-probe", type=int, help="binary/int8 mode with --n-lists: lists scanned per query (default 32)")
    from dse.backends.qdrant.schema import OPTION_KEYS

    p.add_argument("--backend", choices=["directory", "qdrant"],
                   help="a new index: where its vectors live (default directory: the index directory itself); "
                        "qdrant's options go in the config's index: qdrant: section (url or path, "
                        f"{', '.join(OPTION_KEYS[1:])}; docs/qdrant.md)")
    p.add_argument("--qdrant", metavar="URL_OR_PATH",
                   help="--backend qdrant: http(s)://host:6333 (server or cluster; API key from QDRANT_API_KEY) "
                        "or a folder (qdrant-client's local mode, one process at a time) or edge:FOLDER "
                        "(qdrant-edge-py: Qdrant's engine in this process, one process at a time)")
    p.add_argument("--collection", metavar="NAME", help="--backend qdrant: collection name (default: the index's name)")
    p.add_argument("--sync", action="store_true",
                   help="first delete indexed sources under the given folders that no longer exist on disk "
                        "(folders resolved like sources: any spelling of them works)")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="metadata recorded on every page added (repeatable; filter with `dse search --where`)")
    runtime_flags(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--allow-index-model", action="store_true",
                   help="adding to an existing index: load the hub model its manifest names without naming "
                        "it with --model")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`dse index`: create or append; exit 1 only if nothing could be indexed.

    Sources are recorded by resolved absolute path (`~` expanded; URLs as given), so re-running
    from another directory or with another spelling updates the same sources.
    """
    import os

    from dse.config import IndexConfig, load_config
    from dse.encoders.registry import load_encoder
    from dse.backends import index_exists
    from dse.retrieve.retriever import Retriever

    ivf = {k: v for k, v in (("n_lists", args.n_lists), ("n_probe", args.n_probe)) if v is not None}
    if ivf and args.engine_mode not in ("binary", "int8"):
        raise CLIError("--n-lists and --n-probe need --engine-mode binary or int8")
    if args.commit_pages is not None and args.commit_pages < 1:
        raise CLIError(f"--commit-pages must be >= 1, got {args.commit_pages}")
    config = load_config(args.config) if args.config else IndexConfig()
    chose_encoder = bool(args.config or args.encoder or args.model or args.dim)
    config = config.with_overrides(args.encoder, model=args.model, dim=args.dim, **runtime(args))
    dpi = args.dpi or config.ingest.get("dpi")
    password = args.password or config.ingest.get("password")
    limits = _limits(config.ingest, args)
    args.index = os.path.expanduser(args.index)
    if index_exists(args.index):
        _same_backend(args)
        if chose_encoder:
            retriever = Retriever.open(args.index, load_encoder(config.encoder, **config.options))
        else:
            retriever = Retriever.open(args.index, **runtime(args),
                                       **({"allow_index_model": True} if args.allow_index_model else {}))
    else:
        hnsw = bool(args.hnsw if args.hnsw is not None else config.index.get("hnsw", False))
        image_size = int(config.index.get("image_size", 768))
        encoder = load_encoder(config.encoder, **config.options)
        engine = {"mode": args.engine_mode} if args.engine_mode else {}
        if args.pool_factor:
            engine["pool_factor"] = args.pool_factor
        engine.update(ivf)
        backend = args.backend or config.index.get("backend", "directory")
        if backend == "qdrant":
            engine = _qdrant_options(config.index, args)
            hnsw = False
        elif args.qdrant or args.collection:
            raise CLIError("--qdrant and --collection need --backend qdrant")
        retriever = Retriever.create(args.index, encoder, hnsw=hnsw, image_size=image_size, engine=engine,
                                     backend=backend)
    with retriever:
        removed = retriever.sync([s for s in args.sources if "://" not in s]) if args.sync else None
        if removed is not None:
            print(f"sync: deleted {removed.sources} missing source(s), {removed.pages} page(s)", file=sys.stderr)
        report = retriever.add(
            args.sources,
            dpi=dpi,
            password=password,
            progress=not args.no_progress,
            allow_private=args.allow_private_urls,
            metadata=_metadata(args.meta),
            workers=args.workers,
            limits=limits,
            commit_pages=args.commit_pages,
            web=_web_options(config.ingest, args),
            ocr=_ocr_options(config.ingest, args),
        )
        total = len(retriever)
    print(
        f"indexed {len(report.added)} source(s), {report.pages} page(s); {len(report.updated)} updated; "
        f"skipped {len(report.skipped)} already indexed; {len(report.failures)} failed; "
        f"{total} page(s) in {args.index}",
        file=sys.stderr,
    )
    if report.ocr_pages or report.ocr_seconds:
        print(f"OCR: text read from {report.ocr_pages} page(s) in {report.ocr_seconds:.1f} s", file=sys.stderr)
    for failure in report.failures:
        print(f"  failed: {failure.error}", file=sys.stderr)
    for warning in report.warnings:
        print(f"  warning: {warning.error}", file=sys.stderr)
    return 0 if report.ok and (report.added or report.skipped or (removed and removed.pages)) else 1


def _metadata(items: list[str]) -> dict[str, object]:
    """`--meta KEY=VALUE` options as a dict (numbers and true/false converted)."""
    from dse.storage.filters import parse_value

    meta: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"--meta {item!r}: expected KEY=VALUE")
        meta[key.strip()] = parse_value(value.strip())
    return meta


def _limits(ingest_config: Mapping[str, Any], args: argparse.Namespace) -> Limits:
    """`ingest.Limits` from the config's `ingest:` section, with the command line's flags over it."""
    from ingest.limits import CONFIG_KEYS, MORE_CONFIG_KEYS, Limits

    keys = CONFIG_KEYS + MORE_CONFIG_KEYS
    values = {key: ingest_config.get(key) for key in keys}
    values.update({key: getattr(args, key) for key in keys if getattr(args, key) is not None})
    try:
        return Limits.from_config(values)
    except ValueError as exc:
        raise CLIError(f"ingest limits: {exc}") from None


def _ocr_options(ingest_config: Mapping[str, Any], args: argparse.Namespace) -> OcrOptions:
    """`ingest.OcrOptions`: the config's `ingest:` keys (`ocr`, `ocr_language`, `ocr_dpi`,
    `ocr_timeout`), then `--ocr` and `--ocr-language`."""
    from ingest.ocr import CONFIG_KEYS, OcrOptions

    values = {key: ingest_config.get(key) for key in CONFIG_KEYS}
    if args.ocr is not None:
        values["ocr"] = args.ocr
    if args.ocr_language is not None:
        values["ocr_language"] = args.ocr_language
    try:
        return OcrOptions.from_config(values)
    except ValueError as exc:
        raise CLIError(f"ingest OCR options: {exc}") from None


def _web_options(ingest_config: Mapping[str, Any], args: argparse.Namespace) -> WebOptions:
    """`ingest.WebOptions`: the config's `ingest: web:` section, then the flags.

    `--web-timeout` is a web page's whole time limit; `--no-browser-sandbox` (or
    `web: {sandbox: false}`) runs Chromium without its sandbox.
    """
    from ingest.web.pages import WebOptions

    section = ingest_config.get("web") or {}
    if not isinstance(section, Mapping):
        raise CLIError(f"config ingest.web must be a mapping of WebOptions fields, got {section!r}")
    known = set(WebOptions.__dataclass_fields__)
    unknown = sorted(set(section) - known)
    if unknown:
        raise CLIError(f"config ingest.web: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values = dict(section)
    if args.web_timeout is not None:
        values["page_timeout"] = args.web_timeout
    if args.no_browser_sandbox:
        values["sandbox"] = False
    try:
        return WebOptions(**values)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"web options: {exc}") from None


def _qdrant_options(index_config: Mapping[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Options of a new Qdrant-backed index: the config's `index: qdrant:` section, then the flags.

    Keys (`dse.backends.qdrant.schema.OPTION_KEYS`; docs/qdrant.md): `url` or `path` (or --qdrant),
    `collection` (or --collection); search: `prefetch`, `hnsw_ef`, `n_probe`, `prefetch_pooled`;
    single vectors: `quantization` (scalar | binary); multi vectors: `pooling` (mean | grid) and
    `grid_rows`, `first_stage` (pooled | sparse-centroids) with `centroid_weight` (presence | count
    | sim), `centroid_idf`, `centroids`, `codebook_min_pages`, `codebook_retrain`; cluster:
    `shard_number`, `replication_factor`, `write_consistency_factor`, `on_disk`. An unknown key is
    an error naming it.
    """
    section = dict(index_config.get("qdrant") or {})
    location = args.qdrant or section.pop("url", None) or section.pop("path", None)
    if not location:
        raise CLIError("--backend qdrant needs --qdrant http(s)://host:6333 or a local folder")
    if args.engine_mode or args.hnsw or args.pool_factor:
        raise CLIError("--engine-mode, --hnsw and --pool-factor are the directory backend's; Qdrant's options go "
                       "in the config's index: qdrant: section")
    options = {**section, "qdrant": location}
    if args.collection:
        options["collection"] = args.collection
    return options


def _same_backend(args: argparse.Namespace) -> None:
    """An existing index: --backend, --qdrant and --collection, when given, must be what its manifest records."""
    from dse.backends import backend_name
    from dse.storage.manifest import read_manifest

    recorded = dict(read_manifest(args.index).store.get("qdrant") or {})
    if args.backend and args.backend != backend_name(args.index):
        raise CLIError(f"{args.index} exists with the {backend_name(args.index)!r} backend, not {args.backend!r}")
    if args.qdrant or args.collection:
        from dse.backends.qdrant.schema import public_location

        if not recorded or (args.qdrant and public_location(args.qdrant) != recorded["location"]) or (
                args.collection and args.collection != recorded["collection"]):
            raise CLIError(f"{args.index} exists and records its backend in its manifest ({recorded or 'directory'}); "
                           "drop --qdrant and --collection or give the same ones")
