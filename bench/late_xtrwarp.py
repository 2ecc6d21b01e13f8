"""Run xtr-warp-rs on the bench's corpus; print one JSON line (run by late.py in xtr-warp's own venv).

    python late_xtrwarp.py WORK EXACT_DIR SWEEP [THREADS PARTITIONS SAMPLE_DOCS]

EXACT_DIR holds the exact engine's float32 shards (`shard-NNNNNN.npy` tokens and
`shard-NNNNNN.offsets.npy`). WORK/source gets a symlink to each shard's tokens and the
`.doclens.npy` sidecar (page lengths, from the offsets) that xtr-warp's disk source reads, so it
streams the very vectors the oracle scores, at full size, without another copy. The index is
built in WORK/index on the CPU with xtr-warp's own defaults (nbits 4, 4 k-means iterations,
2**floor(log2(16 sqrt(tokens))) centroids trained on up to 16 sqrt(120 docs) documents);
PARTITIONS / SAMPLE_DOCS override its k-means size (0: its heuristics). WORK/queries.npz holds
the queries.

SWEEP is comma-separated settings, each "default" or "+"-joined name=value pairs of
`XTRWarp.search`'s knobs (nprobe, bound, t_prime, max_candidates, centroid_score_threshold),
e.g. "default,nprobe=16,nprobe=32+bound=2048"; a knob not named takes xtr-warp's heuristic
(`xtr_warp.hyperparams.optimize`), and the effective values are reported per setting. THREADS is
`search(num_threads=)` (0: the machine's cores, as torch's threads for the build).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

try:
    import torch
    from xtr_warp import XTRWarp
except ImportError as e:
    sys.exit(f"late_xtrwarp.py needs xtr-warp-rs and its torch in this interpreter ({sys.executable}): "
             f"pip install xtr-warp-rs into a virtualenv of its own (docs/indexes.md); {e}")

KNOBS = {"nprobe": int, "bound": int, "t_prime": int, "max_candidates": int, "centroid_score_threshold": float}
HEURISTIC_ORDER = ("bound", "nprobe", "centroid_score_threshold", "max_candidates", "t_prime")  # optimize()'s tuple


def parse_setting(setting: str) -> dict:
    """'default' or 'nprobe=16+bound=2048' -> the search keyword arguments it names."""
    if setting == "default":
        return {}
    knobs = {}
    for pair in setting.split("+"):
        name, _, value = pair.partition("=")
        if name not in KNOBS or not value:
            sys.exit(f"late_xtrwarp.py: bad sweep setting {setting!r}: expected 'default' or name=value pairs "
                     f"joined by '+', names among {', '.join(KNOBS)}")
        knobs[name] = KNOBS[name](value)
    return knobs


def link_source(exact: Path, source: Path) -> int:
    """Expose the exact shards in xtr-warp's disk format (symlinked tokens + doclens); returns pages."""
    source.mkdir(parents=True, exist_ok=True)
    pages = 0
    for offsets_file in sorted(exact.glob("shard-*.offsets.npy")):
        stem = offsets_file.name[: -len(".offsets.npy")]
        (source / f"{stem}.npy").symlink_to((exact / f"{stem}.npy").resolve())
        lengths = np.diff(np.load(offsets_file)).astype(np.int64)  # (pages,)
        np.save(source / f"{stem}.doclens.npy", lengths)
        pages += len(lengths)
    if not pages:
        sys.exit(f"late_xtrwarp.py: no shard-*.offsets.npy in {exact}: run it on the exact engine's float32 shards")
    return pages


def main() -> None:
    work, exact, sweep = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    threads, partitions, sample_docs = (int(x) for x in (sys.argv[4:7] if len(sys.argv) > 6 else (0, 0, 0)))
    threads = threads or os.cpu_count() or 1
    settings_knobs = [(s, parse_setting(s)) for s in sweep.split(",")]
    torch.set_num_threads(os.cpu_count() or 1)
    pages = link_source(exact, work / "source")
    q = np.load(work / "queries.npz")
    queries = [torch.from_numpy(q["tokens"][a:b]) for a, b in zip(q["offsets"][:-1], q["offsets"][1:])]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    index = XTRWarp(index=str(work / "index"))
    index.create(embeddings_source=work / "source", device="cpu", num_partitions=partitions or None,
                 n_samples_kmeans=sample_docs or None, show_progress=False)
    build_s = time.perf_counter() - t
    del index
    t = time.perf_counter()
    index = XTRWarp(index=str(work / "index"))
    index.load(device="cpu", dtype=torch.float32, mmap=True)
    index.search(queries_embeddings=queries[0], top_k=10, num_threads=threads, show_progress=False)
    open_s = time.perf_counter() - t
    disk = sum(f.stat().st_size for f in (work / "index").rglob("*") if f.is_file())
    meta = json.loads((work / "index" / "metadata.json").read_text())
    settings = []
    for setting, knobs in settings_knobs:
        kw = {"top_k": 10, "num_threads": threads, "show_progress": False, **knobs}
        index.search(queries_embeddings=queries[0], **kw)  # warm-up
        times, rows = [], []
        for qq in queries:
            t = time.perf_counter()
            res = index.search(queries_embeddings=qq, **kw)
            times.append((time.perf_counter() - t) * 1e3)
            rows.append([int(doc) for doc, _ in res[0]] + [-1] * (10 - len(res[0])))
        effective = dict(zip(HEURISTIC_ORDER, index.optimize_hyperparams(10, queries[0].unsqueeze(0))))
        settings.append({"setting": setting, "knobs": {**effective, **knobs}, "p50_ms": float(np.percentile(times, 50)),
                         "p95_ms": float(np.percentile(times, 95)), "rows": rows})
    print(json.dumps({"build_s": build_s, "open_s": open_s, "disk_bytes": disk, "pages": pages,
                      "partitions": meta.get("num_centroids", meta.get("num_partitions")), "sample_docs": sample_docs,
                      "requested_partitions": partitions, "nbits": meta.get("nbits"), "search_threads": threads,
                      "settings": settings, "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "rss_before_bytes": rss0 * 1024, "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
