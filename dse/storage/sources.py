"""Where a source is recorded: by digest, by path, by any spelling of a file; sources whose file is gone.

Sources are keyed by `dse.storage.layout.source_key` (resolved absolute path; URLs as given);
paths given to `find_source` are matched by that key first, then by the spellings older indexes
recorded (`source_spellings`). `SourceLookups` is a mixin of `dse.storage.page_index.PageIndex`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from dse.storage.catalogue import Catalogue
from dse.storage.filters import json_path
from dse.storage.layout import source_spellings


class SourceLookups:
    """Source lookups (and metadata counts) of `PageIndex`, answered by its catalogue."""

    catalogue: Catalogue

    def has_source(self, digest: str) -> bool:
        """True if a live source with these bytes is indexed."""
        return self.catalogue.has_digest(digest)

    def metadata_count(self, key: str, value: Any) -> int:
        """Live pages whose metadata `key` equals `value` (one SQL query over the catalogue, once per commit:
        the count scans every page, ~0.3 s at 100k, and `GET /v1/index` asks for it at each page load)."""
        memo_key = (self.catalogue.state_key(), key, repr(value))
        memo = self.__dict__.setdefault("_metadata_counts", {})
        found = memo.get(memo_key)
        if found is None:
            found = self.catalogue.count_metadata(json_path(key), value)
            if len(memo) >= 64:
                memo.clear()
            memo[memo_key] = found
        return found

    def source_digest(self, path: str) -> str | None:
        """Digest of the live source recorded at exactly `path`, or None."""
        return self.catalogue.source_digest(path)

    def source_of_digest(self, digest: str) -> str | None:
        """Path of the live source holding these bytes, or None."""
        return self.catalogue.source_of_digest(digest)

    def find_source(self, source: str | os.PathLike[str]) -> str | None:
        """The path a live source given by any spelling is recorded under, or None.

        Tried in order: its key (resolved absolute path, `~` expanded; a URL as given), then the
        spellings an older index may hold: the path as given, its absolute form, the key
        relative to the current directory (`dse.storage.layout.source_spellings`).
        """
        for path in source_spellings(source):
            if self.catalogue.source_digest(path) is not None:
                return path
        return None

    def missing_sources(self, folders: Sequence[str | Path]) -> list[str]:
        """Live sources under `folders` whose file no longer exists, as recorded (for `delete(as_indexed=True)`).

        Folders are resolved like sources (`~` expanded, symbolic links followed); a relative
        path recorded by an older index is taken relative to the current directory. URLs are
        never missing. A folder that does not exist is ignored (a typo or another working
        directory must not empty the index).
        """
        return missing_under(self.catalogue.sources(), folders)


def missing_under(sources: Sequence[dict], folders: Sequence[str | Path]) -> list[str]:
    """Of `sources` (dicts with a `path`), those under `folders` whose file no longer exists (`SourceLookups.missing_sources`)."""
    from ingest.web.safety import is_url

    roots: set[str] = set()
    for folder in folders:
        folder = os.path.expanduser(os.fspath(folder))
        if os.path.isdir(folder):
            roots.update((os.path.realpath(folder), os.path.abspath(folder)))
    gone = []
    for src in sources:
        if is_url(src["path"]):
            continue
        path = os.path.abspath(src["path"])
        forms = {path, os.path.realpath(path)}
        under = any(os.path.commonpath([p, root]) == root for p in forms for root in roots)
        if under and not os.path.exists(path):
            gone.append(src["path"])
    return gone
