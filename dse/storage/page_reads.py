"""The read side of `PageIndex` beyond search: pages, their texts, vectors, images and word forms.

A mixin of `dse.storage.page_index.PageIndex` (it needs `directory`, `manifest`, `catalogue` and
the current view `_view`). Reads resolve rows in the catalogue state of the view they use, so a
compaction meanwhile never mixes the rows of two generations (`consistent`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from dse.backends.base import check_vector_kind
from dse.backends.records import PageRecord
from dse.storage.catalogue import Catalogue
from dse.storage.compaction.generations import consistent
from dse.storage.images import open_stored
from dse.storage.manifest import Manifest
from dse.storage.views import IndexView


class PageReads:
    """Lookups of pages by id and of what is stored about them (mixed into `PageIndex`)."""

    directory: Path
    manifest: Manifest
    catalogue: Catalogue
    _view: IndexView

    def page(self, page_id: str) -> PageRecord:
        """The catalogued page with this id."""
        return self.catalogue.page(page_id)

    def live_pages(self) -> list[PageRecord]:
        """Every live page of the current view, in commit order (row)."""
        def pages(view: IndexView) -> list[PageRecord]:
            deleted = set(int(x) for x in view.deleted)
            return self.catalogue.pages((r for r in range(view.rows) if r not in deleted), view.generation)

        return consistent(self, pages)

    def page_vectors(self, page_ids: Sequence[str]) -> list[Any]:
        """The stored vectors of live pages, in the encoder's page format (ValueError: a bm25 index)."""
        multi = check_vector_kind(self.manifest.kind, self.directory) == "multi"

        def vectors(view: IndexView) -> list[Any]:
            with self.catalogue.at_generation(view.generation):
                rows = {r.page_id: r.row for r in self.catalogue.live_pages(page_ids=page_ids)}
            if multi:
                return [view.engine.page_tokens(rows[p]) for p in page_ids]  # (tokens, dim) each; KeyError: not live
            return [view.engine.vectors(rows[p], rows[p] + 1)[0] for p in page_ids]  # (dim,) each

        return consistent(self, vectors)

    def page_texts(self, page_ids: Sequence[str]) -> dict[str, str]:
        """The text layers of the live pages among `page_ids` (live in the current view).

        Those a search of the current view returned are answered from its memory (`IndexView.texts`);
        the others are read in one query.
        """
        kept = self._view.texts
        out = {pid: text for pid in page_ids if (text := kept.get(pid)) is not None}
        missing = [pid for pid in page_ids if pid not in out]
        if missing:
            out.update((rec.page_id, rec.text) for rec in self.catalogue.live_pages(page_ids=missing))
        return out

    def word_forms(self, tokens: Iterable[str]) -> dict[str, frozenset[str]] | None:
        """The words of the index's pages that give each of these BM25 tokens (`dse.text.forms`), or
        None where the index does not record the words of every page of the current view."""
        return self.catalogue.word_forms(tokens, self._view.rows)

    def sources(self) -> list[dict[str, Any]]:
        """Every live source: path, digest, kind, pages, added."""
        return self.catalogue.sources()

    def metadata_keys(self) -> list[str]:
        """Top-level metadata keys recorded on live pages, sorted."""
        return self.catalogue.metadata_keys()

    def page_image(self, page_id: str) -> Image.Image:
        """The stored image of a page (errors: `open_page_image`)."""
        with self.open_page_image(page_id) as fh, Image.open(fh) as img:
            return img.convert("RGB")

    def open_page_image(self, page_id: str) -> BinaryIO:
        """The stored JPEG of a page, opened for reading in binary (the caller closes it).

        Only `images/<page id>.jpg` inside the index is opened, never through a symbolic link.

        Raises:
            KeyError: no live page has this id.
            FileNotFoundError: images were not stored (image_size=0), or the file is missing.
            UnsafeIndexPathError: the page's row names another file, or the image or the images
                folder is a symbolic link (a hostile or damaged index).
        """
        return open_stored(self.directory, self.catalogue.page(page_id))
