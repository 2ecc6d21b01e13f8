"""What runs in `render_many`'s worker processes, the pool of them, and the spool their pages use.

A worker renders a chunk of PDF pages with pdftoppm into PPM files in the spool (a folder in
RAM), and returns their paths with the chunk's text layer; the parent reads and deletes them.
Each worker runs under an address-space cap (`Limits.max_memory_mb`); one that dies anyway
(killed by the OOM killer, crashed) breaks the pool, which `WorkerPool.restart` replaces.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

from ingest.base import RenderOptions, SourceFile
from ingest.errors import IngestError, MemoryLimitError, MissingToolError
from ingest.limits import Clock
from ingest.pdf import poppler
from ingest.pdf import render as pdf
from ingest.sandbox import tools


@dataclass(frozen=True)
class PageFile:
    """A rendered page on its way from a worker: its PPM file in the spool folder."""

    dpi: int
    path: str
    text: str = field(repr=False)
    extra: dict[str, Any] = field(default_factory=dict)  # what OCR records (ingest.pdf.ocr_pages)


@dataclass(frozen=True)
class ChunkResult:
    """A worker's answer for one chunk: its pages, or the error that ends the source.

    Attributes:
        pages: The chunk's page files, in order.
        error: `(class, source, reason)` of the IngestError that ends the source (picklable).
        seconds: Time the chunk's poppler calls took (charged to the file's `file_timeout`).
    """

    pages: tuple[PageFile, ...] = ()
    error: tuple[type[IngestError], str, str] | None = None
    seconds: float = 0.0


def ignore_sigint() -> None:
    """Ctrl-C is the parent's to handle (it shuts the workers down)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def init_worker(memory_bytes: int | None = None) -> None:
    """Worker initializer: ignore Ctrl-C, kill running tools on SIGTERM, cap the address space."""
    ignore_sigint()

    def stop(signum: int, frame: Any) -> None:
        tools.kill_running()  # a poppler call must not outlive its worker
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    if memory_bytes is not None:
        tools.set_memory_cap(memory_bytes)


def render_chunk(
    file: SourceFile, options: RenderOptions, info: pdf.PdfInfo, first: int, last: int,
    spool: str, spent: float = 0.0,
) -> ChunkResult:
    """Worker task: render pages first..last of a PDF into PPM files in `spool`.

    `spent`: seconds the file has used already (its `file_timeout` covers all its chunks).
    """
    clock = Clock(file.source, options.limits, spent)
    try:
        run = partial(pdf.render_run_files, folder=spool)
        chunk = pdf.render_chunk(file, info, first, last, options.dpi, clock, run=run, ocr=options.ocr)
    except IngestError as exc:
        return ChunkResult(error=(type(exc), exc.source, exc.reason), seconds=clock.spent - spent)
    except MissingToolError:
        raise
    except MemoryError:
        reason = (f"the render worker ran out of memory under its cap of "
                  f"{options.limits.max_memory_mb} MB (raise it with `ingest: max_memory_mb`)")
        return ChunkResult(error=(MemoryLimitError, file.source, reason))
    except Exception as exc:  # a decoder's unexpected failure is still this file's failure
        reason = f"cannot render: {type(exc).__name__}: {exc}"
        return ChunkResult(error=(IngestError, file.source, reason))
    pages = tuple(PageFile(dpi, path, text, extra) for dpi, path, text, extra in chunk)
    return ChunkResult(pages=pages, seconds=clock.spent - spent)


class WorkerPool:
    """The worker processes of one run: started at the first chunk, replaced when one dies.

    Args:
        workers: Number of processes.
        memory_bytes: Address-space cap of each (None: none).
    """

    def __init__(self, workers: int, memory_bytes: int | None) -> None:
        import multiprocessing

        methods = multiprocessing.get_all_start_methods()
        # fork after torch is loaded can deadlock: workers start from a clean interpreter
        self._context = multiprocessing.get_context(
            "forkserver" if "forkserver" in methods else "spawn"
        )
        self.workers, self.memory_bytes = workers, memory_bytes
        self.executor: Any = None
        self._processes: list[Any] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Submit a task, starting the processes first if needed."""
        from concurrent.futures import ProcessPoolExecutor

        if self.executor is None:
            self.executor = ProcessPoolExecutor(
                self.workers, mp_context=self._context, initializer=init_worker,
                initargs=(self.memory_bytes,),
            )
        with main_module_hidden():  # submit() starts the workers, one at a time
            future = self.executor.submit(fn, *args)
        self._processes = list((getattr(self.executor, "_processes", None) or {}).values())
        return future

    def death(self) -> str:
        """How the dead worker ended, as far as the exit codes tell (workers the pool stopped
        afterwards end with SIGTERM).

        The executor's own thread reaps a broken pool's processes; reading an exit code while
        it does races with it (the loser of two concurrent polls of a forkserver child reads
        255), so its work is waited for first.
        """
        manager = getattr(self.executor, "_executor_manager_thread", None)
        if manager is not None:
            manager.join(timeout=30)
        codes = [process.exitcode for process in self._processes]
        stopped = (-signal.SIGTERM, 128 + signal.SIGTERM)
        unknown = 255  # multiprocessing's code when the forkserver could not report it
        dead = [code for code in codes if code not in (None, 0, unknown, *stopped)]
        dead.sort(key=lambda code: code > 0)  # a signal says more than an exit status
        if not dead:
            return "it ended abruptly"
        if dead[0] > 0:
            return f"exit status {dead[0]}"
        hint = " (out of memory?)" if -dead[0] == signal.SIGKILL else ""
        return f"killed by {signal.Signals(-dead[0]).name}{hint}"

    def restart(self) -> None:
        """Drop the (broken) processes; the next `submit` starts fresh ones."""
        self.shutdown(clean=False)

    def shutdown(self, clean: bool) -> None:
        """Stop the workers: wait for them after a clean run, terminate them otherwise."""
        if self.executor is None:
            return
        executor, self.executor = self.executor, None
        if clean:
            executor.shutdown(wait=True)
            return
        processes = list((getattr(executor, "_processes", None) or {}).values()) or self._processes
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join()


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
    return poppler.ram_dir()


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
