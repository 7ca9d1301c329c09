"""The head contract, run over every entry of the ``HEADS`` registry (like optuna's storage suite
or timm's ``list_models``): a head registered is tested here without editing this file.

Each head must: fit single-label (binary, multiclass) and multilabel targets and give
probabilities of the right shape (rows summing to 1 for single-label tasks, values in [0, 1]);
take ``class_weight: balanced``; save and load without pickle, predicting the same after; give
the same model for the same seed; and respect its budget (past its end of rounds a fit keeps a
usable model quickly; past its end a cross-validation stops with ``BudgetExceeded``). Tiny data
and few rounds keep it fast.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sslstack.classify.budget import Budget, BudgetExceeded
from sslstack.classify.cv import Targets, cross_validate
from sslstack.classify.heads import HEADS, FitContext, Head
from sslstack.classify.labels import LabelEncoding
from sslstack.classify.metrics import get_metric

ROUNDS = 20  # boosting rounds / MLP epochs: enough to learn blobs, cheap for CI


@pytest.fixture(params=list(HEADS), ids=list(HEADS))
def head(request: pytest.FixtureRequest) -> Head:
    return HEADS[request.param]


def _params(hd: Head, **over: Any) -> dict[str, Any]:
    return {**hd.defaults(), **hd.warm_start(), **over}


def _blobs(
    n: int, k: int, seed: int = 0, counts: list[int] | None = None, sep: float = 3.0
) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), counts) if counts else np.arange(n) % k
    x = rng.normal(size=(len(y), 6)) + sep * np.eye(k, 6)[y]
    return x.astype(np.float32), y


def _ctx(task: str, n_out: int, **kw: Any) -> FitContext:
    return FitContext(task, n_out, seed=kw.pop("seed", 0), threads=1, max_rounds=ROUNDS, **kw)


def _es(hd: Head, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    return (x, y) if hd.needs_es else None


@pytest.mark.parametrize("task,k", [("binary", 2), ("multiclass", 3)])
def test_single_label_probabilities(head: Head, task: str, k: int) -> None:
    x, y = _blobs(150, k)
    ctx = _ctx(task, k)
    model = head.fit(x[:120], y[:120], _params(head), ctx, _es(head, x[100:120], y[100:120]))
    p = head.predict(model, x[120:], ctx)
    assert p.shape == (30, k) and np.isfinite(p).all()
    assert (p >= 0).all() and (p <= 1).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert (p.argmax(axis=1) == y[120:]).mean() > 0.8  # it learned the blobs


def test_multilabel_probabilities(head: Head) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(160, 6)).astype(np.float32)
    y = (x[:, :4] > 0).astype(np.int64)  # label j is the sign of column j
    ctx = _ctx("multilabel", 4)
    model = head.fit(x[:130], y[:130], _params(head), ctx, _es(head, x[110:130], y[110:130]))
    p = head.predict(model, x[130:], ctx)
    assert p.shape == (30, 4) and np.isfinite(p).all()
    assert (p >= 0).all() and (p <= 1).all()
    assert ((p > 0.5) == y[130:]).mean() > 0.7


def test_balanced_class_weights_raise_the_rare_class(head: Head) -> None:
    """``class_weight: balanced`` is in every head's space and weighs the rare class up."""
    x, y = _blobs(0, 3, counts=[150, 150, 15], sep=1.0)
    test, _ = _blobs(300, 3, seed=5, sep=1.0)
    ctx = _ctx("multiclass", 3)
    rare = {}
    for cw in ("none", "balanced"):
        model = head.fit(x, y, _params(head, class_weight=cw), ctx, _es(head, x, y))
        rare[cw] = float(head.predict(model, test, ctx)[:, 2].mean())
    assert rare["balanced"] > rare["none"], rare


def test_save_load_round_trip_without_pickle(
    head: Head, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = _blobs(150, 3)
    ctx = _ctx("multiclass", 3)
    model = head.fit(x[:120], y[:120], _params(head), ctx, _es(head, x[100:120], y[100:120]))

    def refuse(*a: Any, **k: Any) -> Any:
        raise AssertionError("a head saved or loaded a pickle")

    for name in ("dump", "dumps", "load", "loads"):
        monkeypatch.setattr(pickle, name, refuse)
    name = head.save(model, tmp_path, "fold0")
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert (tmp_path / name).read_bytes()[:1] != b"\x80"  # not a pickle stream
    back = head.load(tmp_path, name)
    np.testing.assert_allclose(
        head.predict(back, x[120:], ctx), head.predict(model, x[120:], ctx), rtol=1e-6, atol=1e-7
    )


def test_same_seed_same_model(head: Head) -> None:
    x, y = _blobs(150, 3)
    preds = []
    for seed in (7, 7):
        ctx = _ctx("multiclass", 3, seed=seed)
        params = _params(head)
        model = head.fit(x[:120], y[:120], params, ctx, _es(head, x[100:120], y[100:120]))
        preds.append(head.predict(model, x[120:], ctx))
    np.testing.assert_array_equal(preds[0], preds[1])


def test_past_its_end_of_rounds_a_fit_returns_a_usable_model_at_once(head: Head) -> None:
    """The share of a --timeout: a fit allowed a million rounds whose end of rounds has passed
    returns within seconds with at least one round, and predicts."""
    x, y = _blobs(300, 3)
    now = time.monotonic()
    ctx = FitContext("multiclass", 3, threads=1, max_rounds=10**6,
                     budget=Budget(now, end=now + 60, rounds_end=now + 0.2))  # fmt: skip
    t0 = time.monotonic()
    model = head.fit(x[:250], y[:250], _params(head), ctx, None)
    assert time.monotonic() - t0 < 5.0
    rounds = head.rounds_used(model)
    assert rounds is None or rounds >= 1
    p = head.predict(model, x[250:], ctx)
    assert p.shape == (50, 3) and np.isfinite(p).all()


def test_past_its_end_a_cross_validation_stops(head: Head) -> None:
    x, y = _blobs(90, 3)
    fold = np.arange(90) % 3
    splits = [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(3)]
    targets = Targets(y, LabelEncoding("multiclass", ("a", "b", "c")), splits)
    now = time.monotonic()
    ctx = _ctx("multiclass", 3, budget=Budget(now - 2, seconds=1.0, end=now - 1))
    with pytest.raises(BudgetExceeded):
        cross_validate(head, x, targets, get_metric("accuracy", "multiclass"), _params(head), ctx)
