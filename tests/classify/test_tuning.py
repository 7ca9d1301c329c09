"""Optuna studies: pruning, continuing, SIGKILL resume, several workers on one study."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from sslstack.classify import fit_head
from sslstack.classify.tuning import open_storage
from sslstack.runs import list_runs
from tests.classify_synth import make_synth

ROOT = Path(__file__).resolve().parents[2]
WORKER = """
import json, sys
from sslstack.classify import fit_head
kw = json.loads(sys.argv[1])
res = fit_head("logreg", "fake", **kw)
print(json.dumps({"run": res.run, "study": res.study, "trials": res.trials}))
"""


def _study(ws) -> optuna.Study:
    logs = sorted(ws.studies.glob("*.log"))
    assert len(logs) == 1
    name = logs[0].name[: -len(".log")]
    return optuna.load_study(study_name=name, storage=open_storage(ws, name))


def _states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def _worker(kw: dict) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps(kw)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_pruning_prunes_bad_trials(tmp_path: Path) -> None:
    # layer 0 and the std pooling hold nothing: after one fold such trials are far below the
    # median of earlier trials and must be pruned
    s = make_synth(tmp_path, n=100, layers=4, separation=3.0)
    res = fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=16, layer="0,3")
    states = _states(_study(s.ws))
    assert states.get("PRUNED", 0) >= 1, states
    assert states["COMPLETE"] + states["PRUNED"] == 16 == res.trials
    pruned = [t for t in _study(s.ws).trials if t.state.name == "PRUNED"]
    # a pruned trial stopped early: it reported fewer folds than there are
    assert all(len(t.intermediate_values) < 5 for t in pruned)


def test_rerun_with_more_trials_continues_the_study(tmp_path: Path) -> None:
    s = make_synth(tmp_path, n=60, layers=2)
    first = fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=3)
    second = fit_head("logreg", "fake", workspace=s.ws, trials=5)
    assert first.study == second.study
    assert first.trials == 3 and second.trials == 5
    assert len(_study(s.ws).trials) == 5
    third = fit_head("logreg", "fake", workspace=s.ws, trials=4)  # enough already: no new trial
    assert third.trials == 5 and len(_study(s.ws).trials) == 5


def test_sigkilled_fit_head_resumes(tmp_path: Path) -> None:
    s = make_synth(tmp_path, n=80, layers=3)
    kw = {"data": str(s.csv), "workspace": str(s.ws.root), "trials": 500}
    proc = _worker(kw)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if (
                list(s.ws.studies.glob("*.log"))
                and sum(v for k, v in _states(_study(s.ws)).items() if k in ("COMPLETE", "PRUNED"))
                >= 3
            ):
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    done = _states(_study(s.ws))
    assert list_runs(s.ws) == []  # killed while tuning: no run was saved
    n = sum(done.values()) + 2
    res = fit_head("logreg", "fake", workspace=s.ws, trials=n)
    after = _states(_study(s.ws))
    assert "RUNNING" not in after  # the killed process's trial was marked failed
    assert after.get("COMPLETE", 0) + after.get("PRUNED", 0) == n == res.trials
    assert after.get("FAIL", 0) <= 1
    assert [r.id for r in list_runs(s.ws)] == [res.run]
    assert not [p for p in s.ws.runs.iterdir() if p.name.startswith(".r")]


def test_two_processes_share_the_embedded_study(tmp_path: Path) -> None:
    s = make_synth(tmp_path, n=60, layers=3)
    fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=1)  # folds + study exist
    kw = {"workspace": str(s.ws.root), "trials": 12}
    procs = [_worker(kw) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    study = _study(s.ws)
    states = _states(study)
    assert states["COMPLETE"] + states.get("PRUNED", 0) == 12  # was 13 with two processes
    workers = {t.user_attrs.get("sslstack_worker") for t in study.trials}
    assert len(workers) >= 3  # the first call plus both processes
    assert len(list_runs(s.ws)) == 2  # the first call's and the study's one (was one each)
    said = [json.loads(out.strip().splitlines()[-1]) for out, _err in outs]
    assert said[0]["run"] == said[1]["run"] and said[0]["trials"] == said[1]["trials"] == 12


# ------------------------------------------------------------------ PostgreSQL
def _pg_bin(name: str) -> str | None:
    """The server binary itself (Debian puts it off PATH; its PATH wrappers need a cluster)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@pytest.fixture()
def postgres_url():
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not installed")
    pytest.importorskip("psycopg2")
    root = Path(tempfile.mkdtemp(prefix="sslstack-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = root / "data"
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    try:
        subprocess.run(
            [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.postgres
def test_two_workers_share_a_postgres_study(tmp_path: Path, postgres_url: str) -> None:
    s = make_synth(tmp_path, n=60, layers=3)
    first = fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=1, storage=postgres_url)
    kw = {"workspace": str(s.ws.root), "trials": 10, "storage": postgres_url}
    procs = [_worker(kw) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    study = optuna.load_study(study_name=first.study, storage=postgres_url)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 10 <= len(finished) <= 11
    assert len({t.user_attrs.get("sslstack_worker") for t in study.trials}) >= 3
    assert not list(s.ws.studies.glob("*.log"))  # nothing went to the embedded storage
    assert json.loads(outs[0][0].strip().splitlines()[-1])["study"] == first.study


def test_trials_of_dead_workers_are_failed_on_resume(tmp_path: Path) -> None:
    from sslstack.classify.tuning import fail_dead_trials, open_study
    from sslstack.workspace import Workspace

    ws = Workspace.at(tmp_path / "ws")
    study = open_study(ws, "s", "maximize")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for pid in (dead.pid, os.getpid()):  # one worker is gone, the other (this one) is alive
        trial = study.ask()
        trial.set_user_attr("sslstack_worker", f"{socket.gethostname()}:{pid}")
    assert fail_dead_trials(study) == 1
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "RUNNING"]


def test_trials_record_rounds_and_the_final_refit_uses_the_best_trials(tmp_path: Path) -> None:
    """Trials keep the early-stopped booster (no refit) and record each fold's rounds; the run
    refits the best configuration with exactly those rounds on each whole training part."""
    import math

    import xgboost as xgb

    from sslstack.classify.cv import ES_FRACTION
    from sslstack.runs import load_run

    s = make_synth(tmp_path, n=90, layers=2)
    res = fit_head("xgb", "fake", data=s.csv, workspace=s.ws, trials=3, folds=3, max_rounds=40)
    best = _study(s.ws).best_trial
    rounds = best.user_attrs["es_rounds"]
    assert len(rounds) == 3 and all(1 <= r <= 40 for r in rounds)
    run = load_run(s.ws, res.run)
    for k, r in enumerate(rounds):
        booster = xgb.Booster()
        booster.load_model(str(run.dir / "models" / f"fold{k}.ubj"))
        assert booster.num_boosted_rounds() == min(40, math.ceil(r / (1 - ES_FRACTION)))
