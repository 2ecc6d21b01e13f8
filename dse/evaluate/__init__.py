"""Evaluation: score page retrieval on ViDoRe (v1, v2, v3) and on local page-labelled sets.

Example::

    from dse.evaluate import evaluate, load_dataset
    result = evaluate(load_dataset("../shared/data/mmlongbench-dev"), "bm25")
    print(result.table())           # Markdown: one row per dataset and scope
    result.save("bm25.json")        # config, encoder revision, dse version, per-query figures

Modules: `metrics` (trec_eval definitions), `trec` (TREC qrels/run files), `dataset` (the
test-set types), `datasets` (ViDoRe loaders), `local` (folder + questions file), `runner`
(`evaluate`), `report` (`EvalResult`, `compare`).
"""

from __future__ import annotations

from dse.evaluate.dataset import CorpusPage, DatasetLoadError, EvalDataset, FileCorpus, PageCorpus, load_dataset
from dse.evaluate.datasets import load_vidore
from dse.evaluate.local import load_local
from dse.evaluate.metrics import METRICS, per_query_scores, score_run
from dse.evaluate.report import DatasetScores, EvalResult, compare, comparison
from dse.evaluate.runner import evaluate

__all__ = [
    "METRICS",
    "CorpusPage",
    "DatasetLoadError",
    "DatasetScores",
    "EvalDataset",
    "EvalResult",
    "FileCorpus",
    "PageCorpus",
    "compare",
    "comparison",
    "evaluate",
    "load_dataset",
    "load_local",
    "load_vidore",
    "per_query_scores",
    "score_run",
]
