"""The item source contract: what kind of input an item is, and everything that depends on it.

A :class:`Source` owns, for one kind of input (audio today; images next): which files it
claims (extensions), how an item is measured (its *extent*: seconds of audio, elements of a
vector — batches are cut by it), how it is decoded into the array an encoder takes, how a long
item is cut into windows and streamed in chunks, and which settings of its own identify stored
vectors (its store-key fields). The engine (:mod:`sslstack.extract`) only sees arrays and
extents; adding a kind is one file registered in :data:`sslstack.sources.SOURCES`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Stream:
    """How the engine cuts a long input into chunks (all lengths in samples of the source).

    Chunks start every ``step`` samples and hold ``step + overlap`` samples (fewer at the end);
    a chunk after the first is sent only when at least ``min_last`` samples remain from its start
    (fewer would give the encoder no frame of its own). The encoder's statistics of the chunks
    merge into the item's, so peak memory follows the chunk, not the item.
    """

    step: int
    overlap: int = 0
    min_last: int = 1

    @property
    def size(self) -> int:
        return self.step + self.overlap

    def starts(self, n: int) -> list[int]:
        """Chunk starts for an input of ``n`` samples (one chunk when it fits in ``size``)."""
        if n <= self.size:
            return [0]
        return [s for s in range(0, n, self.step) if s == 0 or n - s >= self.min_last]


@dataclass(frozen=True)
class Settings:
    """What a source reads of an extraction's settings (``ExtractConfig`` has these fields)."""

    window: float | None = None
    hop: float | None = None
    max_seconds: float | None = None
    crop: str = "start"
    tta: str = "none"  # image views (sslstack.sources.image): stored like windows

    @property
    def windowed(self) -> bool:
        """Whether an item becomes several units stored like windows (``--window``, ``--tta``)."""
        return self.window is not None or self.tta != "none"


class Source(ABC):
    """One kind of item. Subclasses set ``kind``, ``extensions`` and ``unit``."""

    kind: str = ""
    extensions: tuple[str, ...] = ()
    unit: str = ""  # what an extent counts, for progress and messages ("s" of audio)

    def claims(self, path: str | os.PathLike[str]) -> bool:
        """Whether a file of this name is this source's (by extension)."""
        return Path(path).suffix.lower() in self.extensions

    @abstractmethod
    def extent(self, path: str, rate: int, settings: Settings) -> float:
        """The item's size in ``unit`` after cropping, from its header alone (0.0 when the
        header is unreadable: decoding will say why)."""

    @abstractmethod
    def load(self, path: str, rate: int, settings: Settings) -> np.ndarray:
        """The whole item as the array its encoder takes (cropped per ``settings``)."""

    @abstractmethod
    def chunks(
        self, path: str, rate: int, settings: Settings, stream: Stream
    ) -> Iterator[np.ndarray]:
        """The item streamed as consecutive chunks (see :class:`Stream`), never whole."""

    @abstractmethod
    def windows(
        self, path: str, rate: int, settings: Settings
    ) -> Iterator[tuple[float, np.ndarray]]:
        """``(start in unit, array)`` windows of ``settings.window`` every ``settings.hop``."""

    @abstractmethod
    def key_fields(self, rate: int, settings: Settings) -> dict[str, Any]:
        """The store-key fields this source's settings contribute (what changes values)."""


__all__ = ["Settings", "Source", "Stream"]
