"""The audio source: files libsndfile decodes, as float32 mono at the encoder's sample rate.

Its extent is seconds (from the header, after ``--max-seconds``); its store-key fields are the
sample rate, window, hop, crop length and side. Decoding, resampling, windows and chunks are
:mod:`sslstack.audio`'s (imported on first use, so reading a manifest does not load soxr).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import ConfigError
from .base import Settings, Source, Stream

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf")


class AudioSource(Source):
    kind = "audio"
    extensions = AUDIO_EXTENSIONS
    unit = "s"

    def extent(self, path: str, rate: int, settings: Settings) -> float:
        from ..audio import audio_duration

        seconds = audio_duration(path)
        return seconds if settings.max_seconds is None else min(seconds, settings.max_seconds)

    def load(self, path: str, rate: int, settings: Settings) -> np.ndarray:
        from ..audio import load_audio

        return load_audio(path, rate, max_seconds=settings.max_seconds, crop=settings.crop)

    def chunks(
        self, path: str, rate: int, settings: Settings, stream: Stream
    ) -> Iterator[np.ndarray]:
        from ..audio import iter_chunks

        yield from iter_chunks(
            path,
            rate,
            stream.step,
            stream.overlap,
            stream.min_last,
            max_seconds=settings.max_seconds,
            crop=settings.crop,
        )

    def windows(
        self, path: str, rate: int, settings: Settings
    ) -> Iterator[tuple[float, np.ndarray]]:
        from ..audio import iter_windows

        assert settings.window is not None and settings.hop is not None
        yield from iter_windows(path, rate, settings.window, settings.hop)

    def key_fields(self, rate: int, settings: Settings) -> dict[str, Any]:
        if settings.tta != "none":
            raise ConfigError(f"--tta {settings.tta}: applies to image items; these are audio")
        return {
            "sample_rate": rate,
            "window": settings.window,
            "hop": settings.hop if settings.window else None,
            "max_seconds": settings.max_seconds,
            "crop": settings.crop,
        }
