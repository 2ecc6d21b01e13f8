"""What runs in `render_many`'s worker processes, and the spool folder their pages go through.

A worker renders a chunk of PDF pages with pdftoppm into PPM files in the spool (a folder in
RAM), and returns their paths with the chunk's text layer; the parent reads and deletes them.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ingest import pdf
from ingest.base import RenderOptions, SourceFile
from ingest.errors import IngestError, MissingToolError


@dataclass(frozen=True)
class PageFile:
    """A rendered page on its way from a worker: its PPM file in the spool folder."""

    dpi: int
    path: str
    text: str = field(repr=False)


@dataclass(frozen=True)
class ChunkResult:
    """A worker's answer for one chunk: its pages, or the error that ends the source."""

    pages: tuple[PageFile, ...] = ()
    error: tuple[type[IngestError], str, str] | None = None  # (class, source, reason): picklable


def ignore_sigint() -> None:
    """Worker initializer: Ctrl-C is the parent's to handle (it shuts the workers down)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def render_chunk(
    file: SourceFile, options: RenderOptions, info: pdf.PdfInfo, first: int, last: int, spool: str
) -> ChunkResult:
    """Worker task: render pages first..last of a PDF into PPM files in `spool`."""
    try:
        run = partial(pdf.render_run_files, folder=spool)
        chunk = pdf.render_chunk(file, options, info, first, last, run=run)
    except IngestError as exc:
        return ChunkResult(error=(type(exc), exc.source, exc.reason))
    except MissingToolError:
        raise
    except Exception as exc:  # a decoder's unexpected failure is still this file's failure
        reason = f"cannot render: {type(exc).__name__}: {exc}"
        return ChunkResult(error=(IngestError, file.source, reason))
    return ChunkResult(pages=tuple(PageFile(dpi, path, text) for dpi, path, text in chunk))


@contextmanager
def main_module_hidden() -> Iterator[None]:
    """Start workers without the caller's script: spawn and forkserver would re-run it in each
    worker (importing it by path or name), which breaks scripts with no `__main__` guard."""
    main = sys.modules.get("__main__")
    path, spec = getattr(main, "__file__", None), getattr(main, "__spec__", None)
    if path is not None:
        del main.__file__
    if spec is not None:
        main.__spec__ = None
    try:
        yield
    finally:
        if path is not None:
            main.__file__ = path
        if spec is not None:
            main.__spec__ = spec


def shared_memory_dir() -> str:
    """`/dev/shm` (a RAM file system) where it exists, else the default temporary folder."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return "/dev/shm"
    return tempfile.gettempdir()


def make_spool() -> str:
    """Make this run's spool folder, `dse-render-<pid>-*`; first remove those of dead processes
    (a run killed without a chance to clean up would otherwise hold their RAM until reboot)."""
    root = shared_memory_dir()
    for name in os.listdir(root):
        parts = name.split("-")
        if len(parts) == 4 and name.startswith("dse-render-") and parts[2].isdigit():
            try:
                os.kill(int(parts[2]), 0)
            except ProcessLookupError:
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            except OSError:
                pass  # alive, but not ours to signal
    return tempfile.mkdtemp(prefix=f"dse-render-{os.getpid()}-", dir=root)


def delete_files(result: Any) -> None:
    """Delete the page files of a chunk result (a `ChunkResult` or a finished Future of one)."""
    if not isinstance(result, ChunkResult):
        if result.cancelled() or result.exception() is not None:
            return
        result = result.result()
    for page_file in result.pages:
        try:
            os.unlink(page_file.path)
        except FileNotFoundError:
            pass
