"""Boosted heads for many classes: early stopping, warm start, search space, budgets, devices."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from sslstack.cache import ItemResult, Store, StoreKey
from sslstack.classify import device as devices
from sslstack.classify import fit, fit_head
from sslstack.classify.budget import Budget, BudgetExceeded, FitProgress
from sslstack.classify.cv import CVOptions, Targets, cross_validate
from sslstack.classify.features import FeatureChoice, FeatureReader, layer_choices, pool_choices
from sslstack.classify.heads import (
    HEADS,
    CatBoostHead,
    FitContext,
    LogRegHead,
    XGBHead,
    balanced_weights,
    get_head,
)
from sslstack.classify.labels import LabelEncoding
from sslstack.classify.metrics import get_metric
from sslstack.classify.trials import BestTrial, TrialLoop
from sslstack.classify.tuning import open_storage
from sslstack.classify.warm import screen_features
from sslstack.content import file_sha1
from sslstack.errors import RunError
from sslstack.workspace import Workspace
from tests.classify_synth import make_synth

ACC = get_metric("accuracy", "multiclass")
ROUND_HEADS = [n for n, h in HEADS.items() if h.needs_es]  # boosting rounds or epochs


def _blobs(n: int = 120, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return rng.normal(size=(n, 5)) + y[:, None], y


# ------------------------------------------------------------------ early stopping
class _SpyHead(XGBHead):
    """XGBoost that records the row ids (column 0) of what it fits and stops on."""

    name = "spy"

    def __init__(self) -> None:
        self.seen: list[tuple[set[int], set[int]]] = []

    def fit(self, x, y, params, ctx, es=None):
        self.seen.append(
            ({int(v) for v in x[:, 0]}, {int(v) for v in es[0][:, 0]} if es else set())
        )
        return super().fit(x, y, params, ctx, es)


def test_early_stopping_never_sees_the_validation_fold() -> None:
    x, y = _blobs(150)
    x = np.column_stack([np.arange(len(y)), x])  # column 0: the row id, left unscaled
    fold = np.arange(len(y)) % 3
    splits = [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(3)]
    enc = LabelEncoding("multiclass", ("a", "b", "c"))
    spy = _SpyHead()
    ctx = FitContext("multiclass", 3, 0, "cpu", 1, 40)
    cross_validate(spy, x, Targets(y, enc, splits), ACC, spy.warm_start(), ctx)
    # per fold: the early-stopped fit (fit rows + stopping rows), then the refit on the whole part
    assert len(spy.seen) == 6
    for f, (tr, va) in enumerate(splits):
        (fit_rows, es_rows), (refit_rows, none) = spy.seen[2 * f], spy.seen[2 * f + 1]
        assert es_rows and not es_rows & set(va.tolist())
        assert not fit_rows & set(va.tolist()) and not fit_rows & es_rows
        assert fit_rows | es_rows == set(tr.tolist()) == refit_rows and none == set()


# ------------------------------------------------------------------ space and warm start
def _two_part_store(root: Path, n: int = 160) -> tuple[Workspace, Path]:
    """4 classes = 2 bits: bit 0 only in the `mean` pooling, bit 1 only in `std`, so only their
    concatenation separates the classes."""
    rng = np.random.default_rng(1)
    y = np.arange(n) % 4
    audio = root / "audio"
    audio.mkdir(parents=True)
    ids = [f"i{i:03d}.wav" for i in range(n)]
    for i in ids:
        (audio / i).write_text(i)  # distinct content: the store is keyed by content hash
    csv = audio / "train.csv"
    csv.write_text("path,label\n" + "".join(f"{i},c{v}\n" for i, v in zip(ids, y, strict=True)))
    ws = Workspace.at(root / "ws")
    key = StoreKey(model="fake", revision="x", sample_rate=16000, pools=("mean", "std"))
    store = Store.open_or_create(ws.stores, key)
    items = []
    for r, i in enumerate(ids):
        mean = (3.0 * (y[r] & 1) + rng.normal(size=(2, 4))).astype(np.float32)
        std = (3.0 * (y[r] >> 1) + rng.normal(size=(2, 4))).astype(np.float32)
        items.append(ItemResult(i, file_sha1(audio / i), 1.0, {"mean": mean, "std": std}))
    with store.writer() as w:
        w.write(items, layer_names=["0", "1"])
    return ws, csv


def test_warm_start_follows_the_screen_to_a_concatenation(tmp_path: Path) -> None:
    ws, csv = _two_part_store(tmp_path)
    res = fit_head("xgb", "fake", data=csv, workspace=ws, trials=1, folds=4, max_rounds=30)
    store = Store(next(ws.stores.iterdir()))
    layers, pools = layer_choices(store), pool_choices(store)
    from sslstack.classify.problem import prepare_problem as _prepare

    prob = _prepare(ws, fit.FitConfig("xgb", "fake", data=csv))
    warm = screen_features(prob.reader, prob.y, prob.enc, prob.splits, ACC, layers, pools)
    assert warm.pool == "mean+std"
    # the study's first (enqueued) trial is the head's known-good parameters on those features
    st = optuna.load_study(study_name=res.study, storage=open_storage(ws, res.study))
    first = st.trials[0].params
    assert first["pool"] == warm.pool and first["layer"] == warm.layer
    assert {k: first[k] for k in XGBHead().warm_start()} == XGBHead().warm_start()
    assert res.score > 0.9  # only the concatenation gets there


def test_warm_start_follows_the_probe(tmp_path: Path) -> None:
    """A probe of this store, dataset and metric decides the first trial's features: its best
    choice inside the search space (here restricted to layer 1), not the ridge screen's."""
    from sslstack.classify import probe

    ws, csv = _two_part_store(tmp_path)
    pr = probe("fake", data=csv, workspace=ws, metric="accuracy")
    assert pr.best_any()[1] == "mean+std"
    # rewrite the record so the probe disagrees with any screen: layer 1, `std` alone best
    record = next((ws.root / "probes").glob("*.json"))
    doc = __import__("json").loads(record.read_text())
    doc["scores"]["1"] = {**{po: 0.5 for po in doc["scores"]["1"]}, "std": 0.99}
    doc["scores"]["0"]["std"] = 1.0  # outside the space below (--layer 1): never chosen
    record.write_text(__import__("json").dumps(doc))
    notes: list[str] = []
    res = fit_head(
        "xgb", "fake", data=csv, workspace=ws, trials=1, max_rounds=10, layer=1,
        metric="accuracy", progress=lambda ev: notes.append(ev.message or ""),
    )  # fmt: skip
    st = optuna.load_study(study_name=res.study, storage=open_storage(ws, res.study))
    assert st.trials[0].params["pool"] == "std"
    assert any("first trial: features 1/std (the best of 'sslstack probe'" in n for n in notes)
    # without a probe record the screen decides (the concatenation)
    record.unlink()
    res = fit_head("xgb", "fake", data=csv, workspace=ws, trials=1, max_rounds=10, layer=1,
                   metric="accuracy", study="again")  # fmt: skip
    st = optuna.load_study(study_name="again", storage=open_storage(ws, "again"))
    assert st.trials[0].params["pool"] == "mean+std"


@pytest.mark.parametrize("head", list(HEADS))
def test_search_space_covers_layer_and_pooling_concatenations(tmp_path: Path, head: str) -> None:
    s = make_synth(tmp_path, n=60, layers=4)
    res = fit_head(head, "fake", data=s.csv, workspace=s.ws, trials=1, folds=3, max_rounds=10)
    st = optuna.load_study(study_name=res.study, storage=open_storage(s.ws, res.study))
    dists = st.trials[0].distributions
    assert "mean+std" in dists["pool"].choices
    layers = dists["layer"].choices
    assert "0+2+3" in layers or any("+" in la for la in layers)
    assert any(".." in la for la in layers)
    # every choice reads: a concatenation is as wide as its parts together
    reader = FeatureReader(s.store, s.keys)
    assert reader.matrix(FeatureChoice("0", "mean+std")).shape[1] == 16
    assert reader.matrix(FeatureChoice("0+1+3", "mean")).shape[1] == 24


# ------------------------------------------------------------------ class weights, threads
def test_balanced_weights_match_scikit_learn() -> None:
    from sklearn.utils.class_weight import compute_sample_weight

    y = np.array([0, 0, 0, 1, 2, 2, 0, 1])
    np.testing.assert_allclose(balanced_weights(y), compute_sample_weight("balanced", y))


def test_class_weight_changes_the_boosted_fit() -> None:
    x, y = _blobs(90)
    y = np.where(np.arange(90) < 70, 0, y)  # class 0 dominates
    ctx = FitContext("multiclass", 3, 0, "cpu", 1, 20)
    hd = XGBHead()
    p0 = hd.predict(hd.fit(x, y, {**hd.warm_start(), "class_weight": "none"}, ctx), x, ctx)
    p1 = hd.predict(hd.fit(x, y, {**hd.warm_start(), "class_weight": "balanced"}, ctx), x, ctx)
    assert p1[:, 1:].mean() > p0[:, 1:].mean()  # minority classes get more mass
    opts = CatBoostHead().options({"class_weight": "balanced", "depth": 4}, ctx)
    assert opts["auto_class_weights"] == "Balanced" and opts["depth"] == 4


def test_threads_go_to_folds_side_by_side_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sslstack.classify.cv import fold_workers

    # by default a head's cross-validation gets every core, on small data too
    seen: list[int] = []
    real = fit.cross_validate

    def spy(*a: Any, **kw: Any) -> Any:
        seen.append(a[5].threads)  # the FitContext
        return real(*a, **kw)

    monkeypatch.setattr(fit, "cores", lambda: 3)
    monkeypatch.setattr(fit, "cross_validate", spy)
    s = make_synth(tmp_path, n=60, layers=2)
    for head in ("logreg", "xgb"):
        fit_head(head, "fake", data=s.csv, workspace=s.ws, trials=0, max_rounds=5)
    assert seen == [3, 3]
    x = np.zeros((100, 10))
    assert fold_workers(1, 5, x) == (1, 1)
    assert fold_workers(2, 5, x) == (2, 1)
    assert fold_workers(16, 5, x) == (5, 3)
    assert fold_workers(8, 1, x) == (1, 8)
    assert fold_workers(8, 5, x, "cuda") == (1, 8)  # the GPU is the parallel unit


def test_concurrent_folds_are_capped_by_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from sslstack.classify import cv

    x = np.zeros((1000, 100))  # 800 kB: four copies fit in 3.3 MB once, in 6.4 MB twice
    monkeypatch.setattr(cv, "_available_memory", lambda: 7_000_000)
    assert cv.fold_workers(8, 5, x) == (2, 4)
    monkeypatch.setattr(cv, "_available_memory", lambda: 1_000)
    assert cv.fold_workers(8, 5, x) == (1, 8)


@pytest.mark.parametrize("head", list(HEADS))
def test_folds_side_by_side_equal_folds_one_by_one(head: str) -> None:
    x, y = _blobs(240, k=4)
    fold = np.arange(len(y)) % 4
    splits = [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(4)]
    enc = LabelEncoding("multiclass", ("a", "b", "c", "d"))
    hd = get_head(head)
    params = {**hd.defaults(), **hd.warm_start()}
    seen: dict[int, list[tuple[int, float]]] = {1: [], 4: []}
    out = {}
    for threads in (1, 4):
        ctx = FitContext("multiclass", 4, 0, "cpu", threads, 40)
        out[threads] = cross_validate(
            hd, x, Targets(y, enc, splits), ACC, params, ctx,
            CVOptions(keep_models=True, report=lambda k, m, t=threads: seen[t].append((k, m))),
        )  # fmt: skip
    np.testing.assert_allclose(out[4].oof, out[1].oof, rtol=0, atol=1e-9)
    assert out[4].fold_scores == out[1].fold_scores and out[4].es_rounds == out[1].es_rounds
    assert seen[4] == seen[1] and [k for k, _ in seen[4]] == [0, 1, 2, 3]


def test_gpu_fits_run_one_fold_at_a_time() -> None:
    """On a GPU the device is the parallel unit: folds are not fitted side by side there."""
    import threading

    x, y = _blobs(200, k=4)
    fold = np.arange(len(y)) % 4
    splits = [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(4)]
    enc = LabelEncoding("multiclass", ("a", "b", "c", "d"))
    lock, now, most = threading.Lock(), [0], [0]

    class Counting(LogRegHead):
        def fit(self, x, y, params, ctx, es=None):
            with lock:
                now[0] += 1
                most[0] = max(most[0], now[0])
            time.sleep(0.05)
            try:
                return super().fit(x, y, params, ctx, es)
            finally:
                with lock:
                    now[0] -= 1

    for device, expect in (("cuda", 1), ("cpu", 4)):
        most[0] = 0
        ctx = FitContext("multiclass", 4, 0, device, 4, 10)
        cross_validate(Counting(), x, Targets(y, enc, splits), ACC, LogRegHead().defaults(), ctx)
        assert most[0] == expect, device


def test_a_pruned_trial_stops_the_folds_still_running() -> None:
    """The pruner speaks after fold 0; the folds running beside it stop at their next round."""
    x, y = _blobs(3000, k=3)
    x = np.column_stack([np.arange(len(y)), x])  # column 0: the row id
    fold = np.arange(len(y)) % 4
    splits = [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(4)]
    enc = LabelEncoding("multiclass", ("a", "b", "c"))
    started: list[int] = []

    class Slow(XGBHead):
        def fit(self, x, y, params, ctx, es=None):
            first = not np.isin(x[:, 0].astype(int), splits[0][1]).any()  # fold 0's fit
            started.append(0 if first else 1)
            if not first:  # every other fold boosts until told to stop
                ctx = FitContext(ctx.task, ctx.n_out, 0, "cpu", 1, 10**7, stop=ctx.stop)
                return super().fit(x, y, {**params, "learning_rate": 1e-3}, ctx, None)
            return super().fit(x, y, params, ctx, es)

    def prune(k: int, m: float) -> None:
        raise optuna.TrialPruned()

    ctx = FitContext("multiclass", 3, 0, "cpu", 2, 20)
    t0 = time.monotonic()
    with pytest.raises(optuna.TrialPruned):
        cross_validate(
            Slow(), x, Targets(y, enc, splits), ACC, XGBHead().warm_start(), ctx,
            CVOptions(refit=False, report=prune),
        )  # fmt: skip
    assert time.monotonic() - t0 < 30.0  # the second fold was stopped, not run to 10**7 rounds
    assert started[:1] == [0] or started[:2] == [1, 0]
    assert len(started) <= 3  # folds not started yet were cancelled


@pytest.mark.parametrize("head", ROUND_HEADS)
def test_past_the_round_deadline_a_fit_keeps_its_rounds(head: str) -> None:
    """The share of a --timeout: a fit stops adding rounds and returns a usable model."""
    x, y = _blobs(2000)
    hd = get_head(head)
    params = {**hd.warm_start(), "learning_rate": 0.05}
    budget = Budget(time.monotonic(), rounds_end=time.monotonic() + 0.5)
    ctx = FitContext("multiclass", 3, 0, "cpu", 1, 10**6, budget)
    t0 = time.monotonic()
    model = hd.fit(x[:1500], y[:1500], params, ctx, es=(x[1500:1700], y[1500:1700]))
    assert time.monotonic() - t0 < 5.0
    rounds = hd.rounds_used(model)
    assert rounds is not None and 1 <= rounds < 10**6
    p = hd.predict(model, x[1700:], ctx)
    assert (p.argmax(axis=1) == y[1700:]).mean() > 0.6


@pytest.mark.parametrize("head", ROUND_HEADS)
@pytest.mark.parametrize("with_es", [True, False])
def test_a_round_deadline_passed_before_the_first_round_keeps_one(head: str, with_es: bool) -> None:
    """A deadline that cuts the first trial at its first round (xgboost 3.x raised
    AttributeError on ``best_iteration``, which early stopping never set): the fit returns a
    model of at least one round that predicts, saves and loads."""
    x, y = _blobs(600)
    hd = get_head(head)
    budget = Budget(time.monotonic(), rounds_end=time.monotonic() - 1.0)
    ctx = FitContext("multiclass", 3, 0, "cpu", 1, 10**6, budget)
    es = (x[400:500], y[400:500]) if with_es else None
    model = hd.fit(x[:400], y[:400], hd.warm_start(), ctx, es=es)
    rounds = hd.rounds_used(model)
    # an MLP that starts as a logistic regression (skip) may keep that start: 0 epochs
    low = 0 if es is not None and hd.warm_start().get("skip") else 1
    assert rounds is not None and low <= rounds <= 2
    p = hd.predict(model, x[500:], ctx)
    assert p.shape == (100, 3) and np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    with tempfile.TemporaryDirectory() as d:
        name = hd.save(model, Path(d), "m")
        back = hd.load(Path(d), name)
        np.testing.assert_allclose(hd.predict(back, x[500:], ctx), p, rtol=1e-5, atol=1e-6)


def test_a_tight_timeout_still_gives_a_boosted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fits that never stop early under --timeout: the trial's folds stop adding rounds at their
    share of the budget, the trial finishes, and a run is saved within the budget. The first
    trials share the budget, so several run (the first took 90 % of it before), and one line
    says that the budget, not early stopping, ended the boosting."""
    from sslstack.classify.heads import xgb

    monkeypatch.setattr(xgb, "EARLY_STOPPING", 10**6)  # only the round deadline ends a fit
    s = make_synth(tmp_path, n=600, layers=2, n_classes=4, separation=2.5)
    t0 = time.monotonic()
    res = fit_head(
        "xgb", "fake", data=s.csv, workspace=s.ws, trials=5, timeout=8, max_rounds=10**6,
        layer=1, pool="mean", folds=3, threads=1,
    )  # fmt: skip
    assert time.monotonic() - t0 < 8 + 4
    assert res.trials >= 3 and res.score > 0.5
    cut = [w for w in res.warnings if "the budget, not early stopping, ended the boosting" in w]
    assert len(cut) == 1 and "--timeout 8:" in cut[0] and "the best (#" in cut[0]


class _SlowLogReg(LogRegHead):
    """A logistic head whose fold fits take ``delay`` seconds, the ``slow_call``-th one longer."""

    name = "slow"
    delay = 0.05
    slow_call = 4
    slow_delay = 2.5

    def __init__(self) -> None:
        self.calls = 0

    def warm_start(self) -> dict[str, Any]:
        return {"C": 0.37, "class_weight": "balanced", "standardize": True}

    def fit(self, x, y, params, ctx, es=None):
        self.calls += 1
        time.sleep(self.slow_delay if self.calls == self.slow_call else self.delay)
        return super().fit(x, y, params, ctx, es)


@pytest.fixture
def slow_head(monkeypatch: pytest.MonkeyPatch) -> _SlowLogReg:
    hd = _SlowLogReg()
    monkeypatch.setitem(HEADS, "slow", hd)
    return hd


def test_timeout_bounds_the_command_and_keeps_the_best_trial(
    tmp_path: Path, slow_head: _SlowLogReg
) -> None:
    s = make_synth(tmp_path, n=60, layers=2)
    events: list[FitProgress] = []
    t0 = time.monotonic()
    # trial 0 is quick; trial 1's first fold runs past the 2 s budget, so it is stopped there
    # one thread: folds one after another, so the slow fold is the only one in flight
    res = fit_head("slow", "fake", data=s.csv, workspace=s.ws, trials=50, folds=3, timeout=2.0,
                   progress=events.append, threads=1)  # fmt: skip
    took = time.monotonic() - t0
    assert took < 2.0 + slow_head.slow_delay  # the budget, plus the one fold in flight
    assert res.trials == 1
    assert any(
        "trial stopped at the budget after 1 of 3 folds" in w and "kept the best finished trial #0"
        in w for w in res.warnings
    )  # fmt: skip
    assert [e.state for e in events if e.stage == "trial"] == ["complete", "stopped"]
    # the run is the best finished trial's (a logistic trial is final: no refit)
    assert res.trial_score == pytest.approx(np.mean(res.fold_scores))
    assert slow_head.calls == 4


def test_a_study_whose_trials_all_failed_still_starts_warm(
    tmp_path: Path, slow_head: _SlowLogReg
) -> None:
    s = make_synth(tmp_path, n=60, layers=2)
    slow_head.slow_call = 1
    kw = {"data": s.csv, "workspace": s.ws, "folds": 3, "study": "st", "threads": 1}
    with pytest.raises(RunError):
        fit_head("slow", "fake", trials=5, timeout=1.0, **kw)
    slow_head.slow_call = 0
    fit_head("slow", "fake", trials=1, **kw)
    st = optuna.load_study(study_name="st", storage=open_storage(s.ws, "st"))
    assert [t.state.name for t in st.trials] == ["FAIL", "COMPLETE"]
    assert st.trials[1].params["C"] == 0.37 and st.trials[1].params["class_weight"] == "balanced"


def test_no_trial_finished_is_one_line_saying_what_to_change(
    tmp_path: Path, slow_head: _SlowLogReg
) -> None:
    s = make_synth(tmp_path, n=60, layers=2)
    slow_head.slow_call = 1
    with pytest.raises(RunError) as e:
        fit_head(
            "slow", "fake", data=s.csv, workspace=s.ws, trials=5, folds=3, timeout=1.0, threads=1
        )
    msg = str(e.value)
    assert "\n" not in msg and "--timeout 1: no trial finished" in msg
    assert "raise --timeout" in msg and "--max-rounds" in msg


def test_without_time_to_refit_the_run_keeps_the_best_trials_models() -> None:
    loop = TrialLoop(Budget.of(10.0), 3, 5, True, needs_refit=True)
    kept = object()
    loop.best = BestTrial(0, 0.5, kept, seconds=100.0)  # type: ignore[arg-type]
    notes: list[str] = []

    def refit() -> Any:
        raise AssertionError("no refit expected")

    assert fit._final(loop, XGBHead(), kept, notes, 10.0, refit) is kept
    assert "no time left to refit" in notes[0]
    # a refit stopped by the budget falls back the same way

    def stopped() -> Any:
        raise BudgetExceeded("x")

    loop.best.seconds = 0.1
    notes.clear()
    assert fit._final(loop, XGBHead(), kept, notes, 10.0, stopped) is kept
    assert "refit was stopped at the budget" in notes[0]


def test_the_refit_tuning_stopped_for_is_done() -> None:
    """Tuning stops when what is left reaches the refit's reserve (1.3 x the best trial); the
    refit must then run (it was refused, the run kept the trial's models, and the CLI said both
    that no time was left to refit and that the run refit them)."""
    loop = TrialLoop(Budget.of(10.0), 3, 5, True, needs_refit=True)
    kept = object()
    loop.best = BestTrial(0, 0.5, kept, seconds=8.5)  # type: ignore[arg-type]
    assert loop.budget.left() <= (loop.refit_s() or 0.0)  # where after_trial stops tuning
    refitted = object()
    notes: list[str] = []
    assert fit._final(loop, XGBHead(), kept, notes, 10.0, lambda: refitted) is refitted
    assert notes == []


# the MLP refits in its trials: its run keeps the best trial's models, with no refit after
@pytest.mark.parametrize(("head", "refit"), [("logreg", False), ("xgb", True), ("mlp", False)])
def test_the_result_says_whether_the_run_refit(tmp_path: Path, head: str, refit: bool) -> None:
    from typer.testing import CliRunner

    from sslstack.cli import app

    s = make_synth(tmp_path, n=60, layers=2)
    res = fit_head(head, "fake", data=s.csv, workspace=s.ws, trials=1, folds=3, max_rounds=10)
    assert res.refit is refit and res.to_dict()["refit"] is refit
    args = ["fit-head", head, "--model", "fake", "--trials", "2", "--max-rounds", "10"]
    out = CliRunner().invoke(app, [*args, "--workspace", str(s.ws.root)])
    assert out.exit_code == 0, out.output
    assert ("the run refit it on each fold's whole training part" in out.output) is refit
    assert "no time left to refit" not in out.output


def test_progress_reports_every_fold_and_trial(tmp_path: Path) -> None:
    from sslstack.cli.heads import progress_line

    s = make_synth(tmp_path, n=60, layers=2)
    events: list[FitProgress] = []
    fit_head("xgb", "fake", data=s.csv, workspace=s.ws, trials=3, folds=3, max_rounds=10,
             timeout=600, progress=events.append)  # fmt: skip
    notes = [e.message for e in events if e.stage == "note"]
    assert notes[0] == "device: cpu for xgb (no GPU seen)"
    trials = [e for e in events if e.stage == "trial"]
    assert len(trials) == 3
    for t in trials:
        folds = [e.fold for e in events if e.stage == "fold" and e.trial == t.trial]
        assert folds == list(range(len(folds))) and 1 <= len(folds) <= 3
    assert all(e.eta_s is not None and e.budget_s == 600 for e in trials)
    elapsed = [e.elapsed_s for e in events if e.stage != "note"]
    assert elapsed == sorted(elapsed)
    assert events[-1].stage == "refit"
    line = progress_line(next(e for e in events if e.stage == "fold"))
    assert line.startswith("trial 0 fold 1/3: ") and "ETA" in line and "(budget 10:00)" in line


# ------------------------------------------------------------------ devices
def test_device_choice_follows_gpu_and_head_support(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_torch_sees_gpu", lambda: False)
    assert devices.resolve_device("auto", "xgb") == ("cpu", "cpu for xgb (no GPU seen)")
    monkeypatch.setattr(devices, "_torch_sees_gpu", lambda: True)
    monkeypatch.setattr(XGBHead, "gpu_support", lambda self, task: (True, ""))
    assert devices.resolve_device("auto", "xgb")[0] == "cuda"
    monkeypatch.setattr(XGBHead, "gpu_support", lambda self, task: (False, "no CUDA build"))
    dev, why = devices.resolve_device("auto", "xgb")
    assert dev == "cpu" and "a GPU is present, but no CUDA build" in why
    assert devices.resolve_device("auto", "logreg")[0] == "cpu"
    # CatBoost's MultiLogloss stays on the CPU even with a GPU
    assert CatBoostHead().gpu_support("multilabel")[0] is False
    assert devices.resolve_device("auto", "catboost", "multilabel")[0] == "cpu"


def test_gpu_parameters_reach_the_libraries() -> None:
    gpu = FitContext("multiclass", 5, 0, "cuda", 2, 100)
    hd = XGBHead()
    assert hd._params(hd.warm_start(), gpu)["device"] == "cuda"
    opts = CatBoostHead().options(CatBoostHead().warm_start(), gpu)
    assert opts["task_type"] == "GPU" and "rsm" not in opts  # rsm: CPU only in CatBoost
    cpu = CatBoostHead().options(CatBoostHead().warm_start(), FitContext("multiclass", 5))
    assert cpu["task_type"] == "CPU" and cpu["rsm"] == 0.2


def test_this_xgboost_cpu_build_is_seen_as_such() -> None:
    import xgboost

    ok, why = XGBHead().gpu_support("multiclass")
    assert ok == bool(xgboost.build_info().get("USE_CUDA", False))
    if not ok:
        assert "without CUDA" in why


def test_fit_head_prints_fold_lines_only_when_a_trial_is_slow(monkeypatch: Any) -> None:
    from types import SimpleNamespace

    import sslstack.cli.heads as cli_heads

    lines: list[str] = []
    monkeypatch.setattr(cli_heads, "console", SimpleNamespace(print=lambda s, **k: lines.append(s)))
    monkeypatch.setattr(cli_heads, "progress_line", lambda ev: f"{ev.stage} {ev.elapsed_s}")
    printer = cli_heads._ProgressPrinter()
    for stage, t in [("note", None), ("fold", 0.5), ("fold", 1.0), ("trial", 1.2), ("fold", 3.0),
                     ("fold", 7.0), ("fold", 8.0), ("fold", 12.5), ("trial", 13.0)]:  # fmt: skip
        printer(SimpleNamespace(stage=stage, elapsed_s=t))
    assert lines == ["note None", "fold 0.5", "trial 1.2", "fold 7.0", "fold 12.5", "trial 13.0"]
