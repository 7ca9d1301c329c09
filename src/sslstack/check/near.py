"""Near duplicates across two sets of vectors: the nearest training item of every test item.

Exact top-1 cosine search by blocked matrix products over float32 chunks: memory is the inputs,
one whitened copy of the training vectors and one ``block x block`` product; time is one pass
over all pairs in BLAS (no all-pairs Python loop, no index to build, no extra dependency).

Vectors are *whitened* before the cosine (centred and rotated onto the principal axes of both
sets together, each axis scaled to unit variance, with a small ridge so near-empty axes do not
turn noise into signal) and then L2-normalised. Without it, vectors that all share a direction
(log-mel means, or any encoder's dominant axes) look alike: two takes of one word by one
speaker scored 0.98 against 0.99 for a clip and its own 1 dB louder copy (fsdd-mini, log-mel
mean and std); whitened, 0.76 against 0.98 and above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 4096
RIDGE = 1e-3  # added to every axis' variance, as a share of the largest


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


def whitener(
    *mats: np.ndarray, ridge: float = RIDGE, block: int = BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and whitening matrix ``W`` (``(x - mean) @ W`` has about unit covariance) of the
    rows of all ``mats``, the covariance accumulated chunk by chunk."""
    d = mats[0].shape[1]
    n, s, G = 0, np.zeros(d), np.zeros((d, d))
    for m in mats:
        for a in range(0, len(m), block):
            x = np.asarray(m[a : a + block], dtype=np.float32)
            n += len(x)
            s += x.sum(axis=0, dtype=np.float64)
            G += x.T @ x  # float32 within a chunk (BLAS speed), float64 across chunks
    mean = s / max(n, 1)
    cov = G / max(n, 1) - np.outer(mean, mean)
    w, V = np.linalg.eigh(cov)
    w = np.maximum(w, 0.0)
    W = V / np.sqrt(w + ridge * max(float(w.max()), 1e-12))
    return mean.astype(np.float32), W.astype(np.float32)


def _unit(x: np.ndarray, mean: np.ndarray, W: np.ndarray) -> np.ndarray:
    z = (np.asarray(x, dtype=np.float32) - mean) @ W
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    norm[norm == 0] = 1.0
    return z / norm


def nearest(train: np.ndarray, test: np.ndarray, *, block: int = BLOCK) -> Nearest:
    """The nearest training row of every test row by cosine similarity of whitened vectors
    (exact, blocked).

    Args:
        train: ``(n_train, d)`` vectors.
        test: ``(n_test, d)`` vectors.
        block: rows per chunk; beyond a whitened float32 copy of ``train``, peak extra memory
            is about ``block * (block + 2 d)`` floats.
    """
    mean, W = whitener(train, test, block=block)
    ref = np.empty((len(train), train.shape[1]), dtype=np.float32)
    for b in range(0, len(train), block):
        ref[b : b + block] = _unit(train[b : b + block], mean, W)
    best = np.full(len(test), -np.inf, dtype=np.float32)
    arg = np.zeros(len(test), dtype=np.int64)
    for a in range(0, len(test), block):
        q = _unit(test[a : a + block], mean, W)
        top = best[a : a + len(q)]
        where = arg[a : a + len(q)]
        for b in range(0, len(train), block):
            sims = q @ ref[b : b + block].T
            j = sims.argmax(axis=1)
            s = sims[np.arange(len(q)), j]
            better = s > top
            top[better] = s[better]
            where[better] = j[better] + b
    return Nearest(arg, np.clip(best, -1.0, 1.0))


__all__ = ["Nearest", "nearest", "standardise", "whitener"]
