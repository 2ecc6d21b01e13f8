"""Benchmark the multi-vector cascade engine against exact MaxSim on a ColQwen2-shaped corpus.

    python bench/late.py --pages 10000          # one corpus size; last line is a JSON object

The corpus (bench/late_corpus.py) is generated page by page straight into the engine's
compact shards (nothing holds the float corpus), and the exhaustive exact MaxSim top 10 of
every query (the oracle) is computed in streaming blocks while generating. Latency is one
query per call (query encoding excluded). Baselines on the same data: colpali-engine's
`score_multi_vector` brute force (on the first `--baseline-pages` pages, extrapolated
linearly to the full size and labelled so) and fast-plaid (in the interpreter given by
`--fast-plaid-python`, on the same subset), when it installs and runs.
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
from late_corpus import Corpus, maxsim  # noqa: E402

from dse.indexes.base import topk  # noqa: E402
from dse.indexes.cascade import CascadeEngine  # noqa: E402
from dse.indexes.shards import merge_topk  # noqa: E402


def _recall(rows: np.ndarray, oracle: np.ndarray) -> float:
    return float(np.mean([len(set(r[:10]) & set(o[:10])) / 10 for r, o in zip(rows, oracle)]))


def _latency(search, queries: list[np.ndarray]) -> tuple[float, float, np.ndarray, float]:  # noqa: ANN001
    search(queries[:1])  # warm up (kernel compile / cache load)
    times, rows, cpu = [], [], []
    for q in queries:
        t, c = time.perf_counter(), time.process_time()
        rows.append(search([q]))
        times.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95)), np.stack(rows), float(np.median(cpu))


def build(args: argparse.Namespace, corpus: Corpus, queries: list[np.ndarray], directory: Path):  # noqa: ANN201
    """Generate the corpus into the engine (timed) and the oracle (not timed)."""
    engine = CascadeEngine(dim=args.dim, exact_dtype=args.exact_dtype, coarse_tokens=args.coarse_tokens,
                           n_probe=args.n_probe, n_shortlist=args.n_shortlist, pool_factor=args.pool_factor, n_coarse=args.n_coarse,
                           n_refine=args.n_refine, cluster_probe=args.cluster_probe, n_candidates=args.n_candidates)
    best = (np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64))
    build_s = 0.0
    for start in range(0, args.pages, args.shard_pages):
        stop = min(start + args.shard_pages, args.pages)
        pages = [corpus.page(i) for i in range(start, stop)]
        for a in range(0, len(pages), 100):
            best = merge_topk(best, maxsim(queries, pages[a : a + 100]), start + a, 10)
        t = time.perf_counter()
        engine.add(pages)
        engine.save(directory)
        build_s += time.perf_counter() - t
        print(f"  built {stop}/{args.pages} pages, build {build_s:.0f}s", file=sys.stderr, flush=True)
    return engine, best[1], build_s


def colpali_baseline(corpus: Corpus, queries: list[np.ndarray], n: int, total: int) -> dict:
    """colpali-engine score_multi_vector over the first n pages, latency extrapolated to `total`."""
    import torch
    from colpali_engine.models import ColPaliProcessor

    pages = [torch.from_numpy(corpus.page(i)) for i in range(n)]
    oracle = topk(maxsim(queries, [p.numpy() for p in pages]), 10)[1]
    times, rows = [], []
    queries = queries[:8]  # brute force is slow: 8 queries are enough for its latency
    oracle = oracle[:8]
    for q in queries:
        t = time.perf_counter()
        scores = ColPaliProcessor.score_multi_vector([torch.from_numpy(q)], pages, batch_size=256)  # (1, n)
        times.append((time.perf_counter() - t) * 1e3 * total / n)
        rows.append(torch.topk(scores[0], 10).indices.numpy())
    return {"pages_measured": n, "extrapolated_to": total, "p50_ms": float(np.percentile(times, 50)),
            "p95_ms": float(np.percentile(times, 95)), "recall_at_10": _recall(np.stack(rows), oracle),
            "resident_bytes_per_page": corpus.tokens * corpus.dim * 4, "disk_bytes_per_page": corpus.tokens * corpus.dim * 4,
            "build_s": 0.0}


def fast_plaid_baseline(python: str, corpus: Corpus, queries: list[np.ndarray], n: int) -> dict:
    """fast-plaid on the first n pages (its own interpreter: it pins another torch)."""
    work = Path(tempfile.mkdtemp(prefix="late-fp-"))
    try:
        pages = np.stack([corpus.page(i) for i in range(n)])  # (n, tokens, dim)
        np.save(work / "pages.npy", pages)
        np.save(work / "queries.npy", np.stack(queries))
        oracle = topk(maxsim(queries, list(pages)), 10)[1]
        del pages
        script = Path(__file__).with_name("late_fastplaid.py")
        run = subprocess.run([python, str(script), str(work)], capture_output=True, text=True, timeout=3600)
        if run.returncode != 0:
            return {"error": (run.stderr or run.stdout).strip().splitlines()[-1][:300], "pages_measured": n}
        out = json.loads(run.stdout.strip().splitlines()[-1])
        rows = np.array(out.pop("rows"))
        return {"pages_measured": n, **out, "recall_at_10": _recall(rows, oracle)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pages", type=int, default=10000)
    p.add_argument("--queries", type=int, default=64)
    p.add_argument("--tokens", type=int, default=768, help="tokens per page")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--query-tokens", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exact-dtype", default="int8", choices=["int8", "float16"])
    p.add_argument("--pool-factor", type=int, default=1)
    p.add_argument("--coarse-tokens", type=int, default=32)
    p.add_argument("--n-probe", type=int, default=4)
    p.add_argument("--n-shortlist", type=int, default=4096)
    p.add_argument("--n-coarse", type=int, default=512)
    p.add_argument("--n-refine", type=int, default=64)
    p.add_argument("--cluster-probe", type=int, default=0)
    p.add_argument("--n-candidates", type=int, default=64)
    p.add_argument("--sweep", default="4:4096:512:64:64:0,4:4096:512:64:64:0,4:2048:256:64:64:0,4:4096:512:128:128:0,"
                   "8:16384:1024:256:256:0,0:1:512:64:64:0,4:4096:512:64:64:4",
                   help="n_probe:n_shortlist:n_coarse:n_refine:n_candidates:cluster_probe settings (0: off)")
    p.add_argument("--shard-pages", type=int, default=5000)
    p.add_argument("--dir", help="engine directory (default: a temporary one, removed at the end)")
    p.add_argument("--reuse", action="store_true", help="search the index already in --dir (built by a run with the same arguments)")
    p.add_argument("--baseline-pages", type=int, default=500)
    p.add_argument("--fast-plaid-python", default=sys.executable)
    args = p.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    corpus = Corpus(args.seed, args.tokens, args.dim)
    targets = np.random.default_rng([args.seed, 99]).choice(args.pages, args.queries, replace=False)
    queries = [corpus.query(int(t), args.query_tokens) for t in targets]
    directory = Path(args.dir or tempfile.mkdtemp(prefix="late-"))
    try:
        saved = directory / "oracle.npz"
        if args.reuse and saved.exists():  # an index built by an earlier run with the same arguments
            data = np.load(saved)
            oracle, build_s = data["oracle"], float(data["build_s"])
            engine = CascadeEngine(**json.loads(str(data["options"])))
        else:
            engine, oracle, build_s = build(args, corpus, queries, directory)
            np.savez(saved, oracle=oracle, build_s=build_s, options=json.dumps(engine.options()))
        disk = sum(f.stat().st_size for f in directory.iterdir() if f != saved) / args.pages
        engine = CascadeEngine.load(directory, rows=args.pages, **engine.options())  # cold: tiers memory-mapped
        resident = engine.resident_bytes() / args.pages
        print(f"pages={args.pages} build {build_s:.0f}s disk {disk:.0f} B/page resident {resident:.0f} B/page "
              f"(target 100k: 8192) top1-is-target {np.mean(oracle[:, 0] == targets):.2f}")
        print("n_probe n_shortlist n_coarse n_refine n_candidates clusters  p50_ms  p95_ms  cpu_ms(p50, both threads)  "
              "recall@10")
        default = None
        for setting in args.sweep.split(","):
            n_probe, n0, n1, nr, n2, cp = (int(x) for x in setting.split(":"))
            p50, p95, rows, cpu = _latency(lambda q: engine.search(  # noqa: B023 - called within the iteration
                q, 10, n_probe=n_probe, n_shortlist=n0, n_coarse=n1, n_refine=nr, n_candidates=n2,
                cluster_probe=cp)[1][0], queries)
            print(f"{n_probe:7d} {n0:11d} {n1:8d} {nr:8d} {n2:12d} {cp:8d} {p50:7.1f} {p95:7.1f} {cpu:10.1f} "
                  f"{_recall(rows, oracle):10.3f}", flush=True)
            if (n_probe, n0, n1, nr, n2, cp) == (args.n_probe, args.n_shortlist, args.n_coarse, args.n_refine,
                                                 args.n_candidates, args.cluster_probe):
                default = (p50, p95, _recall(rows, oracle), cpu)
        if default is None:
            p50, p95, rows, cpu = _latency(lambda q: engine.search(q, 10)[1][0], queries)
            default = (p50, p95, _recall(rows, oracle), cpu)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(f"load average during the run: {os.getloadavg()}")
        print(f"process max RSS {rss / 2**30:.2f} GiB (includes the oracle's blocks)")
        n_base = min(args.baseline_pages, args.pages)
        baselines = {"colpali_score_multi_vector": colpali_baseline(corpus, queries, n_base, args.pages)}
        try:
            baselines["fast_plaid"] = fast_plaid_baseline(args.fast_plaid_python, corpus, queries, n_base)
        except Exception as exc:  # noqa: BLE001 - report, do not hide, a baseline that cannot run
            baselines["fast_plaid"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        for name, b in baselines.items():
            print(f"baseline {name}: {b}")
        print(json.dumps({
            "pages": args.pages, "p50_ms": round(default[0], 2), "p95_ms": round(default[1], 2),
            "recall_at_10": round(default[2], 4), "cpu_ms_p50": round(default[3], 2), "resident_bytes_per_page": round(resident, 1),
            "disk_bytes_per_page": round(disk, 1), "build_s": round(build_s, 1), "options": engine.options(),
            "tokens_per_page": args.tokens, "queries": args.queries, "baselines": baselines,
        }))
    finally:
        if not args.dir:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
