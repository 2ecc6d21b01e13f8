"""CPU query-encoding latency of full-size VLM encoders (random weights), one query at a time.

    python bench/query_encode.py                       # dse-qwen2, colqwen2, qwen3-vl-embedding at full size
    python bench/query_encode.py --models colqwen3     # Qwen3-VL-4B (needs ~20 GB free RAM for fp32)
    python bench/query_encode.py --size tiny --runs 3  # what the test suite runs

For each model (bench/_vlm.py: the dse encoder on its tiny checkpoint's processor, its model
replaced by the full-size architecture with seeded random weights) and each precision — fp32,
bf16, int8 (the encoders' dtype="int8", dse/encoders/int8.py: int8 linear layers with per-channel
weight and per-token activation scales, the edge decoder layers in bfloat16 on CPUs that have it) — it
times `encoder.encode_queries([q])` for a 12-word and a 40-word query (`--runs` timed calls after
`--warmup`), and compares each vector with fp32's: cosine (single-vector) or mean per-token cosine
(multi-vector). Encoders with a text-query prefix cache (dse-qwen2) are timed both ways,
alternating in the same run: `p50_ms` is what users get (the cache), `full_p50_ms` the full
forward, `cached_over_full` their ratio; every cosine is to the fp32 full forward. For realistic sequence lengths the tiny tokenizer is retrained (same special
tokens) so each word of the queries is one token, as in Qwen's vocabulary; `tokens` reports the
whole sequence the model reads, template included. The last line is a JSON object.
"""

from __future__ import annotations

import argparse
import gc
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

from dse.encoders.base import quantize_if_int8  # noqa: E402
from _vlm import MODELS, available, available_ram_gb, load_tiny, swap_model  # noqa: E402

QUERY_12 = "which table shows revenue and profit of each segment in the report"
QUERY_40 = (
    "find the page of the annual report where a table compares revenue, profit and cash flow for each "
    "year, next to a figure of model accuracy against training steps, and scores of dense and "
    "sparse methods on scanned tax forms"
)
PRECISIONS = ("fp32", "bf16", "int8")


def _default_scheme() -> str:
    from dse.encoders.int8 import default_scheme

    return default_scheme().name


def _isa_env() -> dict[str, str]:
    """The instruction-set variables that change which kernels run (set to emulate an AVX2-only CPU)."""
    names = ("FBGEMM_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
    return {name: os.environ[name] for name in names if name in os.environ}


def _words(text: str) -> int:
    return len(text.split())


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _tokens(encoder: Any, query: str) -> int:
    """Sequence length the model reads for one query."""
    if hasattr(encoder, "query_message"):  # dse-qwen2
        return int(encoder.prepare_inputs([encoder.query_message(query)])["input_ids"].shape[1])
    if hasattr(encoder, "query_conversation"):  # qwen3-vl-embedding
        return int(encoder.prepare_inputs([encoder.query_conversation(query)])["input_ids"].shape[1])
    return int(encoder._process_queries([query])["input_ids"].shape[1])  # colpali family


def _cosine(a: Any, b: Any) -> float:
    """Cosine of two vectors, or the mean per-token cosine of two (tokens, dim) matrices."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim == 1:
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    dots = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(dots.mean())


def _one(encoder: Any, query: str) -> Any:
    out = encoder.encode_queries([query])
    return out[0]


def _timed(encoder: Any, query: str, warmup: int, runs: int, prefix: Any, cached: bool) -> tuple[list[float], Any]:
    """Milliseconds of `runs` single-query encodings (after `warmup`), with or without the prefix cache."""
    encoder._prefix = prefix if cached else None
    try:
        for _ in range(warmup):
            _one(encoder, query)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            vec = _one(encoder, query)
            times.append((time.perf_counter() - t) * 1000)
    finally:
        if prefix is not None:
            encoder._prefix = prefix
    return times, vec


def bench_model(spec: Any, size: str, runs: int, warmup: int, precisions: tuple[str, ...]) -> dict[str, Any]:
    """Timings and cosines of one model over the precisions."""
    import torch

    corpus = [QUERY_12, QUERY_40] if size == "full" else None  # the tiny model has a 400-token vocabulary
    encoder = load_tiny(spec, corpus=corpus, device="cpu", batch_size=1)
    queries = {"q12": QUERY_12, "q40": QUERY_40}
    result: dict[str, Any] = {"arch": spec.arch if size == "full" else f"tiny {spec.tiny}",
                              "tokens": {k: _tokens(encoder, q) for k, q in queries.items()},
                              "words": {k: _words(q) for k, q in queries.items()}, "precisions": {}}
    reference: dict[str, Any] = {}
    for precision in precisions:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        swap_model(encoder, None)
        model = None  # the previous precision's weights freed before these are built (4B: 18 GB in fp32)
        gc.collect()
        t0 = time.perf_counter()
        model = spec.build(encoder, size, dtype, "sdpa")
        swap_model(encoder, model)
        if precision.startswith("int8"):  # what dtype="int8" does: the prefix cache in float, then int8
            if getattr(encoder, "_prefix", None) is not None:
                encoder._prefix.state()
            if ":" in precision:  # int8:<scheme> from --int8-schemes
                from dse.encoders.int8 import Int8Scheme, quantize_int8

                model = quantize_int8(model, Int8Scheme.parse(precision.partition(":")[2]))  # in place
            else:
                model = quantize_if_int8(model, "int8")  # in place: this CPU's default scheme
        build_s = time.perf_counter() - t0
        entry: dict[str, Any] = {"build_s": round(build_s, 1)}
        prefix = getattr(encoder, "_prefix", None)  # the text-query prefix cache (Qwen2-VL recipes)
        for key, query in queries.items():
            full_times, vec_full = _timed(encoder, query, warmup, runs, prefix, cached=False)
            if precision == "fp32":
                reference[key] = vec_full  # the full forward in float32: the truth
            entry[key] = {"p50_ms": round(_percentile(full_times, 50), 1),
                          "p95_ms": round(_percentile(full_times, 95), 1),
                          "cos_fp32": round(_cosine(vec_full, reference[key]), 5)}
            if prefix is not None:  # the same query through the cached prefix, alternating runs
                times, vec = _timed(encoder, query, warmup, runs, prefix, cached=True)
                entry[key].update({
                    "full_p50_ms": entry[key]["p50_ms"], "full_p95_ms": entry[key]["p95_ms"],
                    "full_cos_fp32": entry[key]["cos_fp32"],
                    "p50_ms": round(_percentile(times, 50), 1), "p95_ms": round(_percentile(times, 95), 1),
                    "cos_fp32": round(_cosine(vec, reference[key]), 5),
                    "cached_over_full": round(_percentile(times, 50) / _percentile(full_times, 50), 3),
                })
        result["precisions"][precision] = entry
        full = f"  (full forward q12 p50 {entry['q12']['full_p50_ms']:.1f} ms)" if prefix is not None else ""
        print(f"{spec.name:20s} {precision:5s} q12 p50 {entry['q12']['p50_ms']:8.1f} ms  p95 {entry['q12']['p95_ms']:8.1f}"
              f"  q40 p50 {entry['q40']['p50_ms']:8.1f} ms  cos {entry['q12']['cos_fp32']}{full}", file=sys.stderr)
    swap_model(encoder, None)
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the bench; the last stdout line is a JSON object."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="dse-qwen2,colqwen2,qwen3-vl-embedding",
                    help=f"comma-separated, from {', '.join(MODELS)}")
    ap.add_argument("--size", choices=("full", "tiny"), default="full")
    ap.add_argument("--precisions", default=",".join(PRECISIONS))
    ap.add_argument("--int8-schemes", default="",
                    help="comma-separated int8 schemes to measure instead of this CPU's default, e.g. "
                         "a7w8-float32,a8w7-float16 (dse/encoders/int8.py Int8Scheme)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice, one per core); on a loaded machine 1 beats 2")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = tuple(p for p in args.precisions.split(",") if p)
    if precisions[0] != "fp32" or not set(precisions) <= set(PRECISIONS):
        raise SystemExit(f"--precisions: fp32 first (the cosine reference), then any of {PRECISIONS}")
    if args.int8_schemes:
        schemes = [f"int8:{name}" for name in args.int8_schemes.split(",") if name]
        precisions = tuple(x for p in precisions for x in (schemes if p == "int8" else [p]))
    specs, skipped = available([m for m in args.models.split(",") if m])
    out: dict[str, Any] = {"size": args.size, "runs": args.runs, "threads": torch.get_num_threads(),
                           "cpus": os.cpu_count(), "load_avg_start": list(os.getloadavg()),
                           "torch": torch.__version__, "python": platform.python_version(),
                           "int8_default": _default_scheme(), "isa_env": _isa_env(),
                           "queries": {"q12": QUERY_12, "q40": QUERY_40}, "models": {}, "skipped": skipped}
    for spec in specs:
        need_gb = spec.params_b * 4 * 1.15
        if args.size == "full" and available_ram_gb() < need_gb:
            out["skipped"][spec.name] = f"needs ~{need_gb:.0f} GiB free for fp32, {available_ram_gb():.1f} available"
            continue
        out["models"][spec.name] = bench_model(spec, args.size, args.runs, args.warmup, precisions)
    out["load_avg_end"] = list(os.getloadavg())
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
