"""Where a new study starts: the probe's best features, else a fast ridge screen over them all.

The first trial of a study is a head's known-good parameters; this picks its features. When
``sslstack probe`` has scored this store on this dataset with this metric, its best choice within
the search space is taken (:func:`probe_choice`). Otherwise every
layer choice x pooling choice of the space (single layers, layer means, concatenated layers and
poolings) is scored by a standardized ridge regression on one-hot targets under the shared folds,
out of fold, with the study's metric, and the best choice wins. A ridge fit is a linear solve,
so the whole screen costs about one logistic fit per choice; wider inputs are first projected to
``MAX_SCREEN_DIM`` columns by a fixed random projection (the screen only ranks choices).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .features import FeatureChoice, FeatureReader, default_choice
from .labels import LabelEncoding
from .metrics import Metric

MAX_SCREEN_DIM = 512
RIDGE_ALPHA = 0.1  # per standardized column and row: alpha = RIDGE_ALPHA * n_train
TEMPERATURE = 5.0  # ridge outputs -> probabilities for the metric (a ranking is all it needs)


def _targets(y: np.ndarray, enc: LabelEncoding) -> np.ndarray:
    if enc.task == "multilabel":
        return y.astype(np.float64)
    return np.eye(enc.n_classes)[y]


def _project(x: np.ndarray, seed: int) -> np.ndarray:
    if x.shape[1] <= MAX_SCREEN_DIM:
        return x.astype(np.float64)
    rng = np.random.default_rng(seed)
    proj = rng.normal(size=(x.shape[1], MAX_SCREEN_DIM)) / np.sqrt(MAX_SCREEN_DIM)
    return x.astype(np.float64) @ proj


def ridge_oof(
    x: np.ndarray, y: np.ndarray, enc: LabelEncoding, splits: Sequence[tuple[np.ndarray, ...]]
) -> np.ndarray:
    """Out-of-fold probabilities of a standardized ridge on one-hot targets."""
    t = _targets(y, enc)
    x = _project(x, 0)
    out = np.zeros((len(y), t.shape[1]))
    for tr, va in splits:
        mu, sd = x[tr].mean(axis=0), x[tr].std(axis=0) + 1e-8
        a, b = (x[tr] - mu) / sd, (x[va] - mu) / sd
        tm = t[tr].mean(axis=0)
        gram = a.T @ a + RIDGE_ALPHA * len(tr) * np.eye(a.shape[1])
        w = np.linalg.solve(gram, a.T @ (t[tr] - tm))
        s = b @ w + tm
        if enc.task == "multilabel":
            out[va] = np.clip(s, 0.0, 1.0)
        else:
            z = TEMPERATURE * (s - s.max(axis=1, keepdims=True))
            e = np.exp(z)
            out[va] = e / e.sum(axis=1, keepdims=True)
    return out


def screen_features(
    reader: FeatureReader,
    y: np.ndarray,
    enc: LabelEncoding,
    splits: Sequence[tuple[np.ndarray, ...]],
    metric: Metric,
    layers: Sequence[str],
    pools: Sequence[str],
) -> FeatureChoice:
    """The feature choice of the space whose ridge screen scores best (ties: the first)."""
    best, best_score = default_choice(layers, pools), None
    for la in layers:
        for po in pools:
            choice = FeatureChoice(la, po)
            p = ridge_oof(reader.matrix(choice), y, enc, splits)
            try:
                score = metric(y, p, enc.task, enc.positive_index)
            except ValueError:
                continue
            if not np.isfinite(score):
                continue
            if _better(score, best_score, metric.greater_is_better):
                best, best_score = choice, score
    return best


def probe_choice(
    record: Path, layers: Sequence[str], pools: Sequence[str], greater_is_better: bool
) -> tuple[FeatureChoice, float] | None:
    """The best choice of the search space (``layers`` x ``pools``) in a saved probe record
    (``<ws>/probes/<store>-<dataset>-<metric>.json``), with its score; ``None`` without a
    record or without a scored choice inside the space."""
    try:
        doc = json.loads(record.read_text(encoding="utf-8"))
        scores = doc["scores"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    best: tuple[FeatureChoice, float] | None = None
    for la in layers:
        for po in pools:
            v = scores.get(la, {}).get(po) if isinstance(scores.get(la), dict) else None
            if not isinstance(v, (int, float)) or not np.isfinite(v):
                continue
            if _better(v, None if best is None else best[1], greater_is_better):
                best = (FeatureChoice(la, po), float(v))
    return best


def _better(score: float, best: float | None, greater_is_better: bool) -> bool:
    return best is None or (score > best if greater_is_better else score < best)
