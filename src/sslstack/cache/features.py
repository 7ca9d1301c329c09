"""Feature matrices as heads see them: a layer choice and a pooling choice, read by content hash.

A layer choice is text, so it can be an Optuna category: ``"12"`` (one layer), ``"6..12"`` (the
mean of layers 6 to 12) or ``"4+8+12"`` (a concatenation). A pooling choice is one pooling
(``"mean"``) or a concatenation (``"mean+std"``). ``cache export`` and the heads read the same
matrices through :class:`FeatureReader`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .reader import StoreReader as Store


@dataclass(frozen=True)
class FeatureChoice:
    """One layer choice and one pooling choice of a store."""

    layer: str
    pool: str

    def blocks(self) -> list[tuple[list[str], str]]:
        """``[(layers averaged, pool), ...]`` concatenated in this order."""
        if ".." in self.layer:
            a, b = self.layer.split("..")
            layer_sets = [[str(i) for i in range(int(a), int(b) + 1)]]
        else:
            layer_sets = [[part] for part in self.layer.split("+")]
        return [(layers, pool) for pool in self.pool.split("+") for layers in layer_sets]

    def describe(self, store: Store) -> list[dict[str, str]]:
        """Run-metadata form: one entry per concatenated block."""
        return [
            {
                "store": store.path.name,
                "model": store.key.model,
                "layer": layers[0] if len(layers) == 1 else f"{layers[0]}..{layers[-1]}",
                "pool": pool,
            }
            for layers, pool in self.blocks()
        ]


class FeatureReader:
    """Reads feature matrices of one store for a fixed list of items, caching each layer/pool.

    Args:
        store: the store.
        keys: the items' content hashes, in row order (a dataset's ids map to them through
            :func:`sslstack.datasets.item_hashes`).
    """

    def __init__(self, store: Store, keys: Sequence[str]) -> None:
        self.store = store
        self.keys = list(keys)
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def _layer(self, layer: str, pool: str) -> np.ndarray:
        key = (layer, pool)
        if key not in self._cache:
            self._cache[key] = self.store.read(layer, pool, self.keys)[1]
        return self._cache[key]

    def matrix(self, choice: FeatureChoice) -> np.ndarray:
        """The (n_items, dim) float32 matrix of ``choice``."""
        parts = []
        for layers, pool in choice.blocks():
            if len(layers) == 1:
                parts.append(self._layer(layers[0], pool))
            else:
                parts.append(np.mean([self._layer(la, pool) for la in layers], axis=0))
        x = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        return np.ascontiguousarray(x, dtype=np.float32)


def read_features(store: Store, choice: FeatureChoice, keys: Sequence[str]) -> np.ndarray:
    """One feature matrix for the content hashes ``keys`` (no caching)."""
    return FeatureReader(store, keys).matrix(choice)
