"""The metrics match trec_eval (through pytrec_eval) on many random runs: graded qrels, ties,
unanswered queries, queries without relevant documents; and the TREC file round trip."""

from __future__ import annotations

import random

import pytest

from dse.evaluate.metrics import METRICS, check_metric, per_query_scores, score_run, trec_ranking
from dse.evaluate.trec import read_qrels, read_run, write_qrels, write_run

pytrec_eval = pytest.importorskip("pytrec_eval")

PYTREC = {"ndcg": "ndcg_cut_{k}", "recall": "recall_{k}", "map": "map"}


def _random_case(rng: random.Random) -> tuple[dict, dict]:
    docs = [f"d{i}" for i in range(rng.randint(1, 40))] + ["10", "9", "B", "a", "doc-x"]
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for q in range(rng.randint(1, 8)):
        qid = f"q{q}"
        judged = rng.sample(docs, rng.randint(1, min(8, len(docs))))
        qrels[qid] = {d: rng.choice([0, 0, 1, 1, 2, 3]) for d in judged}
        if rng.random() < 0.15:
            continue  # a query the run does not answer
        retrieved = rng.sample(docs, rng.randint(0, len(docs)))
        levels = rng.choice([3, 10, 1000])  # few levels: many ties
        run[qid] = {d: float(rng.randint(0, levels)) / 7 for d in retrieved}
    run["extra"] = {"d0": 1.0}  # a query outside the qrels is ignored
    return qrels, run


def _pytrec(qrels: dict, run: dict) -> dict[str, dict[str, float]]:
    """pytrec_eval's figures under our names; queries it leaves out (unanswered) score 0."""
    measures = {"ndcg_cut.1,3,5,10", "recall.1,5,10,100", "map", "recip_rank"}
    answered = {q: r for q, r in run.items() if r}
    full = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(answered)
    top10 = {q: {d: r[d] for d in trec_ranking(r)[:10]} for q, r in answered.items()}
    cut = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    out = {}
    for qid in qrels:
        row = {}
        for name in METRICS:
            kind, k = check_metric(name)
            if kind == "mrr":
                row[name] = cut.get(qid, {}).get("recip_rank", 0.0)
            else:
                row[name] = full.get(qid, {}).get(PYTREC[kind].format(k=k), 0.0)
        out[qid] = row
    return out


def test_metrics_match_pytrec_eval_on_random_runs() -> None:
    rng = random.Random(1234)
    for _ in range(300):
        qrels, run = _random_case(rng)
        ours = per_query_scores(qrels, run)
        theirs = _pytrec(qrels, run)
        assert ours.keys() == theirs.keys()
        for qid in qrels:
            for name in METRICS:
                assert ours[qid][name] == pytest.approx(theirs[qid][name], abs=1e-9), (qid, name, qrels, run)


def test_ties_are_broken_by_doc_id_descending() -> None:
    assert trec_ranking({"a": 1.0, "B": 1.0, "C": 1.0, "z": 2.0}) == ["z", "a", "C", "B"]
    assert trec_ranking({"10": 0.5, "9": 0.5}) == ["9", "10"]
    # the relevant page ties with a larger id: it is ranked second, as trec_eval does
    assert score_run({"q": {"a": 1}}, {"q": {"a": 1.0, "b": 1.0}})["mrr@10"] == 0.5


def test_unanswered_queries_count_zero_in_the_mean() -> None:
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    scores = score_run(qrels, {"q1": {"d1": 3.0}})
    assert scores["ndcg@10"] == 0.5 and scores["map"] == 0.5 and scores["recall@100"] == 0.5


def test_unknown_metric_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="ndcg@0"):
        score_run({"q": {"d": 1}}, {}, metrics=["ndcg@0"])


def test_trec_files_round_trip(tmp_path) -> None:
    rng = random.Random(7)
    qrels, run = _random_case(rng)
    write_qrels(tmp_path / "qrels.txt", qrels)
    write_run(tmp_path / "run.txt", run)
    assert read_qrels(tmp_path / "qrels.txt") == qrels
    assert read_run(tmp_path / "run.txt") == {q: r for q, r in run.items() if r}


def test_malformed_trec_files_name_the_line(tmp_path) -> None:
    bad = tmp_path / "run.txt"
    bad.write_text("q1 Q0 d1 1 0.5 tag\nq1 Q0 d1 2 0.4 tag\n")
    with pytest.raises(ValueError, match=r"run.txt:2: document 'd1' appears twice"):
        read_run(bad)
    bad.write_text("q1 0 d1\n")
    with pytest.raises(ValueError, match=r"run.txt:1: lines have 4 fields \(qid iter docid grade\)"):
        read_qrels(bad)
