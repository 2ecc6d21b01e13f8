"""OCR of pages without a usable text layer: tesseract on the page image, contained like poppler.

`OcrOptions.mode` chooses the pages: "auto" (the default) reads a PDF page whose text layer has
fewer than `MIN_TEXT_CHARS` letters and digits (a scan, a slide exported as a picture) and every
image file; "always" reads every PDF page and image, and the OCR text replaces the text layer
(for PDFs whose text layer is wrong); "never" reads none.

Each page is one `tesseract` call through `ingest.sandbox.tools.run_tool`: the memory cap of the
file's limits (`Limits.max_memory_mb`), a CPU-time cap and a wall-clock limit of
`OcrOptions.timeout` seconds, bounded output, one thread (the render workers already run in
parallel). OCR time is not charged to the file's `file_timeout` (a 600-page scan takes about an
hour to read on one core); each page has its own limit instead. A failure (tesseract missing,
out of time, an image it cannot read, an unknown language) never fails the page or its file: the
page keeps its text layer (or none) and says why in its metadata (`ocr_error`), which indexing
reports by source.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import tempfile
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Mapping

from ingest.page import Page
from ingest.sandbox.tools import Caps, ToolTimeout, run_tool, warn_once

logger = logging.getLogger(__name__)

OCR_MODES = ("auto", "always", "never")
MIN_TEXT_CHARS = 20
"""A text layer with fewer letters and digits than this is not usable (auto mode reads the page).

On ../shared/data/mmlongbench-dev (2,710 pages), 241 pages have no letter or digit at all (slide
decks and scans exported as pictures) and 10 more fewer than 20 (a page number, a stamp, a
garbled scan layer such as "Lith any UNIVEKSI) I WILA"); pages with 20 to 50 are real but short
(chapter openers, "Item 9B. Other Information None."), and keep their text layer."""
DEFAULT_OCR_DPI = 300
"""Resolution a page is rendered at for OCR when the render at hand is below `REUSE_DPI`."""
REUSE_DPI = 200
"""A page already rendered at this dpi or more is read as is, not rendered again.

Measured on 16 text pages of mmlongbench-dev (distinct words of 3+ letters that the text layer
has and tesseract 5.3 finds): 0.944 at 144 dpi (4.7 s a page), 0.987 at 200 (5.4 s), 0.985 at
300 (5.9 s); rendering a page again costs 0.2-0.3 s. Below 200 dpi OCR loses words, so the
default 144 dpi render is not enough and the page is rendered again, in gray, at `dpi`."""
DEFAULT_OCR_TIMEOUT = 120.0
"""Seconds tesseract may spend on one page (a dense page at 300 dpi takes 5-10 s on one core)."""
DEFAULT_OCR_LANGUAGE = "eng"
MAX_OCR_TEXT_BYTES = 1024 * 1024
"""Most OCR text kept per page (as poppler's `MAX_TEXT_BYTES_PER_PAGE`)."""
CONFIG_KEYS = ("ocr", "ocr_language", "ocr_dpi", "ocr_timeout")
"""Keys of the `ingest:` config section that `OcrOptions.from_config` reads."""
_LANGUAGE = re.compile(r"^[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*$")
_WORD_CHAR = re.compile(r"[^\W_]")  # a letter or digit, any script
MISSING = "tesseract is not installed (install tesseract-ocr, e.g. `apt-get install tesseract-ocr`)"


@dataclass(frozen=True)
class OcrOptions:
    """Which pages are read by OCR, and how.

    Attributes:
        mode: "auto", "always" or "never" (see the module docstring).
        language: tesseract's language(s), e.g. "eng" or "eng+deu" (each needs its
            tesseract-ocr-LANG package).
        dpi: Resolution a PDF page is rendered at for OCR when its render is below `REUSE_DPI`.
        timeout: Seconds tesseract may spend on one page.
    """

    mode: str = "auto"
    language: str = DEFAULT_OCR_LANGUAGE
    dpi: int = DEFAULT_OCR_DPI
    timeout: float = DEFAULT_OCR_TIMEOUT

    def __post_init__(self) -> None:
        if self.mode not in OCR_MODES:
            raise ValueError(f"ocr must be one of {', '.join(OCR_MODES)}, got {self.mode!r}")
        if not isinstance(self.language, str) or not _LANGUAGE.match(self.language):
            raise ValueError(f"ocr_language must be tesseract language codes such as 'eng' or 'eng+deu', "
                             f"got {self.language!r}")
        if isinstance(self.dpi, bool) or not isinstance(self.dpi, int) or not 70 <= self.dpi <= 1200:
            raise ValueError(f"ocr_dpi must be an integer from 70 to 1200, got {self.dpi!r}")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or self.timeout <= 0:
            raise ValueError(f"ocr_timeout must be a positive number of seconds, got {self.timeout!r}")

    def record(self) -> dict[str, Any]:
        """What decides the pages' text, for the index's manifest: mode, language, dpi, the usable-text
        threshold, and (unless "never") whether tesseract was installed. The time limit is left out."""
        out: dict[str, Any] = {"mode": self.mode, "language": self.language, "dpi": self.dpi,
                               "min_text_chars": MIN_TEXT_CHARS}
        if self.mode != "never":
            out["tesseract"] = tesseract_path() is not None
        return out

    @classmethod
    def from_config(cls, values: Mapping[str, Any]) -> "OcrOptions":
        """Options from config-style keys (`CONFIG_KEYS`; None or absent: the default).

        Raises:
            ValueError: A value is out of range (the message names its key).
        """
        base = cls()
        mode = values.get("ocr")
        if isinstance(mode, bool):  # YAML reads `ocr: off` / `ocr: on` as booleans
            mode = "always" if mode else "never"
        dpi, timeout = values.get("ocr_dpi"), values.get("ocr_timeout")
        return cls(
            mode=base.mode if mode is None else str(mode),
            language=base.language if values.get("ocr_language") is None else str(values["ocr_language"]),
            dpi=base.dpi if dpi is None else dpi,
            timeout=base.timeout if timeout is None else timeout,
        )


@dataclass(frozen=True)
class OcrResult:
    """What OCR of one page gave.

    Attributes:
        text: The text tesseract read ("" when it failed or found none).
        seconds: Wall-clock time of the tesseract call.
        dpi: Resolution of the image read (None: unknown, an image file without one).
        error: Why OCR failed, or None.
    """

    text: str
    seconds: float = 0.0
    dpi: int | None = None
    error: str | None = None


def text_chars(text: str) -> int:
    """Letters and digits in `text` (any script)."""
    return len(_WORD_CHAR.findall(text))


def usable_text(text: str) -> bool:
    """True if a text layer has at least `MIN_TEXT_CHARS` letters and digits."""
    return text_chars(text) >= MIN_TEXT_CHARS


def wants_ocr(text: str, options: OcrOptions | None) -> bool:
    """True if a page with this text layer is read by OCR under `options` (None: never)."""
    if options is None or options.mode == "never":
        return False
    return options.mode == "always" or not usable_text(text)


@cache
def tesseract_path() -> str | None:
    """The `tesseract` program on PATH, or None."""
    return shutil.which("tesseract")


def ocr_options(value: OcrOptions | str | None) -> OcrOptions:
    """`OcrOptions` from the options, a mode name, or None (the defaults).

    Raises:
        ValueError: Not a known mode.
    """
    if value is None:
        return OcrOptions()
    if isinstance(value, OcrOptions):
        return value
    return OcrOptions(mode=value)


def check_available(options: OcrOptions) -> OcrOptions:
    """The options a run uses: with tesseract missing, "auto" warns once and becomes "never".

    "always" stays: every page then reports `MISSING` (`ocr_error`), so the user asked for OCR
    and is told, by source, that it did not happen.
    """
    if options.mode == "auto" and tesseract_path() is None:
        warn_once("tesseract-missing", f"OCR is off: {MISSING}; pages without a text layer get no text")
        return OcrOptions("never", options.language, options.dpi, options.timeout)
    return options


def ocr_file(path: str, options: OcrOptions, memory_bytes: int | None, dpi: int | None = None) -> OcrResult:
    """Read the text of one image file (PPM, PGM, PNG, ...) with tesseract; never raises for the image.

    Args:
        path: The image.
        options: Language and time limit.
        memory_bytes: Address-space cap of the tesseract process (None: none).
        dpi: The image's resolution, told to tesseract (None: let it guess).
    """
    program = tesseract_path()
    if program is None:
        return OcrResult("", 0.0, dpi, MISSING)
    args = [program, path, "stdout", "-l", options.language, *(["--dpi", str(dpi)] if dpi else [])]
    caps = Caps(memory_bytes, options.timeout)
    try:
        result = run_tool(args, timeout=options.timeout, caps=caps, max_stdout=MAX_OCR_TEXT_BYTES,
                          env={"OMP_THREAD_LIMIT": "1"})
    except ToolTimeout:
        return OcrResult("", options.timeout, dpi, _timeout(options))
    except OSError as exc:
        return OcrResult("", 0.0, dpi, f"tesseract could not be started: {exc}")
    if result.returncode == -signal.SIGXCPU:
        return OcrResult("", result.seconds, dpi, _timeout(options))
    if result.truncated:  # stopped past MAX_OCR_TEXT_BYTES: the first part is kept, as for a text layer
        logger.warning("%s: OCR text over %s bytes; it is cut", path, f"{MAX_OCR_TEXT_BYTES:,}")
    elif result.returncode != 0:
        return OcrResult("", result.seconds, dpi, _failure(result.returncode, result.stderr, options))
    text = result.stdout.decode("utf-8", "replace").replace("\f", "\n")
    return OcrResult(_clean(text), result.seconds, dpi)


def ocr_image(image: Any, options: OcrOptions, memory_bytes: int | None, dpi: int | None = None) -> OcrResult:
    """Read the text of a PIL image (written to a private file in RAM for tesseract)."""
    if tesseract_path() is None:
        return OcrResult("", 0.0, dpi, MISSING)
    folder = _private_dir()
    try:
        path = os.path.join(folder, "page.ppm" if image.mode == "RGB" else "page.png")
        try:
            image.save(path)
        except (OSError, ValueError) as exc:
            return OcrResult("", 0.0, dpi, f"the page image cannot be written for tesseract: {exc}")
        return ocr_file(path, options, memory_bytes, dpi)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def with_ocr(page: Page, options: OcrOptions | None, memory_bytes: int | None) -> Page:
    """An image file's page after OCR (the page itself when `options` selects no OCR)."""
    if not wants_ocr(page.text, options):
        return page
    assert options is not None
    dpi = page.metadata.get("dpi")
    known = int(dpi) if isinstance(dpi, (int, float)) and not isinstance(dpi, bool) and dpi >= 70 else None
    result = ocr_image(page.image, options, memory_bytes, known)
    text, extra = merge(page.text, result, options)
    return replace(page, text=text, metadata={**dict(page.metadata), **extra}, ocr_seconds=result.seconds)


def merge(text: str, result: OcrResult, options: OcrOptions) -> tuple[str, dict[str, Any]]:
    """The page's text after OCR, and what its metadata records of it.

    "always" keeps the OCR text; "auto" keeps it when it has more letters and digits than the
    text layer (a nearly empty layer, such as a page number, gives way). A failure keeps the text
    layer and records `ocr_error`; OCR text used records `text_source: "ocr"`, `ocr_dpi` and
    `ocr_language`.
    """
    if result.error is not None:
        return text, {"ocr_error": result.error}
    if options.mode == "always" or text_chars(result.text) > text_chars(text):
        return result.text, {"text_source": "ocr", "ocr_dpi": result.dpi, "ocr_language": options.language}
    return text, {}


def _timeout(options: OcrOptions) -> str:
    return (f"OCR took longer than {options.timeout:g} s and was stopped (raise the limit with "
            "`ingest: ocr_timeout`)")


def _failure(returncode: int, stderr: bytes, options: OcrOptions) -> str:
    """What a failed tesseract call says, for a user to act on."""
    message = stderr.decode("utf-8", "replace")
    if "Failed loading language" in message or "Could not initialize tesseract" in message:
        return (f"tesseract has no data for language {options.language!r} (install its "
                f"tesseract-ocr-LANG package, e.g. tesseract-ocr-eng; `tesseract --list-langs` shows those installed)")
    if returncode < 0:
        return f"tesseract was killed by {signal.Signals(-returncode).name} (out of memory?)"
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    detail = "; ".join(dict.fromkeys(lines))[:300] or f"exit status {returncode}"
    return f"tesseract cannot read the page image ({detail})"


def _private_dir() -> str:
    """A private folder (0700) in RAM where there is one, named like poppler's (`dse-render-<pid>-*`),
    so a run that dies leaves nothing the next parallel run does not remove."""
    root = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix=f"dse-render-{os.getpid()}-", dir=root)


def _clean(text: str) -> str:
    """OCR text with trailing spaces and runs of blank lines removed."""
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()

