"""Text, visual and hybrid search on mmlongbench-dev, over the whole corpus and within each question's document.

Usage (the index is any visual index built over ../shared/data/mmlongbench-dev/pdfs)::

    dse index ../shared/data/mmlongbench-dev/pdfs --index mmlb --encoder tiny-dse --dpi 40
    python bench/hybrid_mmlongbench.py --index mmlb [--data ../shared/data/mmlongbench-dev]

Every ranking is padded to the same length (see `_run`). Prints a Markdown table of nDCG@5, recall@1/5/10 and MRR@10 per mode (metrics: `dse.evaluate.metrics`,
trec_eval's definitions), plus a seeded random ranking for scale. Questions whose document is not
in the index are left out (the count is printed). A page's id for scoring is `<file name>#<page>`.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
from pathlib import Path
from typing import Any

from dse import Hit, Retriever
from dse.evaluate.metrics import score_run

METRICS = ("ndcg@5", "recall@1", "recall@5", "recall@10", "mrr@10")
CONFIGS: dict[str, dict[str, Any]] = {
    "text (BM25)": {"mode": "text"},
    "visual": {"mode": "visual"},
    "hybrid rrf": {"mode": "hybrid", "fusion": "rrf"},
    "hybrid weighted (lambda 1)": {"mode": "hybrid", "fusion": "weighted", "weight": 1.0},
    "hybrid weighted (lambda 0.3)": {"mode": "hybrid", "fusion": "weighted", "weight": 0.3},
}


def _run(hits: list[Hit], scope: list[str], depth: int, qid: str) -> dict[str, float]:
    """Rank-derived scores (1/rank), so trec_eval's tie-breaking cannot reorder our ranking.

    Every list is `depth` long (or the scope's size), as `dse eval` makes them: BM25 returns only
    pages sharing a word with the question, so its list is padded with the scope's other pages in
    a pseudo-random order seeded by the question (`dse.evaluate.runner._pad`); otherwise the
    longer visual and hybrid lists would score pages a shorter list leaves out.
    """
    keys = [f"{Path(h.source).name}#{h.page}" for h in hits][:depth]
    extra = [d for d in scope if d not in set(keys)]
    random.Random(f"dse-eval-pad:{qid}").shuffle(extra)
    keys += extra[: max(0, depth - len(keys))]
    return {key: 1.0 / rank for rank, key in enumerate(keys, start=1)}


def main() -> None:
    """Evaluate and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/mmlongbench-dev"))
    ap.add_argument("-k", type=int, default=100)
    args = ap.parse_args()
    with Retriever.open(args.index) as r:
        sources = {Path(s["path"]).name: s["path"] for s in r.index.catalogue.sources()}
        pages = {name: [rec.page for rec in r.index.catalogue.pages(range(len(r)))
                        if Path(rec.source).name == name] for name in sources}
        questions = [json.loads(line) for line in open(Path(args.data) / "questions.jsonl", encoding="utf-8")]
        kept = [q for q in questions if q["doc_id"] in sources]
        qrels = {q["query_id"]: {f"{q['doc_id']}#{p}": 1 for p in q["evidence_pages"]} for q in kept}
        texts = [q["question"] for q in kept]
        rows: dict[tuple[str, str], dict[str, float]] = {}
        rng = random.Random(0)
        everything = [f"{n}#{p}" for n, ps in pages.items() for p in ps]
        rows[("random", "corpus")] = score_run(qrels, {q["query_id"]: {d: 1.0 / (i + 1) for i, d in enumerate(
            rng.sample(everything, min(args.k, len(everything))))} for q in kept}, METRICS)
        rows[("random", "document")] = score_run(qrels, {q["query_id"]: {f"{q['doc_id']}#{p}": 1.0 / (i + 1) for i, p in
                                                 enumerate(rng.sample(pages[q["doc_id"]], len(pages[q["doc_id"]])))}
                                                 for q in kept}, METRICS)
        for name, options in CONFIGS.items():
            corpus = r.search_many(texts, args.k, **options)
            rows[(name, "corpus")] = score_run(qrels, {q["query_id"]: _run(h, everything, args.k, q["query_id"])
                                                       for q, h in zip(kept, corpus)}, METRICS)
            within = {q["query_id"]: _run(r.search(q["question"], args.k, where={"source": sources[q["doc_id"]]},
                                                   **options), [f"{q['doc_id']}#{p}" for p in pages[q["doc_id"]]],
                                          args.k, q["query_id"]) for q in kept}
            rows[(name, "document")] = score_run(qrels, within, METRICS)
        encoder = r.info()["encoder"]["name"]
    print(f"{len(kept)} of {len(questions)} questions; {len(everything)} pages in {len(sources)} documents; "
          f"visual encoder {encoder}; {platform.machine()} {platform.processor() or ''} ".strip())
    print("\n| ranking | scope | " + " | ".join(METRICS) + " |")
    print("|---|---|" + "---|" * len(METRICS))
    for (name, scope), m in sorted(rows.items(), key=lambda kv: kv[0][1]):
        print(f"| {name} | {scope} | " + " | ".join(f"{m[x]:.3f}" for x in METRICS) + " |")


if __name__ == "__main__":
    main()
