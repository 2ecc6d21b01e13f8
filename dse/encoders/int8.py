"""Int8 query encoding on the CPU: int8 linear layers with per-channel weights and per-token activations.

torch's dynamic quantisation (`quantize_dynamic`) quantises each layer's input with one scale for
the whole batch. A transformer's tokens differ in size by orders of magnitude (the first token of a
sequence often carries "massive activations"), so one scale crushes every other token to a few
levels: on Qwen2-VL-2B the query vector's cosine to float32 falls to 0.92. Here each token (row)
is divided by its own largest magnitude before the fbgemm int8 kernel and multiplied back after
it, which is exact algebra (a linear layer commutes with a per-row scale) and costs two
elementwise operations. Weights have one scale per output channel (the same kernel time as one
scale per tensor), and on CPUs with VNNI int8 dot products the activations use the full 8-bit
range (without VNNI, fbgemm's 16-bit accumulation needs `reduce_range`, 7 bits). The first and last
decoder layer, the most sensitive, run in bfloat16 where the CPU has native bfloat16 instructions
(a third of float32's time), in float32 elsewhere. The LM head never runs in a retrieval encoder
and is left alone. `bench/query_encode.py` measures speed and cosine at full size.

This module imports torch: load it only when int8 is asked for.
"""

from __future__ import annotations

import functools
import re
import warnings

import torch

_LAYER = re.compile(r"^(?P<stack>(?:.*\.)?layers)\.(?P<index>\d+)\.")
_VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86, x86 AMX, Arm (Features: bf16)


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


def full_range_activations() -> bool:
    """True when fbgemm may use all 8 bits of the activations (x86 VNNI: no 16-bit saturation)."""
    return torch.backends.quantized.engine in ("x86", "fbgemm") and bool(cpu_flags() & _VNNI_FLAGS)


def edge_dtype() -> torch.dtype:
    """The dtype of the edge decoder layers: bfloat16 on CPUs with native bfloat16, else float32."""
    return torch.bfloat16 if cpu_flags() & _BF16_FLAGS else torch.float32


class PerTokenInt8Linear(torch.nn.Module):
    """An `nn.Linear` with int8 weights (a scale per output channel), int8 activations (a scale per token).

    Args:
        linear: The float layer to replace (its weights are copied and quantised).
        full_range: Quantise activations to 8 bits (True) or 7 (`reduce_range`); None: what the
            CPU allows (`full_range_activations`).
    """

    def __init__(self, linear: torch.nn.Linear, full_range: bool | None = None) -> None:
        super().__init__()
        weight = linear.weight.detach().float()  # (out, in)
        scales = (weight.abs().amax(dim=1) / 127.0).clamp_min(1e-12).double()  # (out,)
        zeros = torch.zeros(len(scales), dtype=torch.long)  # (out,)
        with warnings.catch_warnings():  # quantized tensor creation is announced deprecated; it works
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_channel(weight, scales, zeros, 0, torch.qint8)  # (out, in) int8
            self._packed = torch.ops.quantized.linear_prepack(qweight, None)
        self.reduce_range = not (full_range_activations() if full_range is None else full_range)
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
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"per-channel int8 weights, per-token {bits}-bit activations")


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


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Replace the model's `nn.Linear` layers by `PerTokenInt8Linear`, in place.

    The edge decoder layers' linear layers become `HalfLinear` where the CPU has native bfloat16
    (else they stay float32); the LM head is left as it is (it never runs).

    Returns:
        The same model object.
    """
    skip = _never_run(model)
    linears = [name for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and id(module) not in skip]
    keep = kept_in_float(linears)
    half = edge_dtype()
    full_range = full_range_activations()
    for name in linears:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, child)
        if name not in keep:
            setattr(parent, child, PerTokenInt8Linear(linear, full_range))
        elif half != torch.float32:
            setattr(parent, child, HalfLinear(linear, half))
    return model
