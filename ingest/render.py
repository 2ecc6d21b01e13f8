"""Dispatch sources to renderers: `render` (a file or a folder) and `discover` (expand folders)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

from ingest.base import DEFAULT_CHUNK_PAGES, DEFAULT_DPI, Renderer, RenderOptions, SourceFile
from ingest.digest import file_digest
from ingest.errors import IngestError, MissingToolError, UnsupportedSourceError
from ingest.images import IMAGE_EXTENSIONS, render_image
from ingest.limits import Limits, check_file_size
from ingest.ocr import OcrOptions, check_available, ocr_options
from ingest.office.render import OFFICE_EXTENSIONS, render_office
from ingest.page import Page
from ingest.pdf.render import PDF_EXTENSIONS, render_pdf
from ingest.web.render import WEB_EXTENSIONS, render_html, render_url
from ingest.web.safety import is_url

logger = logging.getLogger(__name__)

RENDERERS: Mapping[str, Renderer] = MappingProxyType(
    {
        **{extension: render_pdf for extension in PDF_EXTENSIONS},
        **{extension: render_image for extension in IMAGE_EXTENSIONS},
        **{extension: render_office for extension in OFFICE_EXTENSIONS},
        **{extension: render_html for extension in WEB_EXTENSIONS},
    }
)
"""Lower-case file extension -> renderer. A new source kind is a new module plus entries here."""

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(RENDERERS)

ErrorHandler = Callable[[IngestError], None]


def _normalise(source: str | os.PathLike[str]) -> str:
    """Return the path as given, normalised (`~` expanded, `a//b/../c` -> `a/c`), not made absolute."""
    return os.path.normpath(os.path.expanduser(os.fspath(source)))


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _walk(root: Path) -> list[Path]:
    """Return the supported files under `root`, recursively, skipping hidden files and folders."""
    found = []
    for directory, subdirectories, names in os.walk(root, followlinks=False):
        subdirectories[:] = [name for name in subdirectories if not _is_hidden(name)]
        for name in names:
            if not _is_hidden(name) and Path(name).suffix.lower() in SUPPORTED_EXTENSIONS:
                found.append(Path(directory) / name)
    return sorted(found, key=lambda path: path.relative_to(root).parts)


def discover(sources: Iterable[str | os.PathLike[str]]) -> list[Path | str]:
    """Expand sources into the files to render.

    A folder becomes its supported files (recursive, hidden entries skipped, sorted by relative
    path); a file is kept as given, whatever its extension, so `render` can say why it is not
    supported. An http(s) URL is passed through as the string given (it is not a file). Order
    follows `sources`; a file (or URL) reached twice is listed once.

    Args:
        sources: Files and folders (a single path is accepted too).

    Returns:
        Normalised paths of the files (and URL strings), in a deterministic order.

    Raises:
        IngestError: A source does not exist.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    files: list[Path | str] = []
    seen: set[str] = set()
    for source in sources:
        if is_url(source):
            if source not in seen:
                seen.add(str(source))
                files.append(str(source))
            continue
        path = Path(_normalise(source))
        if path.is_dir():
            candidates = _walk(path)
        elif path.exists():
            candidates = [path]
        else:
            raise IngestError(str(source), "no such file or directory")
        for candidate in candidates:
            key = os.path.realpath(candidate)
            if key not in seen:
                seen.add(key)
                files.append(candidate)
    return files


def _open_file(path: Path, options: RenderOptions, digest: str | None) -> Iterator[Page]:
    """Check and probe one file now; return the lazy iterator over its pages."""
    return open_source(check_source(path, digest, options.limits), options)


def check_source(
    path: Path, digest: str | None = None, limits: Limits | None = None
) -> SourceFile:
    """Check that `path` is a non-empty file of a supported kind; hash it unless `digest` is given.

    Raises:
        LimitExceededError: The file is larger than `limits.max_file_bytes` (default `Limits()`).
        IngestError: Missing, not a regular file, unsupported, empty or unreadable.
    """
    source = _normalise(path)
    if not path.exists():
        if path.is_symlink():
            raise IngestError(source, "broken symbolic link (its target is missing or loops)")
        raise IngestError(source, "no such file or directory")
    if not path.is_file():
        raise IngestError(source, "not a regular file")
    extension = path.suffix.lower()
    renderer = RENDERERS.get(extension)
    if renderer is None:
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        kind = f"'{extension}' files" if extension else "files without an extension"
        raise UnsupportedSourceError(
            source, f"unsupported source: {kind} cannot be rendered (supported: {supported})"
        )
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise IngestError(source, f"cannot read file ({exc.strerror or exc})") from exc
    if size == 0:
        raise IngestError(source, "empty file (0 bytes)")
    check_file_size(source, size, (limits or Limits()).max_file_bytes)
    return SourceFile(path=path, source=source, digest=digest or file_digest(path))


def open_source(file: SourceFile, options: RenderOptions) -> Iterator[Page]:
    """Probe a checked file now (IngestError if it cannot be read); return its lazy page iterator."""
    renderer = RENDERERS[file.path.suffix.lower()]
    try:
        pages = renderer(file, options)
    except (IngestError, MissingToolError):
        raise
    except Exception as exc:  # a decoder's unexpected failure is still this file's failure
        raise IngestError(file.source, f"cannot render: {type(exc).__name__}: {exc}") from exc
    return _guarded(file.source, pages)


def _guarded(source: str, pages: Iterator[Page]) -> Iterator[Page]:
    """Re-raise unexpected failures while streaming a file's pages as IngestError naming it."""
    try:
        yield from pages
    except (IngestError, MissingToolError):
        raise
    except Exception as exc:
        raise IngestError(source, f"cannot render: {type(exc).__name__}: {exc}") from exc


def _log_error(error: IngestError) -> None:
    """Default folder error handler: log and go on."""
    logger.warning("skipping %s", error)


def _render_files(
    files: list[Path], options: RenderOptions, on_error: ErrorHandler
) -> Iterator[Page]:
    """Yield the pages of each file in turn; each file's IngestError goes to `on_error`."""
    for path in files:
        try:
            yield from _open_file(path, options, None)
        except IngestError as error:
            on_error(error)


def render(
    source: str | os.PathLike[str],
    *,
    dpi: int = DEFAULT_DPI,
    password: str | None = None,
    on_error: ErrorHandler | None = None,
    digest: str | None = None,
    chunk_pages: int = DEFAULT_CHUNK_PAGES,
    allow_private: bool = False,
    limits: Limits | None = None,
    ocr: OcrOptions | str | None = None,
) -> Iterator[Page]:
    """Render a PDF, office document, image, web page (URL, .html) or folder into `Page` records.

    A single file is checked before this returns (missing, empty, unsupported, unreadable,
    encrypted: IngestError raised here, before any page). A failure later on (a page poppler cannot
    render) raises while iterating. For a folder, each file's IngestError is passed to `on_error`
    (default: a logged warning) and rendering goes on with the next file; pages of a file that
    fails midway have already been yielded, so a caller that needs all-or-nothing per file should
    drop pages whose `source` equals the error's `source`.

    Args:
        source: A file or a folder (searched recursively, see `discover`).
        dpi: Rendering resolution for PDFs (default 144; see `ingest.base.DEFAULT_DPI`).
        password: User password for encrypted PDFs.
        on_error: Called with each file's IngestError when rendering a folder.
        digest: SHA-256 hex digest of the file, if the caller already computed it (files only).
        chunk_pages: Pages of a PDF rendered per poppler call (memory bound).
        allow_private: Web pages may reach loopback, private and link-local addresses.
        limits: Per-source limits (pages, file size, image pixels, office conversion time);
            None: `Limits()`'s defaults. A source over one fails with LimitExceededError.
        ocr: OCR of pages without a usable text layer and of images (`ingest.ocr.OcrOptions`,
            or its mode "auto", "always" or "never"; None: "auto"). With tesseract missing,
            "auto" logs one warning and reads nothing.

    Returns:
        A lazy iterator over the pages, in order.

    Raises:
        IngestError: A single file cannot be rendered, or `source` does not exist.
        ValueError: `dpi` or `chunk_pages` is not positive, or `digest` is given for a folder.
    """
    if dpi <= 0:
        raise ValueError(f"dpi must be positive, got {dpi}")
    if chunk_pages <= 0:
        raise ValueError(f"chunk_pages must be positive, got {chunk_pages}")
    options = RenderOptions(
        dpi=dpi, password=password, chunk_pages=chunk_pages, allow_private=allow_private,
        limits=limits or Limits(), ocr=check_available(ocr_options(ocr)),
    )
    if is_url(source):
        return render_url(str(source), options)
    path = Path(_normalise(source))
    if path.is_dir():
        if digest is not None:
            raise ValueError(f"digest= applies to a single file, not to the folder {source}")
        return _render_files(discover([path]), options, on_error or _log_error)
    return _open_file(path, options, digest)
