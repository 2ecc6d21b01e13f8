"""Evaluation: score page retrieval on ViDoRe (v1, v2, v3) and on local page-labelled sets.

Example::

    from dse.evaluate import evaluate, load_dataset
    result = evaluate(load_dataset("../shared/data/mmlongbench-dev"), "bm25")
    print(result.table())           # Markdown: one row per dataset and scope
    result.save("bm25.json")        # config, encoder revision, dse version, per-query figures

Modules: `metrics` (trec_eval definitions), `trec` (TREC qrels/run files), `corpus` (the
test-set types), `vidore` (ViDoRe loaders), `local` (folder + questions file), `load`
(`load_dataset`: either, by its spec), `runner` (`evaluate`), `report` (`EvalResult`, `compare`).
"""

from __future__ import annotations

from dse.evaluate.corpus import CorpusPage, DatasetLoadError, EvalDataset, FileCorpus, PageCorpus
from dse.evaluate.load import load_dataset
from dse.evaluate.local import load_local
from dse.evaluate.metrics import METRICS, per_query_scores, score_run
from dse.evaluate.report import DatasetScores, EvalResult, compare, comparison
from dse.evaluate.runner import evaluate
from dse.evaluate.vidore import load_vidore

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
