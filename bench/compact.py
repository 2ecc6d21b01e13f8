"""Time `compact` on an index of N pages with a share of them deleted, per engine.

    python bench/compact.py --pages 10000 --engines flat,hnsw,int8-ivf,maxsim,cascade   # last line: JSON

Synthetic unit vectors (single: `--dim` 1536, as DSE-Qwen2 pages; multi: `--tokens` 128 tokens a page
of 128 dims, ColQwen2-shaped), committed through `PageIndex.add_sources` in groups of 1,024 pages
(8 pages a source) with BM25 texts beside them, as `dse index` commits; then `--deleted` (0.1) of the
sources are deleted and the index compacted. Reported per engine: build and compaction seconds,
bytes of the engine files before and after, and whether the compacted index answers 8 random
queries as before (`same_hits`: ids and scores to 1e-4; `overlap_at_10`: the share of the top 10
ids kept, for the approximate engines whose structures are rebuilt: HNSW's graph, IVF centroids).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dse.backends.records import NewPage, NewSource  # noqa: E402
from dse.storage.page_index import PageIndex  # noqa: E402

ENGINES = {"flat": ("single", None), "hnsw": ("single", {"hnsw": True}),
           "int8-ivf": ("single", {"mode": "int8", "n_lists": 64, "n_probe": 16}),
           "maxsim": ("multi", None), "cascade": ("multi", {"mode": "cascade"})}
PER_SOURCE, GROUP = 8, 1024


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def build(directory: Path, kind: str, options: dict | None, pages: int, dim: int, tokens: int) -> PageIndex:
    """An index of `pages` synthetic pages, committed in groups of GROUP pages."""
    from ingest import make_page_id

    enc = {"name": f"bench-{kind}", "kind": kind, "input": "image", "model": "m", "revision": None,
           "prompt_version": "1", "dim": dim, "options": {}}
    index = PageIndex.create(directory, enc, options, image_size=0)
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(5000)]
    for start in range(0, pages, GROUP):
        n = min(GROUP, pages - start)
        sources, vectors = [], []
        for s in range(start, start + n, PER_SOURCE):
            digest = hashlib.sha256(str(s).encode()).hexdigest()
            m = min(PER_SOURCE, start + n - s)
            texts = [" ".join(rng.choice(words, 60)) for _ in range(m)]
            sources.append(NewSource(f"/bench/doc{s:07d}.pdf", digest, "pdf",
                                     tuple(NewPage(make_page_id(digest, p + 1), p + 1, texts[p], None, {})
                                           for p in range(m))))
            if kind == "single":
                vectors.append(_unit(rng.standard_normal((m, dim))))  # (m, dim)
            else:
                vectors.append(list(_unit(rng.standard_normal((m, tokens, dim)))))  # m x (tokens, dim)
        index.add_sources(sources, vectors)
    return index


def engine_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for d in directory.iterdir() if d.name.startswith(("vectors", "text"))
               for f in d.rglob("*") if f.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=int, default=10_000)
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--dim", type=int, default=1536, help="single-vector width")
    p.add_argument("--tokens", type=int, default=128, help="multi-vector tokens a page (128 dims each)")
    p.add_argument("--deleted", type=float, default=0.1)
    p.add_argument("--dir", default=None, help="where to build (default: a temporary directory)")
    args = p.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="dse-compact-"))
    out = {"pages": args.pages, "deleted": args.deleted, "cpus": os.cpu_count(), "load": os.getloadavg()[0],
           "engines": {}}
    for name in args.engines.split(","):
        kind, options = ENGINES[name]
        dim = args.dim if kind == "single" else 128
        directory = root / name
        t0 = time.perf_counter()
        index = build(directory, kind, options, args.pages, dim, args.tokens)
        build_s = time.perf_counter() - t0
        paths = [s["path"] for s in index.sources()]
        drop = np.random.default_rng(1).choice(len(paths), int(len(paths) * args.deleted), replace=False)
        index.delete(sources=[paths[i] for i in sorted(drop)])
        rng = np.random.default_rng(2)
        q = _unit(rng.standard_normal((8, dim))) if kind == "single" else list(_unit(rng.standard_normal((8, 32, dim))))
        before = [[(h.record.page_id, round(h.score, 4)) for h in hs] for hs in index.search(q, 10)]
        t0 = time.perf_counter()
        report = index.compact()
        compact_s = time.perf_counter() - t0
        after = [[(h.record.page_id, round(h.score, 4)) for h in hs] for hs in index.search(q, 10)]
        row = {"build_s": round(build_s, 1), "compact_s": round(compact_s, 2), "pages_live": report.pages,
               "rows_removed": report.rows_removed, "bytes_before": report.bytes_before,
               "bytes_after": report.bytes_after, "same_hits": before == after,
               "overlap_at_10": round(float(np.mean([len({i for i, _ in a} & {i for i, _ in b}) / max(1, len(a))
                                                     for a, b in zip(before, after)])), 3)}
        out["engines"][name] = row
        print(name, row, flush=True)
        index.close()
        shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
