"""Benchmark the multi-vector cascade against exhaustive exact MaxSim, fast-plaid and xtr-warp-rs, at full size.

    python bench/late.py --pages 10000                      # realistic generator; last line is JSON
    python bench/late.py --pages 10000 --gen zipf=1.2,background=0.5   # generator parameters
    python bench/late.py --pages 10000 --corpus-kind easy   # the earlier, easy corpus (labelled so)
    python bench/late.py --corpus vectors.npz               # real embeddings (`dse export-vectors`)
    python bench/late.py --pages 10000 --fast-plaid-python /tmp/fastplaid-venv/bin/python
    python bench/late.py --pages 5000 --xtr-warp-python /tmp/xwvenv/bin/python --xtr-warp-sweep default,nprobe=16
    python bench/late.py --pages 20000 --compare '{"token_lists": false}'   # also the coarse-list engine

The corpus (bench/corpus_late.py) is generated page by page and committed, in groups of whole
documents of at least `--commit-pages` pages, into (a) a real index directory built as `dse
index --engine-mode cascade` builds it, searched through `Retriever.open` + `Retriever.search`
(bench/late_index.py), and (b) the project's exact engine (float32, memory-mapped shards), the
oracle and exact baseline, run over the whole corpus (bench/late_exact.py). fast-plaid and
xtr-warp-rs index the exact engine's shards, each in its own interpreter (bench/late_baselines.py
runs bench/late_fastplaid.py and bench/late_xtrwarp.py). Recall@10 is
tie-tolerant, against exact MaxSim. Latency is one query per call, warm, query encoding
excluded; cold is a fresh process opening the index with its files evicted from the page
cache, and its first query.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import late_baselines  # noqa: E402
import late_exact  # noqa: E402
import late_index  # noqa: E402
from corpus_late import EasyCorpus, NpzCorpus, RealisticCorpus, groups  # noqa: E402
from machine import load_average as _load  # noqa: E402

from dse.engines.maxsim import MaxSimEngine  # noqa: E402
from dse.retrieve.run import COMMIT_PAGES  # noqa: E402

SWEEP = "default,8:1024:128:0:0,16:2048:256:0:0,16:2048:512:0:0,32:4096:512:0:0"


def _corpus(args: argparse.Namespace):  # noqa: ANN202
    if args.corpus:
        c = NpzCorpus(args.corpus, args.pages)
        return c, c.queries[: args.queries], c.targets[: args.queries]
    if args.corpus_kind == "easy":
        c = EasyCorpus(args.pages, args.seed, args.tokens, args.dim)
    else:
        gen = {k: float(v) if "." in v else int(v) for k, v in (kv.split("=") for kv in args.gen.split(",") if kv)}
        c = RealisticCorpus(args.pages, args.seed, args.tokens, args.dim, **gen)
    targets = np.random.default_rng([args.seed, 99]).choice(args.pages, args.queries, replace=False)
    return c, [c.query(int(t)) for t in targets], targets


def build(args: argparse.Namespace, corpus, queries: list[np.ndarray], directory: Path) -> dict:  # noqa: ANN001
    """Generate the corpus once into the cascade index and the exact engine; returns build times."""
    r = late_index.create(directory / "index", queries, corpus.dim, json.loads(args.engine))
    r2 = late_index.create(directory / "compare", queries, corpus.dim, json.loads(args.compare)) if args.compare else None
    exact_dir = directory / "exact"
    exact_dir.mkdir(parents=True, exist_ok=True)
    cascade_s = exact_s = compare_s = 0.0
    done = 0
    for a, b in groups(corpus.doc_starts, corpus.n, args.commit_pages):
        pages = [corpus.page(i) for i in range(a, b)]
        cascade_s += late_index.commit(r, a, pages, corpus.doc_starts)
        compare_s += late_index.commit(r2, a, pages, corpus.doc_starts) if r2 is not None else 0.0
        t = time.perf_counter()
        if not args.exact_from_index:
            exact = MaxSimEngine.load(exact_dir, rows=done) if done else MaxSimEngine()
            exact.add(pages)
            exact.save(exact_dir)
        exact_s += time.perf_counter() - t
        done = b
        print(f"  built {b}/{corpus.n} pages: cascade {cascade_s:.0f}s, exact {exact_s:.0f}s (load {_load()})",
              file=sys.stderr, flush=True)
    r.close()
    if r2 is not None:
        r2.close()
    return {"cascade_build_s": cascade_s, "exact_build_s": exact_s, "compare_build_s": compare_s}


def measure(directory: Path, queries: list[np.ndarray], corpus, exact: MaxSimEngine, oracle_s: np.ndarray,  # noqa: ANN001
            label: str, build_s: float) -> tuple[dict, object, object]:
    """Open an index through `Retriever.open`, time `Retriever.search` warm, recall vs exact."""
    from dse.retrieve.retriever import Retriever

    n = corpus.n
    t = time.perf_counter()
    r = Retriever.open(directory, late_index.VectorEncoder(queries, corpus.dim))
    open_s = time.perf_counter() - t
    engine = r.index.view().engine
    resident = engine.resident_bytes() / n
    disk = _du(directory / "vectors") / n
    _timed(lambda j: late_index.search_rows(r, j), len(queries))  # warm-up pass
    p50, p95, rows = _timed(lambda j: late_index.search_rows(r, j), len(queries))
    rec = late_exact.recall(exact, queries, rows, oracle_s)
    resident = engine.resident_bytes() / n  # after the first search stacked the lists
    knobs = engine.knobs() if hasattr(engine, "knobs") else {}
    print(f"{label} via Retriever.search (options {json.dumps(engine.options())}, effective {json.dumps(knobs)}): "
          f"p50 {p50:.1f} ms p95 {p95:.1f} ms recall@10 {rec:.3f}; open {open_s:.2f}s; resident {resident:.0f} B/page, "
          f"disk {disk:.0f} B/page, build {build_s:.0f}s (load {_load()})", flush=True)
    out = {"p50_ms": round(p50, 2), "p95_ms": round(p95, 2), "recall_at_10": round(rec, 4),
           "resident_bytes_per_page": round(resident, 1), "disk_bytes_per_page": round(disk, 1),
           "build_s": round(build_s, 1), "open_s": round(open_s, 3), "options": engine.options(), "knobs": knobs,
           "load_average": _load()}
    return out, r, engine


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _timed(fn, n: int) -> tuple[float, float, np.ndarray]:  # noqa: ANN001
    fn(0)
    times, rows = [], []
    for j in range(n):
        t = time.perf_counter()
        rows.append(fn(j))
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95)), np.stack(rows)


def main() -> None:  # noqa: PLR0915
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pages", type=int, default=10000)
    p.add_argument("--queries", type=int, default=64)
    p.add_argument("--tokens", type=int, default=768, help="tokens per page")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corpus-kind", default="realistic", choices=["realistic", "easy"])
    p.add_argument("--gen", default="", help="realistic generator parameters, e.g. zipf=1.1,background=0.5")
    p.add_argument("--corpus", help=".npz of real page and query tokens (see bench/corpus_late.NpzCorpus)")
    p.add_argument("--engine", default="{}", help="extra cascade options as JSON (default: what dse index uses)")
    p.add_argument("--compare", default="", help="options (JSON) of a second cascade index built from the same "
                   "corpus and measured the same way, e.g. '{\"token_lists\": false}' (the coarse-list engine)")
    p.add_argument("--commit-pages", type=int, default=COMMIT_PAGES)
    p.add_argument("--sweep", default=SWEEP, help="n_probe:n_shortlist:n_coarse:n_refine:n_candidates settings")
    p.add_argument("--exact-queries", type=int, default=8, help="queries timed on the exact baseline")
    p.add_argument("--exact-from-index", action="store_true", help="oracle and exact baseline: MaxSim over every "
                   "page of the cascade index's own float16 exact tier (no float32 copy on disk: for 100k x 768)")
    p.add_argument("--dir", help="work directory (default: a temporary one, removed at the end)")
    p.add_argument("--reuse", action="store_true", help="search what an earlier run built in --dir")
    late_baselines.add_arguments(p)
    args = p.parse_args()
    if args.exact_from_index and (args.fast_plaid_python or args.xtr_warp_python):
        p.error("--fast-plaid-python and --xtr-warp-python index the float32 exact shards, which --exact-from-index "
                "does not write: run without --exact-from-index")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"python {platform.python_version()}, load {_load()}")
    corpus, queries, targets = _corpus(args)
    print(f"corpus: {corpus.describe()}")
    directory = Path(args.dir or tempfile.mkdtemp(prefix="late-"))
    try:
        saved = directory / "build.json"
        if args.reuse and saved.exists():
            times = json.loads(saved.read_text())
        else:
            times = build(args, corpus, queries, directory)
            saved.write_text(json.dumps(times))
        n = corpus.n
        if args.exact_from_index:  # the index's own float16 exact tier, every page scored (no disk for a float32 copy)
            exact_engine = late_index.open_engine(directory / "index", queries, corpus.dim)
            exact = late_exact.IndexExact(exact_engine)
        else:
            exact = MaxSimEngine.load(directory / "exact", rows=n)
        t = time.perf_counter()
        oracle_s, oracle_r = late_exact.oracle(exact, queries)
        oracle_time = time.perf_counter() - t
        hard = late_exact.hardness(oracle_s, oracle_r, np.asarray(targets))
        print(f"oracle: {oracle_time:.0f}s for {len(queries)} queries; hardness {json.dumps(hard)}")
        e50, e95 = late_exact.latency(exact, queries, args.exact_queries)
        baselines = {"exact_maxsim": {
            "pages_measured": n, "p50_ms": e50, "p95_ms": e95, "recall_at_10": 1.0, "resident_bytes_per_page": 0,
            "disk_bytes_per_page": _du(directory / "exact") / n if not args.exact_from_index else 0,
            "stored_as": "the cascade index's float16 exact tier" if args.exact_from_index else "float32",
            "build_s": times["exact_build_s"], "open_s": None,
            "queries_timed": args.exact_queries, "load_average": _load()}}
        print(f"exact MaxSim ({'the index float16 tier' if args.exact_from_index else 'float32'}, memory-mapped, every page): p50 {e50:.0f} ms p95 {e95:.0f} ms (load {_load()})")

        qfile = directory / "queries.npz"
        np.savez(qfile, tokens=np.concatenate(queries), offsets=np.concatenate([[0], np.cumsum([len(q) for q in queries])]))
        cold = subprocess.run([sys.executable, str(Path(__file__).with_name("late_index.py")), "cold",
                               str(directory / "index"), str(qfile)], capture_output=True, text=True, check=True)
        cold = json.loads(cold.stdout.strip().splitlines()[-1])
        cold.pop("first_rows")
        print(f"cold (fresh process, index evicted from the page cache): {json.dumps(cold)} (load {_load()})")

        measured, r, engine = measure(directory / "index", queries, corpus, exact, oracle_s, "cascade",
                                      times["cascade_build_s"])
        p50, p95, rec = measured["p50_ms"], measured["p95_ms"], measured["recall_at_10"]
        resident, disk, open_s = (measured["resident_bytes_per_page"], measured["disk_bytes_per_page"],
                                  measured["open_s"])
        engines = {"cascade": engine}
        if args.compare:
            compared, r2, engines["compared"] = measure(directory / "compare", queries, corpus, exact, oracle_s,
                                                        f"compared engine {args.compare}",
                                                        times.get("compare_build_s", 0.0))
            baselines["compared_cascade"] = compared
        print("sweep (engine.search of the opened index, per-call knobs; with --compare both indexes, setting by setting)\n"
              "index     n_probe n_shortlist n_coarse n_refine n_candidates  p50_ms  p95_ms  recall@10  load")
        sweep = []
        for setting in args.sweep.split(","):
            if setting == "default":
                knobs = {}
            else:
                knobs = dict(zip(("n_probe", "n_shortlist", "n_coarse", "n_refine", "n_candidates"),
                                 (int(x) for x in setting.split(":"))))
            for name, eng in engines.items():
                s50, s95, srows = _timed(lambda j: eng.search([queries[j]], 10, **knobs)[1][0], len(queries))  # noqa: B023
                srec = late_exact.recall(exact, queries, srows, oracle_s)
                item = {"setting": setting, "p50_ms": s50, "p95_ms": s95, "recall_at_10": srec, "load": _load()}
                (sweep if name == "cascade" else compared.setdefault("sweep", [])).append(item)
                print(f"{name:9s} {setting:>30s} {s50:7.1f} {s95:7.1f} {srec:10.3f}  {_load()}", flush=True)
        r.close()
        if args.compare:
            r2.close()
        baselines.update(late_baselines.measure(args, directory, queries, exact, oracle_s, n))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(f"process max RSS {rss / 2**30:.2f} GiB; load average {_load()}")
        print(json.dumps({
            "pages": n, "p50_ms": round(p50, 2), "p95_ms": round(p95, 2), "recall_at_10": round(rec, 4),
            "resident_bytes_per_page": round(resident, 1), "disk_bytes_per_page": round(disk, 1),
            "build_s": round(times["cascade_build_s"], 1), "open_s": round(open_s, 3), "cold": cold,
            "options": engine.options(), "corpus": corpus.describe(), "hardness": hard, "queries": len(queries),
            "sweep": sweep, "baselines": baselines, "load_average": _load(),
        }))
    finally:
        if not args.dir:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
