"""The index manifest: what built an index, so it can be reopened and checked alone."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

FORMAT_VERSION = 1
"""Format of an index whose engines are their first generation (`vectors/`, `text/`): every dse reads it."""
COMPACTED_FORMAT_VERSION = 2
"""Format of an index that `dse compact` switched to an engine generation N >= 1 (`vectors.N/`,
`text.N/`). A dse older than compaction would read the first generation's files, so it must refuse
the index: it refuses any version but 1, naming it. Written before the compaction's switch."""
READ_VERSIONS = (FORMAT_VERSION, COMPACTED_FORMAT_VERSION)
MANIFEST_NAME = "manifest.json"
INGEST_EARLIER = 8  # distinct earlier settings of one kind kept in `store.ingest` (`with_ingest`)

# Fields of the encoder description that change the vectors: two encoders that differ in any of
# them produce vectors that must not be mixed in one index. "model" is compared through the
# weights' identity when both descriptions carry one (`identity`; `dse.retrieve.encoder_check` compares):
# the same weights at another path are the same model, other weights under one name are not.
VECTOR_FIELDS = ("name", "kind", "model", "dim", "prompt_version", "options")


class IndexFormatError(RuntimeError):
    """The directory is not a dse index, or was written by an incompatible version."""


class EncoderMismatchError(ValueError):
    """An index was opened with an encoder other than the one it was built with."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Manifest:
    """The self-description of an index directory (`manifest.json`).

    Attributes:
        encoder: `Encoder.describe()` of the encoder that built the index (name, kind, input,
            model, revision, prompt_version, dim, options, and for the colpali-engine families
            `identity`: source, hub_id, revision (the resolved commit), fingerprint (content hash
            of the weights), files, dtype, trust_remote_code, library versions).
        engine: Options of the search engine (e.g. {"hnsw": False}).
        store: Options of the store itself (e.g. the stored page image size).
        pages: Number of pages committed.
        sources: Number of sources committed.
        format_version: Layout version of the directory.
        dse_version: Version of dse that last wrote the index.
        created: ISO timestamp (UTC) of creation.
        updated: ISO timestamp (UTC) of the last commit.
    """

    encoder: Mapping[str, Any]
    engine: Mapping[str, Any] = field(default_factory=dict)
    store: Mapping[str, Any] = field(default_factory=dict)
    pages: int = 0
    sources: int = 0
    format_version: int = FORMAT_VERSION
    dse_version: str = ""
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)

    @property
    def kind(self) -> str:
        """"single", "multi" or "text"."""
        return str(self.encoder["kind"])

    def with_counts(self, pages: int, sources: int) -> "Manifest":
        """A copy with new counts and the update time set to now."""
        return replace(self, pages=pages, sources=sources, updated=_now())

    def to_json(self) -> dict[str, Any]:
        """The manifest as plain JSON data."""
        return json.loads(json.dumps(asdict(self)))


def read_manifest(directory: Path) -> Manifest:
    """Read `directory/manifest.json`.

    Raises:
        IndexFormatError: Missing, unreadable, or of a format version this dse does not read
            (`READ_VERSIONS`; a newer one: upgrade dse).
    """
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise IndexFormatError(f"{directory}: not a dse index (no {MANIFEST_NAME})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise IndexFormatError(f"{path}: unreadable manifest: {exc}") from exc
    version = data.get("format_version")
    if version not in READ_VERSIONS or isinstance(version, bool):
        readable = " and ".join(map(str, READ_VERSIONS))
        newer = isinstance(version, int) and not isinstance(version, bool) and version > max(READ_VERSIONS)
        raise IndexFormatError(
            f"{directory}: index format version {version!r}; this dse reads versions {readable}"
            + (": the index was written by a newer dse; upgrade dse (pip install -U dse-search) to open it"
               if newer else ": not an index this dse can open")
        )
    known = {f for f in Manifest.__dataclass_fields__}
    return Manifest(**_tokenizer_scheme_recorded({k: v for k, v in data.items() if k in known}))


def format_for(generation: int) -> int:
    """The format version of an index whose catalogue records engine `generation` (1 until compacted, then 2)."""
    return COMPACTED_FORMAT_VERSION if generation >= 1 else FORMAT_VERSION


def with_ingest(manifest: Manifest, settings: Mapping[str, Any], earlier_pages: bool = False) -> Manifest:
    """A copy recording the ingest settings an add uses (e.g. {"ocr": {...}}) in `store["ingest"]`.

    For each kind of setting: `KIND` is the latest, `KIND_mixed` True once the index holds pages
    added with another one (`KIND_earlier`: the distinct earlier ones, at most `INGEST_EARLIER`),
    `KIND_unrecorded` True when pages were added before the setting was first recorded (an older
    dse): their setting is unknown. A manifest without `ingest` recorded none. Nothing recorded is
    overwritten silently.

    Args:
        manifest: The manifest as it is on disk (read under the writer lock).
        settings: The settings, plain JSON values.
        earlier_pages: The index held live pages before this add.
    """
    record = dict(manifest.store.get("ingest") or {})
    for kind, value in settings.items():
        value = json.loads(json.dumps(value))  # plain JSON: compared as it is read back
        if kind not in record:
            record.update({kind: value, f"{kind}_mixed": False})
            if earlier_pages:
                record[f"{kind}_unrecorded"] = True
        elif record[kind] != value:
            earlier = [e for e in record.get(f"{kind}_earlier", []) if e != value and e != record[kind]]
            record.update({kind: value, f"{kind}_mixed": True,
                           f"{kind}_earlier": ([record[kind]] + earlier)[:INGEST_EARLIER]})
    if record == manifest.store.get("ingest"):
        return manifest
    return replace(manifest, store={**manifest.store, "ingest": record})


def _tokenizer_scheme_recorded(data: dict[str, Any]) -> dict[str, Any]:
    """A manifest written before BM25 tokenizer schemes, with the scheme it was built with ("bm25s").

    New indexes record `scheme` (`dse.text.tokenizer.SCHEMES`); without it the postings were made
    by bm25s's plain tokenizer, which searching them must keep using.
    """
    encoder = dict(data.get("encoder") or {})
    if encoder.get("name") == "bm25" or encoder.get("kind") == "text":
        options = dict(encoder.get("options") or {})
        if "scheme" not in options:
            encoder["options"] = {**options, "scheme": "bm25s"}
            data = {**data, "encoder": encoder}
    store = dict(data.get("store") or {})
    text = store.get("text")
    if isinstance(text, dict) and isinstance(text.get("tokenizer"), dict) and "scheme" not in text["tokenizer"]:
        store["text"] = {**text, "tokenizer": {**text["tokenizer"], "scheme": "bm25s"}}
        data = {**data, "store": store}
    return data


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Write `directory/manifest.json` atomically (temp file, fsync, rename)."""
    directory = Path(directory)
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(manifest.to_json(), fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, directory / MANIFEST_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
