"""Indexing jobs of the server: uploads and URLs indexed in the background, one job at a time.

A job is what one `POST /v1/sources` asked for. It runs `Retriever.add` in the jobs thread, so
requests never wait for rendering or encoding; searches keep answering from the committed state
and see the job's pages once it commits them. A file that cannot be indexed fails by name and
changes nothing indexed; a job whose every source failed is `failed`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from dse.retrieve.results import IndexProgress

logger = logging.getLogger(__name__)

STATES = ("queued", "running", "done", "failed")
KEEP_JOBS = 200  # finished jobs remembered (the oldest are forgotten first)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class Job:
    """The state of one indexing job (a new, frozen value at every change).

    Attributes:
        id: The job's id.
        state: "queued", "running", "done" or "failed" (every source failed).
        sources: What was submitted: file names or URLs.
        sources_total: Sources the job found (files under the submitted paths, URLs).
        sources_done: Sources rendered, skipped or failed so far.
        pages_done: Pages rendered and encoded so far.
        pages_total: Pages expected, when known (PDF page counts, images), else None until done.
        added: Sources indexed (paths as recorded in the index).
        skipped: Sources whose bytes were already indexed.
        failures: `{"source", "error"}` per source that could not be indexed.
        ocr_pages: Pages whose text OCR read (`AddReport.ocr_pages`), once done.
        warnings: `{"source", "error"}` per source indexed short of text (`AddReport.warnings`: pages
            whose OCR failed; "tesseract" when it is not installed and pages got no text), once done.
        created: When it was submitted (UTC, ISO 8601).
        finished: When it ended, or None.
    """

    id: str
    state: str
    sources: tuple[str, ...]
    sources_total: int = 0
    sources_done: int = 0
    pages_done: int = 0
    pages_total: int | None = None
    added: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    failures: tuple[Mapping[str, str], ...] = ()
    ocr_pages: int = 0
    warnings: tuple[Mapping[str, str], ...] = ()
    created: str = field(default_factory=_now)
    finished: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The job as the API returns it."""
        return {"id": self.id, "state": self.state, "sources": list(self.sources),
                "sources_total": self.sources_total, "sources_done": self.sources_done,
                "pages_done": self.pages_done, "pages_total": self.pages_total, "added": list(self.added),
                "skipped": list(self.skipped), "failures": [dict(f) for f in self.failures],
                "ocr_pages": self.ocr_pages, "warnings": [dict(w) for w in self.warnings],
                "created": self.created, "finished": self.finished}


@dataclass(frozen=True)
class _Work:
    job_id: str
    targets: tuple[str, ...]  # paths or URLs handed to Retriever.add
    metadata: Mapping[str, Any] | None
    cleanup: Callable[[], None] | None  # called when the job ends (e.g. remove failed uploads)


class JobQueue:
    """Runs indexing jobs one after another in a background thread.

    Args:
        add: `Retriever.add` (or a function with its signature).
        allow_private: URLs may reach loopback and private addresses.
        pages_of: Expected page count of a target, or None when unknown.
    """

    def __init__(self, add: Callable[..., Any], allow_private: bool = False,
                 pages_of: Callable[[str], int | None] | None = None) -> None:
        self._add = add
        self._allow_private = allow_private
        self._pages_of = pages_of or (lambda _target: None)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Work | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="dse-index-jobs", daemon=True)
        self._thread.start()

    def submit(self, names: list[str], targets: list[str], metadata: Mapping[str, Any] | None = None,
               cleanup: Callable[[], None] | None = None) -> Job:
        """Queue a job indexing `targets` (shown as `names`); returns it, queued."""
        job = Job(uuid.uuid4().hex, "queued", tuple(names), sources_total=len(targets))
        with self._lock:
            self._jobs[job.id] = job
            finished = [k for k, j in self._jobs.items() if j.finished is not None]
            for key in finished[: max(0, len(self._jobs) - KEEP_JOBS)]:
                del self._jobs[key]
        self._queue.put(_Work(job.id, tuple(targets), metadata, cleanup))
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        with self._lock:
            return self._jobs.get(job_id)

    def recent(self) -> list[Job]:
        """Every remembered job, newest first."""
        with self._lock:
            return list(reversed(self._jobs.values()))

    def wait(self, job_id: str, timeout: float = 60.0) -> Job | None:
        """Block until the job ends or `timeout` passes; the job as it is then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(job_id)
            if job is None or job.finished is not None:
                return job
            time.sleep(0.02)
        return self.get(job_id)

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the running job (queued ones are dropped)."""
        self._queue.put(None)
        self._thread.join(timeout=timeout)

    # ------------------------------------------------------------------ internals
    def _update(self, job_id: str, **changes: Any) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                self._jobs[job_id] = replace(job, **changes)

    def _run(self) -> None:
        while True:
            work = self._queue.get()
            if work is None:
                return
            try:
                self._do(work)
            except BaseException as exc:  # noqa: BLE001 - a job's crash is its failure, not the server's
                logger.exception("indexing job %s crashed", work.job_id)
                self._update(work.job_id, state="failed", finished=_now(),
                             failures=({"source": ", ".join(work.targets), "error": f"{type(exc).__name__}: {exc}"},))
            finally:
                if work.cleanup is not None:
                    try:
                        work.cleanup()
                    except Exception:  # noqa: BLE001
                        logger.exception("cleaning up job %s", work.job_id)

    def _do(self, work: _Work) -> None:
        known = [self._pages_of(t) for t in work.targets]
        total = sum(k for k in known if k is not None) if all(k is not None for k in known) else None
        self._update(work.job_id, state="running", pages_total=total)

        def progress(p: IndexProgress) -> None:
            self._update(work.job_id, sources_done=p.files_done, sources_total=max(p.files_total, 1),
                         pages_done=p.pages)

        report = self._add(list(work.targets), metadata=work.metadata, allow_private=self._allow_private,
                           on_progress=progress, progress=False)
        job = self.get(work.job_id)
        names = dict(zip(work.targets, job.sources if job is not None else work.targets))

        def named(text: str) -> str:  # an upload is reported by the name it was sent with
            for target, name in names.items():
                text = text.replace(target, name)
            return text

        failures = tuple({"source": named(f.source), "error": named(f.error)} for f in report.failures)
        warnings = tuple({"source": named(w.source), "error": named(w.error)} for w in report.warnings)
        failed = bool(report.failures) and not (report.added or report.skipped)
        self._update(work.job_id, state="failed" if failed else "done", added=tuple(map(named, report.added)),
                     ocr_pages=report.ocr_pages, warnings=warnings,
                     skipped=tuple(map(named, report.skipped)), failures=failures, pages_done=report.pages,
                     pages_total=report.pages, sources_done=len(work.targets) if not failures else
                     len(report.added) + len(report.skipped) + len(failures), finished=_now())
