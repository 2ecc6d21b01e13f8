"""Benchmark single-vector (DSE-shaped) search: the project's engines as `dse index` builds them, and FAISS's own
approximate indexes at matched recall, on one realistic corpus.

    python bench/single.py --pages 200000                     # realistic generator; last line is JSON
    python bench/single.py --pages 20000 --gen q_page=0.1,cone=0.6   # generator parameters
    python bench/single.py --pages 200000 --corpus-kind easy  # the earlier, easy corpus (labelled so)
    python bench/single.py --pages 20000 --engines flat,binary-ivf --baselines sq8,binary-ivf

The corpus (bench/corpus_single.py) is written once to a float32 .npy (memory-mapped), then
committed, in groups of whole documents of at least `--commit-pages` pages, into one real index
directory per project engine (bench/single_index.py): `flat` (the default, exact FAISS over
memory-mapped shards), `hnsw` (`{"hnsw": true}`), `binary` / `int8` (`{"mode": ...}`) and
`binary-ivf` / `int8-ivf` (with `n_lists`, `--n-lists`, default about 2 * sqrt(pages)). Each is
opened with `Retriever.open` and searched with `Retriever.search` (one query per call, warm,
query encoding excluded); the quantised engines are also swept per call (`n_probe:n_candidates`)
on the opened engine. FAISS baselines (bench/single_faiss.py): IndexHNSWFlat (the hnsw engine's
graph, efSearch swept), IVF-SQ8 and IVF-PQ in IndexRefineFlat, IndexBinaryIVF on sign bits with
exact rescoring, all with the same lists count. Oracle: the exhaustive exact top 100
(bench/single_exact.py); recall@10 is tie-tolerant. `matched` gives, for the primary engine's
recall and for 0.95 and 0.99, each index's cheapest setting (by p50) reaching it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import late_exact  # noqa: E402
import single_exact  # noqa: E402
import single_faiss  # noqa: E402
import single_index  # noqa: E402
from corpus_late import groups  # noqa: E402
from corpus_single import EasySingle, RealisticSingle, cosines, parse_gen  # noqa: E402
from machine import cpu_model, load_average as _load  # noqa: E402

from dse.retrieve.run import COMMIT_PAGES  # noqa: E402

ENGINES = "flat,hnsw,binary,binary-ivf,int8,int8-ivf"
BASELINES = "hnsw,sq8,pq,binary-ivf"
LIST_SWEEP = "1:128,2:128,2:256,4:256,8:256,8:512,16:256,16:512,32:256,32:512,32:1024,64:512,64:1024,128:1024,128:2048"
SCAN_SWEEP = "64,128,256,512,1024,2048,4096"


def _options(name: str, n_lists: int, args: argparse.Namespace) -> dict:
    """The engine options `dse index` passes for engine `name` (with --n-candidates / --n-probe if given)."""
    if name == "flat":
        return {}
    if name == "hnsw":
        return {"hnsw": True}
    mode, _, ivf = name.partition("-")
    out = {"mode": mode, **({"n_lists": n_lists} if ivf else {})}
    if args.n_candidates is not None:
        out["n_candidates"] = args.n_candidates
    if ivf and args.n_probe is not None:
        out["n_probe"] = args.n_probe
    return out


PAUSE: Path | None = None  # --pause-file


def pause() -> None:
    """Wait while the --pause-file exists (checked between steps, never inside a timed loop)."""
    waited = 0.0
    while PAUSE is not None and PAUSE.exists():
        time.sleep(5)
        waited += 5
    if waited:
        print(f"  paused {waited:.0f}s for {PAUSE}", file=sys.stderr, flush=True)


def _threads(n: int) -> None:
    """Let BLAS, OpenMP (FAISS, numpy) and numba's parallel kernels (the exhaustive code scans) use `n` threads."""
    import faiss
    import numba
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)
    faiss.omp_set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def _corpus(args: argparse.Namespace):  # noqa: ANN202
    if args.corpus_kind == "easy":
        return EasySingle(args.pages, args.seed, args.dim, args.topics, args.noise)
    return RealisticSingle(args.pages, args.seed, args.dim, **parse_gen(args.gen))


def build(args, corpus, vectors: np.ndarray, queries: np.ndarray, names: list[str], n_lists: int,  # noqa: ANN001
          directory: Path) -> dict[str, float]:
    """Commit the corpus into one index directory per engine, group by group; build seconds per engine."""
    indexes = {name: single_index.create(directory / name, queries, _options(name, n_lists, args)) for name in names}
    times = dict.fromkeys(names, 0.0)
    bounds = groups(corpus.doc_starts, corpus.n, args.commit_pages)
    for g, (a, b) in enumerate(bounds):
        pause()
        pages = np.ascontiguousarray(vectors[a:b])  # (b - a, dim)
        for name, r in indexes.items():
            times[name] += single_index.commit(r, a, pages, corpus.doc_starts)
        if (g + 1) % max(1, len(bounds) // 10) == 0 or b == corpus.n:
            spent = ", ".join(f"{k} {v:.0f}s" for k, v in times.items())
            print(f"  built {b}/{corpus.n} pages: {spent} (load {_load()})", file=sys.stderr, flush=True)
    for r in indexes.values():
        r.close()
    return times


def measure(name: str, directory: Path, vectors, queries, oracle_s, build_s: float, args) -> tuple[dict, object]:  # noqa: ANN001
    """Open one engine's index, time `Retriever.search` warm, sweep its knobs per call."""
    n = len(vectors)
    t = time.perf_counter()
    r = single_index.open_index(directory, queries)
    engine = r.index.view().engine
    engine.prepare()
    open_s = time.perf_counter() - t
    single_index.timed(lambda j: single_index.search_rows(r, j), len(queries))  # warm-up pass
    p50, p95, rows, cpu = single_index.timed(lambda j: single_index.search_rows(r, j), len(queries))
    rec = single_exact.recall(vectors, queries, rows, oracle_s)
    out = {"p50_ms": round(p50, 3), "p95_ms": round(p95, 3), "cpu_ms_p50": round(cpu, 3), "recall_at_10": rec,
           "resident_bytes_per_page": round(single_index.resident_bytes(engine) / n, 1),
           "disk_bytes_per_page": round(single_index.disk_bytes(directory) / n, 1), "build_s": round(build_s, 1),
           "open_s": round(open_s, 3), "options": engine.options(), "load_average": _load()}
    print(f"{name} via Retriever.search ({json.dumps(engine.options())}): p50 {p50:.2f} ms p95 {p95:.2f} ms "
          f"cpu {cpu:.2f} ms recall@10 {rec:.3f}; resident {out['resident_bytes_per_page']:.0f} B/page, disk "
          f"{out['disk_bytes_per_page']:.0f} B/page, build {build_s:.0f}s, open {open_s:.2f}s (load {_load()})",
          flush=True)
    if name.startswith(("binary", "int8")):
        sweep = []
        for item in (args.list_sweep if engine.n_lists else args.scan_sweep).split(","):
            probe, cand = (int(x) for x in item.split(":")) if ":" in item else (engine.n_probe, int(item))
            s50, s95, srows, _ = single_index.timed(
                lambda j, c=cand, p=probe: single_index.padded(
                    engine.search(queries[j][None], 10, n_candidates=c, n_probe=p)[1][0]),
                len(queries))
            srec = single_exact.recall(vectors, queries, srows, oracle_s)
            sweep.append({"setting": item, "p50_ms": s50, "p95_ms": s95, "recall_at_10": srec})
            print(f"  {name:>14s} {item:>10s} {s50:8.2f} {s95:8.2f} {srec:9.3f}", flush=True)
        out["sweep_knobs"] = "n_probe:n_candidates" if engine.n_lists else "n_candidates"
        out["sweep"] = sweep
    elif name == "flat":
        out["sweep"] = [{"setting": "exact", "p50_ms": p50, "p95_ms": p95, "recall_at_10": rec}]
    return out, r


def main() -> None:  # noqa: PLR0915
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pages", type=int, default=100000)
    p.add_argument("--dim", type=int, default=1536)
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corpus-kind", default="realistic", choices=["realistic", "easy"])
    p.add_argument("--gen", default="", help="realistic generator parameters, e.g. q_page=0.1,cone=0.6")
    p.add_argument("--topics", type=int, default=2000, help="easy corpus: topic centres")
    p.add_argument("--noise", type=float, default=0.8, help="easy corpus: page noise around its topic centre")
    p.add_argument("--commit-pages", type=int, default=COMMIT_PAGES)
    p.add_argument("--engines", default=ENGINES, help=f"project engines to build ({ENGINES})")
    p.add_argument("--primary", default="binary-ivf", help="the engine of the top-level keys and the matched recall")
    p.add_argument("--n-lists", type=int, default=0, help="IVF lists of the *-ivf engines and the FAISS IVF "
                   "baselines (0: the power of two nearest 2 * sqrt(pages))")
    p.add_argument("--n-candidates", type=int, help="n_candidates of the quantised engines (default: theirs, 512)")
    p.add_argument("--n-probe", type=int, help="n_probe of the *-ivf engines (default: theirs, 32)")
    p.add_argument("--list-sweep", default=LIST_SWEEP, help="n_probe:n_candidates settings of the *-ivf engines")
    p.add_argument("--scan-sweep", default=SCAN_SWEEP, help="n_candidates settings of binary / int8")
    p.add_argument("--baselines", default=BASELINES, help=f"FAISS baselines ({BASELINES}; '' for none)")
    p.add_argument("--hnsw-sweep", default=single_faiss.HNSW_SWEEP, help="efSearch settings")
    p.add_argument("--sq8-sweep", default=single_faiss.IVF_SWEEP, help="nprobe:k_factor settings")
    p.add_argument("--pq-sweep", default=single_faiss.PQ_SWEEP, help="nprobe:k_factor settings")
    p.add_argument("--pq-m", type=int, default=0, help="IVF-PQ sub-quantizers (0: dim / 8, 1 byte each)")
    p.add_argument("--faiss-centroids", default="sample",
                   help="coarse centroids of the FAISS IVF baselines, comma-separated: 'sample' (trained on a seeded "
                   "sample of every page, as FAISS is used offline), 'engine' (the primary engine's own, trained on "
                   "its first 40 * n_lists pages: the same lists, so only codes and scans differ; keys end in "
                   "_engine_lists)")
    p.add_argument("--binary-sweep", default=single_faiss.BINARY_SWEEP, help="nprobe:n_candidates settings")
    p.add_argument("--threads", type=int, default=1, help="BLAS / OpenMP threads while searching (builds use "
                   "every core); one query per call on one thread, as a server answering queries side by side")
    p.add_argument("--pause-file", help="while this file exists, wait before each next step (each commit group, "
                   "engine, baseline): another job can have the machine, e.g. --pause-file /work/QUIET")
    p.add_argument("--dir", help="work directory (default: a temporary one, removed at the end)")
    args = p.parse_args()
    global PAUSE
    PAUSE = Path(args.pause_file) if args.pause_file else None
    names = [e for e in args.engines.split(",") if e]
    if args.primary not in names:
        p.error(f"--primary {args.primary} is not among --engines {args.engines}")
    if "hnsw" in args.baselines.split(",") and "hnsw" not in names:
        p.error("the hnsw baseline searches the hnsw engine's graph: add hnsw to --engines")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cpus, python {platform.python_version()}, load {_load()}")
    corpus = _corpus(args)
    n_lists = args.n_lists or int(2 ** round(np.log2(2 * np.sqrt(args.pages))))
    print(f"corpus: {json.dumps(corpus.describe())}; n_lists {n_lists}")
    directory = Path(args.dir or tempfile.mkdtemp(prefix="single-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        vectors = single_exact.write_vectors(corpus, directory / "vectors.npy")  # (n, dim), memory-mapped
        targets = np.random.default_rng([args.seed, 99]).choice(args.pages, args.queries, replace=False)
        queries = corpus.queries(targets)  # (nq, dim)
        print(f"generated {args.pages} pages in {time.perf_counter() - t:.0f}s")
        times = build(args, corpus, vectors, queries, names, n_lists, directory)
        oracle_s, oracle_r = single_exact.oracle(vectors, queries)
        hard = {**late_exact.hardness(oracle_s, oracle_r, targets),
                "cosines": cosines(corpus, vectors, queries, targets, args.seed)}
        doc_of = np.searchsorted(corpus.doc_starts, oracle_r[:, :10], side="right")  # (nq, 10)
        target_doc = np.searchsorted(corpus.doc_starts, targets, side="right")  # (nq,)
        hard["top10_in_target_document"] = float(np.mean(doc_of == target_doc[:, None]))
        print(f"hardness: {json.dumps(hard)}")
        _threads(args.threads)
        print(f"searching with {args.threads} thread(s)\nengine          setting      p50_ms   p95_ms  recall@10")
        engines, graph, engine_centroids = {}, None, None
        for name in names:
            pause()
            engines[name], r = measure(name, directory / name, vectors, queries, oracle_s, times[name], args)
            if name == args.primary and getattr(r.index.view().engine, "centroids", None) is not None:
                engine_centroids = np.array(r.index.view().engine.centroids)  # (n_lists, dim)
            if name == "hnsw":
                graph = r.index.view().engine._graph()  # kept open for the HNSW baseline
                hnsw_retriever = r
            else:
                r.close()
        primary = engines[args.primary]
        log = lambda s: print(s, flush=True)  # noqa: E731
        baselines: dict[str, dict] = {}
        if "flat" in engines:
            baselines["flat_exact"] = {k: v for k, v in engines["flat"].items() if k != "sweep"}
        wanted = [b for b in args.baselines.split(",") if b]
        pause()
        if "hnsw" in wanted:
            baselines["faiss_hnsw"] = single_faiss.hnsw(graph, times["hnsw"], vectors, queries, oracle_s, log,
                                                        args.hnsw_sweep)
            hnsw_retriever.close()
        elif graph is not None:
            hnsw_retriever.close()
        del graph
        if any(b in wanted for b in ("sq8", "pq", "binary-ivf")):
            for source in args.faiss_centroids.split(","):
                suffix = "" if source == "sample" else "_engine_lists"
                if source == "engine":
                    if engine_centroids is None:
                        p.error(f"--faiss-centroids engine: the primary engine {args.primary} has no IVF centroids")
                    cents, train_s = engine_centroids, 0.0
                    print(f"FAISS coarse quantizer: the {args.primary} engine's {len(cents)} centroids", flush=True)
                else:
                    _threads(os.cpu_count() or 1)
                    cents, train_s = single_faiss.centroids(vectors, n_lists, args.seed)
                    _threads(args.threads)
                    print(f"FAISS coarse quantizer: {n_lists} centroids trained on a sample of every page in "
                          f"{train_s:.0f}s (load {_load()})", flush=True)
                if "sq8" in wanted:
                    pause()
                    (baselines["faiss_ivf_sq8_refine" + suffix],
                     baselines["faiss_ivf_sq8_mmap_refine" + suffix]) = single_faiss.ivf_refine(
                        "sq8", cents, train_s, vectors, queries, oracle_s, log, sweep=args.sq8_sweep, seed=args.seed)
                if "pq" in wanted:
                    pause()
                    (baselines["faiss_ivf_pq_refine" + suffix],
                     baselines["faiss_ivf_pq_mmap_refine" + suffix]) = single_faiss.ivf_refine(
                        "pq", cents, train_s, vectors, queries, oracle_s, log, pq_m=args.pq_m or args.dim // 8,
                        sweep=args.pq_sweep, seed=args.seed)
                if "binary-ivf" in wanted:
                    pause()
                    baselines["faiss_binary_ivf_rescore" + suffix] = single_faiss.binary_ivf(
                        cents, train_s, vectors, queries, oracle_s, log, sweep=args.binary_sweep)
                for key, entry in baselines.items():
                    if key.startswith("faiss_") and key != "faiss_hnsw":
                        entry.setdefault("centroids", source)
        for entry in baselines.values():
            entry.setdefault("pages_measured", args.pages)
            entry.setdefault("load_average", _load())
        swept = {f"dse_{k}": v for k, v in engines.items() if "sweep" in v}
        swept.update({k: v for k, v in baselines.items() if k.startswith("faiss")})
        match = single_exact.matched(swept, {"primary": primary["recall_at_10"], "0.95": 0.95, "0.99": 0.99})
        for name, row in match.items():
            print(f"cheapest at recall >= {row['recall']:.3f} ({name}):")
            for label, best in row["cheapest"].items():
                print(f"  {label:>26s}: " + ("not reached" if best is None else
                      f"{best['setting']:>10s} p50 {best['p50_ms']:7.2f} ms p95 {best['p95_ms']:7.2f} ms recall "
                      f"{best['recall_at_10']:.3f}, {best['resident_bytes_per_page']:.0f} B/page resident"))
        print(f"load average at the end: {_load()}")
        print(json.dumps({
            "pages": args.pages, "corpus": corpus.describe(), "queries": args.queries, "n_lists": n_lists,
            "primary": args.primary, "p50_ms": primary["p50_ms"], "p95_ms": primary["p95_ms"],
            "recall_at_10": round(primary["recall_at_10"], 4), "cpu_ms_p50": primary["cpu_ms_p50"],
            "resident_bytes_per_page": primary["resident_bytes_per_page"],
            "disk_bytes_per_page": primary["disk_bytes_per_page"], "build_s": primary["build_s"],
            "options": primary["options"], "hardness": hard, "engines": engines, "baselines": baselines,
            "search_threads": args.threads,
            "matched": match, "load_average": _load(),
        }))
    finally:
        if not args.dir:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
