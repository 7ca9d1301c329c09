"""Damaged run files, duplicate results, a full disk during a model save, runs that point
outside their folder: each is one line, set aside, or worked around, never a traceback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from sslstack.classify import fit_head
from sslstack.ensemble import stack
from sslstack.errors import DamagedFileError, DiskFullError, SslstackWarning
from sslstack.runs import damaged_runs, list_runs
from tests.classify_synth import make_synth
from tests.ensemble_synth import add_run, make_dataset, probs
from tests.faults.helpers import cli, one_line_error


def _three_runs(tmp_path: Path):  # noqa: ANN202
    s = make_dataset(tmp_path, "multiclass", n=90)
    ids = [add_run(s, probs(s, 1.0 + k / 2, seed=k), f"logreg-{k}") for k in range(3)]
    return s, ids


def _flip(path: Path, pos: int, bit: int = 0x01) -> None:
    raw = bytearray(path.read_bytes())
    raw[pos] ^= bit
    path.write_bytes(bytes(raw))


def test_a_flipped_byte_in_run_json_is_listed_damaged_and_skipped(tmp_path: Path) -> None:
    s, ids = _three_runs(tmp_path)
    run_json = s.ws.run_dir(ids[1]) / "run.json"
    text = run_json.read_text()
    _flip(run_json, text.index('"score"') + 10)  # a digit of the score: still valid JSON
    r = cli("runs", "ls", "-w", str(s.ws.root), "--json")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    listed = json.loads(r.stdout.strip().splitlines()[-1])
    assert [x["run"] for x in listed["runs"]] == [ids[0], ids[2]] or {
        x["run"] for x in listed["runs"]
    } == {ids[0], ids[2]}
    assert [d["run"] for d in listed["damaged"]] == [ids[1]]
    assert "run.json: damaged" in listed["damaged"][0]["why"]
    res = stack(s.ws, method="mean")  # the other runs still stack
    assert res.base_runs == [ids[0], ids[2]]
    r = cli("report", "-w", str(s.ws.root), "--out", str(tmp_path / "r.html"))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("damage", ["utf8", "cut", "digit"])
def test_a_damaged_oof_is_left_out_of_a_stack_with_one_line(tmp_path: Path, damage: str) -> None:
    s, ids = _three_runs(tmp_path)
    oof = s.ws.run_dir(ids[0]) / "oof.csv"
    raw = oof.read_bytes()
    if damage == "utf8":
        _flip(oof, len(raw) // 2, 0x80)
    elif damage == "cut":
        oof.write_bytes(raw[: len(raw) // 3])
    else:
        _flip(oof, raw.index(b"0.", 40) + 3)
    with pytest.warns(SslstackWarning, match=f"run {ids[0]} left out: .*oof.csv"):
        res = stack(s.ws, method="mean")
    assert res.base_runs == ids[1:]
    assert [d["run"] for d in damaged_runs(s.ws)] == [ids[0]]
    r = cli("stack", "--runs", ids[0], "-w", str(s.ws.root))  # named: refused in one line
    assert "is damaged" in one_line_error(r)


def test_the_same_stack_twice_saves_one_run(tmp_path: Path) -> None:
    s, _ids = _three_runs(tmp_path)
    first = stack(s.ws, method="greedy")
    again = stack(s.ws, method="greedy")
    assert again.run == first.run
    assert len([r for r in list_runs(s.ws) if r.record.kind == "stack"]) == 1
    other = stack(s.ws, method="mean")  # another result: another run
    assert other.run != first.run


def test_a_run_whose_model_path_leaves_its_folder_is_refused(tmp_path: Path) -> None:
    s = make_synth(tmp_path, n=60, layers=2)
    res = fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=0)
    run_json = res.run_dir / "run.json"
    meta = json.loads(run_json.read_text())
    outside = tmp_path / "elsewhere.json"
    outside.write_bytes((res.run_dir / "models" / meta["models"][0]).read_bytes())
    meta["models"][0] = str(outside)  # an absolute path elsewhere (was loaded silently)
    from sslstack.workspace import atomic_write_json

    atomic_write_json(run_json, meta, checksum=True)  # even with a valid checksum
    with pytest.warns(SslstackWarning, match="must stay inside its folder"):
        assert list_runs(s.ws) == []
    assert "must stay inside" in damaged_runs(s.ws)[0]["why"]


def test_a_damaged_model_file_is_refused_not_used(tmp_path: Path) -> None:
    from sslstack.classify import predict_head

    s = make_synth(tmp_path, n=60, layers=2)
    res = fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=0)
    (run,) = list_runs(s.ws)
    model = res.run_dir / "models" / run.record.models[0]
    _flip(model, len(model.read_bytes()) // 2)
    with pytest.raises(DamagedFileError, match="differs from its checksum"):
        predict_head(s.ws, run, s.ids[:5])


@pytest.mark.parametrize("head", ["logreg", "xgb"])
def test_a_full_disk_during_a_model_save_is_one_line_and_leaves_nothing(
    tmp_path: Path, head: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a head's library does on a full disk (XGBoost: its own XGBoostError, 77 lines of
    traceback before) after a part of the file was written."""
    from sslstack.classify import heads

    hd = heads.get_head(head)
    cls = type(hd)

    def full(self, model, folder: Path, stem: str) -> str:  # noqa: ANN001
        (folder / f"{stem}.part").write_bytes(b"x" * 100)
        raise RuntimeError("[12:00:00] src/common/io.cc:120: write failed: No space left on device")

    monkeypatch.setattr(cls, "save", full)
    s = make_synth(tmp_path, n=60, layers=2)
    kw = {"max_rounds": 10} if head == "xgb" else {}
    with pytest.raises(DiskFullError, match=rf"models: no space left.*{head} models"):
        fit_head(head, "fake", data=s.csv, workspace=s.ws, trials=2, **kw)
    assert list_runs(s.ws) == []
    assert [p.name for p in s.ws.runs.iterdir()] == [".numbers"]  # no half-written run


def test_a_flipped_folds_json_without_a_run_to_rebuild_it_is_one_line(tmp_path: Path) -> None:
    import shutil

    s = make_synth(tmp_path, n=60, layers=2)
    res = fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=0)
    shutil.rmtree(res.run_dir)  # no run vouches for the folds
    (folds_json,) = s.ws.datasets.glob("*/folds.json")
    text = folds_json.read_text()
    _flip(folds_json, text.index('"seed"') + 8)  # the seed's digit: still valid JSON
    r = cli("fit-head", "logreg", "-m", "fake", "-w", str(s.ws.root), "--trials", "0")
    assert "folds.json: damaged" in one_line_error(r)


def test_damaged_hash_memo_and_dataset_json_do_not_block(tmp_path: Path) -> None:
    from tests.audio_fixtures import write_dataset

    man = write_dataset(tmp_path / "d", 6, min_s=0.2, max_s=0.4)
    ws = tmp_path / "ws"
    args = ["extract", "--model", "logmel", "--data", str(man), "-w", str(ws), "--json"]
    time.sleep(2.1)  # files changed within 2 s of hashing are not memoized (coarse file times)
    assert cli(*args).returncode == 0
    memo = ws / "file-hashes.csv"
    (items,) = ws.glob("datasets/*/items.csv")
    (dataset_json,) = ws.glob("datasets/*/dataset.json")
    _flip(memo, len(memo.read_bytes()) // 2, 0x80)
    _flip(items, len(items.read_bytes()) // 2, 0x01)  # still UTF-8: only the checksum sees it
    _flip(dataset_json, 5, 0x80)
    r = cli(*args)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["computed"] == 0
    assert "rebuilt" in r.stderr
    assert cli(*args).stderr.count("warning") == 0  # healed for good


def test_non_finite_predictions_never_enter_a_run(tmp_path: Path) -> None:
    s = make_dataset(tmp_path, "binary", n=40)
    P = probs(s, 1.0, seed=0)
    P[3, 0] = np.nan
    from sslstack.errors import DataError

    with pytest.raises(DataError, match="NaN|finite"):
        add_run(s, P, "nan", validate=False)
    assert list_runs(s.ws) == []


@pytest.mark.parametrize("name", ["folds.csv", "folds.json"])
def test_damaged_folds_are_rebuilt_from_a_run_that_used_them(tmp_path: Path, name: str) -> None:
    from sslstack.folds import load_folds

    s = make_synth(tmp_path, n=60, layers=2)
    first = fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=0)
    (folder,) = s.ws.datasets.glob("*/")
    before = load_folds(s.ws, folder.name)
    raw = (folder / name).read_bytes()
    _flip(folder / name, len(raw) // 2)
    with pytest.warns(SslstackWarning, match=f"{name}.*rebuilt from run {first.run}"):
        again = fit_head("logreg", "fake", workspace=s.ws, trials=0)
    assert again.run == first.run  # the same folds: the same result, found again
    after = load_folds(s.ws, folder.name)
    assert after.digest == before.digest and after.label_of(list(before.ids)) == before.label_of(
        list(before.ids)
    )
