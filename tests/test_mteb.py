"""dse encoders under mteb: its own ViDoRe task class, run offline on a tiny local dataset in its format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

mteb = pytest.importorskip("mteb")
pytest.importorskip("torch")
datasets = pytest.importorskip("datasets")

from dse.encoders import load_encoder  # noqa: E402
from dse.evaluate.mteb_model import MtebEncoder  # noqa: E402

QUERIES = ["what was the revenue?", "which table lists the results", "slides and charts"]


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(120, 90, 3), dtype=np.uint8))


PAGES = [_image(i) for i in range(5)]


@pytest.fixture(scope="module")
def vidore_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ViDoRe v1 dataset laid out as on the hub (mteb/*_test_subsampled_beir): queries, corpus, qrels."""
    root = tmp_path_factory.mktemp("vidore-tiny")
    tables = {
        "corpus": datasets.Dataset.from_dict({"corpus-id": list(range(len(PAGES))), "image": PAGES}).cast_column(
            "image", datasets.Image()),
        "queries": datasets.Dataset.from_dict({"query-id": list(range(len(QUERIES))), "query": QUERIES}),
        "qrels": datasets.Dataset.from_dict({"query-id": [0, 1, 2], "corpus-id": [0, 3, 4], "score": [1, 1, 1]}),
    }
    lines = ["---", "configs:"]
    for name, table in tables.items():
        (root / name).mkdir()
        table.to_parquet(str(root / name / "test-00000-of-00001.parquet"))
        lines += [f"- config_name: {name}", "  data_files:", "  - split: test", f"    path: {name}/test-*.parquet"]
    (root / "README.md").write_text("\n".join(lines + ["---", ""]))
    return root


def _task(path: Path) -> Any:
    """mteb's own VidoreArxivQARetrieval (its loading code and metrics), reading the local copy."""
    from mteb.tasks.retrieval.eng.vidore_bench_retrieval import VidoreArxivQARetrieval

    class LocalVidore(VidoreArxivQARetrieval):
        metadata = VidoreArxivQARetrieval.metadata.model_copy(
            update={"name": "VidoreArxivQARetrieval", "dataset": {"path": str(path), "revision": "local"}})

    return LocalVidore()


def _run(model: MtebEncoder, vidore_dir: Path, tmp_path: Path) -> tuple[dict, dict]:
    result = mteb.evaluate(model, _task(vidore_dir), cache=None, prediction_folder=tmp_path,
                           show_progress_bar=False, overwrite_strategy="always")
    scores = result.task_results[0].scores["test"][0]
    files = list(tmp_path.glob("*predictions.json"))
    assert files, list(tmp_path.iterdir())
    predictions = json.loads(files[0].read_text())
    return scores, predictions


def _prediction_matrix(predictions: dict) -> np.ndarray:
    preds = predictions["default"]["test"]  # subset -> split -> query id -> page id -> score
    out = np.full((len(QUERIES), len(PAGES)), np.nan)
    for qid, docs in preds.items():
        q = int(qid.rsplit("-", 1)[-1])
        for did, score in docs.items():
            out[q, int(did.rsplit("-", 1)[-1])] = score
    return out


def test_single_vector_encoder_scores_equal_dse(vidore_dir: Path, tmp_path: Path) -> None:
    encoder = load_encoder("tiny-dse")
    scores, predictions = _run(MtebEncoder(encoder), vidore_dir, tmp_path)
    assert 0.0 <= scores["ndcg_at_5"] <= 1.0 and scores["main_score"] == scores["ndcg_at_5"]
    want = encoder.encode_queries(QUERIES) @ encoder.encode_pages(PAGES).T  # (3, 5)
    got = _prediction_matrix(predictions)
    mask = ~np.isnan(got)
    assert mask.any()
    np.testing.assert_allclose(got[mask], want[mask], atol=1e-4)


def test_multi_vector_encoder_scores_are_maxsim(vidore_dir: Path, tmp_path: Path) -> None:
    encoder = load_encoder("tiny-colqwen2")
    model = MtebEncoder(encoder)
    assert model.mteb_model_meta.name == "dse/tiny-colqwen2"
    _, predictions = _run(model, vidore_dir, tmp_path)
    qs, ps = encoder.encode_queries(QUERIES), encoder.encode_pages(PAGES)
    want = np.array([[float((q @ p.T).max(axis=1).sum()) for p in ps] for q in qs])
    got = _prediction_matrix(predictions)
    mask = ~np.isnan(got)
    np.testing.assert_allclose(got[mask], want[mask], rtol=1e-4, atol=1e-4)


def test_image_and_mixed_query_batches_and_task_instructions() -> None:
    from mteb.types import PromptType

    encoder = load_encoder("tiny-qwen3-vl-embedding")
    model = MtebEncoder(encoder, task_instructions=True)
    batch = {"image": PAGES[:2], "text": ["a chart", "a table"]}
    got = np.stack(model._encode_batch(batch, is_document=False))
    np.testing.assert_allclose(got, encoder.encode_queries([(PAGES[0], "a chart"), (PAGES[1], "a table")]), atol=1e-6)

    class Meta:
        prompt = {"query": "Find a screenshot that is relevant to the user's question."}

    seen: list[str] = []
    real = encoder.encode_queries

    def spy(queries: Any) -> Any:
        seen.append(encoder.instruction)
        return real(queries)

    encoder.encode_queries = spy  # type: ignore[method-assign]
    model.encode([{"text": ["q"]}], task_metadata=Meta(), hf_split="test", hf_subset="default",
                 prompt_type=PromptType.query)
    assert seen == [Meta.prompt["query"]]
    assert encoder.instruction == "Find a document image that matches the given query."  # restored


def test_text_encoders_are_refused() -> None:
    with pytest.raises(ValueError, match="image encoder"):
        MtebEncoder(load_encoder("bm25"))
