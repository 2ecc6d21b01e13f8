"""Fuzz the ingest entry points (PDF, image, HTML, office) with atheris, for a bounded time.

    python bench/fuzz.py --target pdf --seconds 300            # seeds from ../shared/data
    python bench/fuzz.py --target image --corpus my-seeds/ --seconds 60
    python bench/fuzz.py --target pdf --replay input.pdf      # one input through the harness
    python bench/fuzz.py --target pdf --minimize input.pdf    # smallest input, same finding

Each input is written to a file with the target's extension and rendered by `ingest.render`
(all its pages decoded, text included). A finding is any exception other than ingest's typed
`IngestError`, a hang (an input still running after --hang seconds), or a worker that dies (a
crash in native code, the memory limit). Findings are kept once per signature in
OUT/findings.jsonl, each with its input; the last line printed is a JSON summary.

The coverage-guided worker (libFuzzer through atheris, `pip install atheris`: a manylinux wheel,
no clang needed) instruments ingest and Pillow, so mutations that reach new Python branches are
kept; poppler, LibreOffice and Chromium run in other processes, so for them the mutation is
blind. This parent process is the watchdog: it restarts the worker after a death or a hang, for
the remaining time, and records the input that was running.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(str(Path(__file__).resolve().parent))  # after the project: bench/ingest.py is a benchmark
from fuzz_harness import TARGETS, Finding, minimize, record, run_one  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MAX_SEEDS = 40


def stage_seeds(target: str, sources: list[Path], folder: Path) -> int:
    """Copy up to MAX_SEEDS of the smallest files of `target`'s kinds into `folder`."""
    spec = TARGETS[target]
    files = [
        path
        for source in sources
        for path in (source.rglob("*") if source.is_dir() else [source])
        if path.is_file() and path.suffix.lower() in spec.extensions and 0 < path.stat().st_size <= spec.max_len
    ]
    files = sorted(set(files), key=lambda path: (path.stat().st_size, path.name))[:MAX_SEEDS]
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        data = path.read_bytes()
        (folder / f"seed-{hashlib.sha1(data).hexdigest()[:12]}{path.suffix.lower()}").write_bytes(data)
    return len(files)


def generated_image_seeds(folder: Path) -> int:
    """Small images in every format and mode ingest reads (the shared data has few, no TIFF/GIF/WEBP)."""
    import io

    from PIL import Image

    base = Image.linear_gradient("L").resize((24, 16))
    frames = [Image.new("P", (12, 8), index) for index in range(3)]
    variants: list[tuple[str, Image.Image, dict[str, object]]] = [
        ("png", base.convert("P"), {}), ("png", base.convert("RGBA"), {}), ("png", base.convert("I;16"), {}),
        ("png", base.convert("LA"), {"dpi": (300, 300)}), ("jpeg", base.convert("RGB"), {"progressive": True}),
        ("jpeg", base.convert("CMYK"), {}), ("gif", frames[0], {"save_all": True, "append_images": frames[1:]}),
        ("tiff", base, {"compression": "tiff_lzw", "save_all": True, "append_images": [base.rotate(90)]}),
        ("tiff", base.convert("1"), {"compression": "group4"}), ("bmp", base.convert("RGB"), {}),
        ("webp", base.convert("RGB"), {"lossless": True}),
    ]
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: ingest applies the EXIF orientation
    variants.append(("jpeg", base.convert("RGB"), {"exif": exif.tobytes()}))
    folder.mkdir(parents=True, exist_ok=True)
    for index, (kind, image, options) in enumerate(variants):
        buffer = io.BytesIO()
        image.save(buffer, format=kind.upper(), **options)
        (folder / f"generated-{index}.{kind}").write_bytes(buffer.getvalue())
    return len(variants)


def _worker_command(args: argparse.Namespace, corpus: list[Path], seconds: int) -> list[str]:
    spec = TARGETS[args.target]
    return [
        sys.executable, str(Path(__file__).resolve().parent / "fuzz_harness.py"),
        "--target", args.target, "--out", str(args.out), "--hang", str(args.hang or spec.hang), "--",
        *map(str, corpus), f"-max_total_time={seconds}", "-timeout=0", f"-max_len={spec.max_len}",
        f"-rss_limit_mb={args.rss_mb}", "-print_final_stats=1", f"-artifact_prefix={args.out}/native-",
        "-handle_usr1=0", "-handle_usr2=0",
    ]


def fuzz(args: argparse.Namespace) -> dict[str, object]:
    """Run the worker until `args.seconds` have passed, restarting it after deaths and hangs."""
    spec = TARGETS[args.target]
    args.out.mkdir(parents=True, exist_ok=True)
    live = args.out / f"corpus-{args.target}"
    live.mkdir(exist_ok=True)
    seeds = args.out / f"seeds-{args.target}"
    shutil.rmtree(seeds, ignore_errors=True)
    sources = [args.corpus] if args.corpus else [SHARED / "real-docs", SHARED / "mmlongbench-dev", ROOT / "examples"]
    count = stage_seeds(args.target, [path for path in sources if path.exists()], seeds)
    if args.target == "image" and not args.corpus:
        count += generated_image_seeds(seeds)
    print(f"{args.target}: {count} seed(s), {args.seconds} s, hang limit {args.hang or spec.hang} s", file=sys.stderr)
    current = args.out / f"current-{args.target}.bin"
    hang = args.hang or spec.hang
    end, restarts, runs = time.monotonic() + args.seconds, 0, 0
    while (remaining := int(end - time.monotonic())) > 5:
        current.unlink(missing_ok=True)
        log = (args.out / f"worker-{args.target}.log").open("a")
        worker = subprocess.Popen(_worker_command(args, [live, seeds], remaining), stdout=log, stderr=log)
        while worker.poll() is None:
            time.sleep(1)
            stale = current.exists() and time.time() - current.stat().st_mtime > hang + 30
            if stale or time.monotonic() > end + hang + 60:
                worker.kill()
                worker.wait()
                if current.exists():
                    record(args.out, Finding("hang", f"hang:{args.target}:watchdog", f"over {hang + 30} s"),
                           current.read_bytes(), args.target)
                break
        log.close()
        runs += _executions(args.out / f"worker-{args.target}.log")
        if worker.returncode not in (0, None, -9) and current.exists():
            record(args.out, Finding("crash", f"worker-died:{args.target}:rc={worker.returncode}",
                                     _tail(args.out / f"worker-{args.target}.log")), current.read_bytes(), args.target)
        restarts += 1
    log_path = args.out / "findings.jsonl"
    findings = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    mine = [entry for entry in findings if entry["target"] == args.target]
    return {"target": args.target, "seconds": args.seconds, "seeds": count, "worker_starts": restarts, "executions": runs,
            "corpus": len(list(live.iterdir())), "findings": [entry["signature"] for entry in mine]}


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _executions(log: Path) -> int:
    for line in reversed(log.read_text(errors="replace").splitlines() if log.exists() else []):
        if line.startswith("stat::number_of_executed_units:"):
            return int(line.split(":")[-1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=sorted(TARGETS), required=True)
    parser.add_argument("--seconds", type=int, default=300, help="total fuzzing time")
    parser.add_argument("--corpus", type=Path, help="seed files or folder (default: ../shared/data)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "dse-fuzz", help="findings and corpus")
    parser.add_argument("--hang", type=float, help="seconds after which an input counts as a hang")
    parser.add_argument("--rss-mb", type=int, default=6144, help="worker memory limit (libFuzzer's)")
    parser.add_argument("--replay", type=Path, help="run one input through the harness and report")
    parser.add_argument("--minimize", type=Path, help="shrink an input while its finding stays the same")
    args = parser.parse_args()
    args.out = args.out.resolve()
    hang = args.hang or TARGETS[args.target].hang
    if args.replay or args.minimize:
        data = (args.replay or args.minimize).read_bytes()
        finding = run_one(args.target, data, hang)
        if finding is None or args.replay:
            print(json.dumps({"finding": None if finding is None else finding.__dict__}))
            return
        small = minimize(args.target, data, finding.signature, hang, deadline=time.monotonic() + args.seconds)
        path = args.minimize.with_name(args.minimize.stem + "-min" + TARGETS[args.target].suffix(small))
        path.write_bytes(small)
        print(json.dumps({"signature": finding.signature, "bytes": len(data), "minimized": len(small), "path": str(path)}))
        return
    os.environ.setdefault("PYTHONHASHSEED", "0")
    print(json.dumps(fuzz(args)))


if __name__ == "__main__":
    main()
