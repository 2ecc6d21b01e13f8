"""`dse serve` under load on loopback against `Retriever.search` in-process: same index, same queries.

For each index (a BM25 text index and an exact multi-vector index of `tiny-colqwen2`, both as
`dse index` builds them, filled through the real write path `index_pages` with the synthetic
documents of `bench/serve_corpus.py`), in one run:

- cold start: a fresh process doing `Retriever.open` + its first search, and a fresh `dse serve`
  process (`dse.testing.server.serve_index`) from its start to its first answered search;
- in-process: `--clients` threads sharing one `Retriever` (as the server does), then one thread;
- HTTP: `--clients` client threads, one keep-alive connection each, `--requests` POST /v1/search
  each: the default body `{"query", "k"}` (what the web page sends; snippets on), then with
  `"snippets": false`, then one client alone (with and without snippets). Each HTTP run starts its own server, so no run
  finds the queries of another in the server's query-embedding cache. Every query of a run is
  distinct; the warm-up queries (a few per worker, untimed) are another set.

Each load stops by itself after its fixed number of requests, or at `--max-seconds`. Each row
of the table shows the load average and the share of idle CPU just before its run (the
warm-up done): on a shared machine, `--wait-idle S` waits for a quiet moment first.

    python bench/serve.py --workdir /tmp/dse-bench-serve               # 10k pages each (cached)
    python bench/serve.py --workdir /tmp/dse-bench-serve --threads 1   # torch and BLAS on one thread each
    python bench/serve.py --pages 200 --requests 5 --workdir /tmp/x    # a quick check

On a small machine, torch's and BLAS's thread pools (one thread per core by default) fight with
every other busy thread, the server's own included: `--threads 1` shows what that costs.

Targets (on 2 cores): HTTP p50 <= in-process p50 + 3 ms at the same concurrency, zero errors,
HTTP throughput >= 70% of in-process. The last line printed is a JSON object: `http_p50_ms`,
`http_p99_ms`, `inprocess_p50_ms`, `rps` (HTTP, default body, `--clients` clients) of the first
index, `errors` (every run of every index), and one object per index under its name ("text",
"multi") with the same keys and the details.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
from machine import cpu_model  # noqa: E402
from serve_corpus import Corpus  # noqa: E402
from serve_load import cpu_idle, http_caller, inprocess_caller, run_load, split, wait_idle  # noqa: E402

# bench/ingest.py would shadow the `ingest` package that dse imports: drop bench/ from the path now
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

ENCODERS = {"text": "bm25", "multi": "tiny-colqwen2"}
CORPUS_VERSION = 1
WARMUP_PER_WORKER = 3
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def machine() -> dict[str, Any]:
    """What this runs on: cores, CPU model, memory, load average."""
    model = cpu_model()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else None
    return {"nproc": cores, "cpu": model, "memory_gb": round(mem, 1) if mem else None,
            "python": platform.python_version(), "load_before": _load()}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def build(kind: str, corpus: Corpus, workdir: Path) -> tuple[Path, dict[str, Any]]:
    """The index of `kind` over the corpus, built once into `workdir` (reused when complete)."""
    import dse
    from dse.retrieve.indexing import index_pages
    from dse.retrieve.retriever import Retriever

    name = f"{kind}-{corpus.n_pages}p-seed{corpus.seed}"
    path, marker = workdir / name, workdir / f"{name}.built.json"
    params = {"kind": kind, "pages": corpus.n_pages, "seed": corpus.seed, "corpus_version": CORPUS_VERSION}
    encoder = dse.load_encoder(ENCODERS[kind])
    if marker.is_file() and path.is_dir():
        built = json.loads(marker.read_text())
        if {k: built.get(k) for k in params} == params and _matches(path, encoder):
            return path, {**built, "cached": True}
    shutil.rmtree(path, ignore_errors=True)
    marker.unlink(missing_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    retriever = Retriever.create(path, encoder)  # the engine and image size `dse index` uses
    try:
        report = index_pages(retriever.encoder, retriever.index, corpus.sources())
        pages = len(retriever)
    finally:
        retriever.close()
    if report.failures or pages != corpus.n_pages:
        raise RuntimeError(f"building {path}: {pages} pages, failures {report.failures[:3]}")
    seconds = time.perf_counter() - started
    built = {**params, "build_s": round(seconds, 1), "build_pages_per_s": round(pages / seconds, 1),
             "build_load_after": _load(), "engine": _engine(path)}
    marker.write_text(json.dumps(built))
    return path, {**built, "cached": False}


def _matches(path: Path, encoder: Any) -> bool:
    """Whether the cached index can be searched with this encoder (e.g. no prompt version change since)."""
    from dse.retrieve.encoder_check import check_encoder
    from dse.storage.manifest import EncoderMismatchError
    from dse.storage.page_index import PageIndex

    try:
        index = PageIndex.open(path)
    except Exception:  # noqa: BLE001 - an unreadable cache is rebuilt
        return False
    try:
        check_encoder(index.manifest, encoder.describe())
        return len(index) > 0
    except EncoderMismatchError:
        return False
    finally:
        index.close()


def _engine(path: Path) -> str:
    manifest = json.loads((path / "manifest.json").read_text())
    enc = manifest.get("encoder", {})
    engine = manifest.get("engine") or manifest.get("engine_options") or "default"
    return f"{enc.get('name')} ({enc.get('kind')}), engine {engine}"


def cold_inprocess(index: Path, query: str, k: int, mode: str | None) -> dict[str, Any]:
    """A fresh process: import, `Retriever.open`, first search (and the whole process's time)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--cold-probe", str(index), "--probe-query", query,
           "--k", str(k)] + (["--mode", mode] if mode else [])
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    total = time.perf_counter() - started
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "process_to_first_hit_s": round(total, 3)}


def cold_probe(index: str, query: str, k: int, mode: str | None) -> None:
    """(In the fresh process.) Time import, open and the first search; print them as JSON."""
    t0 = time.perf_counter()
    from dse.retrieve.retriever import Retriever

    t1 = time.perf_counter()
    retriever = Retriever.open(index)
    t2 = time.perf_counter()
    hits = retriever.search(query, k, **({"mode": mode} if mode else {}))
    t3 = time.perf_counter()
    print(json.dumps({"import_s": round(t1 - t0, 3), "open_s": round(t2 - t1, 3), "first_search_s": round(t3 - t2, 3),
                      "open_first_search_s": round(t3 - t1, 3), "hits": len(hits)}))


def serve_run(index: Path, name: str, chunks: list[list[str]], warm: list[list[str]], args: argparse.Namespace,
              extra: dict[str, Any], probe: str) -> tuple[Any, dict[str, Any]]:
    """Start a server, time its first answer, run the load; (Load, cold-start times)."""
    from dse.testing.server import serve_index

    idle = wait_idle(args.wait_idle) if args.wait_idle > 0 else cpu_idle(0.5)
    started = time.perf_counter()
    with serve_index(index, timeout=300) as url:
        healthy = time.perf_counter()
        first = run_load(http_caller(url, args.k, extra), [[probe]], [[]], args.max_seconds)
        answered = time.perf_counter()
        cold = {"start_to_healthz_s": round(healthy - started, 3), "start_to_first_hit_s": round(answered - started, 3),
                "first_errors": first.errors, "idle_before": round(idle, 3)}
        load = run_load(http_caller(url, args.k, extra), chunks, warm, args.max_seconds, args.wait_idle)
    load.errors += first.errors
    load.error_samples += first.error_samples
    print(f"  {name}: done ({len(load.latencies_ms)} requests, {load.wall_s:.1f} s)", file=sys.stderr)
    return load, cold


def hardness(retriever: Any, corpus: Corpus, queries: list[tuple[str, int]]) -> dict[str, Any]:
    """How hard the BM25 queries are: where the target page ranks, score gaps, candidate pages."""
    results = retriever.search_many([q for q, _ in queries], 11, mode="text")
    rank1, recall, rr, gap_10_11, gap_rel, gap_1_2 = 0, 0, [], [], [], []
    for (_, target), hits in zip(queries, results):
        ids = [h.page_id for h in hits]
        tid = corpus.page_id(target)
        rank = ids.index(tid) + 1 if tid in ids[:10] else None
        rank1 += rank == 1
        recall += rank is not None
        rr.append(1 / rank if rank else 0.0)
        if len(hits) >= 11:
            gap_10_11.append(hits[9].score - hits[10].score)
            gap_rel.append((hits[9].score - hits[10].score) / hits[9].score)
        if len(hits) >= 2:
            gap_1_2.append((hits[0].score - hits[1].score) / hits[0].score)
    matching = corpus.matching_pages(queries)
    n = len(queries)
    return {"queries": n, "target_rank1": round(rank1 / n, 3), "target_in_top10": round(recall / n, 3),
            "mrr10": round(float(np.mean(rr)), 3), "median_score_gap_10_11": round(float(np.median(gap_10_11)), 4),
            "median_rel_gap_10_11": round(float(np.median(gap_rel)), 4),
            "median_rel_gap_1_2": round(float(np.median(gap_1_2)), 4),
            "median_terms": float(np.median([len(corpus.tokenizer.tokenize(q)) for q, _ in queries])),
            "median_matching_pages": int(np.median(matching)),
            "median_matching_share": round(float(np.median(matching)) / corpus.n_pages, 3)}


def bench_index(kind: str, corpus: Corpus, args: argparse.Namespace, with_hardness: bool) -> dict[str, Any]:
    """Every measurement of one index."""
    from dse.retrieve.retriever import Retriever

    path, built = build(kind, corpus, Path(args.workdir))
    print(f"{kind}: {path} ({built['engine']}); "
          + ("cached" if built["cached"] else f"built in {built['build_s']} s ({built['build_pages_per_s']} pages/s "
                                               f"through index_pages; load average after {built['build_load_after']})"),
          file=sys.stderr)
    mode = args.mode if kind == "multi" else None  # a text index has only BM25
    options = {"mode": mode} if mode else {}
    n = args.clients * args.requests
    queries = corpus.queries(n)
    texts = [q for q, _ in queries]
    chunks = split(texts, args.clients)
    warm_all = [q for q, _ in corpus.queries(WARMUP_PER_WORKER * args.clients + 1, offset=10**7)]
    probe, warm_texts = warm_all[0], warm_all[1:]
    warm = split(warm_texts, args.clients)
    out: dict[str, Any] = {"pages": corpus.n_pages, "encoder": ENCODERS[kind], "engine": built["engine"],
                           "build_s": built["build_s"], "build_pages_per_s": built.get("build_pages_per_s"),
                           "build_cached": built["cached"], "mode": mode or "default", "runs": {}, "cold": {}}
    idle = wait_idle(args.wait_idle) if args.wait_idle > 0 else cpu_idle(0.5)
    out["cold"]["inprocess"] = {**cold_inprocess(path, probe, args.k, mode), "idle_before": round(idle, 3)}
    retriever = Retriever.open(path)
    try:
        caller = inprocess_caller(retriever, args.k, options)
        inproc = run_load(caller, chunks, warm, args.max_seconds, args.wait_idle)
        single = run_load(caller, [texts], [warm_texts[:WARMUP_PER_WORKER]], args.max_seconds, args.wait_idle)
        if with_hardness:
            out["hardness"] = hardness(retriever, corpus, queries)
    finally:
        retriever.close()
    print(f"  in-process: done ({inproc.wall_s:.1f} s + {single.wall_s:.1f} s)", file=sys.stderr)
    http, out["cold"]["server"] = serve_run(path, "HTTP default", chunks, warm, args, options, probe)
    nosnip, _ = serve_run(path, "HTTP no snippets", chunks, warm, args, {**options, "snippets": False}, probe)
    one, _ = serve_run(path, "HTTP 1 client", [texts], [warm_texts[:WARMUP_PER_WORKER]], args, options, probe)
    one_nosnip, _ = serve_run(path, "HTTP 1 client no snippets", [texts], [warm_texts[:WARMUP_PER_WORKER]], args,
                              {**options, "snippets": False}, probe)
    runs = {"inprocess": inproc, "inprocess_1": single, "http": http, "http_nosnippets": nosnip, "http_1": one,
            "http_1_nosnippets": one_nosnip}
    out["runs"] = {name: load.stats() for name, load in runs.items()}
    out["ranking_mismatches"] = sum(http.hits.get(q) != inproc.hits.get(q) for q in inproc.hits if q in http.hits)
    s = out["runs"]
    out.update(http_p50_ms=s["http"]["p50_ms"], http_p95_ms=s["http"]["p95_ms"], http_p99_ms=s["http"]["p99_ms"],
               rps=s["http"]["rps"], inprocess_p50_ms=s["inprocess"]["p50_ms"],
               inprocess_p99_ms=s["inprocess"]["p99_ms"], inprocess_rps=s["inprocess"]["rps"],
               errors=sum(load.errors for load in runs.values()))
    added = out["http_p50_ms"] - out["inprocess_p50_ms"]
    share = out["rps"] / out["inprocess_rps"] if out["inprocess_rps"] else float("nan")
    best = max(out["inprocess_rps"], s["inprocess_1"]["rps"])
    out["targets"] = {"http_added_p50_ms": round(added, 2), "added_p50_ok": bool(added <= 3.0),
                      "errors_ok": out["errors"] == 0, "throughput_share": round(share, 3),
                      "throughput_ok": bool(share >= 0.7),
                      "http_added_p50_1client_ms": round(s["http_1"]["p50_ms"] - s["inprocess_1"]["p50_ms"], 2),
                      "http_added_p50_1client_nosnippets_ms":
                          round(s["http_1_nosnippets"]["p50_ms"] - s["inprocess_1"]["p50_ms"], 2),
                      "throughput_share_best": round(out["rps"] / best, 3) if best else float("nan")}
    out["targets"]["met"] = all(out["targets"][k] for k in ("added_p50_ok", "errors_ok", "throughput_ok"))
    out["load_after"] = _load()
    return out


def print_report(kind: str, r: dict[str, Any], clients: int) -> None:
    """The human-readable table of one index."""
    print(f"\n== {kind}: {r['pages']} pages, {r['engine']}, mode {r['mode']}; built in {r['build_s']} s"
          f"{' (cached)' if r['build_cached'] else ''}")
    print(f"{'run':<44}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'req/s':>9}{'errors':>8}{'load1':>7}{'idle':>6}")
    names = {"inprocess": f"in-process, {clients} threads, one Retriever", "inprocess_1": "in-process, 1 thread",
             "http": f"HTTP, {clients} clients, default body (snippets)",
             "http_nosnippets": f"HTTP, {clients} clients, snippets: false", "http_1": "HTTP, 1 client, default body",
             "http_1_nosnippets": "HTTP, 1 client, snippets: false"}
    for name, label in names.items():
        s = r["runs"][name]
        print(f"{label:<44}{s['p50_ms']:>9.2f}{s['p95_ms']:>9.2f}{s['p99_ms']:>9.2f}{s['rps']:>9.1f}{s['errors']:>8}"
              f"{s['load1_before']:>7.2f}{100 * s['idle_before']:>5.0f}%"
              + ("  (stopped by --max-seconds)" if s["capped"] else ""))
    took = r["runs"]["http"].get("server_took_p50_ms")
    print(f"server-side search time (took_ms) p50, {clients} clients: {took} ms; rankings differing from "
          f"in-process: {r['ranking_mismatches']}")
    for name, s in r["runs"].items():
        for sample in s.get("error_samples", []):
            print(f"  error in {name}: {sample}")
    ci, cs = r["cold"]["inprocess"], r["cold"]["server"]
    print(f"cold start: in-process Retriever.open + first search {ci['open_first_search_s']:.2f} s "
          f"(open {ci['open_s']:.2f} s, first search {ci['first_search_s']:.2f} s, import {ci['import_s']:.2f} s; "
          f"fresh process to first hit {ci['process_to_first_hit_s']:.2f} s); "
          f"server process start to first answered search {cs['start_to_first_hit_s']:.2f} s "
          f"(/healthz after {cs['start_to_healthz_s']:.2f} s, polled every 0.1 s)")
    t = r["targets"]

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print(f"targets ({clients} clients against {clients} threads): HTTP adds {t['http_added_p50_ms']:+.2f} ms at p50 "
          f"(<= 3: {met(t['added_p50_ok'])}); errors {r['errors']} ({met(t['errors_ok'])}); throughput "
          f"{100 * t['throughput_share']:.0f}% of in-process (>= 70%: {met(t['throughput_ok'])}); "
          f"overall {met(t['met'])}")
    print(f"  one client against one thread: HTTP adds {t['http_added_p50_1client_ms']:+.2f} ms at p50 "
          f"({t['http_added_p50_1client_nosnippets_ms']:+.2f} ms with snippets: false); HTTP throughput is "
          f"{100 * t['throughput_share_best']:.0f}% of the better in-process run")
    if "hardness" in r:
        h = r["hardness"]
        print(f"BM25 queries: target page rank 1 in {100 * h['target_rank1']:.0f}%, in the top 10 in "
              f"{100 * h['target_in_top10']:.0f}% (MRR@10 {h['mrr10']}); median {h['median_terms']:g} terms matching "
              f"{h['median_matching_pages']} pages ({100 * h['median_matching_share']:.0f}% of the index); median gap "
              f"rank 10 - rank 11 {h['median_score_gap_10_11']} ({100 * h['median_rel_gap_10_11']:.1f}% of rank 10's "
              f"score), rank 1 - rank 2 {100 * h['median_rel_gap_1_2']:.1f}% of rank 1's")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pages", type=int, default=10_000, help="pages per index (default 10000)")
    p.add_argument("--requests", type=int, default=50, help="requests per client (default 50)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients / threads (default 8)")
    p.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "dse-bench-serve"),
                   help="where the indexes are built and kept (default: $TMPDIR/dse-bench-serve)")
    p.add_argument("--only", choices=sorted(ENCODERS), help="one index only")
    p.add_argument("--k", type=int, default=10, help="pages per query (default 10)")
    p.add_argument("--mode", choices=["visual", "text", "hybrid"],
                   help="search mode of the multi-vector index (default: its own, visual); the text index is BM25")
    p.add_argument("--max-seconds", type=float, default=120, help="wall-time cap of each load run (default 120)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS for this process, the servers and "
                        "the cold-start processes (default: unset, torch and BLAS use every core)")
    p.add_argument("--wait-idle", type=float, default=0, metavar="S",
                   help="before each timed run, wait up to S seconds for the CPUs to be 90%% idle for a second "
                        "(a shared machine); default 0: start at once (the idle share is reported either way)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cold-probe", metavar="INDEX", help=argparse.SUPPRESS)
    p.add_argument("--probe-query", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.cold_probe:
        cold_probe(args.cold_probe, args.probe_query, args.k, args.mode)
        return
    if args.threads is not None and any(os.environ.get(v) != str(args.threads) for v in THREAD_VARS):
        # numpy (imported above) reads these only at start: run again with them set
        env = {**os.environ, **{v: str(args.threads) for v in THREAD_VARS}}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    if args.clients < 1 or args.requests < 1 or args.pages < 50:
        p.error("need --clients >= 1, --requests >= 1, --pages >= 50")
    info = machine()
    print(f"machine: nproc {info['nproc']}, {info['cpu']}, {info['memory_gb']} GB, Python {info['python']}; "
          f"load average before {info['load_before']}")
    threads = {v: os.environ[v] for v in THREAD_VARS if v in os.environ}
    info["thread_env"] = threads
    print(f"load: {args.clients} clients x {args.requests} requests, k={args.k}, cap {args.max_seconds:g} s per run; "
          f"{args.pages} pages per index; thread settings {threads or 'unset (every core)'}")
    corpus = Corpus(args.pages, seed=args.seed)
    kinds = [args.only] if args.only else ["text", "multi"]
    results = {}
    for i, kind in enumerate(kinds):
        results[kind] = bench_index(kind, corpus, args, with_hardness=i == 0)
        print_report(kind, results[kind], args.clients)
    info["load_after"] = _load()
    print(f"\nload average after {info['load_after']}")
    first = results[kinds[0]]
    summary = {key: first[key] for key in ("http_p50_ms", "http_p99_ms", "inprocess_p50_ms", "rps")}
    summary["errors"] = sum(r["errors"] for r in results.values())
    summary.update({"index": kinds[0], "targets_met": all(r["targets"]["met"] for r in results.values()),
                    **results, "machine": info,
                    "args": {k: v for k, v in vars(args).items() if k not in ("cold_probe", "probe_query")}})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
