"""The fuzz harness: one input through `ingest.render`, what counts as a finding, minimisation.

Run by `bench/fuzz.py` (the watchdog) as the atheris worker:

    python bench/fuzz_harness.py --target pdf --out DIR --hang 45 -- CORPUS... -max_total_time=60

An input is written with its target's extension (chosen from its magic bytes for images and
office documents, so a finding replays the same way) and rendered with tight limits. A typed
`IngestError` is the expected outcome for a bad input. Findings:

- "crash": any other exception escapes `ingest.render`;
- "untyped": an unexpected exception (KeyError, struct.error, ...) that `ingest.render`'s
  catch-all turned into a plain IngestError("cannot render: KeyError: ...") - contained, but a
  bug all the same (its signature is the original exception's);
- "hang": the input still runs after the target's hang limit (its limits are tighter).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Finding:
    """An input's unexpected outcome: `kind` is "crash", "untyped" or "hang"."""

    kind: str
    signature: str
    detail: str


class _Hang(BaseException):
    """Raised by the alarm in the middle of a run that took too long (not an Exception)."""


def _image_suffix(data: bytes) -> str:
    magics = ((b"\x89PNG", ".png"), (b"\xff\xd8", ".jpg"), (b"GIF8", ".gif"), (b"II*\0", ".tiff"),
              (b"MM\0*", ".tiff"), (b"BM", ".bmp"))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((suffix for magic, suffix in magics if data.startswith(magic)), ".png")


def _office_suffix(data: bytes) -> str:
    if data.startswith(b"{\\rtf"):
        return ".rtf"
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        ole = (("W\0o\0r\0d\0D\0o\0c", ".doc"), ("P\0o\0w\0e\0r\0P\0o\0i\0n\0t", ".ppt"), ("W\0o\0r\0k\0b\0o\0o\0k", ".xls"))
        return next((suffix for name, suffix in ole if name.encode() in data), ".doc")
    zipped = ((b"ppt/", ".pptx"), (b"xl/", ".xlsx"), (b"opendocument.presentation", ".odp"),
              (b"opendocument.spreadsheet", ".ods"), (b"opendocument.text", ".odt"))
    return next((suffix for marker, suffix in zipped if marker in data[:65536]), ".docx")


@dataclass(frozen=True)
class Target:
    """One entry point: the files that seed it, how an input is named, its limits."""

    extensions: tuple[str, ...]
    suffix: Callable[[bytes], str]
    hang: float
    max_len: int
    limits: dict[str, Any]


TARGETS = {
    "pdf": Target((".pdf",), lambda data: ".pdf", 45, 200_000,
                  {"max_pages": 20, "page_timeout": 10, "file_timeout": 30, "max_memory_mb": 2048}),
    "image": Target((".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".bmp", ".webp"), _image_suffix, 30,
                    100_000, {"max_pages": 20, "max_image_pixels": 40_000_000, "file_timeout": 20}),
    "html": Target((".html", ".htm"), lambda data: ".html", 170, 60_000, {}),
    "office": Target((".docx", ".pptx", ".xlsx", ".odt", ".odp", ".ods", ".doc", ".ppt", ".xls", ".rtf"),
                     _office_suffix, 150, 200_000,
                     {"max_pages": 20, "convert_timeout": 90, "file_timeout": 120, "max_memory_mb": 4096}),
}


def _limits(target: str) -> Any:
    """`ingest.Limits` with the target's limits (those this version of ingest knows)."""
    import ingest

    known = {spec.name for spec in fields(ingest.Limits)}
    return ingest.Limits(**{name: value for name, value in TARGETS[target].limits.items() if name in known})


def _signature(exc: BaseException) -> str:
    """Exception type and the innermost project frame (file and function, not the line)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [frame for frame in frames if "/ingest/" in frame.filename or "/dse/" in frame.filename]
    frame = (ours or frames or [None])[-1]
    where = f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.name}" if frame else "?"
    return f"{type(exc).__name__}@{where}"


def untyped_cause(error: BaseException) -> BaseException | None:
    """The unexpected exception behind a catch-all IngestError ("cannot render: KeyError: ..."), or None."""
    cause = error.__cause__
    reason = str(getattr(error, "reason", ""))
    if cause is None or not reason.startswith(f"cannot render: {type(cause).__name__}"):
        return None
    return cause


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Hang


def run_one(target: str, data: bytes, hang: float) -> Finding | None:
    """Render `data` as a `target` file; None if it renders or fails with a typed IngestError.

    Raises:
        MissingToolError: The machine lacks a tool the target needs (not a finding).
    """
    import ingest

    with tempfile.TemporaryDirectory(prefix="dse-fuzz-") as folder:
        path = Path(folder) / f"input{TARGETS[target].suffix(data)}"
        path.write_bytes(data)
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, hang)
        try:
            for page in ingest.render(path, limits=_limits(target)):
                _ = (page.image.size, len(page.text), page.page_id)
        except ingest.IngestError as error:
            cause = untyped_cause(error)
            if cause is None:
                return None
            return Finding("untyped", _signature(cause), "".join(traceback.format_exception(cause)))
        except ingest.MissingToolError:
            raise
        except _Hang:
            return Finding("hang", f"hang:{target}", f"still running after {hang:g} s")
        except Exception as exc:  # noqa: BLE001 - this is what the fuzzer looks for
            return Finding("crash", _signature(exc), "".join(traceback.format_exception(exc)))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    return None


def minimize(target: str, data: bytes, signature: str, hang: float, deadline: float) -> bytes:
    """Remove chunks of `data` while the finding keeps its `signature` (until `deadline`)."""
    chunk = max(1, len(data) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        start, shrunk = 0, False
        while start < len(data) and time.monotonic() < deadline:
            candidate = data[:start] + data[start + chunk:]
            finding = run_one(target, candidate, hang) if candidate else None
            if finding is not None and finding.signature == signature:
                data, shrunk = candidate, True
            else:
                start += chunk
        if not shrunk:
            chunk //= 2
    return data


def record(out: Path, finding: Finding, data: bytes, target: str) -> bool:
    """Append a finding to OUT/findings.jsonl (once per signature) with its input; True if new."""
    log = out / "findings.jsonl"
    known = {json.loads(line)["signature"] for line in log.read_text().splitlines()} if log.exists() else set()
    if finding.signature in known:
        return False
    name = f"{finding.kind}-{hashlib.sha1(data).hexdigest()[:12]}{TARGETS[target].suffix(data)}"
    (out / name).write_bytes(data)
    entry = {"target": target, "kind": finding.kind, "signature": finding.signature, "input": name,
             "bytes": len(data), "detail": finding.detail[-3000:]}
    with log.open("a") as stream:
        stream.write(json.dumps(entry) + "\n")
    print(f"FINDING {finding.kind}: {finding.signature} ({name}, {len(data)} bytes)", file=sys.stderr, flush=True)
    return True


def worker(argv: list[str]) -> None:
    """The atheris worker: instrument ingest and Pillow, then fuzz `run_one`."""
    import atheris

    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hang", type=float, required=True)
    args = parser.parse_args(argv[:split])
    with atheris.instrument_imports(include=["ingest", "PIL", "pdf2image"]):
        import PIL.Image

        import ingest  # noqa: F401

        PIL.Image.init()  # import every format plugin now, so that it is instrumented
    current = args.out / f"current-{args.target}.bin"

    def one_input(data: bytes) -> None:
        current.write_bytes(data)  # the watchdog's record of what was running
        finding = run_one(args.target, data, args.hang)
        if finding is not None:
            record(args.out, finding, data, args.target)

    atheris.Setup([sys.argv[0], *argv[split + 1:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    worker(sys.argv[1:])
