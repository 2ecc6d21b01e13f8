"""Whether an encoder would produce the vectors an index holds: its description against the index's manifest."""

from __future__ import annotations

import json
from typing import Any, Mapping

from dse.encoders.identity import describe_weights, same_weights
from dse.storage.manifest import VECTOR_FIELDS, EncoderMismatchError, Manifest


def check_encoder(manifest: Manifest, description: Mapping[str, Any]) -> None:
    """Raise EncoderMismatchError if `description` would produce different vectors than the index's.

    Args:
        manifest: The index's manifest.
        description: `Encoder.describe()` of the encoder about to be used.
    """
    built = manifest.encoder
    same = same_weights(built.get("identity"), description.get("identity"))
    diffs = [
        f"{key}: index has {built.get(key)!r}, encoder has {description.get(key)!r}"
        for key in VECTOR_FIELDS
        if (key != "model" or same is None) and _normal(built.get(key)) != _normal(description.get(key))
    ]
    if same is False:
        diffs.insert(0, "weights: the index was built with "
                     f"{describe_weights(built.get('model'), built.get('identity'))}, this encoder loads "
                     f"{describe_weights(description.get('model'), description.get('identity'))}")
    if diffs:
        raise EncoderMismatchError(
            "this index was built with another encoder; its vectors cannot be mixed or searched "
            "with this one (" + "; ".join(diffs) + "). Open it without an encoder to use the one "
            "it was built with, or build a new index."
        )


def _normal(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))
