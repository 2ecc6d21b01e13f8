"""Run fast-plaid on pages.npy / queries.npy in a work directory; print one JSON line (run by late.py)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from fast_plaid import search

work = Path(sys.argv[1])
pages = torch.from_numpy(np.load(work / "pages.npy"))  # (n, tokens, dim)
queries = torch.from_numpy(np.load(work / "queries.npy"))  # (nq, query_tokens, dim)
t = time.perf_counter()
index = search.FastPlaid(index=str(work / "index"), device="cpu")
index.create(documents_embeddings=[p for p in pages])
build_s = time.perf_counter() - t
index.search(queries_embeddings=queries[:1], top_k=10, show_progress=False)
times, rows = [], []
for q in queries:
    t = time.perf_counter()
    res = index.search(queries_embeddings=q[None], top_k=10, show_progress=False)
    times.append((time.perf_counter() - t) * 1e3)
    rows.append([doc for doc, _ in res[0]] + [-1] * (10 - len(res[0])))
disk = sum(f.stat().st_size for f in (work / "index").rglob("*") if f.is_file()) / len(pages)
print(json.dumps({"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
                  "disk_bytes_per_page": disk, "build_s": build_s, "rows": rows}))
