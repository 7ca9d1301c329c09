"""One item as the extractor hands it to the store, and as the store hands it back."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import AudioError


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


def check_item(item: ItemResult, dtype: type = np.float32) -> None:
    """:func:`check_vectors` over an item's clip and window vectors as they will be stored
    (``dtype``: float16 overflows to infinity above 65504): the store's last guard, so no NaN
    or infinity ever enters it (issue 18)."""
    arrays = [*getattr(item, "clip", {}).values(), *getattr(item, "windows", {}).values()]
    for values in arrays:
        with np.errstate(over="ignore"):
            check_vectors(str(getattr(item, "id", "?")), np.asarray(values).astype(dtype))


def check_vectors(where: str, values: np.ndarray) -> None:
    """The guard before a store write: no NaN or infinity is ever stored.

    Raises:
        AudioError: naming the item (an ``--on-error skip`` entry).
    """
    if not np.isfinite(values).all():
        raise AudioError(
            f"{where}: the encoder gave NaN or infinite values; nothing was stored for it "
            "(check the audio: silent, clipped or mis-scaled input; or --on-error skip)"
        )
