"""One item as the extractor hands it to the store, and as the store hands it back."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ItemResult:
    """The vectors of one item.

    Attributes:
        id: a name for people (the first name the content was extracted under); not a key.
        hash: the content hash of what was encoded: the item's key in the store.
        extent: how much input the encoder saw (seconds of audio for the audio source).
        clip: pool -> (L, D) vectors, one row per kept layer.
        window_starts: start of each window (windowed stores), in the extent's unit.
        windows: pool -> (w, L, D) per-window vectors.
    """

    id: str
    hash: str
    extent: float
    clip: dict[str, np.ndarray]
    window_starts: list[float] = field(default_factory=list)
    windows: dict[str, np.ndarray] = field(default_factory=dict)
