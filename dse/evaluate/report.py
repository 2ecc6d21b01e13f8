"""Evaluation results: JSON on disk, Markdown tables, and the comparison of two results."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from dse.evaluate.metrics import METRICS

RESULT_FORMAT = 1
SCOPES = ("corpus", "document")


@dataclass(frozen=True)
class DatasetScores:
    """The figures of one dataset in one scope.

    Attributes:
        dataset: The dataset's name.
        scope: "corpus" (ranked over every page) or "document" (ranked over the pages of the
            question's own document).
        metrics: {metric: mean over the queries of the qrels}.
        per_query: {query id: {metric: value}}.
        info: Dataset description (source, sizes) and timings (index_seconds, search_seconds).
    """

    dataset: str
    scope: str
    metrics: Mapping[str, float]
    per_query: Mapping[str, Mapping[str, float]] = field(repr=False)
    info: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        """The row name in tables: the dataset, with the scope unless it is "corpus"."""
        return self.dataset if self.scope == "corpus" else f"{self.dataset} (within {self.scope})"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"dataset": self.dataset, "scope": self.scope, "num_queries": len(self.per_query),
                "metrics": dict(self.metrics), "info": dict(self.info),
                "per_query": {q: dict(m) for q, m in self.per_query.items()}}


@dataclass(frozen=True)
class EvalResult:
    """The result of `dse.evaluate.evaluate`.

    Attributes:
        config: What was run: encoder description (name, model, revision, options), k, mode,
            dse version, machine, date.
        scores: One entry per dataset and scope, in order.
    """

    config: Mapping[str, Any]
    scores: tuple[DatasetScores, ...]

    def get(self, dataset: str, scope: str = "corpus") -> DatasetScores:
        """The scores of a dataset in a scope (KeyError naming what exists otherwise)."""
        for s in self.scores:
            if s.dataset == dataset and s.scope == scope:
                return s
        raise KeyError(f"no scores for {dataset!r} ({scope}); have {[(s.dataset, s.scope) for s in self.scores]}")

    def table(self, metrics: Sequence[str] = METRICS) -> str:
        """A Markdown table: one row per dataset and scope, one column per metric."""
        head = ["dataset", "queries", *metrics]
        rows = [[s.label, str(len(s.per_query)), *(f"{s.metrics[m]:.3f}" for m in metrics)] for s in self.scores]
        return _markdown(head, rows)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what `save` writes)."""
        return {"format": RESULT_FORMAT, "config": dict(self.config), "results": [s.to_json() for s in self.scores]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "EvalResult":
        """Rebuild a result from `to_json` output (ValueError if it is not one)."""
        if not isinstance(data, Mapping) or data.get("format") != RESULT_FORMAT or "results" not in data:
            raise ValueError(f"not a dse evaluation result (format {RESULT_FORMAT})")
        scores = tuple(
            DatasetScores(r["dataset"], r["scope"], r["metrics"], r.get("per_query", {}), r.get("info", {}))
            for r in data["results"]
        )
        return cls(data.get("config", {}), scores)

    def save(self, path: str | Path) -> None:
        """Write the result as JSON."""
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "EvalResult":
        """Read a result written by `save` (ValueError naming the file if it is not one)."""
        try:
            return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: cannot read an evaluation result: {exc}") from exc


def comparison(a: EvalResult, b: EvalResult, metrics: Sequence[str] = METRICS) -> list[dict[str, Any]]:
    """Per dataset/scope present in both and per metric: {dataset, scope, metric, a, b, delta}."""
    rows = []
    for sb in b.scores:
        sa = next((s for s in a.scores if (s.dataset, s.scope) == (sb.dataset, sb.scope)), None)
        if sa is None:
            continue
        for m in metrics:
            if m in sa.metrics and m in sb.metrics:
                va, vb = float(sa.metrics[m]), float(sb.metrics[m])
                rows.append({"dataset": sb.dataset, "scope": sb.scope, "metric": m, "a": va, "b": vb, "delta": vb - va})
    return rows


def compare(a: EvalResult, b: EvalResult, metrics: Sequence[str] = METRICS) -> str:
    """A Markdown table of B - A for each dataset in both and each metric (columns: metrics).

    Each cell reads `B (+delta)`; datasets present in only one result are listed below the table.
    """
    rows = comparison(a, b, metrics)
    labels = list(dict.fromkeys((r["dataset"], r["scope"]) for r in rows))
    cells = {(r["dataset"], r["scope"], r["metric"]): f"{r['b']:.3f} ({r['delta']:+.3f})" for r in rows}
    body = [[DatasetScores(d, s, {}, {}).label, *(cells.get((d, s, m), "") for m in metrics)] for d, s in labels]
    text = _markdown(["dataset", *metrics], body)
    only = [s.label for s in (*a.scores, *b.scores) if (s.dataset, s.scope) not in labels]
    if only:
        text += "\nin one result only: " + ", ".join(dict.fromkeys(only)) + "\n"
    return text


def _markdown(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
