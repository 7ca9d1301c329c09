"""The MLP head: tasks, determinism, early stopping on epochs, safe saving, fit_head end to end."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sslstack.classify import fit_head, predict_head
from sslstack.classify.budget import Budget
from sslstack.classify.cv import Targets, cross_validate
from sslstack.classify.heads import FitContext, get_head
from sslstack.classify.heads.mlp import MLPHead, mlp_proba
from sslstack.classify.labels import LabelEncoding
from sslstack.classify.metrics import get_metric
from tests.classify_synth import make_synth

ACC = get_metric("accuracy", "multiclass")


def _blobs(n: int = 300, k: int = 4, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    centers = rng.normal(size=(k, d)) * 2.0
    return (centers[y] + rng.normal(size=(n, d))).astype(np.float32), y


def test_mlp_is_registered_with_its_own_module() -> None:
    hd = get_head("mlp")
    assert isinstance(hd, MLPHead) and hd.needs_es and hd.standardizes and not hd.trees
    # the first trial is the defaults, inside the search space
    assert hd.warm_start() == hd.defaults()


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_mlp_fits_every_task_and_round_trips(tmp_path: Path, task: str) -> None:
    x, y = _blobs(k=2 if task == "binary" else 4)
    if task == "multilabel":
        y = np.stack([y % 2, (y // 2) % 2, (y == 3)], axis=1).astype(np.int64)
    n_out = y.shape[1] if task == "multilabel" else int(y.max()) + 1
    hd = get_head("mlp")
    ctx = FitContext(task, n_out, seed=0, max_rounds=60)
    model = hd.fit(x[:200], y[:200], hd.defaults(), ctx, es=(x[200:250], y[200:250]))
    p = hd.predict(model, x[250:], ctx)
    assert p.shape == (50, n_out) and np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    if task == "multilabel":
        assert ((p > 0.5) == y[250:]).mean() > 0.9
    else:
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
        assert (p.argmax(axis=1) == y[250:]).mean() > 0.9
    name = hd.save(model, tmp_path, "fold0")
    assert name == "fold0.mlp.safetensors"
    assert (tmp_path / name).read_bytes()[8:9] == b"{"  # a safetensors JSON header, no pickle
    back = hd.load(tmp_path, name)
    np.testing.assert_array_equal(hd.predict(back, x[250:], ctx), p)
    assert back.epochs == model.epochs == hd.rounds_used(model)


def test_mlp_prediction_is_the_network_forward_pass() -> None:
    """numpy's forward pass (the one predict uses) equals torch's on the same weights."""
    import torch

    x, y = _blobs()
    hd = get_head("mlp")
    ctx = FitContext("multiclass", 4, max_rounds=5)
    model = hd.fit(x, y, {**hd.defaults(), "depth": 2, "width": 128}, ctx)
    h = torch.as_tensor(x)
    for w, b in zip(model.weights[:-1], model.biases[:-1], strict=True):
        h = torch.relu(h @ torch.as_tensor(w).T + torch.as_tensor(b))
    z = h @ torch.as_tensor(model.weights[-1]).T + torch.as_tensor(model.biases[-1])
    z = z + torch.as_tensor(x) @ torch.as_tensor(model.skip).T  # the linear path
    ref = torch.softmax(z.double(), dim=1).numpy()
    np.testing.assert_allclose(mlp_proba(model, x), ref, rtol=1e-4, atol=1e-6)
    assert [w.shape for w in model.weights] == [(128, 12), (128, 128), (4, 128)]
    assert model.skip is not None and model.skip.shape == (4, 12) and np.abs(model.skip).max() > 0
    plain = hd.fit(x, y, {**hd.defaults(), "skip": False}, ctx)
    assert plain.skip is None


def test_mlp_is_deterministic_under_a_seed_and_the_seed_matters() -> None:
    x, y = _blobs()
    hd = get_head("mlp")
    params = hd.defaults()
    fits = [
        hd.fit(x, y, params, FitContext("multiclass", 4, seed=s, max_rounds=8)) for s in (3, 3, 4)
    ]
    for a, b in zip(fits[0].weights, fits[1].weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(fits[0].weights[0], fits[2].weights[0])


def test_mlp_epochs_stop_early_on_the_inner_split() -> None:
    """With an early-stopping set the model is the best epoch's, found before the cap."""
    x, y = _blobs(n=400)
    rng = np.random.default_rng(0)
    y_noisy = np.where(rng.random(len(y)) < 0.3, rng.integers(0, 4, len(y)), y)  # overfits
    hd = get_head("mlp")
    ctx = FitContext("multiclass", 4, max_rounds=200)
    params = {**hd.defaults(), "dropout": 0.0, "lr": 1e-2, "weight_decay": 1e-6, "skip": False}
    model = hd.fit(x[:300], y_noisy[:300], params, ctx, es=(x[300:], y_noisy[300:]))
    assert 1 <= model.epochs < 100


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_the_untrained_mlp_is_the_logistic_regression_at_its_c(tmp_path: Path, task: str) -> None:
    """With ``skip``, 0 epochs is the logistic head's fit at the trial's C and class weights,
    to float32 precision, through a save and a load (sklearn's coefficients can be
    Fortran-ordered, which safetensors would write transposed in effect)."""
    from sslstack.classify.heads.logreg import LogRegHead

    x, y = _blobs(k=2 if task == "binary" else 4)
    if task == "multilabel":
        y = np.stack([y % 2, (y // 2) % 2, (y == 3)], axis=1).astype(np.int64)
    n_out = y.shape[1] if task == "multilabel" else int(y.max()) + 1
    ctx = FitContext(task, n_out, max_rounds=0)
    hd = get_head("mlp")
    params = {**hd.defaults(), "C": 0.05, "class_weight": "balanced"}
    model = hd.fit(x, y, params, ctx)
    assert model.epochs == 0
    lin = LogRegHead()
    ref = lin.predict(lin.fit(x, y, {"C": 0.05, "class_weight": "balanced"}, ctx), x, ctx)
    np.testing.assert_allclose(hd.predict(model, x, ctx), ref, atol=2e-5)
    back = hd.load(tmp_path, hd.save(model, tmp_path, "fold0"))
    np.testing.assert_array_equal(hd.predict(back, x, ctx), hd.predict(model, x, ctx))
    # another C is another start
    other = hd.fit(x, y, {**params, "C": 5.0}, ctx)
    assert not np.allclose(other.skip, model.skip)


def test_early_stopping_keeps_the_logistic_start_or_what_the_hidden_layers_add() -> None:
    """Linear classes: training only overfits the noise, and early stopping keeps few epochs.
    Classes on an XOR of two coordinates (no linear boundary): the logistic start is at chance,
    and the hidden layers lift it far above."""
    rng = np.random.default_rng(1)
    hd = get_head("mlp")
    ctx = FitContext("multiclass", 2, max_rounds=100)
    params = {**hd.defaults(), "lr": 1e-2}
    x = rng.normal(size=(600, 6)).astype(np.float32)
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)
    model = hd.fit(x[:400], y[:400], params, ctx, es=(x[400:500], y[400:500]))
    start = hd.fit(x[:400], y[:400], params, FitContext("multiclass", 2, max_rounds=0))
    acc = (hd.predict(model, x[500:], ctx).argmax(1) == y[500:]).mean()
    acc0 = (hd.predict(start, x[500:], ctx).argmax(1) == y[500:]).mean()
    assert model.epochs >= 5 and acc > 0.85 and acc0 < 0.7, (model.epochs, acc, acc0)


def test_class_weights_change_the_mlp_fit() -> None:
    x, y = _blobs(n=300, k=3)
    y = np.where(np.arange(300) < 240, 0, y)  # class 0 dominates
    hd = get_head("mlp")
    ctx = FitContext("multiclass", 3, max_rounds=10)
    base = {**hd.defaults(), "dropout": 0.0}
    p0 = hd.predict(hd.fit(x, y, {**base, "class_weight": "none"}, ctx), x, ctx)
    p1 = hd.predict(hd.fit(x, y, {**base, "class_weight": "balanced"}, ctx), x, ctx)
    assert p1[:, 1:].mean() > p0[:, 1:].mean()  # minority classes get more mass


def test_mlp_trains_2000_x_1024_x_50_in_seconds() -> None:
    """The issue's size: one fit of the default MLP, 30 epochs, on one thread, costs about what
    its arithmetic costs (three 2000 x 1024 x 512 products an epoch, timed with numpy in the same
    run, so a busy machine slows both): mini-batches and the optimizer add less than 8x (4.6x
    measured at a load average of 24 on 2 cores, where the fit took 145 s)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 1024)).astype(np.float32)
    y = np.arange(2000) % 50
    hd = get_head("mlp")
    ctx = FitContext("multiclass", 50, threads=1, max_rounds=30)
    w = rng.normal(size=(1024, 512)).astype(np.float32)
    with threadpool_limits(1):
        t0 = time.monotonic()
        for _ in range(30 * 3):
            x @ w
        matmuls = time.monotonic() - t0
        t0 = time.monotonic()
        hd.fit(x, y, hd.defaults(), ctx)
        took = time.monotonic() - t0
    assert took < 8.0 * matmuls + 2.0, (took, matmuls)


def test_a_deadline_passed_before_the_first_epoch_keeps_one() -> None:
    x, y = _blobs()
    hd = get_head("mlp")
    budget = Budget(time.monotonic(), rounds_end=time.monotonic() - 1.0)
    ctx = FitContext("multiclass", 4, max_rounds=10**6, budget=budget)
    es = (x[200:250], y[200:250])
    plain = hd.fit(x[:200], y[:200], {**hd.defaults(), "skip": False}, ctx, es=es)
    assert plain.epochs == 1
    # from the logistic start, the one epoch run or the start itself, whichever held out better
    model = hd.fit(x[:200], y[:200], hd.defaults(), ctx, es=es)
    assert model.epochs in (0, 1)
    for m in (plain, model):
        assert np.isfinite(hd.predict(m, x[250:], ctx)).all()


def test_the_mlp_inner_split_holds_out_whole_groups_and_boosted_heads_do_not() -> None:
    """Under grouped folds the MLP stops on held-out groups (rows of its training speakers would
    reward learning them); boosted heads keep the stratified split (measured better for them)."""
    from sslstack.classify import cv

    y = np.arange(200) % 4
    groups = np.repeat(np.arange(10), 20)
    fit_idx, es_idx = cv._es_split(y, 0, groups)
    assert set(groups[fit_idx]).isdisjoint(groups[es_idx]) and len(es_idx)
    fit_s, es_s = cv._es_split(y, 0)
    assert not set(groups[fit_s]).isdisjoint(groups[es_s])
    assert get_head("mlp").es_by_group and not get_head("xgb").es_by_group

    seen = []
    real = cv._es_split

    def spy(y, seed, groups=None):
        seen.append(groups)
        return real(y, seed, groups)

    x, yy = _blobs(n=200)
    enc = LabelEncoding("multiclass", ("a", "b", "c", "d"))
    g = np.arange(200) % 10
    splits = [(np.flatnonzero(g % 2 != f), np.flatnonzero(g % 2 == f)) for f in range(2)]
    ctx = FitContext("multiclass", 4, max_rounds=3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cv, "_es_split", spy)
        for name in ("mlp", "xgb"):
            hd = get_head(name)
            cross_validate(hd, x, Targets(yy, enc, splits, g), ACC, hd.defaults(), ctx)
    assert all(s is not None for s in seen[:2]) and all(s is None for s in seen[2:])
    np.testing.assert_array_equal(seen[0], g[splits[0][0]])


def test_mlp_folds_side_by_side_equal_folds_one_by_one() -> None:
    """Threads fit folds at once; each fit's generator is its own, so results do not change."""
    x, y = _blobs(n=240)
    fold = np.arange(len(y)) % 4
    splits = [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(4)]
    enc = LabelEncoding("multiclass", ("a", "b", "c", "d"))
    hd = get_head("mlp")
    out = {}
    for threads in (1, 4):
        ctx = FitContext("multiclass", 4, 0, "cpu", threads, 40)
        out[threads] = cross_validate(hd, x, Targets(y, enc, splits), ACC, hd.defaults(), ctx)
    np.testing.assert_array_equal(out[4].oof, out[1].oof)
    assert out[4].es_rounds == out[1].es_rounds


def test_the_refit_keeps_the_early_stopped_epochs() -> None:
    """Boosted rounds are scaled by 1/0.85 for the whole part; an MLP's epochs are not (a fixed
    batch size gives the whole part more steps an epoch already)."""
    from sslstack.classify.cv import fit_fold

    x, y = _blobs()
    enc = LabelEncoding("multiclass", ("a", "b", "c", "d"))
    hd = get_head("mlp")
    fm = fit_fold(hd, x, y, enc, hd.defaults(), FitContext("multiclass", 4, max_rounds=50))
    assert fm.model.epochs == fm.es_rounds


def test_fit_head_mlp_end_to_end(tmp_path: Path) -> None:
    s = make_synth(tmp_path, n=150, layers=2, n_classes=3, dim=8)
    res = fit_head("mlp", "fake", data=s.csv, workspace=s.ws, trials=2, folds=3, max_rounds=40)
    assert res.head == "mlp" and res.trials == 2 and res.score > 0.8 and not res.refit
    assert {"width", "depth", "dropout", "lr", "weight_decay"} <= set(res.best_params)
    files = sorted(p.name for p in (res.run_dir / "models").iterdir())
    assert files == [f"fold{k}.{ext}" for k in range(3) for ext in ("mlp.safetensors", "prep.npz")]
    proba = predict_head(s.ws, res.run, s.ids[:7])
    assert proba.shape == (7, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def test_mlp_trials_refit_so_the_run_keeps_the_best_trials_models(tmp_path: Path) -> None:
    """The MLP's trials refit their early-stopped epochs on each whole training part, so the
    search ranks the models a run saves: the run's score is its best trial's, and its out-of-fold
    predictions are those of a fresh early-stop-then-refit cross-validation of the best
    configuration (no second refit after tuning)."""
    from sslstack.classify.cv import CVOptions
    from sslstack.classify.features import FeatureChoice
    from sslstack.classify.fitconfig import FitConfig
    from sslstack.classify.problem import prepare_problem

    s = make_synth(tmp_path, n=150, layers=2, n_classes=3, dim=8)
    res = fit_head("mlp", "fake", data=s.csv, workspace=s.ws, trials=3, folds=3, max_rounds=30)
    # no refit after tuning (the trials refit), and the run's score is its best trial's
    assert not res.refit and res.trial_score == pytest.approx(np.mean(res.fold_scores))
    prob = prepare_problem(s.ws, FitConfig("mlp", "fake", data=s.csv, folds=3))
    best = dict(res.best_params)
    x = prob.reader.matrix(FeatureChoice(str(best.pop("layer")), str(best.pop("pool"))))
    best.pop("pca")
    hd = get_head("mlp")
    ctx = FitContext(prob.enc.task, prob.enc.n_classes, 0, "cpu", 1, 30)
    targets = Targets(prob.y, prob.enc, prob.splits, prob.groups)
    fresh = cross_validate(hd, x, targets, ACC, best, ctx, CVOptions(refit=True))
    oof = pd.read_csv(res.oof_path)[list(prob.enc.labels)].to_numpy()
    np.testing.assert_allclose(oof, fresh.oof, atol=1e-6)
