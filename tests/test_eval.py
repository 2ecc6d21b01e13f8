"""`dse eval` end to end: ViDoRe v1/v2/v3 loaders on datasets written in the formats users have
(save_to_disk, to_parquet, hub snapshots), the local format, the runner, results and the CLI."""

from __future__ import annotations

import inspect
import json
import math
import shutil
from pathlib import Path

import pytest
from PIL import Image

from dse.cli.main import main
from dse.evaluate import (
    METRICS,
    DatasetLoadError,
    EvalResult,
    compare,
    evaluate,
    load_dataset,
    load_local,
    load_vidore,
    score_run,
)
from dse.evaluate.trec import write_qrels, write_run
from dse.retrieve.retriever import Retriever

datasets = pytest.importorskip("datasets")

FIXTURES = Path(__file__).parent / "eval_fixtures"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "corpus"

TOPICS = ["falcon wings feathers", "invoice tax total", "solar inverter wiring", "sourdough starter flour"]


def _image(i: int) -> Image.Image:
    return Image.new("RGB", (56 + 8 * i, 64), (40 * i % 256, 90, 200 - 30 * i))


def _qa_table() -> "datasets.Dataset":
    """A ViDoRe v1 table: a duplicated query, a page without query, a file name on two rows."""
    rows = [
        ("what about falcon wings", "a.png", 0),
        ("invoice tax total due", "b.png", 1),
        ("what about falcon wings", "c.png", 2),  # duplicate query: the LAST row's file is relevant
        (None, "d.png", 3),  # a page without a query
        ("sourdough starter flour", "b.png", 1),  # second row of b.png: the same page
    ]
    return datasets.Dataset.from_dict({
        "query": [q for q, _, _ in rows],
        "image": [_image(i) for _, _, i in rows],
        "image_filename": [f for _, f, _ in rows],
        "text_description": [TOPICS[i] for _, _, i in rows],
    })


def _beir_tables(hyphen: bool) -> dict[str, "datasets.Dataset"]:
    """v2 (`corpus-id`, hyphens) or v3 (`corpus_id`, with `doc_id`, `markdown`) subsets."""
    cid, qid = ("corpus-id", "query-id") if hyphen else ("corpus_id", "query_id")
    corpus = {cid: [10, 11, 12, 13], "image": [_image(i) for i in range(4)], "markdown": TOPICS}
    if not hyphen:
        corpus["doc_id"] = ["birds", "acct", "solar", "bread"]
    queries = {qid: [0, 1, 2], "query": ["falcon feathers", "tax total invoice", "inverter wiring solar"]}
    qrels = {qid: [0, 1, 1, 2], cid: [10, 11, 13, 12], "score": [2, 2, 1, 1]}
    return {"corpus": datasets.Dataset.from_dict(corpus), "queries": datasets.Dataset.from_dict(queries),
            "qrels": datasets.Dataset.from_dict(qrels)}


def _write_qa(table, layout: str, root: Path) -> Path:
    if layout == "save_to_disk":
        table.save_to_disk(str(root / "qa"))
        return root / "qa"
    if layout == "dataset_dict":
        datasets.DatasetDict({"test": table}).save_to_disk(str(root / "qa"))
        return root / "qa"
    if layout == "to_parquet":
        table.to_parquet(str(root / "qa.parquet"))
        return root / "qa.parquet"
    (root / "qa" / "data").mkdir(parents=True)  # hub snapshot
    table.to_parquet(str(root / "qa" / "data" / "test-00000-of-00001.parquet"))
    return root / "qa"


def _write_beir(tables, layout: str, root: Path) -> Path:
    out = root / "beir"
    if layout == "save_to_disk":
        for name, t in tables.items():
            t.save_to_disk(str(out / name))
    elif layout == "dataset_dict":
        datasets.DatasetDict(tables).save_to_disk(str(out))
    elif layout == "to_parquet":
        out.mkdir()
        for name, t in tables.items():
            t.to_parquet(str(out / f"{name}.parquet"))
    else:  # hub snapshot
        for name, t in tables.items():
            (out / name).mkdir(parents=True)
            t.to_parquet(str(out / name / "test-00000-of-00001.parquet"))
    return out


LAYOUTS = ["save_to_disk", "dataset_dict", "to_parquet", "hub_snapshot"]


@pytest.fixture(scope="module")
def tiny_dse():
    """One random-weight DSE encoder for the module (built offline)."""
    import dse

    return dse.load_encoder("tiny-dse", max_pixels=64 * 28 * 28)  # small images: fast


@pytest.mark.parametrize("layout", LAYOUTS)
def test_vidore_v1_qa_matches_vidore_benchmark(tmp_path: Path, layout: str) -> None:
    ds = load_vidore(str(_write_qa(_qa_table(), layout, tmp_path)))
    # de-duplicated, None dropped, first occurrence first
    assert list(ds.queries.values()) == ["what about falcon wings", "invoice tax total due", "sourdough starter flour"]
    assert list(ds.qrels.values()) == [{"c.png": 1}, {"b.png": 1}, {"b.png": 1}]
    pages = list(ds.corpus.pages())
    assert [p.doc_id for p in pages] == ["a.png", "b.png", "c.png", "d.png"]  # one page per file name
    assert pages[1].text == TOPICS[1] and pages[0].image.size == (56, 64)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("hyphen", [True, False], ids=["v2", "v3"])
def test_vidore_beir_formats(tmp_path: Path, layout: str, hyphen: bool) -> None:
    ds = load_dataset(_write_beir(_beir_tables(hyphen), layout, tmp_path))
    assert ds.queries == {"0": "falcon feathers", "1": "tax total invoice", "2": "inverter wiring solar"}
    assert ds.qrels == {"0": {"10": 2}, "1": {"11": 2, "13": 1}, "2": {"12": 1}}
    pages = list(ds.corpus.pages())
    assert [(p.doc_id, p.text) for p in pages] == list(zip(["10", "11", "12", "13"], TOPICS))
    assert [p.document for p in pages] == (["", "", "", ""] if hyphen else ["birds", "acct", "solar", "bread"])


def test_bad_datasets_are_clear_errors(tmp_path: Path) -> None:
    tables = _beir_tables(False)
    tables["queries"].to_parquet(str(tmp_path / "queries.parquet"))
    with pytest.raises(DatasetLoadError, match=r"missing \['corpus', 'qrels'\]"):
        load_vidore(str(tmp_path))
    datasets.Dataset.from_dict({"foo": [1]}).to_parquet(str(tmp_path / "x.parquet"))
    with pytest.raises(DatasetLoadError, match=r"missing columns \['query', 'image', 'image_filename'\]"):
        load_vidore(str(tmp_path / "x.parquet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLoadError, match="no dataset here"):
        load_vidore(str(tmp_path / "empty"))


def test_bm25_on_a_beir_set_scores_the_text(tmp_path: Path) -> None:
    ds = load_vidore(str(_write_beir(_beir_tables(False), "to_parquet", tmp_path)))
    result = evaluate(ds, "bm25")
    scores = result.get("beir")
    assert [s.scope for s in result.scores] == ["corpus"]  # ViDoRe sets name no question document
    # query 1 finds page 11 (grade 2) first; page 13 (grade 1) shares no word with it, so it comes
    # after the matches, among the padding (rank 2, 3 or 4): as long a list as a visual ranking's
    assert scores.per_query["0"]["ndcg@1"] == 1.0 and scores.per_query["2"]["mrr@10"] == 1.0
    assert scores.per_query["1"]["recall@100"] == 1.0 and scores.per_query["1"]["recall@1"] == 0.5
    ideal = 2 + 1 / math.log2(3)
    assert any(scores.per_query["1"]["ndcg@10"] == pytest.approx((2 + 1 / math.log2(r + 1)) / ideal) for r in (2, 3, 4))
    assert scores.info["pages_indexed"] == 4 and result.config["encoder"]["name"] == "bm25"


def test_bm25_on_a_qdrant_index_scores_as_on_the_embedded_one(tmp_path: Path) -> None:
    pytest.importorskip("qdrant_client")
    ds = load_vidore(str(_write_beir(_beir_tables(False), "to_parquet", tmp_path)))
    embedded = evaluate(ds, "bm25").get("beir")
    result = evaluate(ds, "bm25", index_dir=tmp_path / "kept", backend="qdrant",
                      backend_options={"qdrant": str(tmp_path / "q")})
    qdrant = result.get("beir")
    assert result.config["backend"] == "qdrant" and qdrant.info["pages_indexed"] == 4
    assert qdrant.per_query == embedded.per_query  # the padding (every live page) comes from live_pages()
    from dse.backends import backend_name

    assert [backend_name(p) for p in (tmp_path / "kept").iterdir()] == ["qdrant"]


def test_visual_encoder_reuses_a_kept_index(tmp_path: Path, tiny_dse) -> None:
    ds = load_vidore(str(_write_qa(_qa_table(), "to_parquet", tmp_path)))
    first = evaluate(ds, tiny_dse, index_dir=tmp_path / "idx", k=3)
    again = evaluate(ds, tiny_dse, index_dir=tmp_path / "idx", k=3)
    assert first.scores[0].per_query == again.scores[0].per_query
    assert again.scores[0].info["pages_indexed"] == 4  # nothing added twice
    ranked = first.scores[0].per_query
    assert set(ranked) == {"q0", "q1", "q2"} and all(0 <= v["mrr@10"] <= 1 for v in ranked.values())


def _local_set(tmp_path: Path) -> Path:
    root = tmp_path / "local"
    shutil.copytree(EXAMPLES, root / "pdfs")
    shutil.copy(FIXTURES / "example-questions.jsonl", root / "questions.jsonl")
    return root


def test_local_set_loads_page_labels(tmp_path: Path) -> None:
    ds = load_dataset(_local_set(tmp_path))
    assert len(ds.queries) == 6 and len(ds.corpus.files) == 5
    assert ds.qrels["ex-5"] == {"solar-installation-guide.pdf#1": 1, "solar-installation-guide.pdf#3": 1}
    assert ds.query_documents["ex-2"] == "acme-q3-2025-report.pdf"


def test_local_set_with_linked_documents(tmp_path: Path) -> None:
    root = tmp_path / "linked"
    (root / "pdfs").mkdir(parents=True)
    for pdf in EXAMPLES.glob("*.pdf"):
        (root / "pdfs" / pdf.name).symlink_to(pdf)  # a subset built from links, as users do
    shutil.copy(FIXTURES / "example-questions.jsonl", root / "questions.jsonl")
    ds = load_local(root)
    assert sorted(ds.corpus.files) == sorted(p.name for p in EXAMPLES.glob("*.pdf"))
    assert ds.corpus.doc_id(str(EXAMPLES / "bird-field-guide.pdf"), 2) == "bird-field-guide.pdf#2"


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"question": "x", "doc_id": "missing.pdf", "evidence_pages": [1]}', "'missing.pdf' is not in"),
        ('{"question": "x", "doc_id": "bird-field-guide.pdf", "evidence_pages": [0]}', "1-based page numbers"),
        ('{"doc_id": "bird-field-guide.pdf", "evidence_pages": [1]}', "missing 'question'"),
        ("not json", "invalid JSON"),
    ],
)
def test_local_set_errors_name_the_question(tmp_path: Path, line: str, message: str) -> None:
    root = _local_set(tmp_path)
    (root / "questions.jsonl").write_text(line + "\n")
    with pytest.raises(DatasetLoadError, match=message):
        load_local(root)


def test_local_set_both_scopes(tmp_path: Path, tiny_dse) -> None:
    ds = load_local(_local_set(tmp_path))
    bm25 = evaluate(ds, "bm25")
    assert bm25.get("local").metrics["mrr@10"] == 1.0  # these questions quote their page
    assert bm25.get("local").metrics["recall@1"] == pytest.approx((5 + 0.5) / 6)
    tiny = evaluate(ds, tiny_dse, scopes=("corpus", "document"), index_dir=tmp_path / "idx")
    corpus, within = tiny.get("local"), tiny.get("local", "document")
    for qid in ds.qrels:  # filtering to the question's document can only move its pages up
        assert within.per_query[qid]["mrr@10"] >= corpus.per_query[qid]["mrr@10"]
        assert within.per_query[qid]["recall@5"] == 1.0  # no example document has more than 5 pages
    assert "local (within document)" in tiny.table()
    if "mode" in inspect.signature(Retriever.search_many).parameters:
        # the text side kept beside the visual vectors ranks as the bm25 encoder does
        text = evaluate(ds, tiny_dse, index_dir=tmp_path / "idx", mode="text")
        assert text.get("local").per_query == bm25.get("local").per_query
        assert text.config["mode"] == "text"


def test_a_corpus_that_cannot_be_indexed_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "pdfs").mkdir()
    (tmp_path / "pdfs" / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (tmp_path / "questions.jsonl").write_text('{"question": "q", "doc_id": "broken.pdf", "evidence_pages": [1]}\n')
    with pytest.raises(ValueError, match="no page could be indexed; first failure: .*broken.pdf"):
        evaluate(load_local(tmp_path), "bm25")


def test_result_round_trip_and_compare(tmp_path: Path) -> None:
    ds = load_local(_local_set(tmp_path))
    result = evaluate(ds, "bm25", scopes=("corpus",))
    result.save(tmp_path / "r.json")
    loaded = EvalResult.load(tmp_path / "r.json")
    assert loaded == result
    table = compare(loaded, result)
    assert "1.000 (+0.000)" in table and table.count("\n") == 3
    with pytest.raises(ValueError, match="cannot read an evaluation result"):
        EvalResult.load(FIXTURES / "example-questions.jsonl")


def test_cli_scores_a_trec_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    qrels = {"q1": {"d1": 1, "d2": 2}, "q2": {"d3": 1}, "q3": {"d9": 1}}
    run = {"q1": {"d2": 0.9, "d1": 0.9, "d7": 0.1}, "q2": {"d4": 2.0, "d3": 1.0}}
    write_qrels(tmp_path / "qrels.txt", qrels)
    write_run(tmp_path / "run.txt", run)
    assert main(["eval", "--qrels", str(tmp_path / "qrels.txt"), "--run", str(tmp_path / "run.txt"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == list(METRICS)
    assert printed == pytest.approx(score_run(qrels, run))
    assert printed["mrr@10"] == pytest.approx((1 + 0.5 + 0) / 3)  # q3 has no results: 0


def test_cli_evaluates_and_compares(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _local_set(tmp_path)
    out = tmp_path / "a.json"
    assert main(["eval", str(root), "--scope", "corpus", "-k", "10", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "encoder bm25" in text and "| local | 6 | 1.000 |" in text
    assert main(["eval", "--compare", str(out), str(out), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(METRICS) and all(r["delta"] == 0 for r in rows)
    assert main(["eval", str(root), "--qrels", str(out)]) == 2  # two forms at once
    assert "one of them" in capsys.readouterr().err


def test_mmlongbench_loads(shared_data: Path) -> None:
    ds = load_local(shared_data / "mmlongbench-dev")
    assert len(ds.queries) == 301 and len(ds.corpus.files) == 61
    assert all(1 <= len(grades) <= 3 for grades in ds.qrels.values())


def test_local_half_split_is_deterministic_and_disjoint(tmp_path):
    """`half` keeps the questions about one half of the documents; a and b partition the questions."""
    from dse.evaluate.local import document_half, load_local

    names = [f"doc{i}.png" for i in range(8)]
    from PIL import Image

    for name in names:
        Image.new("RGB", (8, 8), "white").save(tmp_path / name)
    lines = [json.dumps({"query_id": f"q{i}", "question": f"question {i}", "doc_id": n, "evidence_pages": [1]})
             for i, n in enumerate(names)]
    (tmp_path / "questions.jsonl").write_text("\n".join(lines) + "\n")
    a, b = load_local(tmp_path, half="a"), load_local(tmp_path, half="b")
    assert set(a.query_documents.values()) | set(b.query_documents.values()) == set(names)
    assert not set(a.query_documents.values()) & set(b.query_documents.values())
    assert all(document_half(d) == "a" for d in a.query_documents.values())
    assert set(a.corpus.files) == set(b.corpus.files) == set(names)  # the whole corpus: the other half distracts
    assert a.corpus_name == b.corpus_name == tmp_path.name  # one kept index for both halves
