"""Every metric of the registry against a reference (sklearn or a hand computation), over every
task it applies to. A metric added to ``METRICS`` runs here without editing this file: the
properties every metric must have (order-free, a perfect prediction scores best, inapplicable
tasks refused) apply to it at once, and a reference is required for it below."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from sslstack.classify.metrics import METRICS, TASKS, Metric, get_metric, metric_names
from sslstack.errors import ConfigError

RNG = np.random.default_rng(7)
N, C, L = 90, 4, 5


def _data(task: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and (not perfectly calibrated) probabilities, every class or label present."""
    if task == "multilabel":
        y = (RNG.random((N, L)) < 0.4).astype(int)
        y[0], y[1] = 1, 0  # both outcomes in every label
        return y, np.clip(0.35 * y + 0.65 * RNG.random((N, L)), 0, 1)
    k = 2 if task == "binary" else C
    y = np.arange(N) % k
    z = 1.2 * np.eye(k)[y] + RNG.normal(size=(N, k))
    return y, np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


DATA = {task: _data(task) for task in TASKS}


def _ref_ece(y: np.ndarray, p: np.ndarray, task: str, bins: int) -> float:
    conf = p[:, 1] if task == "binary" else p.max(axis=1)
    hit = (y == 1) if task == "binary" else (p.argmax(axis=1) == y)
    total = 0.0
    for b in range(bins):  # (lo, hi], the first bin also holds 0
        lo, hi = b / bins, (b + 1) / bins
        m = ((conf > lo) | (b == 0)) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(hit[m].mean() - conf[m].mean())
    return total


def _ref_eer(y: np.ndarray, p: np.ndarray) -> float:
    """Brute force over thresholds: reject a score <= t (ASVspoof's compute_eer)."""
    s, target = p[:, 1], y == 1
    best = (2.0, 0.0)
    for t in [-np.inf, *np.sort(s)]:
        frr, far = np.mean(s[target] <= t), np.mean(s[~target] > t)
        if abs(frr - far) < best[0]:
            best = (abs(frr - far), (frr + far) / 2)
    return best[1]


def _ref_lwlrap(y: np.ndarray, p: np.ndarray) -> float:
    """DCASE 2019 task 2's definition, one true label at a time."""
    precisions = []
    for row, truth in zip(p, y.astype(bool), strict=True):
        rank = {c: r + 1 for r, c in enumerate(np.argsort(-row, kind="stable"))}
        for c in np.flatnonzero(truth):
            above = [d for d in rank if rank[d] <= rank[c]]
            precisions.append(truth[above].sum() / rank[c])
    return float(np.mean(precisions))


def _ref_log_loss(y: np.ndarray, p: np.ndarray, task: str) -> float:
    if task == "multilabel":
        return float(np.mean([skm.log_loss(y[:, j], p[:, j], labels=[0, 1]) for j in range(L)]))
    return skm.log_loss(y, p, labels=np.arange(p.shape[1]))


def _ref_brier(y: np.ndarray, p: np.ndarray, task: str) -> float:
    if task == "binary":
        return skm.brier_score_loss(y, p[:, 1])
    if task == "multilabel":
        return float(np.mean((p - y) ** 2))
    return float(np.mean(np.sum((p - np.eye(p.shape[1])[y]) ** 2, axis=1)))


def _ref_roc_auc(y: np.ndarray, p: np.ndarray, task: str) -> float:
    if task == "binary":
        return skm.roc_auc_score(y, p[:, 1])
    if task == "multilabel":
        return float(np.mean([skm.roc_auc_score(y[:, j], p[:, j]) for j in range(L)]))
    return float(np.mean([skm.roc_auc_score(y == c, p[:, c]) for c in range(p.shape[1])]))


def _pred(y: np.ndarray, p: np.ndarray, task: str) -> np.ndarray:
    return (p >= 0.5).astype(int) if task == "multilabel" else p.argmax(axis=1)


REFERENCES = {
    "accuracy": lambda y, p, t: skm.accuracy_score(y, p.argmax(axis=1)),
    "balanced_accuracy": lambda y, p, t: skm.balanced_accuracy_score(y, p.argmax(axis=1)),
    "macro_f1": lambda y, p, t: skm.f1_score(y, _pred(y, p, t), average="macro"),
    "roc_auc": _ref_roc_auc,
    "log_loss": _ref_log_loss,
    "brier": _ref_brier,
    "ece": lambda y, p, t: _ref_ece(y, p, t, 15),
    "ece_7": lambda y, p, t: _ref_ece(y, p, t, 7),
    "eer": lambda y, p, t: _ref_eer(y, p),
    "lwlrap": lambda y, p, t: _ref_lwlrap(y, p),
    "map": lambda y, p, t: float(
        np.mean([skm.average_precision_score(y[:, j], p[:, j]) for j in range(L)])
    ),
}
NAMES = [*METRICS, "ece_7"]  # ece_<bins>: made on demand by the registry's fallback
CASES = [(n, t) for n in NAMES for t in TASKS if t in METRICS[n].tasks]


def test_every_metric_has_a_reference() -> None:
    """A new metric can not go unchecked: give it a reference in REFERENCES."""
    assert set(NAMES) <= set(REFERENCES), set(NAMES) - set(REFERENCES)


@pytest.mark.parametrize(("name", "task"), CASES)
def test_every_metric_equals_its_reference(name: str, task: str) -> None:
    y, p = DATA[task]
    value = METRICS[name](y, p, task, 1)
    assert isinstance(value, float)
    assert value == pytest.approx(REFERENCES[name](y, p, task), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("name", "task"), CASES)
def test_every_metric_ignores_row_order_and_prefers_a_perfect_prediction(
    name: str, task: str
) -> None:
    metric = METRICS[name]
    y, p = DATA[task]
    order = RNG.permutation(len(y))
    value = metric(y, p, task, 1)
    assert metric(y[order], p[order], task, 1) == pytest.approx(value, rel=1e-12, abs=1e-12)
    perfect = y.astype(float) if task == "multilabel" else np.eye(p.shape[1])[y]
    best = metric(y, perfect, task, 1)
    assert metric.better(best, value) or best == pytest.approx(value)
    bound = metric.bound(type("Enc", (), {"task": task, "positive_index": 1})())
    assert bound(y, p) == value  # bound to an encoding, it scores the same


@pytest.mark.parametrize("name", NAMES)
def test_every_metric_refuses_the_tasks_it_does_not_apply_to(name: str) -> None:
    metric: Metric = METRICS[name]
    for task in TASKS:
        if task in metric.tasks and name in metric_names(task) + ["ece_7"]:
            assert get_metric(name, task).name == name
        else:
            with pytest.raises(ConfigError, match=f"^--metric {name}: "):
                get_metric(name, task)


@pytest.mark.parametrize("task", TASKS)
def test_no_metric_named_is_the_task_default(task: str) -> None:
    """The one metric resolution: None gives the task's default."""
    from sslstack.classify.metrics import DEFAULT_METRIC

    assert get_metric(None, task).name == DEFAULT_METRIC[task]
