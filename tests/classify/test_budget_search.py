"""Budgets that buy tuning (issue 21): the successive-halving pruner over folds, PCA offered to
boosted heads under ``--timeout``, and several trials on a many-class task in a tiny budget."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from sslstack.classify import fit_head
from sslstack.classify.heads import get_head
from sslstack.classify.preprocess import LDA, Preprocessor
from sslstack.classify.search import pca_choices
from sslstack.classify.tuning import make_pruner, open_storage, open_study, report_fold
from sslstack.errors import ConfigError
from sslstack.workspace import Workspace
from tests.classify_synth import make_synth


def _trial(study: optuna.Study, means: list[float]) -> optuna.trial.FrozenTrial:
    """A trial reporting ``means`` fold by fold (as ``cross_validate`` does), then complete."""
    trial = study.ask()
    try:
        for k, m in enumerate(means):
            report_fold(trial, k, m)
    except optuna.TrialPruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, means[-1])
    return study.trials[-1]


@pytest.mark.parametrize(("pruner", "pruned_at"), [("sha", {0: 0.30, 1: 0.32}), ("median", None)])
def test_successive_halving_stops_a_bad_second_trial_after_two_folds(
    tmp_path: Path, pruner: str, pruned_at: dict[int, float] | None
) -> None:
    """Under a budget a boosted study runs a handful of trials, all inside the median pruner's
    start-up: the second trial, far below the first, ran all five folds. Successive halving
    stops it at its first rung (two folds), as soon as it is not the best there."""
    ws = Workspace.at(tmp_path)
    st = open_study(ws, f"s-{pruner}", "maximize", n_startup=5, pruner=pruner)
    first = _trial(st, [0.90, 0.91, 0.90, 0.92, 0.91])
    bad = _trial(st, [0.30, 0.32, 0.31, 0.30, 0.31])
    assert first.state.name == "COMPLETE"
    if pruned_at is None:
        assert bad.state.name == "COMPLETE" and len(bad.intermediate_values) == 5
    else:
        assert bad.state.name == "PRUNED"
        assert bad.intermediate_values == pruned_at
    # a trial as good as the best at each rung goes on to the end
    good = _trial(st, [0.91, 0.92, 0.91, 0.93, 0.92])
    assert good.state.name == "COMPLETE" and len(good.intermediate_values) == 5


def test_an_unknown_pruner_is_one_line() -> None:
    with pytest.raises(ConfigError, match="pruner 'hyper': use median or sha"):
        make_pruner("hyper")


def test_pca_is_offered_to_trees_on_wide_features_under_a_budget() -> None:
    xgb, logreg = get_head("xgb"), get_head("logreg")
    assert pca_choices("auto", xgb, 1024, classes=60) == [0]  # no budget: full width
    assert pca_choices("auto", xgb, 1024, 150.0, classes=60) == [0, LDA, 32, 64, 128]
    assert pca_choices("auto", xgb, 1024, 150.0, classes=2) == [0, 32, 64, 128]
    assert pca_choices("auto", xgb, 1024, 150.0) == [0, 32, 64, 128]  # multilabel
    assert pca_choices("auto", xgb, 200, 150.0, classes=60) == [0]  # narrow already
    assert pca_choices("auto", logreg, 1024, 150.0, classes=60) == [0]  # not a tree
    assert pca_choices("off", xgb, 1024, 150.0, classes=60) == [0]
    assert pca_choices("lda", xgb, 1024, classes=60) == [LDA]
    with pytest.raises(ConfigError, match="--pca lda: needs a single-label task"):
        pca_choices("lda", xgb, 1024, classes=2)
    assert pca_choices("auto", xgb, 4096) == [0, 32, 64, 128, 256]


def test_the_lda_projection_separates_classes_and_round_trips(tmp_path: Path) -> None:
    """Three classes whose means differ along one of 40 noisy columns: the projection has two
    axes, keeps the class means apart by many within-class spreads, and is saved and loaded as a
    PCA's arrays (no pickle)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 100)
    x = rng.normal(size=(300, 40)).astype(np.float32)
    x[:, 7] += 4.0 * y
    prep = Preprocessor(pca=LDA)
    z = prep.fit_transform(x, y=y)
    assert z.shape == (300, 2)
    means = np.stack([z[y == k].mean(axis=0) for k in range(3)])
    spread = np.sqrt(np.mean([z[y == k].var(axis=0).sum() for k in range(3)]))
    assert np.linalg.norm(means[0] - means[2]) / spread > 5.0
    prep.save(tmp_path / "p.npz")
    back = Preprocessor.load(tmp_path / "p.npz")
    np.testing.assert_allclose(back.transform(x), z, rtol=1e-5, atol=1e-5)
    # without labels (a multi-label task) the projection is left out
    assert Preprocessor(pca=LDA).fit_transform(x).shape == (300, 40)


def test_a_boosted_head_under_a_tiny_timeout_runs_several_trials_on_many_classes(
    tmp_path: Path,
) -> None:
    """12 classes on 300-wide features, --timeout 15: the first trial starts on the LDA
    projection (full width would leave a few rounds a fold) and at least two trials finish
    within the budget."""
    s = make_synth(tmp_path, n=480, n_classes=12, dim=300, layers=2, separation=3.0)
    t0 = time.monotonic()
    res = fit_head(
        "xgb", "fake", data=s.csv, workspace=s.ws, trials=30, timeout=15, layer="1",
        pool="mean", folds=3, threads=1,
    )  # fmt: skip
    assert time.monotonic() - t0 < 15 + 4
    assert res.trials >= 2
    study = optuna.load_study(study_name=res.study, storage=open_storage(s.ws, res.study))
    first = study.trials[0]
    assert first.params["pca"] == LDA
    assert first.state.name == "COMPLETE" and first.value > 0.5
    assert res.score > 0.5
