"""dtype="int8": dynamic int8 linear layers on the CPU, vectors close to float32's, from Python and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dse.cli.main import main  # noqa: E402
from dse.encoders import load_encoder  # noqa: E402
from dse.encoders.base import resolve_dtype  # noqa: E402

QUERIES = ["which table shows revenue by segment", "a chart of accuracy against training steps"]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.mark.parametrize("name", ["tiny-dse", "tiny-colqwen2"])
def test_int8_queries_are_close_to_float32(name: str) -> None:
    full = load_encoder(name, device="cpu", dtype="float32")
    int8 = load_encoder(name, device="cpu", dtype="int8")
    quantized = [m for m in int8.model.modules() if type(m).__name__ == "Linear" and "quantized" in type(m).__module__]
    assert quantized, "no linear layer was quantised"
    a, b = full.encode_queries(QUERIES), int8.encode_queries(QUERIES)
    if full.kind == "single":
        cos = _cosines(np.asarray(a), np.asarray(b))  # (queries,)
    else:
        cos = np.concatenate([_cosines(x, y) for x, y in zip(a, b)])  # (all query tokens,)
    assert cos.min() > 0.9, cos  # random tiny weights; bench/query_encode.py measures full-size models
    assert full.describe()["options"] == int8.describe()["options"]  # a runtime choice: the index is the same


def test_int8_is_for_the_cpu() -> None:
    with pytest.raises(ValueError, match="CPU only"):
        resolve_dtype("int8", "cuda")
    with pytest.raises(ValueError, match="int8"):
        resolve_dtype("float8", "cpu")


def test_cli_searches_in_int8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = Path(__file__).resolve().parents[1] / "examples" / "corpus"
    index = str(tmp_path / "idx")
    assert main(["index", str(corpus), "--index", index, "--encoder", "tiny-dse", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["search", "--index", index, "--mode", "visual", "--dtype", "int8", "--device", "cpu",
                 "revenue by segment", "--json"]) == 0
    assert '"page_id"' in capsys.readouterr().out
