"""Extraction: encoders (built-in ``logmel`` and transformers families), pooling, the runner."""

from .base import Encoder, EncoderSpec, resolve_encoder
from .pooling import pool_names
from .runner import ExtractConfig, ExtractResult, extract

__all__ = [
    "Encoder",
    "EncoderSpec",
    "ExtractConfig",
    "ExtractResult",
    "extract",
    "pool_names",
    "resolve_encoder",
]
