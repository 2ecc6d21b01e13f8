"""Model identity: what a manifest records about the weights, and what reopening an index accepts.

The hub is simulated offline by a Hugging Face cache holding two commits of one tiny checkpoint
("main" points at the newer one), which is exactly what `from_pretrained` reads offline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("colpali_engine")

from PIL import Image  # noqa: E402

from dse import EncoderMismatchError, ModelLoadError, Retriever, load_encoder  # noqa: E402
from dse.cli.main import main  # noqa: E402
from dse.encoders import registry  # noqa: E402
from dse.encoders.hub import ModelNotConfirmedError, named_models  # noqa: E402
from dse.encoders.identity import directory_fingerprint, same_weights  # noqa: E402
from dse.retrieve.lazy_encoder import ALLOW_ENV  # noqa: E402
from dse.testing.tiny_colpali import build_tiny_colqwen2  # noqa: E402

HUB_ID = "someone/tiny-colqwen2"
OLD, NEW = "1" * 40, "2" * 40  # two commits: OLD holds seed 0, NEW (main) seed 1


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("identity")
    return {seed: build_tiny_colqwen2(root / f"seed{seed}", seed=seed) for seed in (0, 1)}


@pytest.fixture()
def hub(tmp_path: Path, weights: dict[int, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """An offline hub cache with HUB_ID at two commits, and a fresh dse cache (no model named yet)."""
    import huggingface_hub.constants

    cache = tmp_path / "hf"
    repo = cache / f"models--{HUB_ID.replace('/', '--')}"
    for commit, seed in ((OLD, 0), (NEW, 1)):
        shutil.copytree(weights[seed], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(NEW)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("DSE_CACHE_DIR", str(tmp_path / "dse-cache"))
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    return cache


@pytest.fixture()
def pages(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(3)
    files = []
    for i in range(2):
        files.append(tmp_path / f"page{i}.png")
        Image.fromarray(rng.integers(0, 255, (60, 80 + 20 * i, 3), dtype=np.uint8)).save(files[-1])
    return files


def _index(directory: Path, encoder: Any, pages: list[Path]) -> Path:
    with Retriever.create(directory, encoder) as r:
        assert len(r.add(pages, workers=0).added) == len(pages)
    return directory


def _manifest(index: Path) -> dict[str, Any]:
    return json.loads((index / "manifest.json").read_text())


def test_fingerprint_is_content_not_path_nor_sharding(tmp_path: Path, weights: dict[int, Path]) -> None:
    import colpali_engine.models as cm

    fp0, files0 = directory_fingerprint(weights[0])
    copy = shutil.copytree(weights[0], tmp_path / "elsewhere" / "copy")
    assert directory_fingerprint(copy) == (fp0, files0)  # another path, the same weights
    assert directory_fingerprint(weights[1])[0] != fp0  # same architecture, other values
    assert {"tokenizer.json", "tokenizer_config.json", "processor_config.json"} <= set(files0)
    # re-saved in shards with a weight index: the tensors, hence the fingerprint, are unchanged
    model = cm.ColQwen2.from_pretrained(str(weights[0]), device_map="cpu")
    sharded = tmp_path / "sharded"
    model.save_pretrained(sharded, max_shard_size="100KB")
    assert len(list(sharded.glob("*.safetensors"))) > 1 and list(sharded.glob("*.index.json"))
    assert directory_fingerprint(sharded)[0] == fp0
    # one value changed in one tensor: another fingerprint
    edited = shutil.copytree(weights[0], tmp_path / "edited")
    data = bytearray((edited / "model.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (edited / "model.safetensors").write_bytes(bytes(data))
    assert directory_fingerprint(edited)[0] != fp0


def test_manifest_records_the_identity(tmp_path: Path, weights: dict[int, Path], pages: list[Path]) -> None:
    index = _index(tmp_path / "idx", load_encoder("colqwen2", model=str(weights[0]), device="cpu"), pages)
    identity = _manifest(index)["encoder"]["identity"]
    assert identity["source"] == "local" and identity["hub_id"] is None and identity["revision"] is None
    assert identity["fingerprint"] == directory_fingerprint(weights[0])[0]
    assert identity["dtype"] == "float32" and identity["trust_remote_code"] is False
    assert set(identity["versions"]) >= {"transformers", "colpali-engine", "dse"}
    assert all(identity["versions"][k] for k in ("transformers", "colpali-engine", "dse"))
    tiny = _index(tmp_path / "tiny", load_encoder("tiny-colqwen2", device="cpu"), pages)
    assert _manifest(tiny)["encoder"]["identity"]["source"] == "builtin"


def test_same_weights_at_another_path_are_accepted(tmp_path: Path, weights: dict[int, Path], pages: list[Path]) -> None:
    index = _index(tmp_path / "idx", load_encoder("colqwen2", model=str(weights[0]), device="cpu"), pages)
    moved = shutil.copytree(weights[0], tmp_path / "moved")
    with Retriever.open(index, load_encoder("colqwen2", model=str(moved), device="cpu")) as r:
        assert len(r.search("revenue", k=2)) == 2
    with Retriever.open(index, model=str(moved), device="cpu") as r:  # lazily, at the new path
        assert len(r.search("revenue", k=2)) == 2 and r.encoder.model_id == str(moved)


def test_other_weights_under_the_same_name_are_refused(
    tmp_path: Path, weights: dict[int, Path], pages: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = shutil.copytree(weights[0], tmp_path / "ckpt")
    index = _index(tmp_path / "idx", load_encoder("colqwen2", model=str(ckpt), device="cpu"), pages)
    shutil.rmtree(ckpt)
    shutil.copytree(weights[1], ckpt)  # other weights, same directory name
    old, new = (directory_fingerprint(w)[0][:19] for w in (weights[0], weights[1]))
    with pytest.raises(EncoderMismatchError, match="weights") as info:
        Retriever.open(index, load_encoder("colqwen2", model=str(ckpt), device="cpu"))
    assert old in str(info.value) and new in str(info.value) and str(ckpt) in str(info.value)
    # lazily: refused before the model is built
    monkeypatch.setattr(registry, "load_encoder", lambda *a, **k: pytest.fail("the model was loaded"))
    with Retriever.open(index) as r:
        assert r.search("revenue", k=1, mode="text") == []  # text search needs no model
        with pytest.raises(EncoderMismatchError, match="no longer holds the weights"):
            r.search("revenue", k=1)


def test_a_missing_local_checkpoint_says_how_to_point_at_a_copy(
    tmp_path: Path, weights: dict[int, Path], pages: list[Path]
) -> None:
    ckpt = shutil.copytree(weights[0], tmp_path / "ckpt")
    index = _index(tmp_path / "idx", load_encoder("colqwen2", model=str(ckpt), device="cpu"), pages)
    shutil.rmtree(ckpt)
    with Retriever.open(index) as r, pytest.raises(ModelLoadError, match="model=DIR"):
        r.search("revenue", k=1)


def test_hub_checkpoint_identity_is_the_resolved_commit(hub: Path, weights: dict[int, Path]) -> None:
    latest = load_encoder("colqwen2", model=HUB_ID, device="cpu")
    identity = latest.describe()["identity"]
    assert identity["source"] == "hub" and identity["hub_id"] == HUB_ID
    assert latest.revision == identity["revision"] == NEW  # "main", resolved
    assert identity["fingerprint"] == directory_fingerprint(weights[1])[0]
    pinned = load_encoder("colqwen2", model=HUB_ID, device="cpu", revision=OLD)
    assert pinned.revision == OLD and pinned.describe()["identity"]["fingerprint"] == directory_fingerprint(weights[0])[0]
    assert HUB_ID in named_models()  # named by the user: recorded


def test_an_index_built_here_reopens_at_its_pinned_commit(
    hub: Path, tmp_path: Path, weights: dict[int, Path], pages: list[Path]
) -> None:
    built = load_encoder("colqwen2", model=HUB_ID, device="cpu", revision=OLD)
    index = _index(tmp_path / "idx", built, pages)
    assert _manifest(index)["encoder"]["revision"] == OLD
    with Retriever.open(index, device="cpu") as r:  # named here before: no confirmation; main moved on to NEW
        hits = r.search("revenue", k=2)
        assert r.encoder.revision == OLD and len(hits) == 2
        np.testing.assert_allclose(r.encoder.encode_queries(["revenue"])[0], built.encode_queries(["revenue"])[0])


def test_an_index_from_elsewhere_needs_confirmation(
    hub: Path, tmp_path: Path, weights: dict[int, Path], pages: list[Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    index = _index(tmp_path / "idx", load_encoder("colqwen2", model=HUB_ID, device="cpu", revision=OLD), pages)
    monkeypatch.setenv("DSE_CACHE_DIR", str(tmp_path / "another-machine"))  # nobody named the model here
    assert HUB_ID not in named_models()
    real = registry.load_encoder
    monkeypatch.setattr(registry, "load_encoder", lambda *a, **k: pytest.fail("the model was loaded"))
    with Retriever.open(index) as r:
        assert r.info()["pages"] == 2 and r.search("revenue", k=1, mode="text") == []
        with pytest.raises(ModelNotConfirmedError, match=f"model='{HUB_ID}'") as info:
            r.search("revenue", k=1)
    assert OLD in str(info.value) and ALLOW_ENV in str(info.value)
    code = main(["search", "--index", str(index), "--mode", "visual", "revenue"])
    assert code != 0 and "does not download or run a model" in capsys.readouterr().err
    monkeypatch.setattr(registry, "load_encoder", real)
    for how in ({"model": HUB_ID}, {"allow_index_model": True}):  # confirmed: loaded at the pinned commit
        with Retriever.open(index, device="cpu", **how) as r:
            assert len(r.search("revenue", k=2)) == 2 and r.encoder.revision == OLD
    monkeypatch.setenv("DSE_CACHE_DIR", str(tmp_path / "a-fourth-machine"))
    for flags in (["--allow-index-model"], ["--model", HUB_ID]):  # the same, from the command line
        assert main(["search", "--index", str(index), "--mode", "visual", "revenue", "--device", "cpu", *flags]) == 0
    capsys.readouterr()
    monkeypatch.setenv("DSE_CACHE_DIR", str(tmp_path / "a-third-machine"))
    monkeypatch.setenv(ALLOW_ENV, f"other/model, {HUB_ID}")
    assert main(["search", "--index", str(index), "--mode", "visual", "revenue", "--device", "cpu"]) == 0


def test_a_local_copy_of_the_hub_weights_is_the_same_model(
    hub: Path, tmp_path: Path, weights: dict[int, Path], pages: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    index = _index(tmp_path / "idx", load_encoder("colqwen2", model=HUB_ID, device="cpu", revision=OLD), pages)
    monkeypatch.setenv("DSE_CACHE_DIR", str(tmp_path / "air-gapped"))
    copy = shutil.copytree(weights[0], tmp_path / "downloaded")  # `huggingface-cli download --local-dir`
    with Retriever.open(index, model=str(copy), device="cpu") as r:
        assert len(r.search("revenue", k=2)) == 2
    with pytest.raises(EncoderMismatchError, match="weights"):
        Retriever.open(index, load_encoder("colqwen2", model=str(weights[1]), device="cpu"))


def test_remote_code_is_never_run_unasked(hub: Path, tmp_path: Path, pages: list[Path]) -> None:
    index = _index(tmp_path / "idx", load_encoder("colqwen2", model=HUB_ID, device="cpu"), pages)
    manifest = _manifest(index)
    manifest["encoder"]["identity"]["trust_remote_code"] = True
    (index / "manifest.json").write_text(json.dumps(manifest))
    assert HUB_ID in named_models()
    with Retriever.open(index, allow_index_model=True) as r, pytest.raises(ModelNotConfirmedError, match="its own Python code"):
        r.search("revenue", k=1)


def test_same_weights_rules() -> None:
    a = {"fingerprint": "sha256:a", "files": {"tokenizer.json": "1", "vocab.json": "2"}, "trust_remote_code": False}
    assert same_weights(a, {**a, "files": {"tokenizer.json": "1"}}) is True  # a snapshot holds fewer files
    assert same_weights(a, {**a, "files": {"tokenizer.json": "9"}}) is False  # another tokenizer
    assert same_weights(a, {**a, "fingerprint": "sha256:b"}) is False
    assert same_weights(a, {**a, "trust_remote_code": True}) is False
    hub = {"hub_id": "x/y", "revision": OLD}
    assert same_weights(hub, dict(hub)) is True and same_weights(hub, {**hub, "revision": NEW}) is False
    assert same_weights(hub, {"hub_id": "x/y", "revision": "main"}) is None  # a branch name proves nothing
    assert same_weights(None, a) is None  # manifests written before identities: the model name decides


@pytest.mark.parametrize("name", ["tiny-dse", "tiny-gme", "tiny-qwen3-vl-embedding"])
def test_single_vector_families_record_their_weights(name: str) -> None:
    identity = load_encoder(name, device="cpu").describe()["identity"]
    assert identity["source"] == "builtin" and identity["fingerprint"].startswith("sha256:")
    assert identity["trust_remote_code"] is False and identity["dtype"] == "float32"
