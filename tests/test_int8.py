"""dtype="int8": dynamic int8 linear layers on the CPU, vectors close to float32's, from Python and the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dse.cli.main import main  # noqa: E402
from dse.encoders import load_encoder  # noqa: E402
from dse.encoders.base import resolve_dtype  # noqa: E402
from dse.encoders.int8 import HalfLinear, quantize_int8  # noqa: E402

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


@pytest.mark.parametrize(("name", "tolerance"), [("HalfLinear", 0.01), ("Float16WeightLinear", 2e-3)])
def test_float_edge_layers_match_float32(name: str, tolerance: float) -> None:
    """The edge layers' bfloat16 (`HalfLinear`) and fbgemm float16-weight (`Float16WeightLinear`) linears."""
    import dse.encoders.int8 as int8

    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    x = torch.randn(2, 5, 64)  # (batch, tokens, in)
    got = getattr(int8, name)(linear)(x)  # (batch, tokens, out)
    assert got.dtype == torch.float32 and got.shape == (2, 5, 48)
    assert (got - linear(x)).norm() / linear(x).norm() < tolerance


def test_cpu_flags_decide_range_and_edge_dtype() -> None:
    from dse.encoders import int8

    flags = int8.cpu_flags()
    assert isinstance(flags, frozenset)
    if "ONEDNN_MAX_CPU_ISA" not in os.environ:
        assert int8.edge_dtype() == (torch.bfloat16 if flags & {"avx512_bf16", "amx_bf16", "bf16"} else torch.float32)
    if "avx512_vnni" not in flags:
        assert not int8.full_range_activations()


def _with_flags(monkeypatch: pytest.MonkeyPatch, *flags: str) -> None:
    """Make the int8 module see a CPU with these flags (the choice logic only: kernels are this CPU's)."""
    from dse.encoders import int8

    monkeypatch.setattr(int8, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(torch.backends.quantized, "engine", "x86")


def test_the_scheme_follows_what_fbgemm_will_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from dse.encoders.int8 import Int8Scheme, default_scheme

    monkeypatch.delenv("FBGEMM_ENABLE_INSTRUCTIONS", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    _with_flags(monkeypatch, "avx2", "avx512f", "avx512_vnni", "avx512_bf16")
    assert default_scheme() == Int8Scheme(8, "8", "bfloat16")  # VNNI: as before
    _with_flags(monkeypatch, "avx2", "avx512f", "avx512_vnni")
    assert default_scheme() == Int8Scheme(8, "8", "float32")
    monkeypatch.setenv("FBGEMM_ENABLE_INSTRUCTIONS", "avx2")  # fbgemm told to use its AVX2 kernel
    assert default_scheme() == Int8Scheme(8, "p", "float16")
    monkeypatch.delenv("FBGEMM_ENABLE_INSTRUCTIONS")
    for flags in (("avx2",), ("avx2", "avx_vnni"), ("avx2", "avx512f", "avx512bw")):  # fbgemm: no VNNI kernel
        _with_flags(monkeypatch, *flags)
        assert default_scheme() == Int8Scheme(8, "p", "float16"), flags
    _with_flags(monkeypatch, "avx2", "avx512_vnni", "avx512_bf16")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # oneDNN told not to use bfloat16 instructions
    assert default_scheme() == Int8Scheme(8, "8", "float32")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    _with_flags(monkeypatch, "asimd", "bf16")
    monkeypatch.setattr(torch.backends.quantized, "engine", "qnnpack")  # Arm: no fbgemm, as before
    assert default_scheme() == Int8Scheme(7, "8", "bfloat16")


def test_non_vnni_schemes_fit_int16() -> None:
    from dse.encoders.int8 import Int8Scheme

    # vpmaddubsw: u8 activation x s8 weight, two adjacent products summed into a saturating int16
    assert Int8Scheme(8, "8", "float32").worst_pair_sum() == 255 * 254 > 32767
    assert Int8Scheme(7, "8", "float32").worst_pair_sum() == 127 * 254 <= 32767
    assert Int8Scheme(8, "7", "float32").worst_pair_sum() == 255 * 126 <= 32767
    assert Int8Scheme(8, "p", "float16").worst_pair_sum() == 255 * 128 <= 32767
    assert [Int8Scheme(a, w, "int8").saturates_without_vnni() for a, w in ((8, "8"), (7, "8"), (8, "7"), (8, "p"))] \
        == [True, False, False, False]
    assert Int8Scheme.parse("a8wp-float16") == Int8Scheme(8, "p", "float16")
    assert Int8Scheme.parse("a7w8-float32").name == "a7w8-float32"
    for bad in ("a6w8-float32", "a8w7-fp8", "int8"):
        with pytest.raises(ValueError, match="int8 scheme"):
            Int8Scheme.parse(bad)


def _same_sign_pair_sums(q: torch.Tensor) -> torch.Tensor:
    """(out, in) int weights -> (out, in / 2): the larger of the positive and negative sums of each (2j, 2j+1)."""
    pairs = q.long().reshape(len(q), -1, 2)  # (out, in / 2, 2)
    return torch.maximum(pairs.clamp(min=0).sum(-1), (-pairs).clamp(min=0).sum(-1))  # (out, in / 2)


@pytest.mark.parametrize("weights", ["7", "p"])
def test_non_vnni_weights_keep_every_pair_within_int16(weights: str) -> None:
    from dse.encoders.int8 import PerTokenInt8Linear

    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 96)
    with torch.no_grad():
        linear.weight[:32].normal_()  # gaussian rows: pair-safe keeps most of 127 levels
        linear.weight[32:64, ::2] = linear.weight[32:64, 1::2] = 1.0  # every pair at amax: 64 levels
        linear.weight[64:, 1::2] = -linear.weight[64:, ::2]  # opposite-sign pairs: 127 levels
    layer = PerTokenInt8Linear(linear, weights=weights)
    qweight, _ = torch.ops.quantized.linear_unpack(layer._packed)
    q = qweight.int_repr()  # (out, in) int8
    assert 255 * _same_sign_pair_sums(q).max() <= 32767 and q.abs().max() <= 127
    assert not layer.reduce_range  # 8-bit activations with them
    amax = q.abs().amax(1).float()  # (out,) the levels each channel uses
    if weights == "7":
        assert amax.max() == 63
    else:
        assert amax[:32].mean() > 90 and amax[32:64].max() == 63 and amax[64:].min() == 127, amax
    x = torch.randn(4, 256)  # (tokens, in)
    assert (layer(x) - linear(x)).norm() / linear(x).norm() < 0.03
    assert ("7-bit" if weights == "7" else "pair-safe") + " weights, per-token 8-bit activations" in repr(layer)


# Run in a fresh process: fbgemm reads FBGEMM_ENABLE_INSTRUCTIONS once. Large positive activations
# and weights: pairs of u8 x s8 products far beyond int16. Prints each layer's error to float.
_SATURATION_CHILD = """
import json, torch
from dse.encoders.int8 import PerTokenInt8Linear, default_scheme, fbgemm_vnni
torch.manual_seed(0)
linear = torch.nn.Linear(512, 64, bias=False)
with torch.no_grad():
    linear.weight.copy_(torch.rand(64, 512) * 0.5 + 0.5)
x = torch.rand(8, 512) * 0.5 + 0.5
x[:, 0] = -1.0
want = linear(x)
scheme = default_scheme()
err = lambda layer: float((layer(x) - want).norm() / want.norm())
print(json.dumps({"vnni": fbgemm_vnni(), "scheme": scheme.name,
                  "default": err(PerTokenInt8Linear(linear, scheme.activation_bits == 8, scheme.weights)),
                  "a8w8": err(PerTokenInt8Linear(linear, True, "8")),
                  "a7w8": err(PerTokenInt8Linear(linear, False, "8")),
                  "a8w7": err(PerTokenInt8Linear(linear, True, "7"))}))
"""


def test_the_non_vnni_scheme_does_not_saturate_fbgemms_avx2_kernel() -> None:
    import json
    import subprocess
    import sys

    from dse.encoders.int8 import cpu_flags

    if torch.backends.quantized.engine not in ("x86", "fbgemm") or "avx2" not in cpu_flags():
        pytest.skip("fbgemm's AVX2 kernel runs on x86 CPUs with AVX2 only")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2", "PYTHONPATH": str(root)}
    run = subprocess.run([sys.executable, "-c", _SATURATION_CHILD], env=env, capture_output=True, text=True,
                         timeout=300, check=True)
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert not got["vnni"] and got["scheme"] == "a8wp-float16"
    assert got["a8w8"] > 0.2, got  # the AVX2 kernel runs (emulated on a VNNI CPU): 8 + 8 bits saturate
    assert max(got["default"], got["a7w8"], got["a8w7"]) < 0.01, got  # the non-VNNI schemes do not


def test_quantize_int8_takes_a_scheme() -> None:
    from dse.encoders.int8 import Float16WeightLinear, Int8Scheme, PerTokenInt8Linear

    class Stack(torch.nn.Module):  # 24 decoder layers: one at each end is an edge layer
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.Linear(32, 32)) for _ in range(24))

    for edge, kind in (("float16", Float16WeightLinear), ("float32", torch.nn.Linear), ("int8", PerTokenInt8Linear),
                       ("bfloat16", HalfLinear)):
        model = quantize_int8(Stack(), Int8Scheme(8, "p", edge))
        assert type(model.layers[0][0]) is kind and type(model.layers[23][0]) is kind, edge
        body = [model.layers[i][0] for i in range(1, 23)]
        assert all(type(m) is PerTokenInt8Linear and m.weights == "p" and not m.reduce_range for m in body)


def test_the_lm_head_is_left_alone() -> None:
    encoder = load_encoder("tiny-dse", device="cpu", dtype="int8")
    head = encoder.model.get_output_embeddings()
    assert type(head) is torch.nn.Linear  # never runs: retrieval reads hidden states, not logits
    assert any(type(m).__name__ == "PerTokenInt8Linear" for m in encoder.model.modules())
