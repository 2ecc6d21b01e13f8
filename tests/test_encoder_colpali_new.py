"""ColQwen3/3.5, ColGemma3, ColModernVBert and the Bi* twins on tiny random checkpoints: equal to colpali-engine.

The reference is colpali-engine itself, loaded on its own from the same directory: its model's
output on its processor's batches, unpadded (multi-vector) or as is (single-vector).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cm = pytest.importorskip("colpali_engine.models")

from PIL import Image  # noqa: E402

from dse.encoders.colpali.bi import BiEncoder  # noqa: E402
from dse.encoders.colpali.col import ColPaliEncoder  # noqa: E402
from dse.encoders.colpali.specs import FAMILIES  # noqa: E402
from dse.encoders.registry import list_encoders, load_encoder  # noqa: E402
from dse.testing import tiny_colgemma3, tiny_colmodernvbert, tiny_colpali, tiny_colqwen3  # noqa: E402

BUILDERS: dict[str, Callable[..., Path]] = {
    "colqwen3": tiny_colqwen3.build_tiny_colqwen3,
    "colqwen3.5": tiny_colqwen3.build_tiny_colqwen3_5,
    "colgemma3": tiny_colgemma3.build_tiny_colgemma3,
    "colmodernvbert": tiny_colmodernvbert.build_tiny_colmodernvbert,
    "bipali": tiny_colpali.build_tiny_bipali,
    "biqwen2": tiny_colpali.build_tiny_biqwen2,
    "biqwen2.5": tiny_colpali.build_tiny_biqwen2_5,
    "biqwen3": tiny_colqwen3.build_tiny_biqwen3,
    "biqwen3.5": tiny_colqwen3.build_tiny_biqwen3_5,
    "bigemma3": tiny_colgemma3.build_tiny_bigemma3,
    "bimodernvbert": tiny_colmodernvbert.build_tiny_bimodernvbert,
    "biidefics3": tiny_colpali.build_tiny_biidefics3,
}
MULTI = [n for n in BUILDERS if FAMILIES[n].kind == "multi"]
SINGLE = [n for n in BUILDERS if FAMILIES[n].kind == "single"]
WIDTH = {"colqwen3": 320, "colqwen3.5": tiny_colqwen3.TINY_COLQWEN3_5_DIM, "colgemma3": 128, "colmodernvbert": 128}
QUERIES = ["revenue", "which section of the annual report shows the total revenue per year?"]


def _pages() -> list[Image.Image]:
    """Two deterministic pages of different sizes and aspect ratios."""
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (150, 90, 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 255, (40, 120, 3), dtype=np.uint8))]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_colpali_new")
    return {name: build(root / name, seed=0) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def encoders(checkpoints: dict[str, Path]) -> dict[str, Any]:
    return {name: load_encoder(name, model=str(path), device="cpu") for name, path in checkpoints.items()}


def _reference(family: str, path: Path) -> tuple[Any, Any]:
    """colpali-engine's model and processor for `family`, loaded independently of dse."""
    spec = FAMILIES[family]
    extra = {"key_mapping": {}} if spec.empty_key_mapping else {}  # see FamilySpec.empty_key_mapping
    model = getattr(cm, spec.model_class).from_pretrained(str(path), dtype=torch.float32, device_map="cpu", **extra)
    return model.eval(), getattr(cm, spec.processor_class).from_pretrained(str(path))


def _queries(family: str, processor: Any, queries: list[str]) -> Any:
    batch = processor.process_queries(queries)
    if FAMILIES[family].bidirectional_queries:  # PaliGemma: see FamilySpec.bidirectional_queries
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    return batch


def test_names_are_registered_with_tiny_twins() -> None:
    names = list_encoders()
    for family in BUILDERS:
        assert family in names and f"tiny-{family}" in names
        assert (Path(__file__).resolve().parents[1] / "configs" / f"{family}.yaml").is_file()


@pytest.mark.parametrize("family", MULTI)
def test_multi_vector_equal_to_colpali_engine(family: str, encoders: dict[str, Any], checkpoints: dict[str, Path]) -> None:
    enc = encoders[family]
    assert isinstance(enc, ColPaliEncoder) and enc.kind == "multi" and enc.dim == WIDTH[family]
    model, processor = _reference(family, checkpoints[family])
    pages = _pages()
    ours_p, ours_q = enc.encode_pages(pages), enc.encode_queries(QUERIES)
    with torch.no_grad():
        batch_p = processor.process_images(pages)
        raw_p = model(**batch_p)  # (2, seq, dim)
        batch_q = _queries(family, processor, QUERIES)
        raw_q = model(**batch_q)  # (2, seq, dim)
        alone_q = [model(**_queries(family, processor, [q]))[0] for q in QUERIES]  # [(seq_i, dim)]
    for ours, raw, mask in ((ours_p, raw_p, batch_p["attention_mask"]), (ours_q, raw_q, batch_q["attention_mask"])):
        for i, v in enumerate(ours):
            assert v.dtype == np.float32 and v.shape[1] == WIDTH[family]
            np.testing.assert_allclose(v, raw[i][mask[i].bool()].numpy(), atol=1e-5)  # padding removed, nothing else
            np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    for v, raw in zip(ours_q, alone_q):
        np.testing.assert_allclose(v, raw.numpy(), atol=1e-5)
    reference = processor.score_multi_vector(torch.nan_to_num(raw_q), torch.nan_to_num(raw_p), device="cpu")
    scores = processor.score_multi_vector([torch.from_numpy(q) for q in ours_q],
                                          [torch.from_numpy(p) for p in ours_p], device="cpu")
    np.testing.assert_allclose(scores.numpy(), reference.numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("family", SINGLE)
def test_single_vector_equal_to_colpali_engine(family: str, encoders: dict[str, Any],
                                               checkpoints: dict[str, Path]) -> None:
    enc = encoders[family]
    assert isinstance(enc, BiEncoder) and enc.kind == "single" and enc.dim == tiny_colpali.TINY_HIDDEN
    model, processor = _reference(family, checkpoints[family])
    pages = _pages()
    ours_p, ours_q = enc.encode_pages(pages), enc.encode_queries(QUERIES)
    with torch.no_grad():
        raw_p = model(**processor.process_images(pages))  # (2, hidden)
        raw_q = model(**_queries(family, processor, QUERIES))  # (2, hidden)
    for ours, raw in ((ours_p, raw_p), (ours_q, raw_q)):
        assert ours.dtype == np.float32 and ours.shape == (2, enc.dim)
        np.testing.assert_allclose(ours, raw.numpy(), atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    reference = processor.score_single_vector(raw_q, raw_p, device="cpu")
    np.testing.assert_allclose(ours_q @ ours_p.T, reference.numpy(), atol=1e-5)
    assert enc.encode_pages([]).shape == (0, enc.dim)


@pytest.mark.parametrize("family", list(BUILDERS))
def test_batch_invariance(family: str, encoders: dict[str, Any]) -> None:
    enc = encoders[family]
    pages = _pages()
    for together, alone in ((enc.encode_pages(pages), [enc.encode_pages([p])[0] for p in pages]),
                            (enc.encode_queries(QUERIES), [enc.encode_queries([q])[0] for q in QUERIES])):
        for a, b in zip(together, alone):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("family", list(BUILDERS))
def test_queries_go_through_process_queries(family: str, encoders: dict[str, Any]) -> None:
    """Augmentation tokens kept: exactly the tokens colpali-engine's process_queries makes."""
    enc = encoders[family]
    batch = enc.processor.process_queries(["revenue"])
    keep = batch["attention_mask"][0].bool()
    text = enc.processor.tokenizer.decode(batch["input_ids"][0][keep])
    if family == "colgemma3":  # ColGemmaProcessor3.process_queries: the chat template, no augmentation tokens
        assert "Query: revenue" in text
    else:
        assert text.count(enc.processor.query_augmentation_token) >= 10
    if enc.kind == "multi":
        assert enc.encode_queries(["revenue"])[0].shape[0] == int(keep.sum())


@pytest.mark.parametrize("family", ["colqwen3", "colqwen3.5", "biqwen3", "colmodernvbert", "bimodernvbert"])
def test_visual_token_budget(family: str, checkpoints: dict[str, Path], encoders: dict[str, Any]) -> None:
    capped = load_encoder(family, model=str(checkpoints[family]), device="cpu", max_visual_tokens=8)
    assert capped.options() == {"max_visual_tokens": 8} and capped.describe()["options"] == {"max_visual_tokens": 8}
    default = encoders[family]
    image_token = capped.processor.image_token_id if hasattr(capped.processor, "image_token_id") else None
    batch = capped.processor.process_images(_pages()[:1])
    full = default.processor.process_images(_pages()[:1])
    if image_token is None:
        image_token = capped.processor.tokenizer.convert_tokens_to_ids(capped.processor.image_token)
    n_capped, n_full = (int((b["input_ids"] == image_token).sum()) for b in (batch, full))
    assert 0 < n_capped <= 8 < n_full
    if capped.kind == "multi":
        assert capped.encode_pages(_pages()[:1])[0].shape[0] < default.encode_pages(_pages()[:1])[0].shape[0]


@pytest.mark.parametrize("family", ["colgemma3", "bigemma3", "bipali"])
def test_fixed_budget_families_refuse_a_budget(family: str, checkpoints: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="fixed|does not take"):
        load_encoder(family, model=str(checkpoints[family]), max_visual_tokens=64)


def test_bigemma3_matryoshka_dims(checkpoints: dict[str, Path], encoders: dict[str, Any]) -> None:
    path = str(checkpoints["bigemma3"])
    enc = load_encoder("bigemma3", model=path, device="cpu", dim=768)
    assert enc.options() == {"dim": 768} and encoders["bigemma3"].options() == {"dim": None}
    model, processor = _reference("bigemma3", checkpoints["bigemma3"])
    with torch.no_grad():
        raw = model(**processor.process_queries(QUERIES), embedding_dim=768)  # the tiny model is narrower: all of it
    np.testing.assert_allclose(enc.encode_queries(QUERIES), raw.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="768, 1536, 2560"):
        load_encoder("bigemma3", model=path, dim=100)
    with pytest.raises(ValueError, match="does not take option"):
        load_encoder("biqwen3", model=str(checkpoints["biqwen3"]), dim=16)


def test_families_without_a_reference_checkpoint_need_a_model() -> None:
    for family in ("biqwen3", "biqwen3.5", "biidefics3"):
        with pytest.raises(ValueError, match="no reference checkpoint"):
            load_encoder(family)


def test_bipali_processor_workaround_is_still_needed(encoders: dict[str, Any]) -> None:
    """BiPaliProcessor(*args, **kwargs) gets no tokenizer under transformers 5; dse uses ColPaliProcessor.

    When colpali-engine fixes it, switch FAMILIES["bipali"] back to BiPaliProcessor.
    """
    colpali = encoders["bipali"].processor
    assert type(colpali) is cm.ColPaliProcessor
    broken = cm.BiPaliProcessor(image_processor=colpali.image_processor, tokenizer=colpali.tokenizer)
    assert getattr(broken, "tokenizer", None) is None


@pytest.mark.parametrize("family", ["colqwen3", "colqwen3.5"])
@pytest.mark.parametrize("engine", [{}, {"mode": "cascade"}])
def test_indexes_take_any_width(family: str, engine: dict[str, Any], tmp_path: Path) -> None:
    """A 320-d (ColQwen3) or 96-d (tiny ColQwen3.5) index: exact and cascade engines, reopened lazily."""
    from dse import Retriever
    from dse.encoders.colpali.col import score_maxsim

    rng = np.random.default_rng(1)
    files = []
    for i in range(3):
        files.append(tmp_path / f"page{i}.png")
        Image.fromarray(rng.integers(0, 255, (64 + 16 * i, 96, 3), dtype=np.uint8)).save(files[-1])
    enc = load_encoder(f"tiny-{family}", device="cpu")
    with Retriever.create(tmp_path / "idx", enc, engine=engine) as r:
        assert len(r.add(files, workers=0).added) == 3
    with Retriever.open(tmp_path / "idx", device="cpu") as r:  # the tiny checkpoint: no confirmation needed
        hits = r.search("revenue", k=3)
        assert len(hits) == 3 and r.encoder.dim == WIDTH[family]
        query = r.encoder.encode_queries(["revenue"])[0]
        assert r.info()["encoder"]["dim"] == WIDTH[family]
    truth = {str(f): score_maxsim(query, enc.encode_pages([Image.open(f).convert("RGB")])[0]) for f in files}
    assert [h.source for h in hits] == sorted(truth, key=truth.get, reverse=True)  # the brute-force oracle
    for h in hits:
        assert abs(h.score - truth[h.source]) < 2e-2  # the engines may keep float16 vectors


def test_bad_queries_are_refused_clearly(encoders: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match=r"queries\[0\].*text queries only"):
        encoders["colqwen3"].encode_queries([_pages()[0]])
    with pytest.raises(TypeError, match=r"pages\[1\]"):
        encoders["biqwen3"].encode_pages([_pages()[0], "page.png"])
