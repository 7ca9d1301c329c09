"""The classify CLI: fit-head --json keys, probe, runs ls, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from sslstack.cli import app
from tests.classify_synth import make_synth

runner = CliRunner()


def _last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_fit_head_json_keys_and_runs_ls(tmp_path: Path) -> None:
    s = make_synth(tmp_path, n=60, layers=2)
    ws = str(s.ws.root)
    res = runner.invoke(
        app,
        [
            "fit-head",
            "logreg",
            "--model",
            "fake",
            "--data",
            str(s.csv),
            "--trials",
            "2",
            "--workspace",
            ws,
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = _last_json(res.stdout)
    assert {"run", "metric", "score", "scores", "oof"} <= set(out)
    assert out["metric"] == "accuracy" and out["scores"]["accuracy"] == out["score"]
    assert Path(out["oof"]).read_text().startswith("id,fold,c0,c1,c2")
    res = runner.invoke(app, ["runs", "ls", "--workspace", ws, "--json"])
    assert res.exit_code == 0, res.output
    rows = _last_json(res.stdout)["runs"]
    assert [r["run"] for r in rows] == [out["run"]]
    row = rows[0]
    assert row["head"] == "logreg" and row["encoder"] == "fake" and row["trials"] == 2
    assert row["fold_mean"] is not None and row["fold_std"] is not None
    res = runner.invoke(app, ["probe", "--model", "fake", "--workspace", ws, "--json"])
    assert res.exit_code == 0, res.output
    assert Path(_last_json(res.stdout)["png"]).exists()


def test_errors_are_one_line(tmp_path: Path) -> None:
    s = make_synth(tmp_path, n=40, layers=2)
    res = runner.invoke(
        app,
        [
            "fit-head",
            "logreg",
            "--model",
            "fake",
            "--data",
            str(s.csv),
            "--metric",
            "eer",
            "--workspace",
            str(s.ws.root),
        ],
    )
    assert res.exit_code == 2
    assert "error: --metric eer: does not apply to multiclass tasks" in res.output
    assert "Traceback" not in res.output


def test_runs_ls_names_each_runs_dataset(tmp_path: Path) -> None:
    from sslstack.classify import fit_head

    a = make_synth(tmp_path / "a", n=30, layers=2)
    b = make_synth(tmp_path / "b", n=36, layers=2, seed=3)
    # both datasets' runs in one workspace (b's store is copied next to a's)
    import shutil

    shutil.copytree(b.store.path, a.ws.stores / "fake-b")
    ra = fit_head(
        "logreg", "fake", data=a.csv, workspace=a.ws, trials=0, folds=3, store=a.store.path.name
    )
    rb = fit_head("logreg", "fake", data=b.csv, workspace=a.ws, trials=0, folds=3, store="fake-b")
    r = runner.invoke(app, ["runs", "ls", "--workspace", str(a.ws.root)], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    rows = {
        line.split()[0]: line.split()[1]
        for line in r.output.splitlines()
        if line.strip().startswith("r0")
    }
    from sslstack.runs import load_run

    assert rows == {
        ra.run: load_run(a.ws, ra.run).record.dataset,
        rb.run: load_run(a.ws, rb.run).record.dataset,
    }
    assert rows[ra.run] != rows[rb.run]


def test_probe_prints_one_best(tmp_path: Path) -> None:
    """Issue 23: the probe printed two different 'best' lines ('best: layer 1, mean (..); best a
    head can pick: layer 1, mean+std (..)'). One best now: the cell shown bold, which fit-head's
    first trial starts from."""
    from tests.classify.test_heads import _two_part_store

    ws, csv = _two_part_store(tmp_path)
    res = runner.invoke(
        app, ["probe", "--model", "fake", "--data", str(csv), "--workspace", str(ws.root)],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    bests = [w for w in res.output.split() if w.startswith("best")]
    assert bests == ["best:"], res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("best:"))
    assert line.startswith("best: layer ") and ", mean+std (" in line
