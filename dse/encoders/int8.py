"""Int8 query encoding on the CPU: int8 linear layers with per-channel weights and per-token activations.

torch's dynamic quantisation (`quantize_dynamic`) quantises each layer's input with one scale for
the whole batch. A transformer's tokens differ in size by orders of magnitude (the first token of a
sequence often carries "massive activations"), so one scale crushes every other token to a few
levels: on Qwen2-VL-2B the query vector's cosine to float32 falls to 0.92. Here each token (row)
is divided by its own largest magnitude before the fbgemm int8 kernel and multiplied back after
it, which is exact algebra (a linear layer commutes with a per-row scale) and costs two
elementwise operations. Weights have one scale per output channel (the same kernel time as one
scale per tensor). The first and last decoder layer, the most sensitive, stay out of int8. The LM
head never runs in a retrieval encoder and is left alone.

The CPU decides the rest (`default_scheme`, `Int8Scheme`). With AVX-512 VNNI (`vpdpbusd`: u8 x s8
products summed in int32) activations and weights use all 8 bits, and the edge layers run in
bfloat16 where the CPU has native bfloat16 (a third of float32's time), else in float32. Without
it (AVX2; AVX-512 without VNNI; client CPUs with only the 256-bit AVX-VNNI, for which fbgemm has
no kernel) fbgemm's `vpmaddubsw` sums each pair of adjacent products into a saturating int16, so
8-bit activations and 8-bit weights can overflow (255 * 127 * 2 > 32767). There activations keep
8 bits and the weights are pair-safe (`pair_safe_levels`: per output channel the most levels, up
to 127, at which no two adjacent same-sign weights sum past 128; 255 * 128 <= 32767), which cannot
saturate and loses less than 7-bit activations or 7-bit weights; the edge layers take fbgemm's
float16 weights (half of float32's bytes, float32 arithmetic; bfloat16 is emulated there, slower
than float32). `FBGEMM_ENABLE_INSTRUCTIONS` and `ONEDNN_MAX_CPU_ISA`, which cap those libraries'
instruction sets, are honoured: `FBGEMM_ENABLE_INSTRUCTIONS=AVX2` runs the non-VNNI kernels on a
VNNI CPU (`bench/fbgemm_isa.py` shows it takes effect). `bench/query_encode.py` measures speed and
cosine at full size (`--int8-schemes` compares schemes).

This module imports torch: load it only when int8 is asked for.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from dataclasses import dataclass

import torch

_LAYER = re.compile(r"^(?P<stack>(?:.*\.)?layers)\.(?P<index>\d+)\.")
# fbgemm's int8 kernel uses VNNI only with AVX-512 VNNI (AMX CPUs have it too); the 256-bit
# AVX-VNNI of client CPUs (`avx_vnni` alone) gets its AVX2 kernel (fbgemm src/Utils.cc)
_VNNI_FLAGS = frozenset({"avx512_vnni"})
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86, x86 AMX, Arm (Features: bf16)
_FBGEMM_NO_VNNI = frozenset({"AVX2", "AVX512", "AVX512_256"})  # FBGEMM_ENABLE_INSTRUCTIONS values
_ONEDNN_NO_BF16 = frozenset({"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"})
_INT16_MAX = 32767
_PAIR_LIMIT = 128  # the largest |q0| + |q1| of one sign that pair-safe weights allow: 255 * 128 <= 32767
WEIGHTS = ("8", "7", "p")
EDGES = ("bfloat16", "float16", "float32", "int8")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def fbgemm_vnni() -> bool:
    """True when fbgemm's int8 kernel sums u8 x s8 products in int32 (AVX-512 VNNI, not forced off).

    Without it (`vpmaddubsw`) each pair of adjacent products is summed into a saturating int16.
    `FBGEMM_ENABLE_INSTRUCTIONS=AVX2` (or AVX512) forces that path on a VNNI CPU.
    """
    forced = os.environ.get("FBGEMM_ENABLE_INSTRUCTIONS", "").strip().upper()
    return (torch.backends.quantized.engine in ("x86", "fbgemm") and bool(cpu_flags() & _VNNI_FLAGS)
            and forced not in _FBGEMM_NO_VNNI)


def full_range_activations() -> bool:
    """True when fbgemm may use all 8 bits of both activations and weights (VNNI: no 16-bit saturation)."""
    return fbgemm_vnni()


def native_bf16() -> bool:
    """True when bfloat16 matrix products run on bfloat16 instructions (not capped by ONEDNN_MAX_CPU_ISA)."""
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper() in _ONEDNN_NO_BF16
    return bool(cpu_flags() & _BF16_FLAGS) and not capped


def edge_dtype() -> torch.dtype:
    """The dtype of the edge decoder layers on VNNI CPUs: bfloat16 with native bfloat16, else float32."""
    return torch.bfloat16 if native_bf16() else torch.float32


@dataclass(frozen=True)
class Int8Scheme:
    """How `quantize_int8` quantises.

    Attributes:
        activation_bits: 8, or 7 (fbgemm's `reduce_range`: u8 values 0..127).
        weights: "8" (|q| <= 127), "7" (|q| <= 63) or "p" (pair-safe: per output channel the
            most levels, at most 127, for which no two adjacent input weights of one sign sum
            past 128, `pair_safe_levels`).
        edge: The first and last decoder layers' precision: "bfloat16", "float16" (fbgemm's fp16
            weights, float32 arithmetic), "float32" or "int8" (as the other layers).
    """

    activation_bits: int
    weights: str
    edge: str

    def __post_init__(self) -> None:
        if self.activation_bits not in (7, 8) or self.weights not in WEIGHTS or self.edge not in EDGES:
            raise ValueError(f"int8 scheme {self}: activation_bits 7 or 8, weights one of {WEIGHTS}, "
                             f"edge one of {EDGES}")

    @property
    def name(self) -> str:
        """Short form, e.g. "a8wp-float16" (what `parse` reads)."""
        return f"a{self.activation_bits}w{self.weights}-{self.edge}"

    @classmethod
    def parse(cls, text: str) -> Int8Scheme:
        """Read "a8wp-float16"-style names."""
        match = re.fullmatch(r"a([78])w([78p])-(\w+)", text.strip())
        if not match:
            raise ValueError(f"int8 scheme {text!r}: write a<7|8>w<7|8|p>-<edge>, e.g. a8wp-float16 "
                             f"(edge: {EDGES})")
        return cls(int(match[1]), match[2], match[3])

    def worst_pair_sum(self) -> int:
        """The largest |a0*q0 + a1*q1| the pre-VNNI kernel can form: u8 activations a, s8 weights q."""
        pair = {"8": 2 * 127, "7": 2 * 63, "p": _PAIR_LIMIT}[self.weights]  # largest |q0| + |q1| of one sign
        return (2 ** self.activation_bits - 1) * pair

    def saturates_without_vnni(self) -> bool:
        """True when a pair sum can leave int16 (fbgemm's AVX2 / AVX-512 kernel without VNNI)."""
        return self.worst_pair_sum() > _INT16_MAX


def default_scheme() -> Int8Scheme:
    """The scheme for this CPU: all 8 bits with VNNI; without it 8-bit activations, pair-safe weights.

    Without VNNI, fbgemm sums each pair of adjacent u8 x s8 products into a saturating int16:
    pair-safe weights keep every such sum within it (255 * 128 = 32640) at 7-8 bits a channel, and
    lose less than 7-bit activations. The edge layers take fbgemm's float16 weights (half of
    float32's bytes; bfloat16 there is emulated, slower than float32). `bench/query_encode.py
    --int8-schemes` measures the alternatives. Engines other than fbgemm (qnnpack on Arm) keep the
    scheme from before: 7-bit activations, edge layers in bfloat16 or float32.
    """
    if fbgemm_vnni():
        return Int8Scheme(8, "8", "bfloat16" if native_bf16() else "float32")
    if torch.backends.quantized.engine in ("x86", "fbgemm"):
        return Int8Scheme(8, "p", "float16")
    return Int8Scheme(7, "8", "bfloat16" if native_bf16() else "float32")  # other engines (qnnpack): as before


def pair_safe_levels(weight: torch.Tensor) -> torch.Tensor:
    """Per output channel, the most quantisation levels (63..127) whose adjacent same-sign pairs fit.

    fbgemm pairs input channels (2j, 2j+1). With q = round(w * L / amax), a same-sign pair has
    |q0| + |q1| <= L * (|w0| + |w1|) / amax + 1, so L = floor(127 / r), r the channel's largest
    same-sign pair sum over its amax (1 <= r <= 2), keeps it <= 128, and 255 * 128 <= 32767.

    Args:
        weight: (out, in) float weights.

    Returns:
        (out,) float levels.
    """
    w = torch.nn.functional.pad(weight.float(), (0, weight.shape[1] % 2))  # (out, in + in % 2)
    pairs = w.reshape(len(w), -1, 2)  # (out, in / 2, 2)
    same_sign = torch.maximum(pairs.clamp(min=0).sum(-1), (-pairs).clamp(min=0).sum(-1))  # (out, in / 2)
    ratio = same_sign.amax(1) / w.abs().amax(1).clamp_min(1e-30)  # (out,) in [1, 2]
    return torch.floor(127.0 / ratio.clamp(min=1.0)).clamp(63, 127)  # (out,)


class PerTokenInt8Linear(torch.nn.Module):
    """An `nn.Linear` with int8 weights (a scale per output channel), int8 activations (a scale per token).

    Args:
        linear: The float layer to replace (its weights are copied and quantised).
        full_range: Quantise activations to 8 bits (True) or 7 (`reduce_range`); None: 8 bits
            where the CPU allows them with these weights (VNNI, or weights "7" or "p").
        weights: "8" (|q| <= 127), "7" (|q| <= 63) or "p" (`pair_safe_levels`); "7" and "p"
            cannot saturate fbgemm's int16 pair sums with 8-bit activations on CPUs without VNNI.
    """

    def __init__(self, linear: torch.nn.Linear, full_range: bool | None = None, weights: str = "8") -> None:
        super().__init__()
        if weights not in WEIGHTS:
            raise ValueError(f"weights={weights!r}: use '8', or '7' / 'p' for CPUs without VNNI")
        weight = linear.weight.detach().float()  # (out, in)
        if weights == "p":
            levels = pair_safe_levels(weight)  # (out,)
        else:
            levels = torch.full((len(weight),), 127.0 if weights == "8" else 63.0)  # (out,)
        scales = (weight.abs().amax(dim=1) / levels).clamp_min(1e-12).double()  # (out,)
        zeros = torch.zeros(len(scales), dtype=torch.long)  # (out,)
        with warnings.catch_warnings():  # quantized tensor creation is announced deprecated; it works
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_channel(weight, scales, zeros, 0, torch.qint8)  # (out, in) int8
            self._packed = torch.ops.quantized.linear_prepack(qweight, None)
        if full_range is None:
            full_range = weights != "8" or full_range_activations()
        self.reduce_range = not full_range
        self.weights = weights
        self.in_features, self.out_features = linear.in_features, linear.out_features
        bias = None if linear.bias is None else linear.bias.detach().float().clone()  # (out,)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer; any leading shape, float in, the input's dtype out."""
        rows = x.reshape(-1, self.in_features).float()  # (tokens, in)
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)  # (tokens, 1)
        out = torch.ops.quantized.linear_dynamic(rows / scale, self._packed, self.reduce_range)  # (tokens, out)
        out = out * scale  # (tokens, out)
        if self.bias is not None:
            out = out + self.bias  # (tokens, out)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)  # (..., out)

    def extra_repr(self) -> str:
        bits = 7 if self.reduce_range else 8
        kind = {"8": "8-bit", "7": "7-bit", "p": "pair-safe"}[self.weights]
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"per-channel {kind} weights, per-token {bits}-bit activations")


class Float16WeightLinear(torch.nn.Module):
    """An `nn.Linear` with float16 weights through fbgemm (`linear_dynamic_fp16`): float32 in and out.

    Half of float32's weight bytes with float32 arithmetic (AVX2 + F16C), for CPUs without bfloat16.

    Args:
        linear: The float layer to replace.
    """

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        bias = None if linear.bias is None else linear.bias.detach().float()  # (out,)
        self._packed = torch.ops.quantized.linear_prepack_fp16(linear.weight.detach().float(), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer; any leading shape, the input's dtype out."""
        rows = x.reshape(-1, self.in_features).float()  # (tokens, in)
        out = torch.ops.quantized.linear_dynamic_fp16(rows, self._packed)  # (tokens, out)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)  # (..., out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, float16 weights (fbgemm)"


class HalfLinear(torch.nn.Module):
    """An `nn.Linear` computed in bfloat16 (weights stored in bfloat16), the input's dtype out.

    Args:
        linear: The float layer to replace.
    """

    def __init__(self, linear: torch.nn.Linear, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", linear.weight.detach().to(dtype).clone())  # (out, in)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(dtype).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer; any leading shape."""
        out = torch.nn.functional.linear(x.to(self.weight.dtype), self.weight, self.bias)  # (..., out)
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.weight.dtype}"


def edge_layer_count(layers: int) -> int:
    """How many decoder layers at each end of a stack of `layers` stay out of int8 (1 of Qwen2's 28)."""
    return layers // 24


def kept_in_float(names: list[str]) -> set[str]:
    """The linear layers (by module name) inside the first or last decoder layers of each stack."""
    stacks: dict[str, int] = {}
    for name in names:
        match = _LAYER.match(name)
        if match:
            stacks[match["stack"]] = max(stacks.get(match["stack"], -1), int(match["index"]))
    kept = set()
    for name in names:
        match = _LAYER.match(name)
        if match:
            last = stacks[match["stack"]]
            edge = edge_layer_count(last + 1)
            index = int(match["index"])
            if index < edge or index > last - edge:
                kept.add(name)
    return kept


def _never_run(model: torch.nn.Module) -> set[int]:
    """Ids of the modules a retrieval encoder never calls: the LM head (logits over the vocabulary)."""
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    return {id(head)} if isinstance(head, torch.nn.Module) else set()


def quantize_int8(model: torch.nn.Module, scheme: Int8Scheme | None = None) -> torch.nn.Module:
    """Replace the model's `nn.Linear` layers by `PerTokenInt8Linear`, in place.

    The edge decoder layers' linear layers take `scheme.edge` (float32: left as they are); the LM
    head is left as it is (it never runs).

    Args:
        model: The float32 model.
        scheme: What to quantise to; None: `default_scheme()` (this CPU's).

    Returns:
        The same model object.
    """
    scheme = scheme or default_scheme()
    if scheme.saturates_without_vnni() and not fbgemm_vnni():
        warnings.warn(f"int8 scheme {scheme.name} can saturate fbgemm's int16 pair sums on this CPU (no AVX-512 "
                      f"VNNI): use {default_scheme().name} (the default here)", RuntimeWarning, stacklevel=2)
    skip = _never_run(model)
    linears = [name for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and id(module) not in skip]
    keep = set() if scheme.edge == "int8" else kept_in_float(linears)
    full_range = scheme.activation_bits == 8
    for name in linears:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, child)
        if name not in keep:
            setattr(parent, child, PerTokenInt8Linear(linear, full_range, scheme.weights))
        elif scheme.edge == "bfloat16":
            setattr(parent, child, HalfLinear(linear, torch.bfloat16))
        elif scheme.edge == "float16":
            setattr(parent, child, Float16WeightLinear(linear))
    return model
