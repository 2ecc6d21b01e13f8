"""Run fast-plaid on the bench's corpus; print one JSON line (run by late.py in fast-plaid's own venv).

    python late_fastplaid.py WORK EXACT_DIR SWEEP [PARTITIONS SAMPLE_DOCS]

EXACT_DIR holds the exact engine's float32 shards (`shard-NNNNNN.npy` tokens and
`shard-NNNNNN.offsets.npy`): they are memory-mapped, so fast-plaid indexes the very vectors the
oracle scores, at full size, without another copy. WORK/queries.npz holds the queries. SWEEP is
"n_ivf_probe:n_full_scores,..." (fast-plaid's defaults: 8:4096). CPU, torch threads = cores.
PARTITIONS / SAMPLE_DOCS (0: fast-plaid's own heuristics, 2**floor(log2(16 sqrt(tokens)))
centroids trained on 16 sqrt(120 docs) documents) override its k-means size; with an override
the k-means runs in float32 (fast-plaid's CPU path trains in float16, which has no fast CPU
kernels: 895 s for 1,500 pages here). Both are reported.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from fast_plaid import search

work, exact, sweep = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
partitions, sample_docs = (int(x) for x in (sys.argv[4:6] if len(sys.argv) > 5 else (0, 0)))
if partitions or sample_docs:
    from fast_plaid.search import fast_plaid as fp_module

    class _Float32KMeans(fp_module.FastKMeans):
        def train(self, data: torch.Tensor) -> torch.Tensor:
            self.dtype = torch.float32
            return super().train(data.float())

    _compute = fp_module.compute_kmeans

    def _kmeans(*a, **kw):  # noqa: ANN002, ANN003, ANN202
        kw["num_partitions"] = partitions or None
        kw["n_samples_kmeans"] = sample_docs or None
        return _compute(*a, **kw)

    fp_module.FastKMeans, fp_module.compute_kmeans = _Float32KMeans, _kmeans
torch.set_num_threads(os.cpu_count() or 1)
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")  # read-only memory maps
pages = []
for offsets_file in sorted(exact.glob("shard-*.offsets.npy")):
    tokens = np.load(str(offsets_file).replace(".offsets.npy", ".npy"), mmap_mode="r")  # (T, dim) float32
    offsets = np.load(offsets_file)
    pages += [torch.from_numpy(np.asarray(tokens[a:b])) for a, b in zip(offsets[:-1], offsets[1:])]
q = np.load(work / "queries.npz")
queries = [torch.from_numpy(q["tokens"][a:b]) for a, b in zip(q["offsets"][:-1], q["offsets"][1:])]
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
index = search.FastPlaid(index=str(work / "index"), device="cpu")
index.create(documents_embeddings=pages)
build_s = time.perf_counter() - t
del pages, index
t = time.perf_counter()
index = search.FastPlaid(index=str(work / "index"), device="cpu")
index.search(queries_embeddings=[queries[0]], top_k=10, show_progress=False)
open_s = time.perf_counter() - t
disk = sum(f.stat().st_size for f in (work / "index").rglob("*") if f.is_file())
settings = []
for setting in sweep.split(","):
    probe, full = (int(x) for x in setting.split(":"))
    index.search(queries_embeddings=[queries[0]], top_k=10, show_progress=False, n_ivf_probe=probe, n_full_scores=full)
    times, rows = [], []
    for qq in queries:
        t = time.perf_counter()
        res = index.search(queries_embeddings=[qq], top_k=10, show_progress=False, n_ivf_probe=probe,
                           n_full_scores=full)
        times.append((time.perf_counter() - t) * 1e3)
        rows.append([int(doc) for doc, _ in res[0]] + [-1] * (10 - len(res[0])))
    settings.append({"setting": setting, "n_ivf_probe": probe, "n_full_scores": full, "p50_ms": float(np.percentile(times, 50)),
                     "p95_ms": float(np.percentile(times, 95)), "rows": rows})
print(json.dumps({"build_s": build_s, "partitions": partitions, "sample_docs": sample_docs, "open_s": open_s, "disk_bytes": disk, "settings": settings,
                  "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "rss_before_bytes": rss0 * 1024, "torch_threads": torch.get_num_threads()}))
