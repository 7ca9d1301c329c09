"""``--model`` -> :class:`~sslstack.extract.base.EncoderSpec`, without loading weights: a built-in
name (``logmel``, ``speech-embedding``, ...), an exported model file (``.onnx``, ``.tflite``,
``.pt``), a transformers hub id or a local model folder.

This module sits above the encoder implementations (they import :mod:`.base`, never this), so
the package has no import cycle.
"""

from __future__ import annotations

from ..errors import EncoderError
from .base import BUILTINS, EncoderSpec


def builtin_names() -> list[str]:
    """Names ``--model`` takes as built-in encoders (``logmel``, ``speech-embedding``, …)."""
    return BUILTINS.names()


def resolve_encoder(
    model: str,
    revision: str | None = None,
    *,
    trust_remote_code: bool = False,
    allow_unsafe_weights: bool = False,
) -> EncoderSpec:
    """Turn ``--model`` (a built-in name, an exported model file, a hub id or a local folder)
    into an :class:`EncoderSpec`.

    Raises:
        EncoderError: unknown family, missing config, or no safe weights.
    """
    if model in BUILTINS:
        if revision:
            raise EncoderError(f"--revision does not apply to the built-in encoder '{model}'")
        return BUILTINS[model]()
    from .runtimes import is_model_file, resolve_file

    if is_model_file(model):
        if revision:
            raise EncoderError(f"--revision {revision}: {model} is a model file, not a hub id")
        return resolve_file(model)
    try:
        from .vision import resolve_transformers  # vision model types; the rest to hf_resolve
    except ImportError as e:  # pragma: no cover
        raise EncoderError(f"transformers encoders are unavailable: {e}") from e
    return resolve_transformers(
        model,
        revision,
        trust_remote_code=trust_remote_code,
        allow_unsafe_weights=allow_unsafe_weights,
    )
