"""The exact baseline and oracle of bench/late.py: exhaustive float32 MaxSim over the whole corpus.

The project's exact engine (`dse.engines.maxsim.MaxSimEngine`) holds every page's float32
tokens in memory-mapped shards on disk (so it runs where memory does not hold the corpus), and
scores every page for every query: never a subset, never extrapolated.

Recall is tie-tolerant: a returned page counts when its exact score is at least the exact
10th score (minus a relative 1e-4, float rounding), so two pages with equal scores at rank 10
are both right.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dse.engines.maxsim import MaxSimEngine

TIE = 1e-4  # relative tolerance of "as good as the 10th exact score"


class IndexExact:
    """Exhaustive exact MaxSim over a cascade engine's own exact tier (`n_probe=0`: every allowed
    page is scored on it), with `MaxSimEngine`'s `search` and `len`: the oracle when a float32
    copy of the corpus does not fit on disk (100k x 768 x 128: 39 GB). Scores are of the stored
    float16 tokens, as the cascade's final stage computes them."""

    def __init__(self, engine) -> None:  # noqa: ANN001
        self.engine = engine

    def __len__(self) -> int:
        return len(self.engine)

    def search(self, queries: list[np.ndarray], k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.engine.search(queries, k, allowed=allowed, n_probe=0, n_candidates=0)


def build(directory: Path) -> MaxSimEngine:
    directory.mkdir(parents=True, exist_ok=True)
    return MaxSimEngine()


def oracle(engine: MaxSimEngine, queries: list[np.ndarray], depth: int = 100, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-`depth` scores and rows of every query (batched: one pass over the tokens per batch)."""
    scores, rows = [], []
    for a in range(0, len(queries), batch):
        s, r = engine.search(queries[a : a + batch], min(depth, len(engine)))  # (b, depth)
        scores.append(s)
        rows.append(r)
    return np.concatenate(scores), np.concatenate(rows)


def exact_of(engine: MaxSimEngine, queries: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
    """Exact scores of each query's returned rows (-1: none): float32 (nq, k), -inf where no row."""
    out = np.full(rows.shape, -np.inf, np.float32)
    n = len(engine)
    for j, (q, r) in enumerate(zip(queries, rows)):
        valid = np.unique(r[(r >= 0) & (r < n)])
        if not len(valid):
            continue
        mask = np.zeros(n, np.bool_)
        mask[valid] = True
        s, got = engine.search([q], len(valid), allowed=mask)  # gathers only those pages
        by_row = dict(zip(got[0].tolist(), s[0].tolist()))
        out[j] = [by_row.get(int(x), -np.inf) for x in r]
    return out


def recall(engine: MaxSimEngine, queries: list[np.ndarray], rows: np.ndarray, oracle_scores: np.ndarray) -> float:
    """Tie-tolerant recall@10 of `rows` (nq, >= 10) against exact MaxSim."""
    rows = np.asarray(rows)[:, :10]
    s10 = oracle_scores[:, 9]  # (nq,)
    got = exact_of(engine, queries, rows)  # (nq, 10)
    hits = []
    for j in range(len(rows)):
        _, first = np.unique(rows[j], return_index=True)  # a row counted once
        ok = got[j, first] >= s10[j] - TIE * abs(s10[j])
        hits.append(min(int(ok.sum()), 10) / 10)
    return float(np.mean(hits))


def hardness(oracle_scores: np.ndarray, oracle_rows: np.ndarray, targets: np.ndarray) -> dict:
    """What makes a corpus hard for an approximate engine: gaps between exact scores."""
    s = oracle_scores
    known = targets >= 0
    out = {
        "gap_1_10": float(np.mean(s[:, 0] - s[:, 9])), "gap_10_11": float(np.mean(s[:, 9] - s[:, 10])),
        "gap_1_100": float(np.mean(s[:, 0] - s[:, min(99, s.shape[1] - 1)])), "score_1": float(np.mean(s[:, 0])),
    }
    if known.any():
        out["top1_is_target"] = float(np.mean(oracle_rows[known, 0] == targets[known]))
        out["target_in_top10"] = float(np.mean([t in r[:10] for t, r in zip(targets[known], oracle_rows[known])]))
    return out


def latency(engine: MaxSimEngine, queries: list[np.ndarray], n: int) -> tuple[float, float]:
    """p50 / p95 ms of exhaustive exact search, one query per call, over the first n queries."""
    engine.search(queries[:1], 10)
    times = []
    for q in queries[:n]:
        t = time.perf_counter()
        engine.search([q], 10)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))
