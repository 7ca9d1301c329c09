"""Train<->test leakage in ``predict``, and dataset roles that no command makes sticky."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from sslstack.cli import app
from sslstack.datasets import list_datasets
from sslstack.workspace import Workspace
from tests.audio_fixtures import write_dataset


def _fitted(tmp_path: Path) -> tuple[Path, Path, str]:
    from sslstack.classify import fit_head
    from sslstack.extract import extract

    ws = tmp_path / "ws"
    train = write_dataset(tmp_path / "train", n=30, labels=("a", "b", "c"), seed=0)
    extract(train, "logmel", workspace=ws, pools=("mean",))
    run = fit_head("logreg", "logmel", workspace=ws, trials=0, folds=3).run
    return ws, train, run


def test_predict_on_renamed_training_clips_reports_the_leak(tmp_path: Path) -> None:
    from sslstack.ensemble import predict

    ws, train, run = _fitted(tmp_path)
    test = write_dataset(tmp_path / "test", n=9, labels=("a", "b", "c"), seed=100)
    # 4 training clips copied into the test set under new names, labels kept
    frame = pd.read_csv(test)
    src = pd.read_csv(train)
    for n, row in enumerate([2, 5, 11, 17]):
        name = f"wav/renamed_{n}.wav"
        shutil.copy(train.parent / src["path"][row], test.parent / name)
        frame.loc[len(frame)] = [name, src["label"][row]]
    frame.to_csv(test, index=False)
    res = predict(test, run=run, workspace=ws, out=tmp_path / "sub.csv")
    assert res.items == 13 and res.scored == 13
    assert [d["id"] for d in res.leaked] == [f"wav/renamed_{n}.wav" for n in range(4)]
    assert [d["train_id"] for d in res.leaked] == [src["path"][r] for r in (2, 5, 11, 17)]
    assert res.leaked_scored == 4 and res.unleaked_scores is not None
    assert res.notes[0].startswith(
        "4 of 13 test item(s) have the same content as a training item of the run "
        "(wav/renamed_0.wav = wav/002.wav"
    )
    r = CliRunner().invoke(
        app,
        ["predict", "--data", str(test), "--run", run, "--out", str(tmp_path / "s2.csv")]
        + ["--workspace", str(ws)],
    )
    assert r.exit_code == 0, r.output
    assert "test scores over 13 labeled items, 4 of them leaked from training" in r.output
    assert "without leaked" in r.output


def test_predict_on_the_training_csv_leaves_fit_head_working(tmp_path: Path) -> None:
    from sslstack.classify import fit_head
    from sslstack.ensemble import predict

    ws, train, run = _fitted(tmp_path)
    res = predict(train, run=run, workspace=ws, out=tmp_path / "sub.csv")
    assert [m["role"] for m in list_datasets(Workspace.at(ws))] == ["train"]
    again = fit_head("logreg", "logmel", workspace=ws, trials=0, folds=3, pool="mean")
    assert again.run
    r = CliRunner().invoke(
        app, ["fit-head", "logreg", "--model", "logmel", "--trials", "0", "--workspace", str(ws)]
    )
    assert r.exit_code == 0, r.output
    assert len(res.leaked) == 30  # in-sample: allowed, and said
