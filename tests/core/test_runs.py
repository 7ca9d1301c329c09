"""Run storage: numbering, atomic saving, lookup, and the out-of-fold alignment checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sslstack.classify.folds import get_folds
from sslstack.datasets import register_dataset
from sslstack.errors import DataError, RunError
from sslstack.manifest import read_manifest
from sslstack.runs import check_oof, list_runs, load_run, new_run_id, save_run
from sslstack.workspace import Workspace


@pytest.fixture()
def setup(tmp_path: Path):
    audio = tmp_path / "audio"
    audio.mkdir()
    ids = [f"x{i}.wav" for i in range(20)]
    for i in ids:
        (audio / i).write_bytes(i.encode())  # distinct content: distinct items
    pd.DataFrame({"path": ids, "label": ["a", "b"] * 10}).to_csv(audio / "t.csv", index=False)
    ws = Workspace.at(tmp_path / "ws")
    manifest = read_manifest(audio / "t.csv")
    name = register_dataset(ws, manifest)
    folds = get_folds(ws, name, manifest, k=2)
    return ws, name, folds


def _oof(folds, ids=None) -> pd.DataFrame:
    ids = list(folds.ids) if ids is None else ids
    p = np.linspace(0.1, 0.9, len(ids))
    return pd.DataFrame({"id": ids, "fold": folds.fold_of(ids), "a": 1 - p, "b": p})


def _meta(ws, name, folds, tag="logreg-fake") -> dict:
    run_id, number = new_run_id(ws, "head", tag)
    return {
        "id": run_id,
        "number": number,
        "kind": "head",
        "dataset": name,
        "folds_digest": folds.digest,
        "task": "binary",
        "labels": ["a", "b"],
        "positive": "b",
    }


def test_runs_are_numbered_saved_and_found(setup) -> None:
    ws, name, folds = setup
    m1 = _meta(ws, name, folds)
    assert m1["id"] == "r0001-logreg-fake" and m1["number"] == 1
    run = save_run(ws, m1, _oof(folds), fill=lambda d: (d / "models").mkdir())
    m2 = _meta(ws, name, folds, "xgb-fake")
    save_run(ws, m2, _oof(folds))
    assert [r.id for r in list_runs(ws)] == ["r0001-logreg-fake", "r0002-xgb-fake"]
    assert load_run(ws, 2).id == "r0002-xgb-fake"
    assert load_run(ws, "r0001").id == run.id
    assert load_run(ws, "r0002-xgb-fake").number == 2
    assert (run.dir / "models").is_dir()
    oof = load_run(ws, 1).oof()
    pd.testing.assert_frame_equal(oof, _oof(folds), check_exact=False)
    with pytest.raises(RunError, match="no run 'r9'"):
        load_run(ws, "r9")
    with pytest.raises(RunError, match="ambiguous"):
        load_run(ws, "r000")
    with pytest.raises(RunError, match="exists already"):
        save_run(ws, m1, _oof(folds))


def test_numbers_are_never_reused(setup) -> None:
    ws, name, folds = setup
    a = new_run_id(ws, "head", "t")
    b = new_run_id(ws, "stack", "t")  # reserved but never saved: still skipped
    c = new_run_id(ws, "import", "t")
    assert [a[1], b[1], c[1]] == [1, 2, 3]
    with pytest.raises(RunError, match="unknown run kind"):
        new_run_id(ws, "other", "t")


def test_oof_store_refuses_misaligned_ids(setup) -> None:
    ws, name, folds = setup
    meta = _meta(ws, name, folds)
    bad = _oof(folds)
    bad.loc[3, "id"] = "stranger.wav"
    with pytest.raises(DataError, match=r"1 id\(s\) are not in dataset .*stranger.wav"):
        save_run(ws, meta, bad)
    bad = _oof(folds)
    bad.loc[5, "fold"] = 1 - bad.loc[5, "fold"]
    with pytest.raises(DataError, match=r"1 row\(s\) disagree with the dataset's folds: x5.wav"):
        check_oof(ws, meta, bad)
    bad = _oof(folds)
    bad.loc[1, "id"] = bad.loc[0, "id"]
    with pytest.raises(DataError, match="duplicate id"):
        check_oof(ws, meta, bad)
    with pytest.raises(DataError, match="expected id, fold, then one column per label"):
        check_oof(ws, meta, _oof(folds)[["id", "fold", "b", "a"]])
    with pytest.raises(DataError, match="made with folds"):
        check_oof(ws, {**meta, "folds_digest": "0" * 12}, _oof(folds))
    bad = _oof(folds)
    bad.loc[2, "a"] = np.nan
    with pytest.raises(DataError, match="finite and in"):
        check_oof(ws, meta, bad)
    assert not ws.run_dir(meta["id"]).exists()
    check_oof(ws, meta, _oof(folds, list(folds.ids)[:7]))  # a subset of the items is fine


def test_a_failed_save_leaves_nothing(setup) -> None:
    ws, name, folds = setup
    meta = _meta(ws, name, folds)

    def boom(folder: Path) -> None:
        (folder / "models").mkdir()
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_run(ws, meta, _oof(folds), fill=boom)
    assert list_runs(ws) == []
    assert [p.name for p in ws.runs.iterdir()] == [".numbers"]


def test_run_record_round_trips_and_reads_schema_1_runs(tmp_path: Path) -> None:
    """run.json is one typed RunRecord for every kind; runs written before the schema field
    (schema 1) read the same way, their kind-specific keys kept in ``extra``."""
    from sslstack.errors import RunError
    from sslstack.runs import RUN_SCHEMA, RunRecord

    old = {"id": "r0007-xgb-x", "number": 7, "kind": "head", "dataset": "d", "task": "binary"}
    old.update(labels=["a", "b"], positive="b", score=0.5, study="s1", created=1.0)
    rec = RunRecord.from_dict(old)
    assert (rec.schema, rec.score, rec.extra) == (1, 0.5, {"study": "s1"})
    back = rec.to_dict()
    assert {k: back[k] for k in old} == old and back["fold_scores"] == []
    rec.schema = RUN_SCHEMA
    assert RunRecord.from_dict(rec.to_dict()) == rec
    with pytest.raises(RunError, match="'task'"):
        RunRecord.from_dict({k: v for k, v in old.items() if k != "task"})
    with pytest.raises(RunError, match="kind"):
        RunRecord.from_dict({**old, "kind": "other"})
