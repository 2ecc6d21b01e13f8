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
    quantized = [m for m in int8.model.modules() if type(m).__name__ == "PerTokenInt8Linear"]
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


def test_per_token_scales_survive_a_massive_activation() -> None:
    from dse.encoders.int8 import PerTokenInt8Linear

    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 512)
    x = torch.randn(3, 20, 256)  # (batch, tokens, in)
    x[:, 0] *= 100.0  # a first token orders of magnitude larger, as in real transformers
    want = linear(x)  # (batch, tokens, out)
    got = PerTokenInt8Linear(linear)(x)  # (batch, tokens, out)
    rest = slice(1, None)
    error = (got[:, rest] - want[:, rest]).norm() / want[:, rest].norm()
    assert got.shape == want.shape and got.dtype == x.dtype
    assert error < 0.03, error  # one scale for the batch (torch's dynamic quantisation) gives ~0.5
    dynamic = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(linear), {torch.nn.Linear},
                                                     dtype=torch.qint8)
    assert (dynamic(x)[:, rest] - want[:, rest]).norm() / want[:, rest].norm() > 5 * error


def test_edge_decoder_layers_stay_out_of_int8() -> None:
    from dse.encoders.int8 import edge_layer_count, kept_in_float

    assert [edge_layer_count(n) for n in (2, 24, 28, 36, 48)] == [0, 1, 1, 1, 2]
    names = [f"model.language_model.layers.{i}.mlp.down_proj" for i in range(28)]
    names += [f"model.visual.blocks.{i}.mlp.fc1" for i in range(32)] + ["lm_head"]
    kept = kept_in_float(names)
    assert kept == {f"model.language_model.layers.{i}.mlp.down_proj" for i in (0, 27)}


def test_per_channel_weight_scales_keep_small_output_channels() -> None:
    from dse.encoders.int8 import PerTokenInt8Linear

    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 64, bias=False)
    with torch.no_grad():
        linear.weight[0] *= 50.0  # one output channel much larger than the rest
    x = torch.randn(10, 256)  # (tokens, in)
    want = linear(x)[:, 1:]  # (tokens, out - 1): the small channels
    got = PerTokenInt8Linear(linear)(x)[:, 1:]  # (tokens, out - 1)
    assert (got - want).norm() / want.norm() < 0.03  # one scale for the tensor gives ~0.3


@pytest.mark.parametrize("full_range", [True, False])
def test_activation_range_is_explicit(full_range: bool) -> None:
    from dse.encoders.int8 import PerTokenInt8Linear, full_range_activations

    if full_range and not full_range_activations():
        # without VNNI fbgemm sums u8 x s8 pairs in 16 bits: all 8 bits saturate (15% error seen on an
        # AVX2-only EPYC), which is why the encoders take 7 bits there
        pytest.skip("this CPU has no VNNI: 8-bit activations saturate fbgemm's 16-bit sums")
    torch.manual_seed(0)
    linear = torch.nn.Linear(128, 32)
    layer = PerTokenInt8Linear(linear, full_range=full_range)
    assert layer.reduce_range is (not full_range)
    x = torch.randn(4, 128)  # (tokens, in)
    assert (layer(x) - linear(x)).norm() / linear(x).norm() < 0.03
    assert ("8-bit" if full_range else "7-bit") in repr(layer)


def test_half_linear_matches_in_bfloat16() -> None:
    from dse.encoders.int8 import HalfLinear

    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    x = torch.randn(2, 5, 64)  # (batch, tokens, in)
    got = HalfLinear(linear)(x)  # (batch, tokens, out)
    assert got.dtype == torch.float32 and got.shape == (2, 5, 48)
    assert (got - linear(x)).norm() / linear(x).norm() < 0.01


def test_cpu_flags_decide_range_and_edge_dtype() -> None:
    from dse.encoders import int8

    flags = int8.cpu_flags()
    assert isinstance(flags, frozenset)
    assert int8.edge_dtype() == (torch.bfloat16 if flags & {"avx512_bf16", "amx_bf16", "bf16"} else torch.float32)
    if not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        assert not int8.full_range_activations()


def test_the_lm_head_is_left_alone() -> None:
    encoder = load_encoder("tiny-dse", device="cpu", dtype="int8")
    head = encoder.model.get_output_embeddings()
    assert type(head) is torch.nn.Linear  # never runs: retrieval reads hidden states, not logits
    assert any(type(m).__name__ == "PerTokenInt8Linear" for m in encoder.model.modules())
