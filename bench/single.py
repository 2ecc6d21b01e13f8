"""Benchmark single-vector (DSE-shaped) binary / int8 search with exact rescoring against exact search.

    python bench/single.py --pages 1000000          # last line is a JSON object
    python bench/single.py --pages 1000000 --n-lists 2048 --n-probe 32 --sweep 8:512,16:512,32:512,64:512

With `--n-lists` the engine partitions the rows into IVF lists (trained during the build, which
`build_s` includes) and each sweep item is `n_probe:n_candidates`; otherwise it is `n_candidates`.

Synthetic unit vectors of 1536 dims (as DSE-Qwen2 pages): `--topics` (2000) topic centres, each page
``centre + noise * g`` (g ~ N(0, I/dim), `--noise` 0.8; more noise spreads neighbours over IVF lists), queries ``page + 0.6 * g`` for random target pages,
generated in seeded blocks straight into the engine. Oracle: exact inner-product top 10
(exhaustive, blocked). Baseline in the same run: FlatEngine (FAISS IndexFlatIP, exact).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from dse.engines.flat.engine import FlatEngine
from dse.engines.results import merge_topk
from dse.engines.quantized.engine import QuantizedFlatEngine


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def block(seed: int, start: int, n: int, centres: np.ndarray, spread: float = 0.8) -> np.ndarray:
    """Pages [start, start + n): float32 (n, dim)."""
    rng = np.random.default_rng([seed, start])
    dim = centres.shape[1]
    noise = rng.standard_normal((n, dim), dtype=np.float32) / np.sqrt(dim)  # (n, dim)
    return _unit(centres[rng.integers(0, len(centres), n)] + spread * noise)


def _latency(search, queries: np.ndarray) -> tuple[float, float, np.ndarray, float]:
    search(queries[:1])
    times, rows, cpu = [], [], []
    for q in queries:
        t, c = time.perf_counter(), time.process_time()
        rows.append(search(q[None])[0])
        times.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95)), np.stack(rows), float(np.median(cpu))


def _recall(rows: np.ndarray, oracle: np.ndarray) -> float:
    return float(np.mean([len(set(r[:10]) & set(o[:10])) / 10 for r, o in zip(rows, oracle)]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pages", type=int, default=100000)
    p.add_argument("--dim", type=int, default=1536)
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--mode", default="binary", choices=["binary", "int8"])
    p.add_argument("--n-candidates", type=int, default=1024)
    p.add_argument("--n-lists", type=int, default=0, help="IVF lists (0: scan every row)")
    p.add_argument("--n-probe", type=int, default=32, help="IVF lists scanned per query")
    p.add_argument("--sweep", default=None, help="n_candidates,... (or n_probe:n_candidates,... with --n-lists)")
    p.add_argument("--block", type=int, default=50000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--topics", type=int, default=2000, help="topic centres of the synthetic pages")
    p.add_argument("--noise", type=float, default=0.8, help="page noise around its topic centre")
    args = p.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, load {os.getloadavg()}")
    rng = np.random.default_rng([args.seed, 1])
    centres = _unit(rng.standard_normal((args.topics, args.dim)))  # (topics, dim)
    targets = rng.choice(args.pages, args.queries, replace=False)
    directory = Path(tempfile.mkdtemp(prefix="single-"))
    try:
        engine = QuantizedFlatEngine(dim=args.dim, mode=args.mode, n_candidates=args.n_candidates,
                                     n_lists=args.n_lists, n_probe=args.n_probe)
        flat = FlatEngine(dim=args.dim)
        queries = np.zeros((args.queries, args.dim), np.float32)  # (nq, dim)
        best = (np.zeros((args.queries, 0), np.float32), np.zeros((args.queries, 0), np.int64))
        build_s = 0.0
        for start in range(0, args.pages, args.block):
            rows = block(args.seed, start, min(args.block, args.pages - start), centres, args.noise)  # (n, dim)
            hit = (targets >= start) & (targets < start + len(rows))
            noise = rng.standard_normal((int(hit.sum()), args.dim)).astype(np.float32) / np.sqrt(args.dim)
            queries[hit] = _unit(rows[targets[hit] - start] + 0.6 * noise)
            t = time.perf_counter()
            engine.add(rows)
            engine.save(directory)
            build_s += time.perf_counter() - t
            flat.add(rows)
        for start in range(0, args.pages, args.block):  # oracle, after every query exists
            rows = block(args.seed, start, min(args.block, args.pages - start), centres, args.noise)
            best = merge_topk(best, queries @ rows.T, start, 10)
        oracle = best[1]
        engine = QuantizedFlatEngine.load(directory, rows=args.pages, **engine.options())
        res = engine._codes_resident()  # codes, plus the list layout, labels and centroids with --n-lists
        extra = [] if res.layout is None else [res.layout.items, res.layout.offsets, res.labels, engine.centroids]
        resident = (sum(c.nbytes for c in res.codes) + sum(a.nbytes for a in extra + engine._lists.labels)) / args.pages
        disk = sum(f.stat().st_size for f in directory.iterdir()) / args.pages
        print(f"pages={args.pages} dim={args.dim} topics={args.topics} noise={args.noise} mode={args.mode} build {build_s:.1f}s "
              f"resident {resident:.0f} B/page disk {disk:.0f} B/page")
        sweep = args.sweep or ("8:512,16:512,32:512,64:512" if args.n_lists else "256,512,1024,2048")
        print("n_probe:n_candidates  p50_ms  p95_ms  cpu_ms  recall@10")
        chosen = None
        for item in sweep.split(","):
            probe, n = (int(x) for x in item.split(":")) if ":" in item else (args.n_probe, int(item))
            p50, p95, rows, cpu = _latency(lambda q, n=n, probe=probe: engine.search(q, 10, n_candidates=n, n_probe=probe)[1], queries)
            print(f"{probe:7d}:{n:<12d} {p50:7.2f} {p95:7.2f} {cpu:7.2f} {_recall(rows, oracle):10.3f}", flush=True)
            if (probe, n) == (args.n_probe, args.n_candidates):
                chosen = (p50, p95, _recall(rows, oracle), cpu)
        if chosen is None:
            p50, p95, rows, cpu = _latency(lambda q: engine.search(q, 10)[1], queries)
            chosen = (p50, p95, _recall(rows, oracle), cpu)
        fp50, fp95, frows, fcpu = _latency(lambda q: flat.search(q, 10)[1], queries)
        baseline = {"p50_ms": round(fp50, 2), "p95_ms": round(fp95, 2), "cpu_ms_p50": round(fcpu, 2), "recall_at_10": _recall(frows, oracle),
                    "resident_bytes_per_page": 4 * args.dim, "disk_bytes_per_page": 4 * args.dim}
        print(f"baseline FlatEngine (faiss IndexFlatIP, exact): {baseline}; speed-up x{fp50 / chosen[0]:.1f}")
        print(f"load average during the run: {os.getloadavg()}")
        print(json.dumps({
            "pages": args.pages, "corpus": {"topics": args.topics, "noise": args.noise},
            "p50_ms": round(chosen[0], 2), "p95_ms": round(chosen[1], 2),
            "recall_at_10": round(chosen[2], 4), "cpu_ms_p50": round(chosen[3], 2), "resident_bytes_per_page": round(resident, 1),
            "disk_bytes_per_page": round(disk, 1), "build_s": round(build_s, 1), "options": engine.options(),
            "baselines": {"flat_exact": baseline},
        }))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
