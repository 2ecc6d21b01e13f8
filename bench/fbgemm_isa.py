"""Does `FBGEMM_ENABLE_INSTRUCTIONS=AVX2` really put fbgemm's int8 GEMM on its AVX2 (no VNNI) path?

    python bench/fbgemm_isa.py    # the CPU's ISA, then AVX2, AVX512 and AVX512_E1 (VNNI), each in a subprocess

fbgemm reads the variable once per process (`fbgemmInstructionSet` in fbgemm's src/Utils.cc:
AVX2, AVX512, AVX512_E1 = VNNI, AVX512_256, AVX512_E1_256; a forced ISA the CPU lacks is ignored).
Without VNNI its u8 x s8 kernel is `vpmaddubsw` (two adjacent products summed into a saturating
int16) then `vpmaddwd` with ones (into int32); with VNNI `vpdpbusd` sums into int32 directly.

Each subprocess runs `torch.ops.quantized.linear_dynamic` on one layer with large activations and
weights, 8-bit activations (`reduce_range=False`), and compares it with two exact integer models of
the same quantised operands: the true dot product, and the one whose adjacent pairs saturate to
int16. Then the same with 7-bit weights (|q| <= 63: 255 * 63 * 2 = 32130 < 32767) and with
dse's pair-safe weights (`pair_safe_levels`: same-sign pairs |q0| + |q1| <= 128, 255 * 128 =
32640), which no pair can saturate with 8-bit activations. The last stdout line is a JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ISAS = ("", "AVX2", "AVX512", "AVX512_E1")


def _reference(qa: Any, qw: Any, saturate: bool) -> Any:
    """The layer's output from the quantised operands in exact integers, pairs saturated or not."""
    a = qa.int_repr().long()  # (tokens, in) u8 values 0..255
    w = qw.int_repr().long()  # (out, in) s8 values
    prods = a[:, None, :] * w[None, :, :]  # (tokens, out, in)
    pairs = prods.reshape(*prods.shape[:2], -1, 2).sum(-1)  # (tokens, out, in / 2): vpmaddubsw's pairs
    if saturate:
        pairs = pairs.clamp(-32768, 32767)
    acc = pairs.sum(-1)  # (tokens, out) int32 accumulator
    acc = acc - qa.q_zero_point() * w.sum(1)[None, :]  # (tokens, out): the activation zero point
    w_scale = qw.q_per_channel_scales().double()  # (out,)
    return acc.double() * qa.q_scale() * w_scale[None, :]  # (tokens, out)


def probe(weights: str) -> dict[str, float]:
    """fbgemm's output against the exact and the saturating model, relative error of each.

    Args:
        weights: "8" (|q| <= 127), "7" (|q| <= 63) or "p" (dse's pair-safe levels).
    """
    import torch

    from dse.encoders.int8 import pair_safe_levels

    torch.manual_seed(0)
    x = torch.rand(8, 512) * 0.5 + 0.5  # (tokens, in): large positive activations, u8 ~191..255
    x[:, 0] = -1.0  # (tokens,): the range [-1, 1] of the per-token scaled rows, zero point ~128
    w = torch.rand(64, 512) * 0.5 + 0.5  # (out, in): large positive weights, s8 ~64..127
    levels = pair_safe_levels(w) if weights == "p" else torch.full((64,), 127.0 if weights == "8" else 63.0)  # (out,)
    scales = (w.abs().amax(1) / levels).double()  # (out,)
    qw = torch.quantize_per_channel(w, scales, torch.zeros(64, dtype=torch.long), 0, torch.qint8)  # (out, in)
    packed = torch.ops.quantized.linear_prepack(qw, None)
    got = torch.ops.quantized.linear_dynamic(x, packed, False).double()  # (tokens, out), 8-bit activations
    scale, zero = torch._choose_qparams_per_tensor(x, False)  # what linear_dynamic picks (0..255)
    qa = torch.quantize_per_tensor(x, scale, zero, torch.quint8)  # (tokens, in)
    out = {}
    for name, saturate in (("exact", False), ("saturating", True)):
        want = _reference(qa, qw, saturate)  # (tokens, out)
        out[f"err_vs_{name}"] = float((got - want).norm() / want.norm())
    exact = _reference(qa, qw, False)
    out["saturation_err"] = float((_reference(qa, qw, True) - exact).norm() / exact.norm())
    return out


def child() -> dict[str, Any]:
    """One process's measurements (the ISA is fixed by the environment it was started with)."""
    return {"w8": probe("8"), "w7": probe("7"), "wp": probe("p")}


def main() -> int:
    """Run `child` under each ISA setting; print a table and a JSON line."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child()))
        return 0
    results = {}
    for isa in ISAS:
        env = dict(os.environ)
        env.pop("FBGEMM_ENABLE_INSTRUCTIONS", None)
        if isa:
            env["FBGEMM_ENABLE_INSTRUCTIONS"] = isa
        run = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True, check=True)
        results[isa or "default"] = json.loads(run.stdout.strip().splitlines()[-1])
        for weights, r in results[isa or "default"].items():
            match = ("both (nothing saturates)" if r["saturation_err"] == 0 else
                     "exact" if r["err_vs_exact"] < r["err_vs_saturating"] else "saturating")
            print(f"{isa or 'default':10s} {weights}: vs exact {r['err_vs_exact']:.2e}  vs saturating "
                  f"{r['err_vs_saturating']:.2e}  -> {match}  (saturation would cost {r['saturation_err']:.3f})",
                  file=sys.stderr)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
