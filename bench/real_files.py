"""Index every file of ../shared/data/real-docs with BM25 and count the outcomes per file.

Every file is passed by name (not as a folder), so one that is not supported is reported, never
silently skipped. Files are indexed in three groups (PDFs and images; office documents through
LibreOffice; web pages through the browser) so each group's time per file is measured in the
same run; office time is printed as a ratio to the PDF/image time per file.

    python bench/real_files.py [--data ../shared/data/real-docs] [--dpi 144] [--workers N]
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)  # bench/ingest.py would shadow the `ingest` package
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "real-docs"


def _groups(files: list[Path]) -> dict[str, list[Path]]:
    """Files split into pdf+image / office / web / other, in sorted order."""
    import ingest
    from ingest.images import IMAGE_EXTENSIONS
    from ingest.pdf.render import PDF_EXTENSIONS

    groups: dict[str, list[Path]] = {"pdf+image": [], "office": [], "web": [], "other": []}
    for path in files:
        ext = path.suffix.lower()
        if ext in PDF_EXTENSIONS or ext in IMAGE_EXTENSIONS:
            groups["pdf+image"].append(path)
        elif ext in ingest.OFFICE_EXTENSIONS:
            groups["office"].append(path)
        elif ext in ingest.WEB_EXTENSIONS:
            groups["web"].append(path)
        else:
            groups["other"].append(path)
    return groups


def _machine() -> str:
    return f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the outcome counts; exit 1 if any file crashed the run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--dpi", type=int, default=None, help="PDF rendering resolution (default: ingest's)")
    parser.add_argument("--workers", type=int, default=None, help="render workers (default: one per CPU)")
    parser.add_argument("--verbose", action="store_true", help="print every failure")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"no data at {args.data}", file=sys.stderr)
        return 2

    import dse
    from dse.retrieve.retriever import Retriever

    files = sorted(Path(d) / n for d, _, names in os.walk(args.data) for n in names)
    groups = _groups(files)
    print(f"machine: {_machine()}\ndata: {args.data} ({len(files)} files)")
    outcomes: collections.Counter[str] = collections.Counter()
    per_file: dict[str, float] = {}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dse-bench-real-") as tmp:
        with Retriever.create(Path(tmp) / "index", dse.load_encoder("bm25")) as retriever:
            for name, group in groups.items():
                if not group:
                    continue
                start = time.perf_counter()
                report = retriever.add(group, dpi=args.dpi, workers=args.workers)
                seconds = time.perf_counter() - start
                per_file[name] = seconds / len(group)
                outcomes["indexed"] += len(report.added)
                outcomes["skipped (same bytes as another file)"] += len(report.skipped)
                for failure in report.failures:
                    outcomes[f"failed: {_error_kind(failure.error)}"] += 1
                    failures.append(failure.error)
                accounted = len(report.added) + len(report.skipped) + len(report.failures)
                lost = len(group) - accounted
                if lost:
                    outcomes["UNACCOUNTED (silently skipped)"] += lost
                print(
                    f"{name:10s} {len(group):4d} files {report.pages:6d} pages "
                    f"{seconds:8.1f} s ({per_file[name]:.2f} s/file): {len(report.added)} indexed, "
                    f"{len(report.skipped)} skipped, {len(report.failures)} failed"
                )
            total_pages = len(retriever)
    print(f"\noutcomes over {len(files)} files ({total_pages} pages indexed):")
    for outcome, count in sorted(outcomes.items()):
        print(f"  {count:4d}  {outcome}")
    if "pdf+image" in per_file and "office" in per_file:
        ratio = per_file["office"] / per_file["pdf+image"]
        print(f"office vs pdf+image time per file: {ratio:.1f}x (baseline: pdf+image, same run)")
    if args.verbose:
        print("\nfailures:\n  " + "\n  ".join(failures))
    return 1 if outcomes["UNACCOUNTED (silently skipped)"] else 0


def _error_kind(message: str) -> str:
    """A short category of a failure message, for the counts."""
    for needle, kind in (
        ("unsupported source", "unsupported kind"),
        ("encrypted", "encrypted"),
        ("password", "password-protected"),
        ("LibreOffice", "office conversion"),
        ("not a readable PDF", "unreadable PDF"),
        ("over the limit", "over a limit"),
        ("empty file", "empty file"),
    ):
        if needle in message:
            return kind
    return "other"


if __name__ == "__main__":
    sys.exit(main())
