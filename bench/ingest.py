"""Rendering speed: `ingest.render_many` against a plain `pdf2image.convert_from_path` loop.

Both sides render the same PDFs at the same dpi, each in its own subprocess (so peak memory is
measured apart: the process plus all its descendants, sampled every 20 ms with psutil), and
every page's pixels are decoded on both sides (the baseline's PPM images are loaded; the
pipeline's pages arrive decoded, with their text layer). Runs alternate baseline / pipeline
`--repeats` times; the best run of each is kept (other jobs on a shared machine only slow runs
down). Then the pipeline's peak memory on a short and on a 400-page document.

    pip install -e ".[bench]"                    # psutil, for the memory of the process tree
    python bench/ingest.py --files 12            # quicker
    python bench/ingest.py                       # all 61 mmlongbench-dev PDFs (2,710 pages)

The last line printed is a JSON object: pages, pages_per_s, baseline_pages_per_s, ratio,
peak_rss_mb and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402

# this script is named ingest.py: keep its folder off the path so `import ingest` finds the package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
DATA = ROOT.parent / "shared" / "data"
PDFS = DATA / "mmlongbench-dev" / "pdfs"
LONG_DOC = DATA / "real-docs" / "mixed" / "unstructured" / "pdf2image-memory-error-test-400p.pdf"


class PeakRss:
    """Samples the RSS of this process plus all its descendants; keeps the peak sum (MB).

    Pages waiting in the pipeline's spool (files in RAM under `spool_root`, counted in no RSS)
    are added in.
    """

    def __init__(self, spool_root: str, interval: float = 0.02) -> None:
        import psutil

        self.process, self.interval, self.peak = psutil.Process(), interval, 0.0
        self.spool_root = Path(spool_root)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = sum(_folder_bytes(folder) for folder in self.spool_root.glob("dse-render-*"))
            for proc in [self.process, *self.process.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass  # ended between listing and reading
            self.peak = max(self.peak, total / 2**20)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _folder_bytes(folder: Path) -> int:
    """Total size of the files in a folder whose files come and go meanwhile."""
    total = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    total += entry.stat().st_size
                except OSError:
                    pass
    except OSError:
        pass
    return total


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its descendants that were waited for."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _child(mode: str, files: list[str], dpi: int, workers: int, chunk_pages: int) -> dict:
    """Render `files` one way, in this process (and its workers); return pages, seconds, peak MB.

    CPU seconds count every process involved: poppler's, and the workers' (reaped by the
    forkserver, which is stopped and reaped here before reading the clock).
    """
    import tempfile

    from ingest.parallel import workers as worker_side

    pages = 0
    spool_root = tempfile.mkdtemp(prefix="bench-spool-", dir=worker_side.shared_memory_dir())
    worker_side.shared_memory_dir = lambda: spool_root  # this run's spool only, not other jobs'
    cpu_start = _cpu_seconds()
    with PeakRss(spool_root) as peak:
        start = time.perf_counter()
        if mode == "baseline":
            from pdf2image import convert_from_path

            for path in files:
                images = convert_from_path(path, dpi=dpi)  # default settings: PPM, one pdftoppm
                for image in images:
                    image.load()  # decode the pixels, as the pipeline does
                pages += len(images)
                del images  # images kept per file only
        else:
            import ingest

            for item in ingest.render_many(files, workers=workers, dpi=dpi, chunk_pages=chunk_pages):
                for page in item.pages:  # decoded RGB pages with their text layer
                    pages += 1
        seconds = time.perf_counter() - start
    if mode == "pipeline":
        from multiprocessing import forkserver

        forkserver._forkserver._stop()  # private, but the only way to reap the workers' CPU time
    cpu = _cpu_seconds() - cpu_start
    shutil.rmtree(spool_root, ignore_errors=True)
    return {"pages": pages, "seconds": seconds, "cpu_seconds": round(cpu, 2), "peak_rss_mb": round(peak.peak, 1)}


def _measure(mode: str, files: list[str], args: argparse.Namespace) -> dict:
    """Run one measurement in a fresh interpreter; return its result."""
    command = [
        sys.executable, __file__, "--child", mode, "--dpi", str(args.dpi),
        "--workers", str(args.workers), "--chunk-pages", str(args.chunk_pages), "--", *files,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _page_count(path: Path) -> int:
    from pdf2image import pdfinfo_from_path

    return int(pdfinfo_from_path(str(path))["Pages"])


def _select(args: argparse.Namespace) -> list[str]:
    """The PDFs, sorted by name, cut by --files and --limit-pages (whole files only)."""
    files = sorted(PDFS.glob("*.pdf"))[: args.files]
    chosen, total = [], 0
    for path in files:
        if args.limit_pages is not None and total >= args.limit_pages:
            break
        chosen.append(str(path))
        total += _page_count(path)
    return chosen


def _machine() -> dict:
    model = cpu_model()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {"cpu_count": os.cpu_count(), "cpu_model": model, "loadavg_1m": round(load[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dpi", type=int, default=144)
    parser.add_argument("--files", type=int, help="first N PDFs (sorted by name)")
    parser.add_argument("--limit-pages", type=int, help="stop adding PDFs once N pages are reached")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--chunk-pages", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs; best of each kept")
    parser.add_argument("--no-long-doc", action="store_true", help="skip the 400-page memory check")
    parser.add_argument("--child", choices=["baseline", "pipeline"], help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.paths, args.dpi, args.workers, args.chunk_pages)))
        return
    if not PDFS.is_dir():
        sys.exit(f"no PDFs at {PDFS}")
    machine = _machine()
    files = _select(args)
    print(f"machine: {machine['cpu_count']} CPUs, {machine['cpu_model']}, "
          f"load average {machine['loadavg_1m']} at start")
    print(f"{len(files)} PDFs at {args.dpi} dpi; pipeline: {args.workers} workers, "
          f"chunks of {args.chunk_pages} pages")
    runs: dict[str, list[dict]] = {"baseline": [], "pipeline": []}
    for _ in range(args.repeats):
        for mode in ("baseline", "pipeline"):
            result = _measure(mode, files, args)
            runs[mode].append(result)
            print(f"  {mode:9s} {result['pages']} pages in {result['seconds']:.1f} s = "
                  f"{result['pages'] / result['seconds']:.2f} pages/s, {result['cpu_seconds']:.1f} CPU s, "
                  f"peak RSS {result['peak_rss_mb']:.0f} MB")
    best = {mode: min(results, key=lambda r: r["seconds"]) for mode, results in runs.items()}
    pipeline, baseline = best["pipeline"], best["baseline"]
    if pipeline["pages"] != baseline["pages"]:
        sys.exit(f"page counts differ: pipeline {pipeline['pages']}, baseline {baseline['pages']}")
    pages_per_s = pipeline["pages"] / pipeline["seconds"]
    baseline_per_s = baseline["pages"] / baseline["seconds"]
    summary = {
        "pages": pipeline["pages"],
        "pages_per_s": round(pages_per_s, 2),
        "baseline_pages_per_s": round(baseline_per_s, 2),
        "ratio": round(pages_per_s / baseline_per_s, 2),
        "peak_rss_mb": pipeline["peak_rss_mb"],
        "baseline_peak_rss_mb": baseline["peak_rss_mb"],
        "cpu_ms_per_page": round(1000 * pipeline["cpu_seconds"] / pipeline["pages"], 1),
        "baseline_cpu_ms_per_page": round(1000 * baseline["cpu_seconds"] / baseline["pages"], 1),
        # what the CPU cost allows on an idle machine: the pipeline spreads over `workers` cores,
        # the plain loop uses one at a time
        "idle_ratio_bound": round(
            min(args.workers, machine["cpu_count"] or 1) * baseline["cpu_seconds"] / pipeline["cpu_seconds"], 2
        ),
        "dpi": args.dpi,
        "workers": args.workers,
        "chunk_pages": args.chunk_pages,
        **machine,
    }
    if not args.no_long_doc and LONG_DOC.is_file():
        short = min(files, key=lambda f: _page_count(Path(f)))
        for name, path in (("short", short), ("long", str(LONG_DOC))):
            result = _measure("pipeline", [path], args)
            summary[f"{name}_doc_pages"] = result["pages"]
            summary[f"{name}_doc_peak_rss_mb"] = result["peak_rss_mb"]
            print(f"  memory: {result['pages']}-page document -> pipeline peak RSS "
                  f"{result['peak_rss_mb']:.0f} MB ({Path(path).name})")
    print(f"ratio {summary['ratio']}x: {summary['pages_per_s']} vs {summary['baseline_pages_per_s']} pages/s")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
