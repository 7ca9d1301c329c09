"""Near duplicates across two sets of vectors: the nearest training item of every test item.

Exact top-1 cosine search by blocked matrix products over float32 chunks: memory is the two
inputs plus one ``block x block`` product, time is one pass over all pairs in BLAS (no
all-pairs Python loop, no index to build, no extra dependency). Vectors are standardised with
the statistics of both sets together and then L2-normalised, so cosine compares how items
differ from the typical item rather than their shared offset (log-mel means all point the same
way and would all look alike).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 4096


@dataclass(frozen=True)
class Nearest:
    """``index[j]``: the row of the training matrix nearest to test row ``j``; ``cosine[j]``
    its cosine similarity."""

    index: np.ndarray
    cosine: np.ndarray


def standardise(*mats: np.ndarray, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale (std, 1 where constant) per column over the rows of all ``mats``,
    accumulated in float64 chunk by chunk."""
    d = mats[0].shape[1]
    n, s, ss = 0, np.zeros(d), np.zeros(d)
    for m in mats:
        for a in range(0, len(m), block):
            x = np.asarray(m[a : a + block], dtype=np.float64)
            n += len(x)
            s += x.sum(axis=0)
            ss += np.square(x).sum(axis=0)
    mean = s / max(n, 1)
    std = np.sqrt(np.maximum(ss / max(n, 1) - np.square(mean), 0.0))
    std[std < 1e-8] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def _unit(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    z = (np.asarray(x, dtype=np.float32) - mean) / scale
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    norm[norm == 0] = 1.0
    return z / norm


def nearest(train: np.ndarray, test: np.ndarray, *, block: int = BLOCK) -> Nearest:
    """The nearest training row of every test row by cosine similarity (exact, blocked).

    Args:
        train: ``(n_train, d)`` vectors.
        test: ``(n_test, d)`` vectors.
        block: rows per chunk; peak extra memory is about ``3 * block * (block + d)`` floats.
    """
    mean, scale = standardise(train, test, block=block)
    best = np.full(len(test), -np.inf, dtype=np.float32)
    arg = np.zeros(len(test), dtype=np.int64)
    for a in range(0, len(test), block):
        q = _unit(test[a : a + block], mean, scale)
        top = best[a : a + len(q)]
        where = arg[a : a + len(q)]
        for b in range(0, len(train), block):
            sims = q @ _unit(train[b : b + block], mean, scale).T
            j = sims.argmax(axis=1)
            s = sims[np.arange(len(q)), j]
            better = s > top
            top[better] = s[better]
            where[better] = j[better] + b
    return Nearest(arg, np.clip(best, -1.0, 1.0))


__all__ = ["Nearest", "nearest", "standardise"]
