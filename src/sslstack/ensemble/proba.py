"""Probability helpers shared by the stack methods, calibration and predict."""

from __future__ import annotations

import numpy as np

from .encoding import Encoding

EPS = 1e-6


# -- probability helpers ---------------------------------------------------------------------


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def normalize_rows(p: np.ndarray) -> np.ndarray:
    """Rows scaled to sum 1 (a row of zeros becomes uniform)."""
    s = p.sum(axis=1, keepdims=True)
    out = np.where(s > 0, p / np.where(s > 0, s, 1.0), 1.0 / p.shape[1])
    return out


def binary_from_positive(pos: np.ndarray, enc: Encoding) -> np.ndarray:
    """Two columns in label order from the positive class probability."""
    out = np.empty((len(pos), 2))
    k = enc.positive_index
    out[:, k] = pos
    out[:, 1 - k] = 1.0 - pos
    return out


def finish(p: np.ndarray, enc: Encoding) -> np.ndarray:
    """Probabilities clipped to [0, 1]; single-label rows summing to 1."""
    p = np.clip(np.nan_to_num(p, nan=0.0), 0.0, 1.0)
    return normalize_rows(p) if enc.single_label else p
