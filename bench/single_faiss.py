"""FAISS's own approximate indexes as baselines of bench/single.py: same vectors, same size, same queries.

- HNSW: the graph of the project's `{"hnsw": true}` engine is a `faiss.IndexHNSWFlat` (M=32,
  efConstruction=200); it is searched directly, `efSearch` swept.
- IVF-SQ8 + refine: `IndexIVFScalarQuantizer` (8 bits a dimension) in `IndexRefineFlat`,
  `nprobe:k_factor` swept (`k_factor * 10` candidates rescored on the float32 copy it holds).
- IVF-PQ + refine: `IndexIVFPQ` (`pq_m` sub-quantizers of 8 bits) in `IndexRefineFlat`.
- binary IVF + float rescoring: `IndexBinaryIVF` on the sign bits, its best `n_candidates`
  rescored exactly from the memory-mapped float32 vectors (the project's binary engine's scheme).

The IVF baselines use one coarse quantizer: spherical k-means trained as the project's IVF lists
train (`dse.engines.ivf.lists`, same sample size and iterations), once; its time is in each
build. The binary IVF takes the sign bits of those centroids. `resident_bytes_per_page` is what
the index holds in memory (FAISS's serialized size); `codes_bytes_per_page` leaves out
`IndexRefineFlat`'s float32 copy. The IVF-SQ8 and IVF-PQ indexes are also measured without it,
their candidates rescored from the memory-mapped vectors as the binary IVF's (`*_mmap_refine`):
what they hold in memory then is their codes, as the project's quantised engines.
"""

from __future__ import annotations

import os
import time

import numpy as np

from dse.engines.ivf.lists import train_centroids, training_sample

import single_exact  # noqa: E402 - bench/ is on sys.path (bench/single.py puts it there)

HNSW_SWEEP = "8,16,32,64,128,256,512"
IVF_SWEEP = "1:1,2:1,2:2,4:1,8:1,8:4,16:1,16:4,32:2,32:4,64:4,64:8,128:8"  # nprobe:k_factor
PQ_SWEEP = "2:8,4:8,8:8,16:8,16:32,32:16,32:32,64:32,64:64,128:64"
BINARY_SWEEP = "1:128,2:128,2:256,4:256,8:256,16:256,16:512,32:512,64:512,64:1024,128:1024"  # nprobe:n_candidates


def _timed_one(search, queries: np.ndarray) -> tuple[float, float, np.ndarray]:  # noqa: ANN001
    search(queries[:1])
    times, rows = [], []
    for q in queries:
        t = time.perf_counter()
        rows.append(search(q[None])[0])
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95)), np.stack(rows)


def _sweep(name: str, items: str, make_search, vectors, queries, oracle_s, log) -> list[dict]:  # noqa: ANN001
    out = []
    for item in items.split(","):
        p50, p95, rows = _timed_one(make_search(item), queries)
        rec = single_exact.recall(vectors, queries, rows, oracle_s)
        out.append({"setting": item, "p50_ms": p50, "p95_ms": p95, "recall_at_10": rec})
        log(f"  {name:>14s} {item:>10s} {p50:8.2f} {p95:8.2f} {rec:9.3f}")
    return out


def _rescored(candidates, vectors: np.ndarray):  # noqa: ANN001, ANN202
    """A search (one query (1, dim) -> rows (1, 10)) rescoring `candidates(q)` exactly from `vectors`."""

    def search(q: np.ndarray) -> np.ndarray:
        cand = candidates(q)  # (n_cand,), -1 where none
        rows = np.sort(cand[cand >= 0])  # (m,) ascending: sequential reads of the memory map
        exact = np.asarray(vectors[rows]) @ q[0]  # (m,)
        best = rows[np.argsort(-exact, kind="stable")[:10]]
        return np.concatenate([best, np.full(10 - len(best), -1, np.int64)])[None]

    return search


def _add_blocks(index, vectors: np.ndarray, transform=None) -> None:  # noqa: ANN001
    for a in range(0, len(vectors), single_exact.BLOCK):
        block = np.ascontiguousarray(vectors[a : a + single_exact.BLOCK], np.float32)  # (b, dim)
        index.add(block if transform is None else transform(block))


def _size(index, binary: bool = False) -> int:  # noqa: ANN001
    import faiss

    return int((faiss.serialize_index_binary(index) if binary else faiss.serialize_index(index)).nbytes)


def centroids(vectors: np.ndarray, n_lists: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """The shared coarse centroids (as the project's IVF lists train them) and the seconds taken."""
    t = time.perf_counter()
    sample = np.asarray(vectors[training_sample(len(vectors), n_lists, seed)], np.float32)  # (m, dim)
    return train_centroids(sample, n_lists, seed), time.perf_counter() - t


def hnsw(graph, build_s: float, vectors, queries, oracle_s, log, sweep: str = HNSW_SWEEP) -> dict:  # noqa: ANN001
    import faiss

    n = len(vectors)

    def make(item: str):  # noqa: ANN202
        params = faiss.SearchParametersHNSW(efSearch=int(item))
        return lambda q: graph.search(q, 10, params=params)[1]

    size = _size(graph)
    return {"index": f"IndexHNSWFlat(M={graph.hnsw.nb_neighbors(1)}, efConstruction="
                     f"{graph.hnsw.efConstruction}) (the hnsw engine's graph)", "build_s": build_s,
            "resident_bytes_per_page": size / n, "codes_bytes_per_page": size / n,
            "sweep_knobs": "efSearch", "sweep": _sweep("hnsw", sweep, make, vectors, queries, oracle_s, log)}


def ivf_refine(kind: str, cents: np.ndarray, train_s: float, vectors, queries, oracle_s, log,  # noqa: ANN001
               pq_m: int = 0, sweep: str | None = None, seed: int = 0) -> tuple[dict, dict]:
    """IVF-SQ8 (kind "sq8") or IVF-PQ (kind "pq"): in an IndexRefineFlat (float32 copy in memory), and
    alone with its candidates rescored from the memory-mapped vectors (the project engines' scheme)."""
    import faiss

    n, dim = vectors.shape
    t = time.perf_counter()
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(cents)
    if kind == "sq8":
        base = faiss.IndexIVFScalarQuantizer(quantizer, dim, len(cents), faiss.ScalarQuantizer.QT_8bit,
                                             faiss.METRIC_INNER_PRODUCT)
    else:
        base = faiss.IndexIVFPQ(quantizer, dim, len(cents), pq_m, 8, faiss.METRIC_INNER_PRODUCT)
    sample = np.asarray(vectors[training_sample(n, len(cents), seed)], np.float32)  # (m, dim)
    base.train(sample)  # the coarse quantizer is already trained: only SQ ranges or PQ codebooks
    refine = faiss.IndexRefineFlat(base)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(os.cpu_count() or 1)  # build on every core, search as the bench says
    _add_blocks(refine, vectors)
    faiss.omp_set_num_threads(threads)
    build_s = train_s + time.perf_counter() - t
    size, codes = _size(refine), _size(base)

    def make(item: str):  # noqa: ANN202
        probe, k_factor = (int(x) for x in item.split(":"))
        params = faiss.IndexRefineSearchParameters(k_factor=k_factor,
                                                   base_index_params=faiss.SearchParametersIVF(nprobe=probe))
        return lambda q: refine.search(q, 10, params=params)[1]

    def make_mapped(item: str):  # noqa: ANN202
        probe, k_factor = (int(x) for x in item.split(":"))
        params = faiss.SearchParametersIVF(nprobe=probe)
        return _rescored(lambda q: base.search(q, 10 * k_factor, params=params)[1][0], vectors)

    name = "IVF-SQ8" if kind == "sq8" else f"IVF-PQ{pq_m}"
    what = f"IndexIVF{'ScalarQuantizer QT_8bit' if kind == 'sq8' else f'PQ m={pq_m} x 8 bits'}, nlist={len(cents)}"
    items = sweep or (IVF_SWEEP if kind == "sq8" else PQ_SWEEP)
    out = {"index": f"IndexRefineFlat({what})", "build_s": build_s, "resident_bytes_per_page": size / n,
           "codes_bytes_per_page": codes / n, "sweep_knobs": "nprobe:k_factor",
           "sweep": _sweep(name + "+refine", items, make, vectors, queries, oracle_s, log)}
    mapped = {"index": f"{what}; its 10 * k_factor best rescored exactly from the memory-mapped float32",
              "build_s": build_s, "resident_bytes_per_page": codes / n, "codes_bytes_per_page": codes / n,
              "sweep_knobs": "nprobe:k_factor",
              "sweep": _sweep(name + "+mmap", items, make_mapped, vectors, queries, oracle_s, log)}
    del refine, base, quantizer
    return out, mapped


def binary_ivf(cents: np.ndarray, train_s: float, vectors, queries, oracle_s, log, sweep: str = BINARY_SWEEP) -> dict:  # noqa: ANN001
    """IndexBinaryIVF on sign bits; its candidates rescored exactly from the memory-mapped vectors."""
    import faiss

    n, dim = vectors.shape
    t = time.perf_counter()
    quantizer = faiss.IndexBinaryFlat(dim)
    quantizer.add(np.packbits(cents > 0, axis=1))
    index = faiss.IndexBinaryIVF(quantizer, dim, len(cents))
    index.train(np.packbits(np.asarray(vectors[: len(cents)]) > 0, axis=1))  # no-op: the lists exist
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    _add_blocks(index, vectors, lambda b: np.packbits(b > 0, axis=1))
    faiss.omp_set_num_threads(threads)
    build_s = train_s + time.perf_counter() - t
    size = _size(index, binary=True)

    def make(item: str):  # noqa: ANN202
        probe, n_cand = (int(x) for x in item.split(":"))
        params = faiss.SearchParametersIVF(nprobe=probe)

        return _rescored(lambda q: index.search(np.packbits(q > 0, axis=1), n_cand, params=params)[1][0], vectors)

    out = {"index": f"IndexBinaryIVF(sign bits, nlist={len(cents)}) + exact rescoring from the memory-mapped float32",
           "build_s": build_s, "resident_bytes_per_page": size / n, "codes_bytes_per_page": size / n,
           "sweep_knobs": "nprobe:n_candidates",
           "sweep": _sweep("binary-IVF", sweep, make, vectors, queries, oracle_s, log)}
    del index, quantizer
    return out
