"""Extraction: encoders (built-in ``logmel`` and transformers families), pooling, the runner."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .base import Encoder, EncoderSpec
    from .pooling import pool_names
    from .resolve import resolve_encoder
    from .runner import ExtractConfig, ExtractResult, extract

# Names are imported on first use, so `sslstack --help` and `--version` do not pay for
# scikit-learn, Optuna, pandas or torch (see docs/benchmarks.md, "CLI start-up").
_LAZY = {
    "Encoder": ".base",
    "EncoderSpec": ".base",
    "resolve_encoder": ".resolve",
    "pool_names": ".pooling",
    "ExtractConfig": ".runner",
    "ExtractResult": ".runner",
    "extract": ".runner",
}


__getattr__ = lazy_exports(__name__, globals(), _LAZY)


__all__ = [
    "Encoder",
    "EncoderSpec",
    "ExtractConfig",
    "ExtractResult",
    "extract",
    "pool_names",
    "resolve_encoder",
]
