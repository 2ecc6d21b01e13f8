"""The external baselines of bench/late.py: fast-plaid and xtr-warp-rs, each in its own interpreter.

Both pin torch releases other than the project's, so each runs from its own virtualenv: an
adapter (late_fastplaid.py, late_xtrwarp.py) indexes the exact engine's float32 shards
(memory-mapped: the very vectors the oracle scores), times one query per call for each setting
of its sweep, and prints one JSON line (build_s, open_s, disk_bytes, max_rss_bytes, partitions,
sample_docs, and per setting p50_ms, p95_ms and every query's top-10 rows). This module runs it
and scores those rows against the oracle, tie-tolerant (late_exact.recall).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

import late_exact
from machine import load_average

HERE = Path(__file__).resolve().parent


class AdapterError(RuntimeError):
    """An adapter exited non-zero; the message ends with the last line it printed."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command-line flags of both baselines."""
    p.add_argument("--fast-plaid-python", help="interpreter with fast-plaid installed (omit: no fast-plaid)")
    p.add_argument("--fast-plaid-sweep", default="8:4096,4:1024,16:8192,32:16384", help="n_ivf_probe:n_full_scores")
    p.add_argument("--fast-plaid-partitions", type=int, default=0, help="fast-plaid centroids (0: its heuristic)")
    p.add_argument("--fast-plaid-sample-docs", type=int, default=0, help="documents its k-means samples (0: its heuristic)")
    p.add_argument("--xtr-warp-python", help="interpreter with xtr-warp-rs installed (omit: no xtr-warp)")
    p.add_argument("--xtr-warp-sweep", default="default,nprobe=8,nprobe=16,nprobe=32",
                   help="settings of XTRWarp.search: 'default' or '+'-joined name=value (nprobe, bound, t_prime, "
                   "max_candidates, centroid_score_threshold); unnamed knobs take xtr-warp's heuristic")
    p.add_argument("--xtr-warp-threads", type=int, default=0, help="xtr-warp search num_threads (0: all cores)")
    p.add_argument("--xtr-warp-partitions", type=int, default=0, help="xtr-warp centroids (0: its heuristic)")
    p.add_argument("--xtr-warp-sample-docs", type=int, default=0, help="documents its k-means samples (0: its heuristic)")


def run(python: str, script: str, argv: list[str], directory: Path, queries: list[np.ndarray], exact,  # noqa: ANN001
        oracle_s: np.ndarray) -> dict:
    """Run `script` in `python` on directory/exact's shards; its JSON, each setting with recall_at_10."""
    work = Path(tempfile.mkdtemp(prefix=f"late-{Path(script).stem}-", dir=directory))
    try:
        np.savez(work / "queries.npz", tokens=np.concatenate(queries),
                 offsets=np.concatenate([[0], np.cumsum([len(q) for q in queries])]))
        done = subprocess.run([python, str(HERE / script), str(work), str(directory / "exact"), *argv],
                              capture_output=True, text=True, timeout=6 * 3600)
        if done.returncode != 0:
            last = (done.stderr or done.stdout or "").strip().splitlines() or [""]
            raise AdapterError(f"{script} in {python}: exit status {done.returncode}: {last[-1][:300]}")
        out = json.loads(done.stdout.strip().splitlines()[-1])
        out["settings"] = [{**s, "recall_at_10": late_exact.recall(exact, queries, np.array(s.pop("rows")), oracle_s)}
                           for s in out["settings"]]
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def entry(out: dict, n: int, **extra: object) -> dict:
    """A baseline's entry in late.py's JSON: its first sweep setting's figures, then the sweep."""
    first = out["settings"][0]
    return {"pages_measured": n, "p50_ms": first["p50_ms"], "p95_ms": first["p95_ms"],
            "recall_at_10": first["recall_at_10"], "resident_bytes_per_page": None,
            "disk_bytes_per_page": out["disk_bytes"] / n, "build_s": out["build_s"], "open_s": out["open_s"],
            "max_rss_gib": out["max_rss_bytes"] / 2**30, **extra, "sweep": out["settings"],
            "load_average": load_average()}


def fast_plaid(args: argparse.Namespace, directory: Path, queries: list[np.ndarray], exact, oracle_s: np.ndarray,  # noqa: ANN001
               n: int) -> dict:
    """fast-plaid on the exact engine's shards, in its own interpreter."""
    out = run(args.fast_plaid_python, "late_fastplaid.py",
              [args.fast_plaid_sweep, str(args.fast_plaid_partitions), str(args.fast_plaid_sample_docs)],
              directory, queries, exact, oracle_s)
    return entry(out, n, partitions=out["partitions"] or "fast-plaid default",
                 sample_docs=out["sample_docs"] or "fast-plaid default")


def xtr_warp(args: argparse.Namespace, directory: Path, queries: list[np.ndarray], exact, oracle_s: np.ndarray,  # noqa: ANN001
             n: int) -> dict:
    """xtr-warp-rs on the exact engine's shards, in its own interpreter."""
    out = run(args.xtr_warp_python, "late_xtrwarp.py",
              [args.xtr_warp_sweep, str(args.xtr_warp_threads), str(args.xtr_warp_partitions),
               str(args.xtr_warp_sample_docs)], directory, queries, exact, oracle_s)
    return entry(out, n, partitions=out["partitions"], requested_partitions=out["requested_partitions"] or
                 "xtr-warp default", sample_docs=out["sample_docs"] or "xtr-warp default", nbits=out["nbits"],
                 search_threads=out["search_threads"])


def measure(args: argparse.Namespace, directory: Path, queries: list[np.ndarray], exact, oracle_s: np.ndarray,  # noqa: ANN001
            n: int) -> dict:
    """Every baseline asked for on the command line, printed as it finishes: {name: entry}."""
    asked = [("fast_plaid", "fast-plaid", fast_plaid, args.fast_plaid_python),
             ("xtr_warp", "xtr-warp", xtr_warp, args.xtr_warp_python)]
    baselines = {}
    for key, label, fn, python in asked:
        if not python:
            continue
        try:
            baselines[key] = fn(args, directory, queries, exact, oracle_s, n)
        except AdapterError as e:
            baselines[key] = {"error": str(e), "pages_measured": n}
        for s in baselines[key].get("sweep", []):
            knobs = f" {json.dumps(s['knobs'])}" if "knobs" in s else ""
            print(f"{label} {s['setting']}{knobs}: p50 {s['p50_ms']:.1f} ms "
                  f"p95 {s['p95_ms']:.1f} ms recall@10 {s['recall_at_10']:.3f}", flush=True)
        print(f"{label}: {json.dumps({k: v for k, v in baselines[key].items() if k != 'sweep'})}", flush=True)
    return baselines
