"""`QdrantIndex`: an `IndexBackend` whose vectors and payloads live in a Qdrant collection.

The index directory keeps the manifest (backend, collection, location without secrets) and the
stored page images; a URL location is a Qdrant server or cluster (API key: QDRANT_API_KEY), a
path is qdrant-client's embedded local mode, ``edge:PATH`` qdrant-edge-py's in-process shards
(`dse.backends.qdrant.edge`; both one process at a time). Writes are idempotent
upserts on stable point ids (uuid5 of the page id), waited for, so a finished add is searchable
at once and a killed `dse index` re-runs cleanly. Qdrant serves its latest state: `refresh()`
has nothing to load and `view()` pins nothing; it is the write epoch, which `unchanged` checks
after a hybrid search's two requests (`dse.backends.qdrant.epoch`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Mapping, Sequence

from PIL import Image

from dse.backends.base import DEFAULT_IMAGE_SIZE, IndexBackend, check_vector_kind
from dse.backends.qdrant import epoch
from dse.backends.qdrant import filters as qfilters
from dse.backends.qdrant import query
from dse.backends.qdrant.catalogue import PayloadCatalogue
from dse.backends.qdrant.centroids import DEFAULT_WEIGHT, Codebooks, Coder
from dse.backends.qdrant.points import payload_of, point_id, record_of, vectors_of
from dse.backends.qdrant.schema import DENSE, MULTI, check_options, connect, create_collection, index_payload_field, public_location
from dse.backends.records import Counts, DeleteReport, NewSource, PageRecord, ScoredPage
from dse.storage import images
from dse.storage.layout import IMAGES_DIR, LOCK_NAME, ReadOnlyIndexError, image_name, media_read_only, source_spellings
from dse.storage.lock import WriteLock
from dse.storage.manifest import Manifest, read_manifest, with_ingest, write_manifest
from dse.text.fields import SOURCE_NAME_WEIGHT, bm25_text, source_name_weight

BACKEND = "qdrant"


class QdrantIndex(IndexBackend):
    """An index whose pages are points of a Qdrant collection (see the module docstring)."""

    def __init__(self, directory: Path, manifest: Manifest, client: Any, read_only: bool = False) -> None:
        self.directory = Path(directory)
        self.manifest = manifest
        self.client = client
        self.read_only = read_only
        self.collection = str(manifest.store["qdrant"]["collection"])
        self.options = dict(manifest.store["qdrant"].get("options") or {})
        self.catalogue = PayloadCatalogue(client, self.collection)
        self._tokenizer: Any = None
        self.codebooks = Codebooks(self.directory, str(self.options.get("centroid_weight", DEFAULT_WEIGHT)))
        self._seen: tuple[int, int, int] | None = None  # the manifest file `self.manifest` was read from

    # ---------------------------------------------------------------- lifecycle
    @classmethod
    def create(cls, directory: str | Path, encoder: Mapping[str, Any], engine_options: Mapping[str, Any] | None = None,
               image_size: int = DEFAULT_IMAGE_SIZE) -> QdrantIndex:
        """A new index directory and its collection; `engine_options` must name `qdrant` (URL or path).

        Options: `qdrant` (location), `collection` (default: the directory's name), `prefetch`,
        `hnsw_ef`, `quantization` ("scalar" | "binary", single vectors), `pooling` ("mean" |
        "grid", multi vectors) and `grid_rows` (`dse.backends.qdrant.pooling`), `first_stage`
        ("pooled" | "sparse-centroids") with `centroid_weight`, `centroid_idf`, `centroids`,
        `codebook_min_pages`, `codebook_retrain`, `n_probe` and `prefetch_pooled`
        (`dse.backends.qdrant.centroids`, `dse.backends.qdrant.training`), `shard_number`,
        `replication_factor`, `write_consistency_factor`, `on_disk`.
        """
        from dse import __version__
        from dse.text.tokenizer import Tokenizer

        options = check_options(engine_options or {})
        location = options.pop("qdrant", None)
        if not location:
            raise ValueError("the qdrant backend needs a location: --qdrant http(s)://host:6333, a local path "
                             "or edge:PATH")
        directory = Path(directory).expanduser()
        if (directory / "manifest.json").exists():
            raise FileExistsError(f"{directory}: an index already exists here; open it instead")
        name = str(options.pop("collection", None) or directory.resolve().name)
        client = connect(str(location))
        if client.collection_exists(name):
            client.close()
            raise FileExistsError(f"Qdrant collection {name!r} already exists at {public_location(str(location))}: "
                                  f"choose another --collection")
        create_collection(client, name, str(encoder["kind"]), encoder.get("dim"), options)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / IMAGES_DIR).mkdir(exist_ok=True)
        store: dict[str, Any] = {
            "backend": BACKEND, "image_size": int(image_size), "text_fields": {"source_name": SOURCE_NAME_WEIGHT},
            "qdrant": {"location": public_location(str(location)), "collection": name, "options": options,
                       "rows": 0, "deleted_pages": 0, "deleted_sources": 0},
        }
        if encoder["kind"] != "text":
            store["text"] = {"tokenizer": Tokenizer().options()}
        manifest = Manifest(encoder=dict(encoder), engine={"backend": BACKEND, **options}, store=store,
                            dse_version=__version__)
        write_manifest(directory, manifest)
        return cls(directory, manifest, client)

    @classmethod
    def open(cls, directory: str | Path, read_only: bool | None = None) -> QdrantIndex:
        """Open an index directory of this backend and connect to its collection."""
        from dse.storage.manifest import IndexFormatError

        directory = Path(directory).expanduser()
        manifest = read_manifest(directory)
        if manifest.store.get("backend") != BACKEND:
            raise IndexFormatError(f"{directory}: not a Qdrant-backed index (open it with its own backend)")
        location = os.environ.get("DSE_QDRANT_URL") or manifest.store["qdrant"]["location"]
        client = connect(location)
        if not client.collection_exists(manifest.store["qdrant"]["collection"]):
            client.close()
            raise IndexFormatError(f"{directory}: Qdrant collection {manifest.store['qdrant']['collection']!r} "
                                   f"is missing at {location}")
        return cls(directory, manifest, client, media_read_only(directory) if read_only is None else read_only)

    @staticmethod
    def exists(directory: str | Path) -> bool:
        """True if `directory` holds a Qdrant-backed index."""
        try:
            return read_manifest(Path(directory).expanduser()).store.get("backend") == BACKEND
        except Exception:  # noqa: BLE001 - not an index, or unreadable: not one of ours
            return False

    def close(self) -> None:
        """Close the client (local mode releases its folder)."""
        self.client.close()

    def refresh(self) -> int:
        """Re-read the manifest (counters, the codebook a writer trained); Qdrant answers from its latest state."""
        before = int(self.manifest.store["qdrant"]["rows"])
        self._seen = None
        self.current_manifest()
        return int(self.manifest.store["qdrant"]["rows"]) - before

    def current_manifest(self) -> Manifest:
        """The manifest as the writer last recorded it (re-read only when the file changed: one stat)."""
        st = (self.directory / "manifest.json").stat()
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        if seen != self._seen:
            self.manifest, self._seen = read_manifest(self.directory), seen
        return self.manifest

    # ---------------------------------------------------------------- counts and lookups
    def __len__(self) -> int:
        return self.catalogue.count()

    def counts(self) -> Counts:
        q = self.manifest.store["qdrant"]
        pages = self.catalogue.count()
        return Counts(max(int(q["rows"]), pages), pages, len(self.sources()), int(q["deleted_pages"]),
                      int(q["deleted_sources"]))

    def page(self, page_id: str) -> PageRecord:
        return self.catalogue.page(page_id)

    def live_pages(self) -> list[PageRecord]:
        return sorted((record_of(p) for _, p in self.catalogue.scroll()), key=lambda r: r.row)

    def page_vectors(self, page_ids: Sequence[str]) -> list[Any]:
        import numpy as np

        name = MULTI if check_vector_kind(self.manifest.kind, self.directory) == "multi" else DENSE
        got = {str(r.id): r.vector[name] for r in self.client.retrieve(
            self.collection, [point_id(p) for p in page_ids], with_payload=False, with_vectors=[name])}
        missing = [p for p in page_ids if point_id(p) not in got]
        if missing:
            raise KeyError(f"no live page has the id {missing[0]!r}")
        return [np.asarray(got[point_id(p)], dtype=np.float32) for p in page_ids]  # (tokens, dim) or (dim,)

    def page_image(self, page_id: str) -> Image.Image:
        with self.open_page_image(page_id) as fh, Image.open(fh) as img:
            return img.convert("RGB")

    def open_page_image(self, page_id: str) -> BinaryIO:
        return images.open_stored(self.directory, self.catalogue.page(page_id))

    def sources(self) -> list[dict[str, Any]]:
        return self.catalogue.sources()

    def metadata_keys(self) -> list[str]:
        return self.catalogue.metadata_keys()

    def metadata_count(self, key: str, value: Any) -> int:
        return self.catalogue.count(self.catalogue.where(f"meta.{key}", value))

    def has_source(self, digest: str) -> bool:
        return self.catalogue.first("digest", digest, "digest") is not None

    def source_digest(self, path: str) -> str | None:
        return self.catalogue.first("source", path, "digest")

    def source_of_digest(self, digest: str) -> str | None:
        return self.catalogue.first("digest", digest, "source")

    def find_source(self, source: str | os.PathLike[str]) -> str | None:
        for path in source_spellings(source):
            if self.source_digest(path) is not None:
                return path
        return None

    def missing_sources(self, folders: Sequence[str | Path]) -> list[str]:
        from dse.storage.sources import missing_under

        return missing_under(self.sources(), folders)

    # ---------------------------------------------------------------- searching
    def view(self) -> Any:
        """The write epoch now (`dse.backends.qdrant.epoch.QdrantView`): Qdrant has no read snapshots."""
        return epoch.current(self.directory)

    def unchanged(self, view: Any) -> bool:
        """True if no dse write changed points since `view` (the searches on it saw one state)."""
        return view is None or epoch.unchanged(self.directory, view)

    def _filter(self, where: Mapping[str, Any] | None) -> Any:
        if where is None:
            return None
        keys = qfilters.metadata_fields(where)
        if keys:
            qfilters.check_known(keys, self.metadata_keys(), self.catalogue.count())
        return qfilters.to_filter(where, self.catalogue.matching)

    def search(self, queries: Any, k: int, where: Mapping[str, Any] | None = None, view: Any = None) -> list[list[ScoredPage]]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if len(queries) == 0:
            return []
        return query.search(self, queries, k, self._filter(where))

    def _first_stage(self, flt: Any, k: int) -> query.FirstStage | None:
        return query.first_stage(self, flt, k)

    def centroid_coder(self, records: Sequence[Mapping[str, Any]]) -> Coder | None:
        """The `Coder` queries probe these codebook records with (loaded once per key and checked), None for none."""
        return self.codebooks.query_coder(records)

    def page_coder(self, record: Mapping[str, Any]) -> Coder:
        """The `Coder` of pages for one codebook record."""
        return self.codebooks.page_coder(record)

    def search_text(self, queries: Sequence[str], k: int, where: Mapping[str, Any] | None = None,
                    view: Any = None) -> list[list[ScoredPage]]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return query.text(self.client, self.collection, self.tokenize(queries, queries=True), k, self._filter(where))

    def tokenize(self, texts: Sequence[str], queries: bool = False) -> list[list[str]]:
        """BM25 tokens of texts, as the embedded index tokenizes them (`queries`: with the glossary's expansions)."""
        if self._tokenizer is None:
            from dse.text.tokenizer import Tokenizer

            text_index = self.manifest.kind == "text"
            options = self.manifest.encoder.get("options") if text_index else self.manifest.store["text"]["tokenizer"]
            self._tokenizer = Tokenizer(**dict(options or {}))
        return self._tokenizer.tokenize_all(list(texts), "queries" if queries else "pages", queries=queries)

    @property
    def source_name_weight(self) -> int:
        return source_name_weight(self.manifest.store)

    # ---------------------------------------------------------------- writing
    def store_image(self, page_id: str, image: Image.Image) -> str | None:
        if int(self.manifest.store.get("image_size", DEFAULT_IMAGE_SIZE)) > 0:
            self._check_writable()
        return images.store_page_image(self.directory, self.manifest.store, page_id, image, DEFAULT_IMAGE_SIZE)

    @contextmanager
    def writing_run(self) -> Iterator[None]:
        self._check_writable()
        with images.RunGuard(self.directory, self.catalogue.live_images):
            yield

    def discard_images(self, page_ids: Sequence[str]) -> None:
        if self.read_only or not page_ids:
            return
        live = {r.id for r in self.client.retrieve(self.collection, [point_id(p) for p in page_ids],
                                                   with_payload=False, with_vectors=False)}
        images.remove([self.directory / image_name(p) for p in dict.fromkeys(page_ids) if point_id(p) not in live])

    def add_sources(self, sources: Sequence[NewSource], vectors: Sequence[Any]) -> list[list[int]]:
        """Upsert the sources' pages (waited for), then remove the pages of the versions they replace."""
        from dse.backends.qdrant.writes import add_sources

        if len(sources) != len(vectors):
            raise ValueError(f"{len(sources)} sources but {len(vectors)} vector groups")
        if not sources:
            return []
        with self._write_lock():
            return add_sources(self, sources, vectors)

    def record_ingest(self, settings: Mapping[str, Any]) -> None:
        with self._write_lock():
            current = read_manifest(self.directory)  # another process's record is kept
            self.manifest = with_ingest(current, settings, earlier_pages=self.catalogue.count() > 0)
            if self.manifest is not current:
                write_manifest(self.directory, self.manifest)

    def move_source(self, old: str, new: str, replaces: Sequence[str] = ()) -> bool:
        from dse.backends.qdrant.writes import move_source

        with self._write_lock():
            return move_source(self, old, new, replaces)

    def delete(self, page_ids: Sequence[str] = (), sources: Sequence[str] = (), *, as_indexed: bool = False) -> DeleteReport:
        from dse.backends.qdrant.writes import delete

        with self._write_lock():
            return delete(self, page_ids, sources, as_indexed)

    # ---------------------------------------------------------------- internals
    def update_store(self, recount: bool = True, **changes: Any) -> None:
        """Record counters in the manifest's `store.qdrant` (under the lock), with the live counts
        unless `recount` is False (a re-encode's progress: no page was added or removed)."""
        store = dict(self.current_manifest().store)  # as on disk: another process's ingest record is kept
        store["qdrant"] = {**store["qdrant"], **changes}
        manifest = replace(self.manifest, store=store)
        self.manifest = manifest.with_counts(self.catalogue.count(), len(self.sources())) if recount else manifest
        write_manifest(self.directory, self.manifest)

    def bm25_tokens(self, src: NewSource, vectors: Any) -> list[list[str]]:
        if self.manifest.kind == "text":
            return [list(v) for v in vectors]
        return self.tokenize([bm25_text(p.text, src.path, self.source_name_weight) for p in src.pages])

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyIndexError(f"{self.directory}: opened read-only; nothing can be added or deleted")

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        """The index's write lock, with the write epoch odd while held (`dse.backends.qdrant.epoch`)."""
        self._check_writable()
        with WriteLock(self.directory / LOCK_NAME, timeout=60.0), epoch.writing(self):
            yield


__all__ = ["QdrantIndex", "payload_of", "vectors_of"]
