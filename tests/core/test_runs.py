"""Run storage: numbering, atomic saving, lookup, and the out-of-fold alignment checks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sslstack.classify.folds import get_folds
from sslstack.datasets import register_dataset
from sslstack.errors import DataError, RunError
from sslstack.manifest import read_manifest
from sslstack.runs import RunRecord, check_oof, list_runs, load_run, new_run_id, save_run
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
    rec = RunRecord.from_dict(meta)
    bad = _oof(folds)
    bad.loc[3, "id"] = "stranger.wav"
    with pytest.raises(DataError, match=r"1 id\(s\) are not in dataset .*stranger.wav"):
        save_run(ws, meta, bad)
    bad = _oof(folds)
    bad.loc[5, "fold"] = 1 - bad.loc[5, "fold"]
    with pytest.raises(DataError, match=r"1 row\(s\) disagree with the dataset's folds: x5.wav"):
        check_oof(ws, rec, bad)
    bad = _oof(folds)
    bad.loc[1, "id"] = bad.loc[0, "id"]
    with pytest.raises(DataError, match="duplicate id"):
        check_oof(ws, rec, bad)
    with pytest.raises(DataError, match="expected id, fold, then one column per label"):
        check_oof(ws, rec, _oof(folds)[["id", "fold", "b", "a"]])
    with pytest.raises(DataError, match="made with folds"):
        check_oof(ws, replace(rec, folds_digest="0" * 12), _oof(folds))
    bad = _oof(folds)
    bad.loc[2, "a"] = np.nan
    with pytest.raises(DataError, match="finite and in"):
        check_oof(ws, rec, bad)
    assert not ws.run_dir(meta["id"]).exists()
    check_oof(ws, rec, _oof(folds, list(folds.ids)[:7]))  # a subset of the items is fine


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
    (schema 1) read the same way, keys this version does not know kept in ``extra``."""
    from sslstack.errors import RunError
    from sslstack.runs import RUN_SCHEMA, RunRecord

    old = {"id": "r0007-xgb-x", "number": 7, "kind": "head", "dataset": "d", "task": "binary"}
    old.update(labels=["a", "b"], positive="b", score=0.5, study="s1", created=1.0, later=[1])
    rec = RunRecord.from_dict(old)
    assert (rec.schema, rec.score, rec.study, rec.extra) == (1, 0.5, "s1", {"later": [1]})
    back = rec.to_dict()
    assert {k: back[k] for k in old} == old and back["fold_scores"] == []
    assert "method" not in back and "models" not in back  # unset kind-specific fields
    rec.schema = RUN_SCHEMA
    assert RunRecord.from_dict(rec.to_dict()) == rec
    with pytest.raises(RunError, match="'task'"):
        RunRecord.from_dict({k: v for k, v in old.items() if k != "task"})
    with pytest.raises(RunError, match="kind"):
        RunRecord.from_dict({**old, "kind": "other"})


OLD_RUNS = Path(__file__).parent / "data" / "old_runs"


def _old_workspace(tmp_path: Path) -> Workspace:
    """A workspace holding the runs written by main 3def7c8 (schema 3) and derived from them
    as the writers of schema 1 and 2 left them (``data/old_runs/make_old_runs.py``)."""
    import shutil

    ws = Workspace.at(tmp_path / "ws")
    for folder in sorted(OLD_RUNS.glob("r0*")):
        shutil.copytree(folder, ws.runs / folder.name)
    return ws


def test_old_run_json_schemas_read_as_typed_records(tmp_path: Path) -> None:
    import json

    from sslstack.runs import FeatureChoiceRef, FeatureRef

    ws = _old_workspace(tmp_path)
    runs = list_runs(ws)
    assert [(r.id, r.record.schema) for r in runs] == [
        ("r0001-logreg-s1", 1),
        ("r0002-logreg-s2", 2),
        ("r0003-logreg-s3", 3),
        ("r0004-greedy", 3),
    ]
    feat = FeatureRef(store="logmel-e9ad69a6c0", model="logmel", layer="0", pool="mean")
    for run in runs[:3]:
        rec = run.record
        assert (rec.kind, rec.head, rec.encoder, rec.labels, rec.positive) == (
            "head", "logreg", "logmel", ["a", "b"], "b"
        )  # fmt: skip
        assert rec.feature_choice == FeatureChoiceRef("logmel-e9ad69a6c0", "0", "mean")
        assert rec.features == [feat] and rec.layer_choice == ("0", "mean")
        assert (rec.models, rec.trial_score, rec.max_rounds, rec.study) == (
            ["fold0.npz", "fold1.npz"], 0.8, 200, None
        )  # fmt: skip
        assert rec.scores == {"accuracy": 0.75, "roc_auc": None} and rec.fold_scores == [0.5, 1.0]
        assert rec.extra == {"future_key": {"kept": True}}
        run.verify()
        on_disk = json.loads((run.dir / "run.json").read_text())
        again = rec.to_dict()
        # every value on disk is read back the same (None-valued kind-specific keys may go)
        assert {k: v for k, v in on_disk.items() if k != "_sha256" and k in again} == {
            k: again[k] for k in on_disk if k in again
        }
        assert {k for k in on_disk if k not in again} <= {"_sha256", "study", "storage", "warnings"}
        assert RunRecord.from_dict(again) == rec
    assert runs[0].record.files == {} and runs[0].record.oof_sha256 is None
    assert set(runs[2].record.files) == {"oof.csv", "models/fold0.npz", "models/fold1.npz"}
    stack = runs[3].record
    assert (stack.kind, stack.method, stack.base_runs) == ("stack", "greedy", ["r0003-logreg-s3"])
    assert stack.weights == {"r0003-logreg-s3": 1.0} and stack.config == {"method": "auto"}
    assert stack.table == {"greedy": {"score": 0.75, "fold_scores": [0.5, 1.0]}}
    assert stack.feature_choice is None and stack.features == [feat]
    pd.testing.assert_frame_equal(runs[3].oof(), runs[2].oof())


@pytest.mark.parametrize(
    ("run_id", "damage", "why"),
    [
        ("r0003-logreg-s3", lambda t: t.replace('"score": 0.75', '"score": 0.76'),
         "damaged: its content differs from its checksum"),
        ("r0001-logreg-s1", lambda t: t[: len(t) // 2], "damaged: not valid JSON"),
        ("r0002-logreg-s2", lambda t: t.replace('"number": 2', '"number": "two"'), "damaged: "),
        ("r0002-logreg-s2", lambda t: t.replace('"store": "logmel-e9ad69a6c0"', '"x": 1', 1),
         "damaged: "),
    ],
)  # fmt: skip
def test_a_damaged_old_run_json_is_one_line_and_set_aside(
    tmp_path: Path, run_id: str, damage, why: str
) -> None:
    import warnings

    from sslstack.errors import SslstackWarning

    ws = _old_workspace(tmp_path)
    path = ws.run_dir(run_id) / "run.json"
    path.write_text(damage(path.read_text()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = list_runs(ws)
    assert run_id not in [r.id for r in runs] and len(runs) == 3
    lines = [str(w.message) for w in caught if issubclass(w.category, SslstackWarning)]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert lines[0].startswith(f"run {run_id} is damaged and left out (moved to ")
    assert f"{run_id}/run.json: {why}" in lines[0] and "refit the run" in lines[0]
    with pytest.raises(RunError, match=f"run {run_id} is damaged .*: .*{why}"):
        load_run(ws, run_id)


def test_a_saved_record_reads_back_equal(setup) -> None:
    from sslstack.runs import FeatureChoiceRef, FeatureRef

    ws, name, folds = setup
    rec = RunRecord.from_dict(_meta(ws, name, folds))
    rec.features = [FeatureRef("st-1", "m", "0..2", "mean")]
    rec.feature_choice = FeatureChoiceRef("st-1", "0..2", "mean")
    rec.models, rec.warnings, rec.extra = ["f0.npz"], ["w"], {"later": {"x": 1}}
    rec.scores, rec.fold_scores, rec.params = {"accuracy": 0.5, "eer": None}, [0.5, None], {"C": 2}

    def fill(folder: Path) -> None:
        (folder / "models").mkdir()
        (folder / "models" / "f0.npz").write_bytes(b"model")

    run = save_run(ws, rec, _oof(folds), fill=fill)
    back = load_run(ws, run.id).record
    assert back == rec and back.schema == 3 and back.oof_rows == 20
    assert set(back.files) == {"oof.csv", "models/f0.npz"} and run.record == rec
