"""Page-encoding throughput of full-size VLM encoders (random weights) over a batch-size sweep.

    python bench/encode_pages.py --device cuda                      # on a GPU machine: one short run
    python bench/encode_pages.py --device cuda --models dse-qwen2 --batch-sizes 1,4,16 --pages 64
    python bench/encode_pages.py --device cpu --size tiny --pages 4 --batch-sizes 1,2   # the test suite's run

For each model (bench/_vlm.py: the dse encoder on its tiny checkpoint's processor, its model
replaced by the full-size architecture with random weights, in bf16 on cuda, fp32 on the cpu),
each attention implementation (sdpa, and flash_attention_2 where flash-attn is installed) and
each batch size, it encodes `--pages` synthetic A4 page images (1190x1684 px, a 144-dpi render)
through `encoder.encode_pages` after one warm-up batch and reports pages per second and, on
cuda, the peak GPU memory. Page budgets are the encoders' defaults (dse-qwen2: the card's 2560
visual tokens; colqwen2: colpali-engine's 768; qwen3-vl-embedding: 1800), set at load. An
out-of-memory batch is recorded as such (the encoder's own halving is switched off here). The
last line is a JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from _vlm import MODELS, available, load_tiny, swap_model  # noqa: E402

# full-size page budgets (the tiny checkpoints' processors keep small ones)
FULL_BUDGETS = {"dse-qwen2": {"max_pixels": 2560 * 28 * 28}, "colqwen2": {"max_visual_tokens": 768},
                "qwen3-vl-embedding": {"max_pixels": 1800 * 32 * 32}, "colqwen3": {}}


def synthetic_pages(n: int, size: tuple[int, int], seed: int = 0) -> list[Any]:
    """`n` page-like images: white with dark text-line bands and a grey figure block."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    pages = []
    for _ in range(n):
        im = Image.new("RGB", size, "white")
        draw = ImageDraw.Draw(im)
        w, h = size
        y = int(h * 0.06)
        while y < h * 0.94:
            x0 = int(w * 0.08)
            x1 = int(w * (0.5 + 0.42 * rng.random()))
            draw.rectangle([x0, y, x1, y + int(h * 0.008)], fill=(30, 30, 30))
            y += int(h * (0.018 + 0.01 * rng.random()))
        fx, fy = int(w * 0.55), int(h * (0.2 + 0.4 * rng.random()))
        draw.rectangle([fx, fy, fx + int(w * 0.35), fy + int(h * 0.15)], fill=tuple(int(v) for v in rng.integers(60, 200, 3)))
        pages.append(im)
    return pages


def _attn_implementations(device: str) -> list[str]:
    impls = ["sdpa"]
    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        impls.append("flash_attention_2")
    return impls


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_model(spec: Any, args: argparse.Namespace, pages: list[Any]) -> dict[str, Any]:
    """Pages/s (and peak GPU memory) of one model per attention implementation and batch size."""
    import torch

    device = args.device
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    options: dict[str, Any] = {"device": device, "batch_size": 1}
    if args.size == "full":
        options.update(FULL_BUDGETS.get(spec.name, {}))
    encoder = load_tiny(spec, **options)
    result: dict[str, Any] = {"arch": spec.arch if args.size == "full" else f"tiny {spec.tiny}",
                              "dtype": str(dtype).replace("torch.", ""), "runs": {}}
    for attn in _attn_implementations(device):
        swap_model(encoder, None)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        try:
            swap_model(encoder, spec.build(encoder, args.size, dtype, attn, exact=False))
        except (ImportError, ValueError) as exc:  # an attention implementation this model cannot take
            result["runs"][attn] = {"error": str(exc)[:200]}
            continue
        per_batch: dict[str, Any] = {}
        for batch_size in args.batch_sizes:
            encoder.batch_size = batch_size
            try:
                encoder.encode_pages(pages[:batch_size])  # warm-up
                _sync(device)
                if device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                for start in range(0, len(pages), batch_size):
                    _encode_no_halving(encoder, pages[start:start + batch_size])
                _sync(device)
                elapsed = time.perf_counter() - t0
                entry = {"pages_per_s": round(len(pages) / elapsed, 2), "s": round(elapsed, 2)}
                if device.startswith("cuda"):
                    entry["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            except torch.OutOfMemoryError:
                entry = {"oom": True}
                torch.cuda.empty_cache()
            per_batch[str(batch_size)] = entry
            print(f"{spec.name:20s} {attn:18s} batch {batch_size:3d}: {entry}", file=sys.stderr)
        result["runs"][attn] = per_batch
    swap_model(encoder, None)
    return result


def _encode_no_halving(encoder: Any, pages: list[Any]) -> Any:
    """One batch through the encoder, an OOM raised rather than halved (the sweep measures each size)."""
    saved = encoder.batch_size
    encoder.batch_size = len(pages)
    try:
        import dse.encoders.base as base

        real = base._is_oom
        base._is_oom = lambda exc: False  # noqa: ARG005
        try:
            return encoder.encode_pages(pages)
        finally:
            base._is_oom = real
    finally:
        encoder.batch_size = saved


def main(argv: list[str] | None = None) -> int:
    """Run the sweep; the last stdout line is a JSON object."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--size", choices=("full", "tiny"), default="full")
    ap.add_argument("--models", default="dse-qwen2,colqwen2,qwen3-vl-embedding,colqwen3",
                    help=f"comma-separated, from {', '.join(MODELS)} (unregistered ones are skipped)")
    ap.add_argument("--batch-sizes", default="1,2,4,8,16,32", type=lambda s: [int(x) for x in s.split(",") if x])
    ap.add_argument("--pages", type=int, default=64, help="pages timed per batch size")
    ap.add_argument("--page-size", default="1190x1684", help="WxH of the synthetic pages (an A4 page at 144 dpi)")
    args = ap.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (use --device cpu, with --size tiny for a quick run)")
    width, height = (int(v) for v in args.page_size.lower().split("x"))
    pages = synthetic_pages(args.pages, (width, height))
    specs, skipped = available([m for m in args.models.split(",") if m])
    out: dict[str, Any] = {"device": args.device, "size": args.size, "pages": args.pages,
                           "page_size": [width, height], "batch_sizes": args.batch_sizes,
                           "gpu": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else None,
                           "torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
                           "models": {}, "skipped": skipped}
    for spec in specs:
        out["models"][spec.name] = bench_model(spec, args, pages)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
