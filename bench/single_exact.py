"""The oracle of bench/single.py and what is compared against it: exact top 100, tie-tolerant recall,
the cheapest setting of a sweep at a recall.

Every page vector is written once to one float32 ``(pages, dim)`` .npy file (memory-mapped: the
FAISS baselines are built from it, the binary IVF baseline rescores from it). The oracle is the
exhaustive inner-product top 100 over it, in blocks. Recall is tie-tolerant as in
bench/late_exact.py: a returned row counts when its exact score is at least the exact 10th score
(minus a relative `late_exact.TIE`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dse.engines.results import merge_topk

from late_exact import TIE  # noqa: E402 - bench/ is on sys.path (bench/single.py puts it there)

BLOCK = 32768  # pages per block when writing or scanning the vectors


def write_vectors(corpus, path: Path) -> np.ndarray:  # noqa: ANN001
    """Generate every page into one .npy file; returns it memory-mapped, float32 (pages, dim)."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(corpus.n, corpus.dim))
    for a in range(0, corpus.n, BLOCK):
        out[a : min(corpus.n, a + BLOCK)] = corpus.pages(a, min(corpus.n, a + BLOCK))
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


def oracle(vectors: np.ndarray, queries: np.ndarray, depth: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-`depth` scores and rows of every query: float32 (nq, depth), int64 (nq, depth)."""
    depth = min(depth, len(vectors))
    best = (np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64))
    for a in range(0, len(vectors), BLOCK):
        block = np.asarray(vectors[a : a + BLOCK])  # (b, dim)
        best = merge_topk(best, queries @ block.T, a, depth)  # scores (nq, b)
    return best


def recall(vectors: np.ndarray, queries: np.ndarray, rows: np.ndarray, oracle_scores: np.ndarray) -> float:
    """Tie-tolerant recall@10 of `rows` (nq, >= 10; -1: none) against the exact top 10."""
    rows = np.asarray(rows)[:, :10]
    s10 = oracle_scores[:, 9]  # (nq,)
    hits = []
    for j, r in enumerate(rows):
        r = np.unique(r[r >= 0])  # a row counted once
        exact = np.asarray(vectors[r]) @ queries[j] if len(r) else np.zeros(0, np.float32)  # (m,)
        hits.append(min(int(np.sum(exact >= s10[j] - TIE * abs(s10[j]))), 10) / 10)
    return float(np.mean(hits))


def cheapest(sweep: list[dict], target: float) -> dict | None:
    """The sweep item of least p50 whose recall@10 reaches `target` (None: none does)."""
    ok = [s for s in sweep if s["recall_at_10"] >= target - 1e-9]
    return min(ok, key=lambda s: s["p50_ms"]) if ok else None


def matched(entries: dict[str, dict], targets: dict[str, float]) -> dict[str, dict]:
    """Per target recall (name -> value), each entry's cheapest setting reaching it, with its memory."""
    out: dict[str, dict] = {}
    for name, target in targets.items():
        row = {}
        for label, entry in entries.items():
            best = cheapest(entry.get("sweep", []), target)
            row[label] = None if best is None else {
                "setting": best["setting"], "p50_ms": round(best["p50_ms"], 3), "p95_ms": round(best["p95_ms"], 3),
                "recall_at_10": best["recall_at_10"], "resident_bytes_per_page": entry["resident_bytes_per_page"]}
        out[name] = {"recall": round(target, 4), "cheapest": row}
    return out
