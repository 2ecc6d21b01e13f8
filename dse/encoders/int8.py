"""Int8 query encoding on the CPU: dynamic int8 linear layers with per-token activation scales.

torch's dynamic quantisation (`quantize_dynamic`) quantises each layer's input with one scale for
the whole batch. A transformer's tokens differ in size by orders of magnitude (the first token of a
sequence often carries "massive activations"), so one scale crushes every other token to a few
levels: on Qwen2-VL-2B the query vector's cosine to float32 falls to 0.92. Here each token (row)
is divided by its own largest magnitude before the same fbgemm int8 kernel and multiplied back
after it, which is exact algebra (a linear layer commutes with a per-row scale) and costs two
elementwise operations. The first and last `edge_layers` decoder layers, the most sensitive,
stay in float. `bench/query_encode.py` measures speed and cosine at full size.

This module imports torch: load it only when int8 is asked for.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import torch

_LAYER = re.compile(r"^(?P<stack>(?:.*\.)?layers)\.(?P<index>\d+)\.")


class PerTokenInt8Linear(torch.nn.Module):
    """An `nn.Linear` with int8 weights (one scale) and int8 activations (one scale per token).

    Args:
        linear: The float layer to replace (its weights are copied and quantised).
    """

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()  # (out, in)
        scale = max(float(weight.abs().max()) / 127.0, 1e-12)
        with warnings.catch_warnings():  # quantized tensor creation is announced deprecated; it works
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_tensor(weight, scale, 0, torch.qint8)  # (out, in) int8
            self._packed = torch.ops.quantized.linear_prepack(qweight, None)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        bias = None if linear.bias is None else linear.bias.detach().float().clone()  # (out,)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer; any leading shape, float in, the input's dtype out."""
        rows = x.reshape(-1, self.in_features).float()  # (tokens, in)
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)  # (tokens, 1)
        out = torch.ops.quantized.linear_dynamic(rows / scale, self._packed, True)  # (tokens, out)
        out = out * scale  # (tokens, out)
        if self.bias is not None:
            out = out + self.bias  # (tokens, out)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)  # (..., out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, per-token int8"


def edge_layer_count(layers: int) -> int:
    """How many decoder layers at each end of a stack of `layers` stay in float (2 of Qwen2's 28)."""
    return layers // 12


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


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Replace the model's `nn.Linear` layers by `PerTokenInt8Linear`, in place, edge layers kept.

    Returns:
        The same model object.
    """
    linears = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    keep = kept_in_float(linears)
    for name in linears:
        if name in keep:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, PerTokenInt8Linear(getattr(parent, child)))
    return model
