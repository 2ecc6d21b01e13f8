"""Retrieval metrics with trec_eval's definitions (checked against pytrec_eval in the tests).

A run maps each query id to {doc id: score}; qrels map each query id to {doc id: grade}.
As in trec_eval:

- documents are ranked by score, highest first, ties broken by doc id in *descending* byte
  order (so on equal scores "b" comes before "a", and "9" before "10");
- a document is relevant when its grade is >= 1; nDCG's gain is the grade (negative grades
  count 0), its discount log2(rank + 1), its ideal ranking all judged documents by grade;
- recall@k is the share of the relevant documents found in the top k; MRR@k the reciprocal
  rank of the first relevant document in the top k (0 if none); MAP the mean precision at
  each relevant document, over all relevant documents.

Means are taken over the queries of the qrels: a query the run does not answer, or one with
no relevant document, scores 0 on every metric.
"""

from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

METRICS: tuple[str, ...] = (
    "ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10",
    "recall@1", "recall@5", "recall@10", "recall@100",
    "mrr@10", "map",
)
"""The metrics `dse eval` reports, in order."""

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]

_NAME = re.compile(r"^(ndcg|recall|mrr)@([1-9][0-9]*)$")


def check_metric(name: str) -> tuple[str, int | None]:
    """Split a metric name into (kind, cutoff): "ndcg@10" -> ("ndcg", 10), "map" -> ("map", None).

    Raises:
        ValueError: The name is not `ndcg@K`, `recall@K`, `mrr@K` or `map`.
    """
    if name == "map":
        return "map", None
    match = _NAME.match(name)
    if match is None:
        raise ValueError(f"unknown metric {name!r}; use ndcg@K, recall@K, mrr@K or map")
    return match.group(1), int(match.group(2))


def trec_ranking(scores: Mapping[str, float]) -> list[str]:
    """Doc ids in trec_eval's order: score descending, then doc id descending."""
    return [doc for doc, _ in sorted(scores.items(), key=lambda item: (float(item[1]), item[0]), reverse=True)]


def query_scores(grades: Mapping[str, int], ranking: Sequence[str], metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """Every metric of one query.

    Args:
        grades: {doc id: grade} of the query.
        ranking: Retrieved doc ids, best first (see `trec_ranking`).
        metrics: Metric names (`METRICS` by default).
    """
    relevant = {doc for doc, grade in grades.items() if grade >= 1}
    out: dict[str, float] = {}
    for name in metrics:
        kind, k = check_metric(name)
        if not relevant:
            out[name] = 0.0
        elif kind == "ndcg":
            out[name] = _ndcg(grades, ranking, k or 0)
        elif kind == "recall":
            out[name] = sum(1 for doc in ranking[:k] if doc in relevant) / len(relevant)
        elif kind == "mrr":
            out[name] = next((1.0 / rank for rank, doc in enumerate(ranking[:k], 1) if doc in relevant), 0.0)
        else:
            out[name] = _average_precision(relevant, ranking)
    return out


def _ndcg(grades: Mapping[str, int], ranking: Sequence[str], k: int) -> float:
    gains = [max(0, grades.get(doc, 0)) for doc in ranking[:k]]
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, 1))
    dcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, 1))
    return dcg / idcg if idcg > 0 else 0.0


def _average_precision(relevant: set[str], ranking: Sequence[str]) -> float:
    found, total = 0, 0.0
    for rank, doc in enumerate(ranking, 1):
        if doc in relevant:
            found += 1
            total += found / rank
    return total / len(relevant)


def per_query_scores(qrels: Qrels, run: Run, metrics: Sequence[str] = METRICS) -> dict[str, dict[str, float]]:
    """{query id: {metric: value}} for every query of the qrels (unanswered queries score 0)."""
    for name in metrics:
        check_metric(name)
    return {qid: query_scores(grades, trec_ranking(run.get(qid, {})), metrics) for qid, grades in qrels.items()}


def mean_scores(per_query: Mapping[str, Mapping[str, float]], metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """The mean of each metric over the queries (0.0 for no queries)."""
    n = len(per_query)
    return {name: (sum(q[name] for q in per_query.values()) / n if n else 0.0) for name in metrics}


def score_run(qrels: Qrels, run: Run, metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """The mean of each metric over the queries of `qrels`.

    Example:
        >>> score_run({"q1": {"d1": 1}}, {"q1": {"d2": 2.0, "d1": 1.0}})["mrr@10"]
        0.5
    """
    return mean_scores(per_query_scores(qrels, run, metrics), metrics)
