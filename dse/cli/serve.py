"""`dse serve`: the search service (web page, JSON API) over one index."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from dse.cli.common import CLIError, index_model_flags, rewrite_flags, rewrite_options, runtime, runtime_flags


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `serve` subcommand."""
    p = sub.add_parser("serve", help="serve an index: web page, HTTP API (OpenAPI at /docs)")
    p.add_argument("--index", required=True, metavar="DIR")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--token-file", metavar="FILE",
                   help="file holding the bearer token that uploads and deletes need (none: read-only)")
    p.add_argument("--max-upload-mb", type=float, default=200, help="largest upload (default 200 MB)")
    p.add_argument("--max-k", type=int, default=100, help="largest k a search may ask for (default 100)")
    p.add_argument("--batch-queries", type=int, default=16, help="visual queries encoded together (default 16)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, help="wait for more queries to batch (default 5 ms)")
    p.add_argument("--query-cache", type=int, default=1024, help="query embeddings cached (default 1024)")
    p.add_argument("--max-searches", type=int, default=0,
                   help="searches scored at once; more wait their turn (default 0: one at a time, each parallel "
                        "inside; visual queries are encoded before, in shared batches)")
    p.add_argument("--search-threads", type=int, default=2, metavar="N",
                   help="threads that run searches (scoring, snippets, answers; default 2); more requests wait "
                        "their turn on the event loop, the other routes have their own pool")
    p.add_argument("--threads", type=int, metavar="N",
                   help="threads torch, BLAS and FAISS may use for encoding and scoring (default: torch one, to "
                        "encode queries, the others one per core); on a small machine 1 leaves the cores to the "
                        "request threads")
    p.add_argument("--rerank", metavar="ENCODER", action="append", default=[],
                   help="offer reranking with this multi-vector encoder (repeatable), e.g. colqwen2")
    p.add_argument("--no-preload", dest="preload", action="store_false",
                   help="load a visual index's encoder at the first visual query, not at start")
    p.add_argument("--allow-private", action="store_true",
                   help="URLs submitted for indexing may reach loopback and private addresses")
    rewrite_flags(p, repeatable=True)
    runtime_flags(p)
    index_model_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the server until interrupted."""
    import uvicorn

    from dse.backends import index_exists
    from dse.serve.app import create_app
    from dse.serve.service import ServeConfig

    if not index_exists(args.index):
        raise CLIError(f"{args.index}: no index here (make one with `dse index SOURCES --index {args.index}`)")
    token = _read_token(args.token_file)
    if token is None and not _loopback(args.host):
        print(f"dse: warning: listening on {args.host} without --token-file: anyone who reaches this port can "
              "search the index (writes stay refused)", file=sys.stderr)
    if args.threads is not None:
        if args.threads < 1:
            raise CLIError(f"--threads must be >= 1, got {args.threads}")
        _limit_threads(args.threads)
    if args.max_k < 1 or args.max_upload_mb <= 0 or args.max_searches < 0 or args.search_threads < 1:
        raise CLIError("--max-k and --search-threads must be >= 1, --max-upload-mb > 0 and --max-searches >= 0")
    options = offered_rewriters(args)
    config = ServeConfig(
        index=Path(args.index), token=token, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_k=args.max_k, batch_queries=args.batch_queries, batch_wait_ms=args.batch_wait_ms,
        query_cache=args.query_cache, allow_private=args.allow_private, runtime=tuple(runtime(args).items()),
        rerank=tuple(args.rerank), preload=args.preload, max_searches=args.max_searches,
        search_threads=args.search_threads, encoder_threads=args.threads or 1,
        model=args.model, allow_index_model=args.allow_index_model,
        rewrite=tuple(args.rewrite), rewrite_options=tuple(options.items()),
    )
    app = create_app(config)
    where = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}"
    mode = "writes need the token" if token else "read-only"
    print(f"dse: serving {args.index} at {where} ({mode}); API docs at {where}/docs", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def offered_rewriters(args: argparse.Namespace) -> dict:
    """The options of the rewriters `--rewrite` offers (`dse serve`, `dse mcp`), checked: CLIError naming the flag."""
    from dse.rewrite.registry import check_rewriters

    options = rewrite_options(args)
    if options and not args.rewrite:
        raise CLIError("--rewrite-model, --rewrite-url and --rewrite-option need --rewrite NAME")
    if "llm" in args.rewrite and not args.rewrite_model:
        raise CLIError("--rewrite llm needs --rewrite-model (a local causal LM directory, or with --rewrite-url the "
                       "endpoint's model name)")
    try:
        check_rewriters(args.rewrite, options)  # names and options now; the models load at start
    except ValueError as exc:
        raise CLIError(f"--rewrite {' '.join(args.rewrite)}: {exc}") from exc
    return options


def _limit_threads(n: int) -> None:
    """At most `n` threads in torch's and the BLAS libraries' pools (set before they start)."""
    import os

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:
        try:
            import faiss

            faiss.omp_set_num_threads(n)
        except ImportError:
            pass


def _read_token(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CLIError(f"{path}: cannot read the token file: {exc}") from exc
    if len(token) < 8:
        raise CLIError(f"{path}: the token must be at least 8 characters")
    return token


def _loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
