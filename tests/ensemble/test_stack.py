"""``stack``: joins runs by id, refuses misaligned runs, saves the chosen stack as a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sslstack.cli import app
from sslstack.ensemble import stack
from sslstack.errors import DataError
from sslstack.runs import load_run
from tests.ensemble_synth import Synth, add_run, make_dataset, probs


def _three_runs(tmp_path: Path, task: str) -> tuple[Synth, list[str]]:
    s = make_dataset(tmp_path, task, n=200)
    ids = [
        add_run(s, probs(s, st, seed=j, temp=t), f"h{j}")
        for j, (st, t) in enumerate([(1.0, 1.0), (1.4, 0.5), (0.8, 2.0)])
    ]
    return s, ids


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_stack_table_and_saved_run(tmp_path: Path, task: str) -> None:
    s, base = _three_runs(tmp_path, task)
    res = stack(s.ws, method="logreg")
    # every method once (greedy_nested is greedy's other name), best_single first
    assert list(res.table) == ["best_single", "mean", "rank", "greedy", "logreg"]
    assert res.table["best_single"]["run"] in base
    assert res.score == res.table["logreg"]["score"]
    assert len(res.table["logreg"]["fold_scores"]) == 5
    # in-sample greedy starts from the best single run and keeps its best iteration
    assert res.table["greedy"]["in_sample"] >= res.table["best_single"]["in_sample"] - 1e-12 or (
        res.metric in ("log_loss", "brier")
    )
    # no combination learns from its rows: honest and in-sample agree
    assert res.table["mean"]["score"] == res.table["mean"]["in_sample"]
    run = load_run(s.ws, res.run)
    assert run.record.kind == "stack" and run.record.base_runs == base
    assert run.record.method == "logreg" and run.record.folds_digest == s.digest
    oof = run.oof()
    assert list(oof.columns) == ["id", "fold", *s.enc.labels]
    assert oof["id"].tolist() == s.ids
    np.testing.assert_allclose(oof[list(s.enc.labels)].to_numpy(), res.oof[list(s.enc.labels)])
    # mean's score equals the score of the plain average, computed here
    from sslstack.ensemble.encoding import scorer

    P = np.stack([load_run(s.ws, b).oof()[list(s.enc.labels)].to_numpy() for b in base])
    sc = scorer(None, s.enc)
    assert res.table["mean"]["score"] == pytest.approx(sc(s.y, P.mean(axis=0)), abs=1e-6)


def test_default_runs_exclude_stacks_and_calibration(tmp_path: Path) -> None:
    s, base = _three_runs(tmp_path, "multiclass")
    first = stack(s.ws, method="greedy")
    second = stack(s.ws, method="mean", calibrate="temperature")
    assert second.base_runs == base  # the first stack is not a base run by default
    assert "mean+temperature" in second.table
    cal = load_run(s.ws, second.run).record.calibration
    assert cal["method"] == "temperature" and set(cal["before"]) == {"log_loss", "brier", "ece"}
    w = load_run(s.ws, first.run).record.weights
    assert set(w) == set(base) and sum(w.values()) == pytest.approx(1.0)


def test_runs_by_number(tmp_path: Path) -> None:
    s, base = _three_runs(tmp_path, "binary")
    res = stack(s.ws, runs=[1, 3], method="rank", save=False)
    assert res.base_runs == [base[0], base[2]] and res.run is None


def test_misaligned_runs_refused(tmp_path: Path) -> None:
    s, base = _three_runs(tmp_path, "binary")
    P = probs(s, 1.0, seed=9)
    other_folds = add_run(s, P, "otherfolds", meta={"folds_digest": "0123456789ab"}, validate=False)
    with pytest.raises(DataError, match=f"fold assignment.*{base[0]}.*{other_folds}"):
        stack(s.ws, runs=[base[0], other_folds])
    swapped = add_run(
        s,
        P[:, ::-1],
        "swapped",
        meta={"labels": list(s.enc.labels[::-1]), "positive": s.enc.labels[0]},
        validate=False,
    )
    with pytest.raises(DataError, match=f"label encoding.*{swapped}"):
        stack(s.ws, runs=[base[0], swapped])
    subset = add_run(s, P, "subset", ids=s.ids[:150])
    with pytest.raises(
        DataError, match=f"do not cover the same items.*only in {base[0]}: {s.ids[150]}"
    ):
        stack(s.ws, runs=[base[0], subset])


def test_cli_stack_json(tmp_path: Path) -> None:
    s, base = _three_runs(tmp_path, "multiclass")
    r = CliRunner().invoke(
        app,
        [
            "stack",
            "--workspace",
            str(s.ws.root),
            "--method",
            "logreg",
            "--calibrate",
            "platt",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"run", "method", "score", "table", "oof"} <= set(out)
    assert out["method"] == "logreg" and "logreg+platt" in out["table"]
    assert pd.read_csv(out["oof"]).shape == (200, 2 + len(s.enc.labels))
    bad = CliRunner().invoke(app, ["stack", "--workspace", str(s.ws.root), "--method", "median"])
    assert bad.exit_code == 2 and "best_single, mean, rank, greedy, greedy_nested, logreg" in (
        bad.output
    )


def test_auto_saves_the_best_honest_stack(tmp_path: Path) -> None:
    """By default the method with the best honest score is saved, with that score."""
    s, base = _three_runs(tmp_path, "multiclass")
    res = stack(s.ws)
    honest = {k: v["score"] for k, v in res.table.items()}
    assert res.method == max(honest, key=honest.get) and res.method != "best_single"
    assert res.score == pytest.approx(honest[res.method]) and not res.notes
    run = load_run(s.ws, res.run)
    assert run.record.method == res.method and run.record.score == pytest.approx(res.score)


def test_when_no_stack_beats_the_best_run_honestly_the_run_is_kept(tmp_path: Path) -> None:
    """One strong run among pure noise: greedy weights chosen on all rows look better than the
    strong run alone (they fit the noise), honestly nothing beats it; the saved stack is that one
    run alone, so predict applies only it."""
    s = make_dataset(tmp_path, "multiclass", n=200)
    good = add_run(s, probs(s, 1.2, seed=0), "good")
    for j in range(1, 12):
        add_run(s, probs(s, 0.0, seed=j, noise=2.0), f"noise{j}")
    res = stack(s.ws, metric="accuracy")
    t = res.table
    assert res.method == "best_single" and t["best_single"]["run"] == good
    assert all(t[m]["score"] <= t["best_single"]["score"] for m in t)
    assert t["greedy"]["in_sample"] > t["greedy"]["score"]  # the optimism the default avoids
    assert len(res.notes) == 1 and "no stack beats the best single run honestly" in res.notes[0]
    assert good in res.notes[0]
    run = load_run(s.ws, res.run)
    assert run.record.base_runs == [good] and run.record.weights == {good: 1.0}
    from sslstack.ensemble.methods import METHODS

    P = load_run(s.ws, good).oof()[list(s.enc.labels)].to_numpy()
    applied = METHODS["best_single"].apply(P[None], run.record.params, s.enc)
    np.testing.assert_allclose(applied, P / P.sum(axis=1, keepdims=True))


def test_stack_takes_one_config_or_its_fields(tmp_path: Path) -> None:
    from sslstack.ensemble import StackConfig
    from sslstack.errors import ConfigError

    s, base = _three_runs(tmp_path, "multiclass")
    cfg = StackConfig(runs=tuple(base[:2]), method="greedy", greedy_size=5)
    a = stack(s.ws, cfg)
    b = stack(s.ws, runs=base[:2], method="greedy", greedy_size=5)
    assert (b.run, b.reused) == (a.run, True)  # the same result: the run saved by the first
    assert a.table == b.table and load_run(s.ws, a.run).record.config == cfg.to_dict()
    assert StackConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="not both"):
        stack(s.ws, cfg, method="mean")
    with pytest.raises(ConfigError, match="unknown setting.*greedy_iters; use runs, method"):
        stack(s.ws, greedy_iters=3)
