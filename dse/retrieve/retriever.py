"""The retriever: an encoder and an index directory, composed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from PIL import Image

from dse.encoders.base import Encoder
from dse.indexes.store import DEFAULT_IMAGE_SIZE, PageIndex, ScoredPage
from dse.retrieve.results import AddReport, Hit


class Retriever:
    """Search pages by text query: encodes with `encoder`, looks up in `index`.

    Example:
        >>> r = Retriever.create("idx", load_encoder("bm25"))
        >>> r.add(["docs/"])
        >>> r.search("revenue by segment", k=3)
    """

    def __init__(self, encoder: Encoder, index: PageIndex) -> None:
        index.manifest.check_encoder(encoder.describe())
        self.encoder = encoder
        self.index = index

    # ---------------------------------------------------------------- construction
    @classmethod
    def create(
        cls,
        directory: str | Path,
        encoder: Encoder,
        *,
        hnsw: bool = False,
        image_size: int = DEFAULT_IMAGE_SIZE,
    ) -> "Retriever":
        """Make a new index directory for `encoder`.

        Args:
            directory: Where the index goes (FileExistsError if an index is there).
            encoder: The encoder that fills and searches it.
            hnsw: Single-vector indexes only: approximate HNSW search instead of exact.
            image_size: Long side of the stored page images (0: store none).
        """
        engine_options: dict[str, Any] = {}
        if hnsw:
            if encoder.kind != "single":
                raise ValueError(f"hnsw applies to single-vector encoders; {encoder.name!r} is {encoder.kind}")
            engine_options["hnsw"] = True
        index = PageIndex.create(directory, encoder.describe(), engine_options, image_size=image_size)
        return cls(encoder, index)

    @classmethod
    def open(cls, directory: str | Path, encoder: Encoder | None = None, **encoder_options: Any) -> "Retriever":
        """Open an index directory.

        Args:
            directory: The index.
            encoder: The encoder to use; it must match the one the index was built with
                (EncoderMismatchError otherwise). None: load that one from the manifest.
            **encoder_options: With `encoder=None`: options such as `device` or `batch_size`
                that do not change the vectors.
        """
        index = PageIndex.open(directory)
        try:
            if encoder is None:
                encoder = encoder_from_manifest(index.manifest.encoder, **encoder_options)
            return cls(encoder, index)
        except BaseException:
            index.close()
            raise

    def close(self) -> None:
        """Release the index."""
        self.index.close()

    def __enter__(self) -> "Retriever":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.index)

    # ---------------------------------------------------------------- use
    def add(
        self,
        sources: Iterable[str | Path] | str | Path,
        *,
        dpi: int | None = None,
        password: str | None = None,
        progress: bool = False,
    ) -> AddReport:
        """Index files and folders; sources already indexed (same bytes) are skipped.

        Args:
            sources: A path or paths of PDFs, images and folders.
            dpi: Rendering resolution for PDFs (None: ingest's default).
            password: Password for encrypted PDFs.
            progress: Show a progress bar on stderr.
        """
        from dse.retrieve.indexing import index_sources

        if isinstance(sources, (str, Path)):
            sources = [sources]
        return index_sources(self.encoder, self.index, sources, dpi=dpi, password=password, progress=progress)

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The top-k pages for one text query, best first."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """The top-k pages for each query, best first."""
        if isinstance(queries, str):
            raise TypeError("search_many takes a list of queries; use search() for one")
        if not queries:
            return []
        encoded = self.encoder.encode_queries(list(queries))
        results = self.index.search(encoded, k)
        return [_hits(hits, drop_zero=self.encoder.kind == "text") for hits in results]

    def search_text(self, query: str, k: int = 10) -> list[Hit]:
        """The top-k pages by BM25 over their text layers (any index keeps this text side)."""
        return _hits(self.index.search_text([query], k)[0], drop_zero=True)

    def page_image(self, page_id: str) -> Image.Image:
        """The stored image of a page."""
        return self.index.page_image(page_id)

    def page_text(self, page_id: str) -> str:
        """The text layer of a page."""
        return self.index.page(page_id).text

    def info(self) -> dict[str, Any]:
        """The manifest with the counts `pages` and `sources`."""
        return self.index.manifest.to_json()


def _hits(scored: Sequence[ScoredPage], drop_zero: bool) -> list[Hit]:
    """Hits ranked 1..n; `drop_zero` removes BM25 non-matches (score 0: no query term on the page)."""
    kept = [sp for sp in scored if sp.score > 0] if drop_zero else list(scored)
    return [
        Hit(sp.record.page_id, sp.record.source, sp.record.page, sp.score, rank, sp.record.metadata)
        for rank, sp in enumerate(kept, start=1)
    ]


def encoder_from_manifest(description: Mapping[str, Any], **runtime_options: Any) -> Encoder:
    """Load the encoder an index was built with, from its manifest entry.

    Args:
        description: The manifest's `encoder` entry.
        **runtime_options: Options that do not change the vectors (device, batch_size).
    """
    from dse.encoders.registry import load_encoder

    options = dict(description.get("options") or {})
    options.update(runtime_options)
    return load_encoder(description["name"], model=description.get("model"), **options)
