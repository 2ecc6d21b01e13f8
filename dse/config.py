"""Index configs: YAML files choosing an encoder and its settings (see `configs/`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

_SECTIONS = {
    "encoder": str,
    "options": dict,
    "ingest": dict,
    "index": dict,
}
_INGEST_KEYS = {"dpi", "password", "max_pages", "max_file_mb", "max_image_pixels", "convert_timeout",
                "page_timeout", "file_timeout", "max_memory_mb", "sandbox", "web",
                "ocr", "ocr_language", "ocr_dpi", "ocr_timeout"}
_INDEX_KEYS = {"hnsw", "image_size", "backend", "qdrant"}  # qdrant: the Qdrant backend's options (docs/qdrant.md)


class ConfigError(ValueError):
    """A config file is malformed; the message names the file and the bad key."""


@dataclass(frozen=True)
class IndexConfig:
    """What `dse index` needs: the encoder, its options, and ingest / index settings.

    Attributes:
        encoder: Registry name of the encoder.
        options: Options for `load_encoder` (model, dim, max_pixels, batch_size, device, ...).
        ingest: Rendering settings (dpi, password), limits (see `ingest.Limits.from_config`) and
            OCR (`ocr: auto|always|never`, `ocr_language`, `ocr_dpi`, `ocr_timeout`: see
            `ingest.OcrOptions.from_config`).
        index: Index settings (hnsw, image_size, backend, and qdrant: the Qdrant backend's options).
    """

    encoder: str = "bm25"
    options: Mapping[str, Any] = field(default_factory=dict)
    ingest: Mapping[str, Any] = field(default_factory=dict)
    index: Mapping[str, Any] = field(default_factory=dict)

    def with_overrides(self, encoder: str | None = None, **options: Any) -> "IndexConfig":
        """A copy with the command line's choices applied over the file's."""
        merged = dict(self.options)
        merged.update({k: v for k, v in options.items() if v is not None})
        return replace(self, encoder=encoder or self.encoder, options=merged)


def load_config(path: str | Path) -> IndexConfig:
    """Read and check a YAML config file.

    Raises:
        ConfigError: Unreadable file, unknown section or key, or a value of the wrong type.
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config is a mapping with keys {', '.join(_SECTIONS)}")
    for key, value in data.items():
        if key not in _SECTIONS:
            raise ConfigError(f"{path}: unknown key {key!r} (expected {', '.join(_SECTIONS)})")
        if not isinstance(value, _SECTIONS[key]):
            raise ConfigError(f"{path}: {key!r} must be a {_SECTIONS[key].__name__}, got {value!r}")
    for section, allowed in (("ingest", _INGEST_KEYS), ("index", _INDEX_KEYS)):
        unknown = set(data.get(section, {})) - allowed
        if unknown:
            raise ConfigError(f"{path}: unknown {section} key(s) {sorted(unknown)} (expected {sorted(allowed)})")
    if not isinstance(data.get("index", {}).get("qdrant", {}), dict):
        raise ConfigError(f"{path}: index: qdrant: must be a mapping of the Qdrant backend's options (docs/qdrant.md)")
    return IndexConfig(
        encoder=data.get("encoder", "bm25"),
        options=dict(data.get("options", {})),
        ingest=dict(data.get("ingest", {})),
        index=dict(data.get("index", {})),
    )
