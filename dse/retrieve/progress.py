"""Progress of an indexing run: a bar on the terminal, and reports to a callback (a server's job)."""

from __future__ import annotations

import logging
from typing import Any, Callable

from dse.retrieve.results import IndexProgress

logger = logging.getLogger(__name__)


def progress_bar(total: int, enabled: bool, on_progress: Callable[[IndexProgress], None] | None = None) -> Any:
    """A tqdm bar over `total` files (shown on a terminal when `enabled`), also reporting to `on_progress`."""
    from tqdm.auto import tqdm

    # disable=None: shown on a terminal only, so logs and CI output stay clean
    bar = tqdm(total=total, unit="file", desc="indexing", disable=None if enabled else True, dynamic_ncols=True)
    return bar if on_progress is None else ReportingBar(bar, total, on_progress)


class ReportingBar:
    """A progress bar that also tells a callback (a server job) how far the run is."""

    def __init__(self, bar: Any, total: int, on_progress: Callable[[IndexProgress], None]) -> None:
        self._bar, self._on_progress = bar, on_progress
        self._done, self._total, self._pages, self._failed = 0, total, 0, 0

    def _report(self) -> None:
        try:
            self._on_progress(IndexProgress(self._done, self._total, self._pages, self._failed))
        except Exception:  # noqa: BLE001 - a reporting error never stops indexing
            logger.exception("progress callback failed")

    def update(self, n: int = 1) -> None:
        self._bar.update(n)
        self._done += n
        self._report()

    def set_postfix(self, pages: int = 0, failed: int = 0) -> None:
        self._bar.set_postfix(pages=pages, failed=failed)
        self._pages, self._failed = pages, failed
        self._report()

    def close(self) -> None:
        self._bar.close()
