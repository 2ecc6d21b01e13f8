"""Errors raised while rendering sources."""

from __future__ import annotations


class IngestError(Exception):
    """A source could not be rendered. The message always names the source."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = str(source)
        self.reason = reason


class UnsupportedSourceError(IngestError):
    """The source is not a kind of file `ingest` can render."""


class EncryptedSourceError(IngestError):
    """The PDF is encrypted and no (correct) password was given."""


class MissingToolError(RuntimeError):
    """A program `ingest` needs (poppler-utils: pdfinfo, pdftoppm, pdftotext) is not installed.

    Not an `IngestError`: it is a fault of the machine, not of one source, so rendering a folder
    stops instead of skipping every PDF in turn.
    """


class LimitExceededError(IngestError):
    """The source is over a configured limit (pages, file size, image pixels: `ingest.Limits`)."""


class ConversionError(IngestError):
    """An office document could not be converted to PDF (malformed, protected, or timed out)."""


class MissingConverterError(IngestError):
    """LibreOffice, needed for office documents, is not installed.

    An `IngestError`, unlike `MissingToolError`: only the office documents of a batch fail (each
    with a message saying how to install it); PDFs and images are still indexed.
    """


class RenderTimeoutError(LimitExceededError):
    """Rendering or reading the text of a page or of a whole file took longer than its limit.

    `Limits.page_timeout` (per page) and `Limits.file_timeout` (per file); the tool is stopped.
    """


class MemoryLimitError(LimitExceededError):
    """A renderer or converter ran out of memory under its cap (`Limits.max_memory_mb`)."""


class WorkerCrashedError(IngestError):
    """A render worker process died (killed, out of memory, crashed) while rendering the source.

    The run goes on with a fresh worker; only this source fails.
    """


class SandboxUnavailableError(ConversionError):
    """The sandbox `Limits.sandbox` asks for ("require", "strict") cannot run on this machine."""
