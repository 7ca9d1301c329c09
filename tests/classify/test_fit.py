"""fit_head, predict_head and probe end to end on synthetic stores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sslstack.classify import fit_head, predict_head, probe
from sslstack.classify.cv import load_models, predict_fold
from sslstack.classify.heads import HEADS, get_head
from sslstack.classify.labels import LabelEncoding
from sslstack.classify.metrics import METRICS
from sslstack.errors import ConfigError, DataError
from sslstack.runs import load_run
from tests.classify_synth import make_synth

FAST = {"max_rounds": 25}


@pytest.mark.parametrize("head", list(HEADS))
def test_each_head_fits_saves_and_predicts(tmp_path: Path, head: str) -> None:
    s = make_synth(tmp_path, n=90, layers=3)
    res = fit_head(head, "fake", data=s.csv, workspace=s.ws, trials=2, folds=3, **FAST)
    run = load_run(s.ws, res.run)
    meta = run.record.to_dict()
    assert meta["kind"] == "head" and meta["head"] == head and meta["labels"] == ["c0", "c1", "c2"]
    assert meta["trials"] == 2 and len(meta["fold_scores"]) == 3
    # saved models are native formats, never pickle
    suffixes = {Path(f).suffix for f in meta["models"]}
    assert suffixes <= {".npz", ".ubj", ".cbm", ".json", ".safetensors"}
    assert len(meta["models"]) == 6
    oof = run.oof()
    assert list(oof.columns) == ["id", "fold", "c0", "c1", "c2"]
    assert np.allclose(oof[["c0", "c1", "c2"]].sum(axis=1), 1.0, atol=1e-6)
    # the reported score is the metric of the saved out-of-fold predictions
    y = LabelEncoding.from_dict(meta).encode([[lab] for lab in s.labels])
    P = oof[["c0", "c1", "c2"]].to_numpy()
    assert res.score == pytest.approx(METRICS["accuracy"](y, P, "multiclass"))
    assert res.scores["accuracy"] == pytest.approx(res.score)
    # each reloaded fold model reproduces the out-of-fold rows of its fold
    hd = get_head(head)
    models = load_models(hd, run.dir / "models", meta["models"])
    x = _features(s, meta)
    enc = LabelEncoding.from_dict(meta)
    for k, fm in enumerate(models):
        rows = np.flatnonzero(oof["fold"].to_numpy() == k)
        np.testing.assert_allclose(predict_fold(hd, fm, x[rows], enc), P[rows], atol=1e-5)
    # predict_head averages the fold models
    mean = np.mean([predict_fold(hd, fm, x[:4], enc) for fm in models], axis=0)
    np.testing.assert_allclose(predict_head(s.ws, res.run, s.ids[:4]), mean, atol=1e-6)


def _features(s, meta) -> np.ndarray:
    from sslstack.classify.features import FeatureChoice, read_features

    fc = meta["feature_choice"]
    return read_features(s.store, FeatureChoice(fc["layer"], fc["pool"]), s.keys)


def test_logreg_finds_the_informative_layer(tmp_path: Path) -> None:
    s = make_synth(tmp_path, n=150, layers=4, separation=2.0)
    res = fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=12, pool="mean")
    assert res.score > 0.9
    default = fit_head("logreg", "fake", workspace=s.ws, trials=0, layer=0, pool="mean")
    assert default.score < 0.6  # layer 0 holds no class information
    assert default.trials == 0 and default.study is None


def test_runs_are_reproducible_with_a_seed(tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b"):
        s = make_synth(tmp_path / name, n=80, layers=3, seed=3)
        res = fit_head("xgb", "fake", data=s.csv, workspace=s.ws, trials=3, folds=3, seed=7, **FAST)
        outs.append(res)
    assert outs[0].best_params == outs[1].best_params
    pd.testing.assert_frame_equal(outs[0].oof, outs[1].oof)


def test_binary_positive_class_and_eer(tmp_path: Path) -> None:
    s = make_synth(tmp_path, task="binary", n=100, layers=3)
    res = fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=3, metric="eer")
    meta = load_run(s.ws, res.run).record.to_dict()
    assert meta["labels"] == ["real", "fake"] and meta["positive"] == "fake"
    assert list(res.oof.columns) == ["id", "fold", "real", "fake"]
    y = (np.array(s.labels) == "fake").astype(int)
    assert res.score == pytest.approx(
        METRICS["eer"](y, res.oof[["real", "fake"]].to_numpy(), "binary", 1)
    )
    assert {"eer", "roc_auc", "ece", "brier"} <= set(res.scores)


@pytest.mark.parametrize("head", list(HEADS))
def test_multilabel_end_to_end(tmp_path: Path, head: str) -> None:
    s = make_synth(tmp_path, task="multilabel", n=150, n_classes=5, layers=2, separation=3.0)
    res = fit_head(
        head, "fake", data=s.csv, workspace=s.ws, trials=2, folds=3, layer=1, pool="mean", **FAST
    )
    assert res.metric == "lwlrap"
    labels = [f"c{j}" for j in range(5)]
    P = res.oof[labels].to_numpy()
    rng = np.random.default_rng(0)
    chance = np.mean([METRICS["lwlrap"](s.y, rng.random(P.shape), "multilabel") for _ in range(5)])
    assert res.score > chance + 0.2, (res.score, chance)
    assert res.score == pytest.approx(METRICS["lwlrap"](s.y, P, "multilabel"))
    assert predict_head(s.ws, res.run, s.ids[:3]).shape == (3, 5)


def test_errors_are_clear(tmp_path: Path) -> None:
    s = make_synth(tmp_path, n=60, layers=2)
    known = ", ".join(HEADS)
    with pytest.raises(ConfigError, match=f"^HEAD svm: unknown head; choose from {known}$"):
        fit_head("svm", "fake", data=s.csv, workspace=s.ws)
    with pytest.raises(ConfigError, match="no layer"):
        fit_head("logreg", "fake", data=s.csv, workspace=s.ws, layer="7", trials=1)
    with pytest.raises(ConfigError, match="no pooling max"):
        fit_head("logreg", "fake", data=s.csv, workspace=s.ws, pool="max", trials=1)
    # items the store does not hold
    frame = pd.read_csv(s.csv)
    (s.csv.parent / "new.wav").touch()
    frame.loc[len(frame)] = ["new.wav", "c0"]
    frame.to_csv(s.csv.parent / "more.csv", index=False)
    with pytest.raises(DataError, match=r"1 of 61 labeled item\(s\) .* no embeddings .*new.wav"):
        fit_head("logreg", "fake", data=s.csv.parent / "more.csv", workspace=s.ws, trials=1)
    # a class with a single member
    frame = pd.read_csv(s.csv)
    frame.loc[0, "label"] = "lonely"
    frame.to_csv(s.csv.parent / "lonely.csv", index=False)
    with pytest.raises(DataError, match=r"fewer than 2 items: lonely \(1\)"):
        fit_head("logreg", "fake", data=s.csv.parent / "lonely.csv", workspace=s.ws, trials=1)


def test_grouped_folds_warn_about_labels_missing_from_training(tmp_path: Path) -> None:
    s = make_synth(tmp_path, n=80, layers=2, groups=8)
    frame = pd.read_csv(s.csv)
    # class c2 only spoken by speaker s0: every fold validating s0 trains without c2
    frame.loc[frame["label"] == "c2", "label"] = "c1"
    frame.loc[frame["speaker"] == "s0", "label"] = "c2"
    frame.to_csv(s.csv, index=False)
    res = fit_head(
        "logreg", "fake", data=s.csv, workspace=s.ws, trials=1, group_col="speaker", folds=4
    )
    assert any("occur in validation" in w and "c2" in w for w in res.warnings)
    meta = load_run(s.ws, res.run).record.to_dict()
    assert meta["warnings"] == res.warnings
    rows = res.oof[frame["speaker"].to_numpy() == "s0"]
    assert (rows["c2"] == 0).all()


def test_probe_scores_every_layer_and_pool(tmp_path: Path) -> None:
    s = make_synth(tmp_path, n=120, layers=4, separation=2.5)
    res = probe("fake", data=s.csv, workspace=s.ws)
    assert list(res.table.index) == ["0", "1", "2", "3"]
    assert list(res.table.columns) == ["mean", "std"]
    assert res.best()[:2] == ("3", "mean")
    assert res.table.loc["0", "mean"] < 0.6 < res.table.loc["3", "mean"]
    assert res.png.exists() and res.png.read_bytes()[:4] == b"\x89PNG"
    # the probe's cell equals a default logistic head fitted on that layer and pooling
    run = fit_head("logreg", "fake", workspace=s.ws, trials=0, layer=3, pool="mean")
    assert run.score == pytest.approx(res.table.loc["3", "mean"])
    json.dumps(res.to_dict())


@pytest.mark.parametrize("head", [n for n, h in HEADS.items() if h.trees])
def test_refit_from_a_trials_rounds_equals_a_fresh_refit(head: str) -> None:
    """The final fit reuses the best trial's early-stopping rounds instead of refitting the inner
    split; the models must be the ones a fresh early-stop-then-refit gives."""
    from sslstack.classify.cv import CVOptions, Targets, cross_validate
    from sslstack.classify.heads import FitContext
    from sslstack.classify.metrics import get_metric

    rng = np.random.default_rng(0)
    n, k = 150, 3
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 6)) + y[:, None] * 0.8
    fold = np.arange(n) % k
    splits = [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]
    enc = LabelEncoding("multiclass", ("a", "b", "c"))
    hd = get_head(head)
    ctx = FitContext("multiclass", 3, 0, "cpu", 1, 60)
    met = get_metric("accuracy", "multiclass")
    params = hd.warm_start()
    targets = Targets(y, enc, splits)
    trial = cross_validate(hd, x, targets, met, params, ctx, CVOptions(refit=False))
    assert all(isinstance(r, int) and 1 <= r <= 60 for r in trial.es_rounds)
    fresh = cross_validate(hd, x, targets, met, params, ctx)
    reused = cross_validate(hd, x, targets, met, params, ctx, CVOptions(rounds=trial.es_rounds))
    assert fresh.es_rounds == trial.es_rounds == reused.es_rounds
    np.testing.assert_allclose(reused.oof, fresh.oof, rtol=0, atol=1e-12)
    # the refit on the whole training part is a different model from the trial's
    assert not np.allclose(trial.oof, fresh.oof)


def test_fold_labels_one_to_five_flow_through_fit_and_stack(tmp_path: Path) -> None:
    """ESC-50 numbers its folds 1..5: fit-head and stack accept them and write them as written."""
    from sslstack.ensemble import stack

    s = make_synth(tmp_path, n=60, layers=2)
    frame = pd.read_csv(s.csv)
    frame["fold"] = [1 + i % 5 for i in range(len(frame))]
    frame.to_csv(s.csv, index=False)
    a = fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=0)
    b = fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=0, layer=0)
    assert len(a.fold_scores) == 5
    written = dict(zip(frame["path"], frame["fold"], strict=True))
    for res in (a, b):
        oof = pd.read_csv(res.oof_path)
        assert oof["fold"].tolist() == [written[i] for i in oof["id"]]
    st = stack(s.ws, method="mean")
    oof = pd.read_csv(Path(st.run_dir) / "oof.csv")
    assert oof["fold"].tolist() == [written[i] for i in oof["id"]]


def test_probe_scores_the_concatenations_a_head_can_pick(tmp_path: Path) -> None:
    from sslstack.classify.features import layer_choices, pool_choices

    s = make_synth(tmp_path, n=90, layers=4, separation=1.5)
    res = probe("fake", data=s.csv, workspace=s.ws)
    assert res.full is not None
    assert list(res.full.index) == layer_choices(s.store)  # 0 1 2 3 0..3 2..3 0+2+3
    assert list(res.full.columns) == pool_choices(s.store)  # mean std mean+std
    assert "mean+std" in res.full.columns and "0+2+3" in res.full.index
    pd.testing.assert_frame_equal(res.full.loc[list(res.table.index), ["mean", "std"]], res.table)
    # each cell is the out-of-fold score of the probe on that choice, as a head reads it
    for la, po in (("0+2+3", "mean+std"), ("0..3", "mean")):
        from sslstack.classify.cv import Targets, cross_validate
        from sslstack.classify.features import FeatureChoice
        from sslstack.classify.fit import FitConfig
        from sslstack.classify.heads import FitContext, get_head
        from sslstack.classify.metrics import get_metric
        from sslstack.classify.problem import prepare_problem as _prepare
        from sslstack.workspace import Workspace

        prob = _prepare(Workspace.at(s.ws), FitConfig("logreg", "fake"))
        x = prob.reader.matrix(FeatureChoice(la, po))
        met = get_metric("accuracy", "multiclass")
        out = cross_validate(
            get_head("logreg"),
            x,
            Targets(prob.y, prob.enc, prob.splits),
            met,
            {"C": 1.0, "class_weight": "none", "standardize": True},
            FitContext("multiclass", 3, 0, "cpu", 1),
        )
        assert res.full.loc[la, po] == pytest.approx(met(prob.y, out.oof, "multiclass"))
    best = res.best_any()
    assert best[2] == pytest.approx(float(np.nanmax(res.full.to_numpy())))
    assert best[2] >= res.best()[2]
    assert res.to_dict()["best_any"]["layer"] == best[0]


def test_a_fit_config_gives_the_same_run_as_keyword_arguments(tmp_path: Path) -> None:
    from sslstack.classify import FitConfig, ProbeConfig, probe

    s = make_synth(tmp_path, n=60, layers=2)
    cfg = FitConfig("logreg", "fake", data=s.csv, trials=2, folds=3, seed=1)
    assert FitConfig.from_dict(cfg.to_dict()) == cfg
    a = fit_head(cfg, workspace=s.ws)
    b = fit_head("logreg", "fake", data=s.csv, trials=2, folds=3, seed=1, workspace=s.ws,
                 study="other")  # fmt: skip
    assert a.score == b.score and a.best_params == b.best_params
    np.testing.assert_array_equal(a.oof.iloc[:, 2:].to_numpy(), b.oof.iloc[:, 2:].to_numpy())
    p = probe(ProbeConfig("fake", data=s.csv), workspace=s.ws)
    q = probe("fake", data=s.csv, workspace=s.ws)
    assert p.table.equals(q.table)
