"""Filtered search speed: each engine with an `allowed` mask against the same engine unfiltered.

Random unit vectors (single: one per page; multi: `--tokens` per page) and random token lists,
searched with k=10 under masks keeping 1%, 10%, 50% and 99% of the rows (99%: tombstones).
Every timing is the best of `--repeats` runs; the ratio is filtered / unfiltered time measured in
the same run (below 1: the filter saves work).

    python bench/filters.py                      # 100k single, 10k multi, 100k text pages
    python bench/filters.py --rows 20000         # quicker

The last line printed is a JSON object with the times, ratios and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any, Callable

import numpy as np

SHARES = (0.01, 0.1, 0.5, 0.99)


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall time of `repeats` calls, in milliseconds."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * min(times)


def measure(name: str, engine: Any, queries: Any, n: int, repeats: int, rng: np.random.Generator) -> dict:
    """Unfiltered and filtered times of one engine."""
    base = best_of(lambda: engine.search(queries, 10), repeats)
    row: dict[str, Any] = {"engine": name, "rows": n, "unfiltered_ms": round(base, 2)}
    for share in SHARES:
        mask = rng.random(n) < share  # (n,)
        ms = best_of(lambda m=mask: engine.search(queries, 10, allowed=m), repeats)
        row[f"allowed_{share:g}_ms"] = round(ms, 2)
        row[f"ratio_{share:g}"] = round(ms / base, 3)
    print(json.dumps(row))
    return row


def main() -> None:
    """Build the engines, time them, print one JSON line per engine and a summary."""
    from dse.engines.bm25.engine import BM25Engine
    from dse.engines.flat.engine import FlatEngine
    from dse.engines.maxsim import MaxSimEngine

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000, help="single-vector and text pages")
    p.add_argument("--multi-rows", type=int, default=10_000, help="multi-vector pages")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--tokens", type=int, default=256, help="tokens per multi-vector page")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    rng = np.random.default_rng(0)

    def unit(*shape: int) -> np.ndarray:
        v = rng.standard_normal(shape).astype(np.float32)  # (..., dim)
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    rows = []
    flat = FlatEngine()
    flat.add(unit(args.rows, args.dim))
    rows.append(measure("flat", flat, unit(1, args.dim), args.rows, args.repeats, rng))
    hnsw = FlatEngine(hnsw=True)
    hnsw.add(unit(args.rows // 4, args.dim))
    rows.append(measure("hnsw", hnsw, unit(1, args.dim), args.rows // 4, args.repeats, rng))
    multi = MaxSimEngine()
    multi.add(list(unit(args.multi_rows, args.tokens, args.dim)))
    rows.append(measure("maxsim", multi, [unit(20, args.dim)], args.multi_rows, args.repeats, rng))
    words = [f"w{i}" for i in range(20_000)]
    bm25 = BM25Engine()
    bm25.add([list(rng.choice(words, size=200)) for _ in range(args.rows)])
    bm25.search([["w1"]], 1)  # build the model outside the timings
    rows.append(measure("bm25", bm25, [["w1", "w2", "w3", "w4"]], args.rows, args.repeats, rng))
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "python": platform.python_version()}
    print(json.dumps({"results": rows, "machine": machine}))


if __name__ == "__main__":
    main()
