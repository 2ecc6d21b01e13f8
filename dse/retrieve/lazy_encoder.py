"""The encoder an index was built with, loaded from its manifest on first use.

A visual checkpoint is gigabytes and tens of seconds to load; text (BM25) search, info, delete
and sync never need it. `EncoderLoader` checks what can be checked from the manifest alone when
an index is opened (the encoder name, the runtime options it takes, options that would change
the vectors) and builds the model once, the first time queries or pages are embedded.

An index may come from elsewhere, so the model its manifest names is loaded only when that is
safe without asking (`confirm_model`):

* no weights (BM25), or a dse-built tiny checkpoint (`tiny://...`): loaded;
* a local directory: loaded if it is there and holds the weights the manifest records (same
  fingerprint);
* whatever its source, a checkpoint that runs its own code (the index was built with
  `trust_remote_code`) only with `trust_remote_code=True` given again (CLI `--trust-remote-code`);
* a hub id: loaded only if the user confirmed it, by naming it (`model=ID`; CLI `--model`), by
  `allow_index_model=True`, by listing it in `$DSE_ALLOW_INDEX_MODELS` (comma-separated ids,
  or `*`), or by having loaded it by name on this machine before (`dse.encoders.hub.named_models`:
  an index built here reopens as it did). Otherwise `ModelNotConfirmedError` says how to confirm.

Hub models are loaded at the commit the manifest records (the revision is pinned), and the
loaded weights are checked against the manifest's identity.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dse.encoders.base import Encoder
from dse.retrieve.encoder_check import check_encoder
from dse.storage.manifest import EncoderMismatchError, Manifest

ALLOW_ENV = "DSE_ALLOW_INDEX_MODELS"


class EncoderLoader:
    """Loads the encoder of an index's manifest once, on the first `get` (thread-safe).

    Args:
        manifest: The index's manifest.
        model: The user's choice of weights (hub id or local directory; they must be the ones the
            index was built with, at any path). None: the manifest's, if `confirm_model` allows.
        allow_index_model: Load the hub model the manifest names without naming it.
        **runtime_options: Options such as `device` or `batch_size` that do not change the vectors.

    Raises:
        KeyError: The manifest's encoder is not registered.
        ValueError: The encoder does not take one of the options.
        EncoderMismatchError: An option would change the vectors (e.g. another `dim`).
    """

    def __init__(
        self, manifest: Manifest, *, model: str | None = None, allow_index_model: bool = False, **runtime_options: Any
    ) -> None:
        from dse.encoders.registry import check_encoder_options

        options = {k: v for k, v in runtime_options.items() if v is not None}
        description = manifest.encoder
        built = dict(description.get("options") or {})
        check_encoder_options(description["name"], model=model or description.get("model"), **{**built, **options})
        check_encoder(manifest, _expected_description(description, options))
        self._manifest = manifest
        self._model = None if model is None else str(model)
        self._allow = bool(allow_index_model)
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
                    encoder = encoder_from_manifest(self._manifest.encoder, model=self._model,
                                                    allow_index_model=self._allow, **self._options)
                    check_encoder(self._manifest, encoder.describe())
                    self._encoder = encoder
        return self._encoder


def _expected_description(description: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The `Encoder.describe()` the manifest's encoder would have with these runtime options.

    Options the manifest records as changing the vectors (e.g. `dim`, `max_pixels`) replace the
    recorded values, so `encoder_check.check_encoder` names any difference without building the model.
    """
    built = dict(description.get("options") or {})
    expected = dict(description)
    expected["options"] = {**built, **{k: v for k, v in options.items() if k in built}}
    if "dim" in options and "dim" in built:
        expected["dim"] = options["dim"]
    return expected


def confirm_model(
    description: Mapping[str, Any], model: str | None = None, allow_index_model: bool = False,
    trust_remote_code: bool = False,
) -> tuple[str | None, str | None]:
    """Which weights to load for a manifest's encoder, and at which revision (see the module docstring).

    Args:
        description: The manifest's `encoder` entry.
        model: The user's choice (hub id or directory), or None.
        allow_index_model: The user allows the manifest's hub model.
        trust_remote_code: The user allows a checkpoint's own code to run (an index built with
            it needs this again, whatever else is confirmed).

    Returns:
        (model to pass to the encoder, revision to pin or None).

    Raises:
        ModelNotConfirmedError: The manifest names a model the user has not confirmed.
        ModelLoadError: The manifest names a local directory that is missing here.
        EncoderMismatchError: That directory holds other weights than the index was built with.
    """
    from dse.encoders.hub import ModelNotConfirmedError, named_models
    from dse.encoders.identity import is_commit

    recorded = description.get("model")
    identity = description.get("identity") or {}
    pinned = identity.get("revision") or description.get("revision")
    pinned = pinned if is_commit(pinned) else None
    remote_code = bool(identity.get("trust_remote_code"))
    if remote_code and not trust_remote_code:
        raise ModelNotConfirmedError(
            f"this index was built with {description.get('name')!r} on {recorded!r}, whose checkpoint runs its own "
            f"Python code; dse runs it only when you allow it again: trust_remote_code=True (CLI: "
            f"--trust-remote-code), with the model confirmed as usual. Text search needs no model (--mode text).")
    if model is not None:  # the user named the weights
        return model, (pinned if model == recorded else None)
    if recorded is None or description.get("kind") == "text" or str(recorded).startswith("tiny://"):
        return recorded, None
    source = identity.get("source") or ("local" if Path(str(recorded)).is_dir() else "hub")
    if source in ("local", "builtin"):
        _check_directory(str(recorded), identity)
        return recorded, None
    allowed = {m.strip() for m in os.environ.get(ALLOW_ENV, "").split(",") if m.strip()}
    if allow_index_model or "*" in allowed or recorded in allowed or recorded in named_models():
        return recorded, pinned
    what = "is not one you have loaded here"
    at = f" @ {pinned}" if pinned else ""
    raise ModelNotConfirmedError(
        f"this index was built with {description.get('name')!r} on {recorded!r}{at}, which {what}; dse does not "
        f"download or run a model an index names until you confirm it: pass model={recorded!r} "
        f"(CLI: --model {recorded} or --allow-index-model; Python: Retriever.open(index, model=...) or "
        f"allow_index_model=True; environment: {ALLOW_ENV}={recorded}), "
        f"or model=DIR for a local copy of the same weights. Text search needs no model (--mode text)."
    )


def _check_directory(directory: str, identity: Mapping[str, Any]) -> None:
    """The manifest's local directory is here and holds the recorded weights (when a fingerprint is recorded)."""
    from dse.encoders.hub import ModelLoadError
    from dse.encoders.identity import directory_fingerprint

    if not Path(directory).is_dir():
        raise ModelLoadError(
            f"this index was built with the local checkpoint {directory!r}, which is not on this machine: pass "
            f"model=DIR for a directory holding the same weights (Python: Retriever.open(index, model=DIR))"
        )
    recorded = identity.get("fingerprint")
    if not recorded:
        return
    try:
        found, _ = directory_fingerprint(directory)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read the checkpoint {directory!r} this index was built with: {exc}") from exc
    if found != recorded:
        raise EncoderMismatchError(
            f"{directory!r} no longer holds the weights this index was built with (index: {recorded[:19]}..., "
            f"directory now: {found[:19]}...); pass model=DIR for the original weights, or build a new index"
        )


def encoder_from_manifest(
    description: Mapping[str, Any], *, model: str | None = None, allow_index_model: bool = False,
    **runtime_options: Any,
) -> Encoder:
    """Load the encoder an index was built with, from its manifest entry.

    Args:
        description: The manifest's `encoder` entry.
        model: The user's choice of weights (see `confirm_model`).
        allow_index_model: Load the manifest's hub model without naming it.
        **runtime_options: Options that do not change the vectors (device, batch_size).
    """
    from dse.encoders.registry import load_encoder

    chosen, revision = confirm_model(description, model, allow_index_model,
                                     bool(runtime_options.get("trust_remote_code")))
    options = dict(description.get("options") or {})
    options.update(runtime_options)
    if revision is not None and _takes(description["name"], "revision"):
        options["revision"] = revision
    encoder = load_encoder(description["name"], model=chosen, **options)
    return encoder.for_index(description)  # BM25: a setting the manifest predates takes its old value


def _takes(name: str, option: str) -> bool:
    """Whether the encoder registered as `name` accepts `option`."""
    from dse.encoders.registry import check_encoder_options

    try:
        check_encoder_options(name, **{option: "x"})
    except ValueError:
        return False
    return True
