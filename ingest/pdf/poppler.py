"""poppler's programs (pdfinfo, pdftoppm, pdftotext) and qpdf, under time and memory limits.

Every call runs through `ingest.sandbox.tools.run_tool`: an address-space cap (`Limits.max_memory_mb`),
a CPU-time cap and a wall-clock limit from the file's `Clock` (`page_timeout` per page,
`file_timeout` per file), bounded output, and no password on any command line: an encrypted PDF
is decrypted once by qpdf, which reads the password from its standard input, into a private
file that poppler then reads.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ingest.base import SourceFile
from ingest.errors import (
    EncryptedSourceError,
    IngestError,
    LimitExceededError,
    MemoryLimitError,
    MissingToolError,
)
from ingest.limits import Clock, check_page_count
from ingest.sandbox.tools import Caps, ToolResult, ToolTimeout, run_tool

MAX_TEXT_BYTES_PER_PAGE = 1024 * 1024
"""Most text kept per page (the rest is cut, with a warning); a dense page has about 10 KB."""
MAX_INFO_BYTES = 64 * 1024 * 1024
"""Most output read from pdfinfo (about 400 bytes a page)."""
_OUT_OF_MEMORY = ("out of memory", "bad_alloc", "cannot allocate memory", "failed to map segment")
_MB = 1024 * 1024
_PAGE_SIZE = re.compile(r"^Page\s+(\d+)\s+size:\s+([\d.]+)\s*x\s*([\d.]+)")
_MEDIA_BOX = re.compile(r"^Page\s+(\d+)\s+MediaBox:" + r"\s+(-?[\d.]+)" * 4)
_INFO_FIELD = re.compile(r"^(Title|Subject|Keywords):[ \t]*(.*?)\s*$")
MAX_INFO_FIELD = 1000
"""Most characters kept of the document's title, subject or keywords."""
_PAGES = re.compile(r"^Pages:\s+(\d+)", re.MULTILINE)


Size = tuple[float, float]


@cache
def require_tool(name: str) -> str:
    """Return the path of a poppler program, or raise MissingToolError."""
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(
            f"'{name}' was not found: install poppler-utils (e.g. `apt-get install poppler-utils`)"
        )
    return path


def ram_dir() -> str:
    """`/dev/shm` (a RAM file system) where it exists, else the default temporary folder."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return "/dev/shm"
    return tempfile.gettempdir()


def private_dir() -> str:
    """A new private folder (0700) in `ram_dir()`, `dse-render-<pid>-*`: those of processes that
    died without cleaning up are removed by the next parallel run (`workers.make_spool`)."""
    return tempfile.mkdtemp(prefix=f"dse-render-{os.getpid()}-", dir=ram_dir())


def poppler_error(source: str, message: str, password_given: bool = False) -> IngestError:
    """Turn poppler's stderr into an IngestError that names the source and says why."""
    if "Incorrect password" in message:
        if not password_given:
            return EncryptedSourceError(
                source, "PDF is encrypted: pass its password (password=...)"
            )
        return EncryptedSourceError(source, "PDF is encrypted and the given password is wrong")
    if "Invalid page count 0" in message or "No pages" in message:
        return IngestError(source, "PDF has no pages")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Unable to get page count")]
    detail = "; ".join(dict.fromkeys(lines)) or "no output"
    return IngestError(source, f"not a readable PDF (poppler: {detail[:300]})")


def limit_failure(
    source: str, what: str, result: ToolResult, clock: Clock, caps: Caps
) -> IngestError | None:
    """The error for a call that hit its memory, CPU or file-size cap, or None.

    poppler often exits 0 after "Out of memory" (writing an empty page), so its message counts.
    """
    message = result.stderr.decode("utf-8", "replace").lower()
    if result.returncode == -signal.SIGXCPU:
        return clock.expired(f"{what} (CPU time)", 1, caps.cpu_seconds or 0.0)
    if result.returncode == -signal.SIGXFSZ:
        size = (caps.file_bytes or 0) / _MB
        return LimitExceededError(source, f"{what} wrote a file over {size:.0f} MB and was stopped")
    if any(sign in message for sign in _OUT_OF_MEMORY) or result.returncode == -signal.SIGABRT:
        return MemoryLimitError(
            source,
            f"{what} ran out of memory under the cap of {clock.limits.max_memory_mb} MB "
            "(raise it with `ingest: max_memory_mb`)",
        )
    return None


def _run(
    args: list[str], what: str, pages: int, clock: Clock, file_bytes: int | None = None,
    stdin: bytes | None = None, max_stdout: int | None = None,
) -> tuple[ToolResult, Caps]:
    """Run one tool call over `pages` pages on the clock; RenderTimeoutError past its time."""
    timeout = clock.timeout(pages)
    caps = Caps(clock.limits.max_memory_bytes, timeout, file_bytes)
    try:
        result = run_tool(args, timeout=timeout, caps=caps, stdin=stdin, max_stdout=max_stdout)
    except ToolTimeout:
        clock.charge(timeout)
        raise clock.expired(what, pages, timeout) from None
    clock.charge(result.seconds)
    return result, caps


def pdfinfo(path: Path, max_pages: int, clock: Clock, password_given: bool = False) -> str:
    """pdfinfo's report (page count, sizes and boxes of pages 1..max_pages) of a PDF.

    Raises:
        EncryptedSourceError: The PDF needs a password.
        IngestError: The file is not a readable PDF (or pdfinfo hit a limit).
    """
    args = [require_tool("pdfinfo"), "-box", "-f", "1", "-l", str(max_pages), os.fspath(path)]
    result, caps = _run(args, "pdfinfo", 1, clock, max_stdout=MAX_INFO_BYTES)
    failure = limit_failure(clock.source, "pdfinfo", result, clock, caps)
    if failure is not None:
        raise failure
    if result.returncode != 0:
        raise poppler_error(clock.source, result.stderr.decode("utf-8", "replace"), password_given)
    return result.stdout.decode("utf-8", "replace")


def pdftoppm(path: Path, first: int, last: int, dpi: int, folder: str, clock: Clock,
             max_page_pixels: int, gray: bool = False) -> list[str]:
    """Render pages first..last at `dpi` into PPM files (`gray`: PGM) in `folder`; their paths, in order.

    Raises:
        RenderTimeoutError, MemoryLimitError: A limit was hit.
        IngestError: poppler failed or rendered another number of pages.
    """
    root = os.path.join(folder, uuid.uuid4().hex)
    args = [require_tool("pdftoppm"), "-r", str(dpi), *(["-gray"] if gray else []), "-f", str(first),
            "-l", str(last), os.fspath(path), root]
    where = f"page {first}" if first == last else f"pages {first}-{last}"
    pages = last - first + 1
    prefix = os.path.basename(root) + "-"
    try:
        result, caps = _run(args, f"pdftoppm on {where}", pages, clock,
                            file_bytes=3 * max_page_pixels + _MB)
        failure = limit_failure(clock.source, f"rendering {where}", result, clock, caps)
    finally:
        paths = sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.startswith(prefix))
    if failure is not None or result.returncode != 0 or len(paths) != pages:
        for name in paths:
            os.unlink(name)
        if failure is not None:
            raise failure
        if result.returncode != 0:
            raise poppler_error(clock.source, result.stderr.decode("utf-8", "replace"))
        raise IngestError(clock.source, f"poppler rendered {len(paths)} image(s) for {where}")
    return paths


def pdftotext(path: Path, first: int, last: int, clock: Clock) -> tuple[str | None, bool]:
    """The `-layout` text of pages first..last, form feed after each page, and whether it was
    cut at `MAX_TEXT_BYTES_PER_PAGE` per page; (None, False) when poppler fails.

    Raises:
        RenderTimeoutError: It took longer than its limit.
    """
    args = [require_tool("pdftotext"), "-f", str(first), "-l", str(last), "-layout",
            "-enc", "UTF-8", os.fspath(path), "-"]
    where = f"page {first}" if first == last else f"pages {first}-{last}"
    pages = last - first + 1
    result, caps = _run(args, f"pdftotext on {where}", pages, clock,
                        max_stdout=MAX_TEXT_BYTES_PER_PAGE * pages)
    failure = limit_failure(clock.source, f"reading the text of {where}", result, clock, caps)
    if isinstance(failure, LimitExceededError) and not isinstance(failure, MemoryLimitError):
        raise failure
    if failure is not None or (result.returncode != 0 and not result.truncated):
        return None, False
    return result.stdout.decode("utf-8", errors="replace"), result.truncated


def decrypt(path: Path, password: str, clock: Clock, max_file_bytes: int) -> Path:
    """Decrypt a PDF with qpdf into a private folder (0700; the file 0600); return its path.

    The password goes to qpdf's standard input, never on a command line. The caller deletes
    the folder (`path.parent`) when done.

    Raises:
        EncryptedSourceError: The password is wrong, or qpdf is missing.
        IngestError: qpdf failed or hit a limit.
    """
    qpdf = shutil.which("qpdf")
    if qpdf is None:
        raise EncryptedSourceError(
            clock.source,
            "PDF is encrypted: decrypting it needs qpdf (`apt-get install qpdf`), since a "
            "password is never passed to poppler on its command line",
        )
    folder = Path(private_dir())
    out = folder / "document.pdf"
    args = [qpdf, "--password-file=-", "--decrypt", os.fspath(path), os.fspath(out)]
    try:
        result, caps = _run(args, "qpdf (decrypting)", 1, clock, file_bytes=2 * max_file_bytes,
                            stdin=password.encode("utf-8") + b"\n", max_stdout=_MB)
        failure = limit_failure(clock.source, "decrypting it", result, clock, caps)
        if failure is not None:
            raise failure
        message = result.stderr.decode("utf-8", "replace")
        if "invalid password" in message.lower():
            raise EncryptedSourceError(
                clock.source, "PDF is encrypted and the given password is wrong"
            )
        if result.returncode not in (0, 3) or not out.is_file():  # 3: written, with warnings
            detail = "; ".join(line.strip() for line in message.splitlines() if line.strip())
            raise IngestError(clock.source, f"cannot decrypt it (qpdf: {detail[:300]})")
        os.chmod(out, 0o600)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return out


@dataclass(frozen=True)
class PdfInfo:
    """What `pdfinfo` says about a PDF.

    Attributes:
        num_pages: Number of pages (at least 1).
        sizes: Page sizes in points (the crop box), `(width, height)` per page, or None.
        media: Media boxes in points per page (what pdftoppm renders), or None.
        fields: The document information's "title", "subject" and "keywords" that are set.
    """

    num_pages: int
    sizes: tuple[Size | None, ...]
    media: tuple[Size | None, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()

    def render_size(self, number: int) -> Size | None:
        """The size pdftoppm renders page `number` at: its media box, else its page size."""
        box = self.media[number - 1] if number <= len(self.media) else None
        return box or self.sizes[number - 1]


def parse_pdfinfo(report: str) -> PdfInfo:
    """Parse `pdfinfo -box -f 1 -l N`'s report (sizes of pages past N are None)."""
    match = _PAGES.search(report)
    num_pages = int(match.group(1)) if match else 0
    count = min(num_pages, 10**6)
    sizes: list[Size | None] = [None] * count
    media: list[Size | None] = [None] * count
    fields: dict[str, str] = {}
    for line in report.splitlines():
        if (info := _INFO_FIELD.match(line)) and info.group(2):
            fields.setdefault(info.group(1).lower(), info.group(2)[:MAX_INFO_FIELD])
        elif found := _PAGE_SIZE.match(line):
            number = int(found.group(1))
            if 1 <= number <= count:
                sizes[number - 1] = (float(found.group(2)), float(found.group(3)))
        elif found := _MEDIA_BOX.match(line):
            number = int(found.group(1))
            x0, y0, x1, y1 = (float(found.group(i)) for i in range(2, 6))
            if 1 <= number <= count:
                media[number - 1] = (abs(x1 - x0), abs(y1 - y0))
    return PdfInfo(num_pages=num_pages, sizes=tuple(sizes), media=tuple(media), fields=tuple(fields.items()))


def probe_pdf(
    file: SourceFile, max_pages: int | None = None, clock: Clock | None = None,
    password_given: bool = False,
) -> PdfInfo:
    """Read the page count, page sizes and media boxes with one `pdfinfo` call.

    Raises:
        EncryptedSourceError: The PDF needs a password.
        LimitExceededError: The PDF has more than `max_pages` pages.
        IngestError: The file is not a readable PDF or has no pages.
    """
    clock = clock or Clock(file.source)
    limit = max_pages or clock.limits.max_pages
    info = parse_pdfinfo(pdfinfo(file.path.absolute(), limit, clock, password_given))
    if info.num_pages < 1:
        raise IngestError(file.source, "PDF has no pages")
    check_page_count(file.source, info.num_pages, limit)
    return info
