"""Encoders: embed text queries and page images into one space."""

from dse.encoders.base import Encoder, resolve_device, run_batched
from dse.encoders.hub import ModelLoadError
from dse.encoders.query_length import QueryTooLongError
from dse.encoders.registry import EncoderSpec, list_encoders, load_encoder, register_encoder

__all__ = [
    "Encoder",
    "EncoderSpec",
    "ModelLoadError",
    "QueryTooLongError",
    "list_encoders",
    "load_encoder",
    "register_encoder",
    "resolve_device",
    "run_batched",
]
