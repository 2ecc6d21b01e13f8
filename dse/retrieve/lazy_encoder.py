"""The encoder an index was built with, loaded from its manifest on first use.

A visual checkpoint is gigabytes and tens of seconds to load; text (BM25) search, info, delete
and sync never need it. `EncoderLoader` checks what can be checked from the manifest alone when
an index is opened (the encoder name, the runtime options it takes, options that would change
the vectors) and builds the model once, the first time queries or pages are embedded.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from dse.encoders.base import Encoder
from dse.indexes.manifest import Manifest


class EncoderLoader:
    """Loads the encoder of an index's manifest once, on the first `get` (thread-safe).

    Args:
        manifest: The index's manifest.
        **runtime_options: Options such as `device` or `batch_size` that do not change the vectors.

    Raises:
        KeyError: The manifest's encoder is not registered.
        ValueError: The encoder does not take one of the options.
        EncoderMismatchError: An option would change the vectors (e.g. another `dim`).
    """

    def __init__(self, manifest: Manifest, **runtime_options: Any) -> None:
        from dse.encoders.registry import check_encoder_options

        options = {k: v for k, v in runtime_options.items() if v is not None}
        description = manifest.encoder
        built = dict(description.get("options") or {})
        check_encoder_options(description["name"], model=description.get("model"), **{**built, **options})
        manifest.check_encoder(_expected_description(description, options))
        self._manifest = manifest
        self._options = options
        self._encoder: Encoder | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """True once the encoder has been built."""
        return self._encoder is not None

    def get(self) -> Encoder:
        """The encoder, built on the first call and checked against the manifest."""
        if self._encoder is None:
            with self._lock:  # threads searching at once build the model once
                if self._encoder is None:
                    encoder = encoder_from_manifest(self._manifest.encoder, **self._options)
                    self._manifest.check_encoder(encoder.describe())
                    self._encoder = encoder
        return self._encoder


def _expected_description(description: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The `Encoder.describe()` the manifest's encoder would have with these runtime options.

    Options the manifest records as changing the vectors (e.g. `dim`, `max_pixels`) replace the
    recorded values, so `Manifest.check_encoder` names any difference without building the model.
    """
    built = dict(description.get("options") or {})
    expected = dict(description)
    expected["options"] = {**built, **{k: v for k, v in options.items() if k in built}}
    if "dim" in options and "dim" in built:
        expected["dim"] = options["dim"]
    return expected


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
