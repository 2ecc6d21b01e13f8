"""Qdrant backend vs the embedded index on the realistic multi-vector corpus of bench/late.py.

    python bench/qdrant.py --pages 20000 --tokens 128 --queries 30 --qdrant edge \
        --prefetch 200,1000,2000,5000 --pooling mean,grid --grid-rows 16 \
        --sparse presence,sim --n-probe 1,4                                  # last line is JSON

Both backends get the same pages (bench/corpus_late.py's RealisticCorpus), committed in groups
of 100 through `IndexBackend.add_sources`: the embedded index directory (exact MaxSim engine,
the oracle) and `QdrantIndex`, once per pooling (`mean`: page-mean prefetch; `grid`: row and
column means of `--grid-rows` rows of consecutive tokens, the corpus having no patch grid), and
once per `--sparse` variant (``first_stage: sparse-centroids``: a k-means codebook of page tokens
trained while the pages are added, a sparse bag-of-centroids vector per page, probed by
`--n-probe` centroids per query token; ``+frozen``: ``codebook_retrain: false``, the codebook
retrained only while the size rule doubles it, frozen at the `--centroids` cap, as before
retraining), then exact MaxSim over the multivector field. Reported: build time (edge: HNSW optimisation
included), warm p50/p95 of one query per call (no query encoding), recall@10 against exact
MaxSim at each prefetch limit (and `--hnsw-ef` values). `--qdrant local` is qdrant-client's local
mode, brute force in Python (no HNSW): its latencies say nothing of a server; `--qdrant edge` is
qdrant-edge-py, Qdrant's engine in this process as one shard (no server, no network, no
sharding); a server run needs `--qdrant http://host:6333` (not possible on these machines).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from corpus_late import RealisticCorpus  # noqa: E402

from dse.backends import NewPage, NewSource, backend_class  # noqa: E402

ENCODER = {"name": "bench-multi", "kind": "multi", "model": "synthetic", "prompt_version": "1", "options": {}}


def build(backend: str, directory: Path, corpus: RealisticCorpus, pages: int, dim: int, options: dict) -> tuple:
    index = backend_class(backend).create(directory, {**ENCODER, "dim": dim}, options, image_size=0)
    t0 = time.perf_counter()
    for start in range(0, pages, 100):
        ids = range(start, min(start + 100, pages))
        src = NewSource(f"/bench/doc{start}.pdf", f"d{start}", "pdf",
                        tuple(NewPage(f"{i:016x}-p00001", 1, "", None, {}) for i in ids))
        index.add_sources([src], [[corpus.page(i) for i in ids]])
    optimize = getattr(getattr(index, "client", None), "optimize", None)
    if optimize is not None:  # qdrant-edge: build the HNSW graphs now (`dse index` does it when it closes)
        optimize()
    return index, time.perf_counter() - t0


def location(qdrant: str, folder: Path) -> str:
    """The `qdrant` option of a bench collection: a local-mode folder, an edge: folder or the URL."""
    if qdrant == "local":
        return str(folder)
    if qdrant == "edge":
        return f"edge:{folder}"
    return qdrant


def timed(index, queries: list[np.ndarray], k: int) -> tuple[list[list[str]], float, float]:  # noqa: ANN001
    out, lat = [], []
    index.search(queries[:1], k)  # warm
    for q in queries:
        t0 = time.perf_counter()
        hits = index.search([q], k)[0]
        lat.append(time.perf_counter() - t0)
        out.append([h.record.page_id for h in hits])
    return out, float(np.percentile(lat, 50) * 1e3), float(np.percentile(lat, 95) * 1e3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pages", type=int, default=1000)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=30)
    p.add_argument("--prefetch", default="50,200,1000", help="prefetch limits to measure")
    p.add_argument("--pooling", default="mean,grid", help="first-stage poolings to measure (mean, grid)")
    p.add_argument("--grid-rows", type=int, default=16,
                   help="grid pooling: rows of consecutive tokens a page is read as (the corpus has no patch grid)")
    p.add_argument("--hnsw-ef", default="0", help="HNSW ef of the prefetch stage to measure (0: Qdrant's default)")
    p.add_argument("--sparse", default="",
                   help="sparse-centroids first stages to measure: centroid weights (presence, count, sim), "
                        "'+idf' for Qdrant's IDF modifier, '+frozen' for codebook_retrain: false (the codebook "
                        "frozen at the cap), e.g. presence,sim,sim+idf,sim+frozen (empty: none)")
    p.add_argument("--n-probe", default="1,4", help="sparse-centroids: centroids probed per query token")
    p.add_argument("--prefetch-pooled", default="0",
                   help="sparse-centroids: page-mean candidates added to the sparse ones (0: none)")
    p.add_argument("--centroids", type=int, default=8192, help="sparse-centroids: largest codebook")
    p.add_argument("--qdrant", default="local",
                   help="local (qdrant-client's local mode), edge (qdrant-edge-py) or a Qdrant URL")
    args = p.parse_args()
    load = "%.1f %.1f %.1f" % os.getloadavg()
    corpus = RealisticCorpus(args.pages, 0, args.tokens, args.dim)
    targets = np.random.default_rng(99).choice(args.pages, args.queries, replace=False)
    queries = [corpus.query(int(t)) for t in targets]
    result: dict = {"pages": args.pages, "tokens": args.tokens, "dim": args.dim, "queries": args.queries,
                    "load_before": load, "qdrant": args.qdrant, "grid_rows": args.grid_rows}
    with tempfile.TemporaryDirectory() as tmp:
        emb, t_emb = build("directory", Path(tmp) / "emb", corpus, args.pages, args.dim, {})
        exact, p50, p95 = timed(emb, queries, 10)
        result["embedded_exact"] = {"build_s": round(t_emb, 2), "p50_ms": round(p50, 2), "p95_ms": round(p95, 2)}
        print(f"embedded exact MaxSim: build {t_emb:.1f} s, p50 {p50:.1f} ms, p95 {p95:.1f} ms", file=sys.stderr)
        emb.close()
        variants = [(f"qdrant_{pooling}", {"pooling": pooling, **({"grid_rows": args.grid_rows}
                                                              if pooling == "grid" else {})})
                    for pooling in args.pooling.split(",") if pooling]
        variants += [(f"qdrant_sparse_{w.replace('+', '_')}", {
            "first_stage": "sparse-centroids", "centroid_weight": w.split("+")[0], "centroid_idf": "idf" in w.split("+"),
            "codebook_retrain": "frozen" not in w.split("+"), "centroids": args.centroids})
            for w in args.sparse.split(",") if w]
        for label, variant in variants:
            options = {"qdrant": location(args.qdrant, Path(tmp) / label), "collection": label, **variant}
            qd, t_q = build("qdrant", Path(tmp) / f"qd-{label}", corpus, args.pages, args.dim, options)
            result[f"{label}_build_s"] = round(t_q, 2)
            result[f"{label}_build_ratio"] = round(t_q / t_emb, 2)
            state = qd.manifest.store["qdrant"].get("centroids", {})
            books = state.get("codebooks", [])
            if books:
                result[f"{label}_codebook"] = {"size": books[-1]["size"], "generation": books[-1]["generation"],
                                               "trained_at_pages": state.get("trained_at")}
                print(f"{label}: codebook of {books[-1]['size']} centroids (generation {books[-1]['generation']}, "
                      f"trained at {state.get('trained_at')} pages)", file=sys.stderr)
            sparse = variant.get("first_stage") == "sparse-centroids"
            knobs = [(probe, pooled) for probe in args.n_probe.split(",") for pooled in args.prefetch_pooled.split(",")]
            for ef in (int(x) for x in args.hnsw_ef.split(",")):
                for probe, pooled in knobs if sparse else [(None, None)]:
                    for limit in (int(x) for x in args.prefetch.split(",")):
                        qd.options.update(prefetch=limit, hnsw_ef=ef or None)
                        name = f"{label}_prefetch_{limit}" + (f"_ef_{ef}" if ef else "")
                        if sparse:
                            qd.options.update(n_probe=int(probe), prefetch_pooled=int(pooled))
                            name += f"_probe_{probe}" + (f"_pooled_{pooled}" if int(pooled) else "")
                        got, p50, p95 = timed(qd, queries, 10)
                        recall = float(np.mean([len(set(g) & set(e)) / len(e) for g, e in zip(got, exact)]))
                        result[name] = {"recall@10": round(recall, 4), "p50_ms": round(p50, 2),
                                        "p95_ms": round(p95, 2),
                                        "p50_ratio": round(p50 / result["embedded_exact"]["p50_ms"], 2)}
                        print(f"{name}: recall@10 {recall:.3f}, p50 {p50:.1f} ms, p95 {p95:.1f} ms", file=sys.stderr)
            qd.close()
            for folder in (Path(tmp) / label, Path(tmp) / f"qd-{label}"):  # bound the disk used: one collection at a time
                shutil.rmtree(folder, ignore_errors=True)
    result["load_after"] = "%.1f %.1f %.1f" % os.getloadavg()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
