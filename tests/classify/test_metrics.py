"""Every metric of the registry against a reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from sslstack.classify.metrics import (
    DEFAULT_METRIC,
    METRICS,
    TASKS,
    get_metric,
    metric_names,
    score_all,
)
from sslstack.errors import ConfigError

RNG = np.random.default_rng(0)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _single(n: int = 300, c: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    p = _softmax(1.5 * np.eye(c)[y] + rng.normal(size=(n, c)))
    return y, p


def _multi(n: int = 200, c: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.3).astype(int)
    y[y.sum(axis=1) == 0, 0] = 1
    p = 1 / (1 + np.exp(-(2 * y - 1 + rng.normal(size=(n, c)))))
    return y, p


# ------------------------------------------------------------------ references
def ref_lwlrap(truth: np.ndarray, scores: np.ndarray) -> float:
    """The DCASE 2019 task 2 reference: per-sample precisions, weighted per label."""

    def one_sample(scores_row: np.ndarray, truth_row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        num_classes = scores_row.shape[0]
        pos_class_indices = np.flatnonzero(truth_row > 0)
        if not len(pos_class_indices):
            return pos_class_indices, np.zeros(0)
        retrieved_classes = np.argsort(scores_row)[::-1]
        class_rankings = np.zeros(num_classes, dtype=int)
        class_rankings[retrieved_classes] = range(num_classes)
        retrieved_class_true = np.zeros(num_classes, dtype=bool)
        retrieved_class_true[class_rankings[pos_class_indices]] = True
        retrieved_cumulative_hits = np.cumsum(retrieved_class_true)
        precision_at_hits = retrieved_cumulative_hits[class_rankings[pos_class_indices]] / (
            1 + class_rankings[pos_class_indices].astype(float)
        )
        return pos_class_indices, precision_at_hits

    num_samples, num_classes = scores.shape
    precisions_for_samples_by_classes = np.zeros((num_samples, num_classes))
    for sample_num in range(num_samples):
        pos, prec = one_sample(scores[sample_num], truth[sample_num])
        precisions_for_samples_by_classes[sample_num, pos] = prec
    labels_per_class = np.sum(truth > 0, axis=0)
    weight_per_class = labels_per_class / float(np.sum(labels_per_class))
    per_class_lwlrap = np.sum(precisions_for_samples_by_classes, axis=0) / np.maximum(
        1, labels_per_class
    )
    return float(np.sum(per_class_lwlrap * weight_per_class))


def ref_eer(y_pos: np.ndarray, score: np.ndarray) -> float:
    """Straightforward ROC-based EER: the point where FNR and FPR cross."""
    fpr, tpr, _ = skm.roc_curve(y_pos, score, drop_intermediate=False)
    fnr = 1 - tpr
    i = np.nanargmin(np.abs(fnr - fpr))
    return float((fpr[i] + fnr[i]) / 2)


def ref_ece(conf: np.ndarray, hit: np.ndarray, n_bins: int) -> float:
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        m = (conf > lo) & (conf <= hi) if b else (conf >= lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(hit[m].mean() - conf[m].mean())
    return total


# ------------------------------------------------------------------ single-label
@pytest.mark.parametrize("seed", [0, 1])
def test_multiclass_metrics_equal_sklearn(seed: int) -> None:
    y, p = _single(seed=seed)
    pred = p.argmax(axis=1)
    assert METRICS["accuracy"](y, p, "multiclass") == pytest.approx(skm.accuracy_score(y, pred))
    assert METRICS["balanced_accuracy"](y, p, "multiclass") == pytest.approx(
        skm.balanced_accuracy_score(y, pred)
    )
    assert METRICS["macro_f1"](y, p, "multiclass") == pytest.approx(
        skm.f1_score(y, pred, average="macro")
    )
    assert METRICS["roc_auc"](y, p, "multiclass") == pytest.approx(
        skm.roc_auc_score(y, p, multi_class="ovr", average="macro")
    )
    assert METRICS["log_loss"](y, p, "multiclass") == pytest.approx(skm.log_loss(y, p))
    assert METRICS["brier"](y, p, "multiclass") == pytest.approx(
        skm.brier_score_loss(y, p, labels=[0, 1, 2, 3], scale_by_half=False)
    )
    hit = (pred == y).astype(float)
    assert METRICS["ece"](y, p, "multiclass") == pytest.approx(ref_ece(p.max(axis=1), hit, 15))
    assert get_metric("ece_7")(y, p, "multiclass") == pytest.approx(ref_ece(p.max(axis=1), hit, 7))


@pytest.mark.parametrize("pos", [0, 1])
def test_binary_metrics_use_the_positive_class(pos: int) -> None:
    y, p = _single(n=400, c=2, seed=3)
    y_pos = (y == pos).astype(int)
    assert METRICS["roc_auc"](y, p, "binary", pos) == pytest.approx(
        skm.roc_auc_score(y_pos, p[:, pos])
    )
    assert METRICS["brier"](y, p, "binary", pos) == pytest.approx(
        skm.brier_score_loss(y_pos, p[:, pos])
    )
    assert METRICS["log_loss"](y, p, "binary", pos) == pytest.approx(skm.log_loss(y, p))
    assert METRICS["ece"](y, p, "binary", pos) == pytest.approx(
        ref_ece(p[:, pos], y_pos.astype(float), 15)
    )
    assert METRICS["eer"](y, p, "binary", pos) == pytest.approx(ref_eer(y_pos, p[:, pos]))


def test_eer_known_values() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    score = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    p = np.stack([1 - score, score], axis=1)
    assert METRICS["eer"](y, p, "binary", 1) == 0.0
    assert METRICS["eer"](1 - y, p, "binary", 1) == 1.0
    # one error on each side out of four per class: EER 1/4
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    score = np.arange(8) / 8
    p = np.stack([1 - score, score], axis=1)
    assert METRICS["eer"](y, p, "binary", 1) == pytest.approx(0.25)
    # the definition is symmetric in which class is the target
    y, p = _single(n=300, c=2, seed=5)
    assert METRICS["eer"](y, p, "binary", 1) == pytest.approx(METRICS["eer"](y, p, "binary", 0))


# ------------------------------------------------------------------ multilabel
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lwlrap_equals_dcase_reference(seed: int) -> None:
    y, p = _multi(seed=seed)
    assert METRICS["lwlrap"](y, p, "multilabel") == pytest.approx(ref_lwlrap(y, p))


def test_lwlrap_perfect_and_worst() -> None:
    y = np.array([[1, 0, 0], [0, 1, 1]])
    assert METRICS["lwlrap"](y, y.astype(float), "multilabel") == 1.0
    worst = METRICS["lwlrap"](y, 1.0 - y, "multilabel")
    assert worst == pytest.approx(ref_lwlrap(y, 1.0 - y))


def test_multilabel_metrics_equal_sklearn() -> None:
    y, p = _multi()
    assert METRICS["map"](y, p, "multilabel") == pytest.approx(
        skm.average_precision_score(y, p, average="macro")
    )
    assert METRICS["roc_auc"](y, p, "multilabel") == pytest.approx(
        skm.roc_auc_score(y, p, average="macro")
    )
    assert METRICS["macro_f1"](y, p, "multilabel") == pytest.approx(
        skm.f1_score(y, (p >= 0.5).astype(int), average="macro")
    )
    assert METRICS["log_loss"](y, p, "multilabel") == pytest.approx(
        skm.log_loss(y.ravel(), p.ravel())
    )
    assert METRICS["brier"](y, p, "multilabel") == pytest.approx(
        skm.brier_score_loss(y.ravel(), p.ravel())
    )


# ------------------------------------------------------------------ registry
def test_registry_directions_and_tasks() -> None:
    lower = {"log_loss", "brier", "ece", "eer"}
    for name, m in METRICS.items():
        assert m.greater_is_better == (name not in lower)
    assert "eer" in metric_names("binary") and "eer" not in metric_names("multiclass")
    assert "lwlrap" in metric_names("multilabel") and "accuracy" not in metric_names("multilabel")
    for task in TASKS:
        assert DEFAULT_METRIC[task] in metric_names(task)


def test_score_all_reports_every_applicable_metric() -> None:
    y, p = _single(c=2)
    scores = score_all(y, p, "binary", 1)
    assert list(scores) == metric_names("binary")
    assert scores["eer"] == pytest.approx(METRICS["eer"](y, p, "binary", 1))
    y, p = _multi()
    assert set(score_all(y, p, "multilabel")) == set(metric_names("multilabel"))


def test_unknown_and_inapplicable_metrics_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="^--metric acc: unknown metric; choose from accuracy"):
        get_metric("acc")
    with pytest.raises(ConfigError, match="does not apply to multiclass"):
        get_metric("eer", "multiclass")


def test_multilabel_runs_report_threshold_free_metrics_only() -> None:
    from sslstack.classify.metrics import get_metric, metric_names, score_all
    from sslstack.errors import ConfigError

    y, p = _multi()
    assert metric_names("multilabel") == ["roc_auc", "log_loss", "brier", "lwlrap", "map"]
    assert set(score_all(y, p, "multilabel")) == set(metric_names("multilabel"))
    with pytest.raises(ConfigError, match=r"multi-label runs report threshold-free metrics only"):
        get_metric("macro_f1", "multilabel")
    assert "macro_f1" in metric_names("multiclass")  # single-label tasks keep it (arg-max)
