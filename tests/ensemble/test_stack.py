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
    assert set(res.table) == {"best_single", "mean", "rank", "greedy", "greedy_nested", "logreg"}
    assert res.table["best_single"]["run"] in base
    assert res.score == res.table["logreg"]["score"]
    assert len(res.table["logreg"]["fold_scores"]) == 5
    # greedy starts from the best single run and keeps the best iteration
    assert res.table["greedy"]["score"] >= res.table["best_single"]["score"] - 1e-12 or (
        res.metric in ("log_loss", "brier")
    )
    run = load_run(s.ws, res.run)
    assert run.meta["kind"] == "stack" and run.meta["base_runs"] == base
    assert run.meta["method"] == "logreg" and run.meta["folds_digest"] == s.digest
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
    cal = load_run(s.ws, second.run).meta["calibration"]
    assert cal["method"] == "temperature" and set(cal["before"]) == {"log_loss", "brier", "ece"}
    w = load_run(s.ws, first.run).meta["weights"]
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
    assert bad.exit_code == 2 and "mean, rank, greedy, greedy_nested, logreg" in bad.output
