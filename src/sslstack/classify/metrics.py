"""The metric registry: every score a head or a stack can report, keyed by name.

Each metric takes ``(y, proba, task, positive_index)``: ``y`` holds class indices (binary and
multiclass) or a 0/1 matrix (multilabel); ``proba`` is ``(n, n_classes)``. For binary tasks the
positive class is explicit: ``proba[:, positive_index]`` is the score of the positive class.

``ece`` uses 15 equal-width bins; ``ece_<n>`` (e.g. ``ece_10``) uses ``n`` bins.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from ..errors import ConfigError
from ..registry import Registry

T = TypeVar("T")

TASKS = ("binary", "multiclass", "multilabel")
_EPS = 1e-15

MetricFn = Callable[[np.ndarray, np.ndarray, str, int], float]


@dataclass(frozen=True)
class Metric:
    """One metric: its function, its direction and the tasks it applies to.

    ``metric(y, proba, task, positive_index)`` scores; :meth:`bound` ties it to a label
    encoding (its task and positive class), so ``metric(y, proba)`` does (how stacking scores
    its candidates; ``metric.encoding`` is that encoding).
    """

    name: str
    fn: MetricFn
    greater_is_better: bool
    tasks: frozenset[str]
    encoding: Any = None  # a LabelEncoding (or subclass) once bound

    def __call__(
        self,
        y: np.ndarray,
        proba: np.ndarray,
        task: str | None = None,
        positive_index: int | None = None,
    ) -> float:
        bound = self.encoding
        task = task or (bound.task if bound is not None else None)
        if task not in self.tasks:
            raise ConfigError(
                f"metric '{self.name}' does not apply to {task} tasks; "
                f"use one of: {', '.join(metric_names(str(task)))}"
            )
        if positive_index is None:
            positive_index = bound.positive_index if bound is not None else 1
        return float(
            self.fn(np.asarray(y), np.asarray(proba, dtype=np.float64), task, positive_index)
        )

    def bound(self, encoding: Any) -> Metric:
        """This metric tied to ``encoding`` (anything with ``task`` and ``positive_index``)."""
        return replace(self, encoding=encoding)

    def better(self, a: float, b: float) -> bool:
        """Is score ``a`` strictly better than ``b``?"""
        return a > b if self.greater_is_better else a < b

    @property
    def direction(self) -> str:
        return "maximize" if self.greater_is_better else "minimize"


def _skm() -> Any:
    """sklearn.metrics, imported when a metric is computed (``--help`` lists metrics without it)."""
    from sklearn import metrics

    return metrics


def _pred(proba: np.ndarray, task: str) -> np.ndarray:
    return (proba >= 0.5).astype(int) if task == "multilabel" else proba.argmax(axis=1)


def _accuracy(y: np.ndarray, p: np.ndarray, task: str, pos: int) -> float:
    return _skm().accuracy_score(y, _pred(p, task))


def _balanced_accuracy(y: np.ndarray, p: np.ndarray, task: str, pos: int) -> float:
    return _skm().balanced_accuracy_score(y, _pred(p, task))


def _macro_f1(y: np.ndarray, p: np.ndarray, task: str, pos: int) -> float:
    labels = None if task == "multilabel" else np.arange(p.shape[1])
    return _skm().f1_score(y, _pred(p, task), average="macro", labels=labels, zero_division=0)


def _roc_auc(y: np.ndarray, p: np.ndarray, task: str, pos: int) -> float:
    if task == "binary":
        return _skm().roc_auc_score((y == pos).astype(int), p[:, pos])
    if task == "multilabel":
        keep = y.min(axis=0) != y.max(axis=0)  # labels with both classes present
        return _skm().roc_auc_score(y[:, keep], p[:, keep], average="macro")
    present = np.unique(y)
    if len(present) < p.shape[1]:  # a class never occurs: macro OvR over the present ones
        q = p[:, present] / np.clip(p[:, present].sum(axis=1, keepdims=True), _EPS, None)
        y = np.searchsorted(present, y)
        if len(present) == 2:
            return _skm().roc_auc_score(y, q[:, 1])
        return _skm().roc_auc_score(y, q, multi_class="ovr", average="macro")
    q = p / np.clip(p.sum(axis=1, keepdims=True), _EPS, None)
    return _skm().roc_auc_score(y, q, multi_class="ovr", average="macro")


def _log_loss(y: np.ndarray, p: np.ndarray, task: str, pos: int) -> float:
    if task == "multilabel":
        q = np.clip(p, _EPS, 1 - _EPS)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))
    q = np.clip(p, _EPS, None)
    q = q / q.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(q[np.arange(len(y)), y])))


def _brier(y: np.ndarray, p: np.ndarray, task: str, pos: int) -> float:
    if task == "binary":
        return float(np.mean((p[:, pos] - (y == pos)) ** 2))
    if task == "multilabel":
        return float(np.mean((p - y) ** 2))
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def ece(y: np.ndarray, p: np.ndarray, task: str, pos: int = 1, n_bins: int = 15) -> float:
    """Expected calibration error over ``n_bins`` equal-width bins of [0, 1].

    Binary: calibration of the positive-class probability (observed positive rate against
    mean predicted probability per bin). Multiclass: top-label confidence against accuracy.
    """
    if task == "binary":
        conf, hit = p[:, pos], (y == pos).astype(float)
    else:
        conf, hit = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    # bins (a, b] except the first, which includes 0
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            total += m.sum() / len(conf) * abs(hit[m].mean() - conf[m].mean())
    return float(total)


def eer(y: np.ndarray, p: np.ndarray, task: str, pos: int = 1) -> float:
    """Equal error rate as computed by the ASVspoof evaluation scripts (``compute_eer``).

    The positive class is the target: its probability is the detection score.
    """
    target = p[y == pos, pos]
    nontarget = p[y != pos, pos]
    if len(target) == 0 or len(nontarget) == 0:
        return float("nan")
    scores = np.concatenate([target, nontarget])
    labels = np.concatenate([np.ones(len(target)), np.zeros(len(nontarget))])
    order = np.argsort(scores, kind="mergesort")
    labels = labels[order]
    tar_sums = np.cumsum(labels)
    nontar_sums = len(nontarget) - (np.arange(1, len(scores) + 1) - tar_sums)
    frr = np.concatenate([[0.0], tar_sums / len(target)])
    far = np.concatenate([[1.0], nontar_sums / len(nontarget)])
    i = int(np.argmin(np.abs(frr - far)))
    return float((frr[i] + far[i]) / 2)


def lwlrap(y: np.ndarray, p: np.ndarray, task: str = "multilabel", pos: int = 1) -> float:
    """Label-weighted label-ranking average precision (DCASE 2019 task 2), vectorized."""
    y = np.asarray(y).astype(bool)
    # rank of each score within its row, 1 = highest (ties: stable order like argsort)
    order = np.argsort(-p, axis=1, kind="stable")
    ranks = np.empty_like(order)
    rows = np.arange(p.shape[0])[:, None]
    ranks[rows, order] = np.arange(1, p.shape[1] + 1)[None, :]
    # hits at or above each rank: cumulative count of true labels in ranked order
    sorted_truth = y[rows, order]
    cum_hits = np.cumsum(sorted_truth, axis=1)
    hits_at = np.empty_like(cum_hits)
    hits_at[rows, order] = cum_hits
    precision = np.where(y, hits_at / ranks, 0.0)
    n_true = y.sum()
    return float(precision.sum() / n_true) if n_true else float("nan")


def _mean_ap(y: np.ndarray, p: np.ndarray, task: str, pos: int) -> float:
    keep = y.sum(axis=0) > 0
    return _skm().average_precision_score(y[:, keep], p[:, keep], average="macro")


_SINGLE = frozenset({"binary", "multiclass"})
_ALL = frozenset(TASKS)


def _ece_bins(name: str) -> Metric | None:
    """``ece_<n>``: ECE over ``n`` bins (made on demand, not listed one by one)."""
    match = re.fullmatch(r"ece_(\d+)", name)
    if not match or int(match.group(1)) <= 0:
        return None
    n_bins = int(match.group(1))
    return Metric(name, lambda y, p, t, i: ece(y, p, t, i, n_bins=n_bins), False, _SINGLE)


METRICS: Registry[Metric] = Registry("metric", fallback=_ece_bins, more=("ece_<bins>",))
for _m in (
    Metric("accuracy", _accuracy, True, _SINGLE),
    Metric("balanced_accuracy", _balanced_accuracy, True, _SINGLE),
    Metric("macro_f1", _macro_f1, True, _ALL),
    Metric("roc_auc", _roc_auc, True, _ALL),
    Metric("log_loss", _log_loss, False, _ALL),
    Metric("brier", _brier, False, _ALL),
    Metric("ece", lambda y, p, t, i: ece(y, p, t, i), False, _SINGLE),
    Metric("eer", lambda y, p, t, i: eer(y, p, t, i), False, frozenset({"binary"})),
    Metric("lwlrap", lambda y, p, t, i: lwlrap(y, p, t, i), True, frozenset({"multilabel"})),
    Metric("map", _mean_ap, True, frozenset({"multilabel"})),
):
    METRICS.register(_m.name, _m)

DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "accuracy", "multilabel": "lwlrap"}


# Multi-label runs report threshold-free metrics only: ``macro_f1`` needs a decision threshold
# per label, and a fixed 0.5 read 0.01-0.05 where LWLRAP was 0.34 (heads' probabilities of rare
# labels stay below 0.5). The function still computes the 0.5-threshold F1 when called directly.
THRESHOLD_METRICS = frozenset({"macro_f1"})


def metric_names(task: str) -> list[str]:
    """The metrics that apply to ``task``, in registry order (threshold-free for multilabel)."""
    return [
        n
        for n, m in METRICS.items()
        if task in m.tasks and not (task == "multilabel" and n in THRESHOLD_METRICS)
    ]


def get_metric(name: str | None, task: str | None = None) -> Metric:
    """The one metric resolution: ``name`` (``ece_<n>`` for ECE with ``n`` bins), or the task's
    default (:data:`DEFAULT_METRIC`) when ``name`` is None.

    Raises:
        ConfigError: unknown name, or a metric that does not apply to ``task``.
    """
    if name is None and task is not None:
        name = DEFAULT_METRIC[task]
    metric = METRICS.get(name)  # None (no task to default from): the unknown-name error
    if task == "multilabel" and metric.name in THRESHOLD_METRICS:
        raise ConfigError(
            f"--metric {name}: multi-label runs report threshold-free metrics only ({name} "
            "would need a tuned threshold per label); choose from "
            f"{', '.join(metric_names(task))}"
        )
    if task is not None and task not in metric.tasks:
        raise ConfigError(
            f"--metric {name}: does not apply to {task} tasks; "
            f"choose from {', '.join(metric_names(task))}"
        )
    return metric


def score_all(
    y: np.ndarray, proba: np.ndarray, task: str, positive_index: int = 1
) -> dict[str, float]:
    """Every metric that applies to ``task`` (NaN where a metric is undefined on this data)."""
    out: dict[str, float] = {}
    for name in metric_names(task):
        try:
            value = METRICS[name](y, proba, task, positive_index)
        except ValueError:
            value = float("nan")
        out[name] = value if math.isfinite(value) else float("nan")
    return out


def score_order(metric: str | None, score: Any) -> float:
    """Sort key of a run's score under its metric: smaller is better, whichever way the metric
    goes (``ece_<n>`` included); a missing, unknown or non-finite score sorts last."""
    try:
        value = float(score)
        better_high = get_metric(str(metric)).greater_is_better
    except (TypeError, ValueError, ConfigError):
        return math.inf
    if not math.isfinite(value):
        return math.inf
    return -value if better_high else value


def rank_runs(items: Sequence[T], metric: Callable[[T], Any], score: Callable[[T], Any]) -> list[T]:
    """``items`` best first by :func:`score_order` (the one ranking of ``runs ls``, ``predict``
    and ``report``)."""
    return sorted(items, key=lambda r: score_order(metric(r), score(r)))
