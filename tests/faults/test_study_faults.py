"""Optuna journals torn by kills or a full disk; resumed studies; duplicate and stale runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

from sslstack.classify import fit_head
from sslstack.classify.tuning import open_storage
from sslstack.errors import RunError
from sslstack.runs import list_runs
from tests.classify_synth import make_synth
from tests.faults.helpers import env, one_line_error


def _journal(ws) -> Path:  # noqa: ANN001
    (log,) = sorted(ws.studies.glob("*.log"))
    return log


def _trials(ws) -> list[tuple[str, dict, float | None]]:  # noqa: ANN001
    log = _journal(ws)
    name = log.name[: -len(".log")]
    study = optuna.load_study(study_name=name, storage=open_storage(ws, name))
    return [
        (t.state.name, t.params, t.value)
        for t in study.get_trials(deepcopy=False)
        if t.state.name in ("COMPLETE", "PRUNED")
    ]


@pytest.mark.parametrize("cut", [1, 17, 60])
def test_a_journal_with_a_torn_tail_is_repaired(tmp_path: Path, cut: int) -> None:
    s = make_synth(tmp_path, n=60, layers=2)
    fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=3)
    log = _journal(s.ws)
    before = _trials(s.ws)
    raw = log.read_bytes()
    log.write_bytes(raw[:-cut])  # a kill or a full disk in the middle of the last append
    with pytest.warns(UserWarning, match="torn byte"):
        res = fit_head("logreg", "fake", workspace=s.ws, trials=5)
    assert res.trials == 5
    after = _trials(s.ws)
    assert after[: len(before) - 1] == before[: len(before) - 1]  # the whole records kept
    assert list(log.parent.glob(f"{log.name}.torn-*"))  # the cut bytes are kept beside it


def test_a_torn_record_merged_with_the_next_append_is_salvaged(tmp_path: Path) -> None:
    s = make_synth(tmp_path, n=60, layers=2)
    fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=2)
    log = _journal(s.ws)
    lines = log.read_bytes().splitlines(keepends=True)
    # what a torn append followed by another process's append looks like (optuna < repair)
    lines[-2] = lines[-2][: len(lines[-2]) // 2] + lines[-1]
    log.write_bytes(b"".join(lines[:-1]))
    with pytest.warns(UserWarning, match="salvaged"):
        assert fit_head("logreg", "fake", workspace=s.ws, trials=4).trials == 4


def test_a_journal_damaged_in_the_middle_is_refused_in_one_line(tmp_path: Path) -> None:
    s = make_synth(tmp_path, n=60, layers=2)
    fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=2)
    log = _journal(s.ws)
    lines = log.read_bytes().splitlines(keepends=True)
    lines[3] = b"\x00garbage\n"
    log.write_bytes(b"".join(lines))
    with pytest.raises(RunError, match=r"line 4 of the Optuna journal is damaged.*head -n 3"):
        fit_head("logreg", "fake", workspace=s.ws, trials=3)


_FULL = textwrap.dedent(
    """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    size = int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    sys.argv = ["sslstack", "fit-head", "logreg", "-m", "fake", "--data", sys.argv[1],
                "-w", sys.argv[2], "--trials", "500"]
    from sslstack.cli import main
    main()
    """
)


def test_a_journal_that_hits_a_size_limit_is_one_line_and_the_study_resumes(
    tmp_path: Path,
) -> None:
    s = make_synth(tmp_path, n=60, layers=2)
    fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=1)
    limit = _journal(s.ws).stat().st_size + 24_000
    r = subprocess.run(
        [sys.executable, "-c", _FULL, str(s.csv), str(s.ws.root), str(limit)],
        capture_output=True,
        text=True,
        env=env(),
    )
    line = one_line_error(r)  # was: AssertionError: Should not reach.
    assert str(_journal(s.ws)) in line and "file too large" in line, line
    done = len(_trials(s.ws))
    res = fit_head("logreg", "fake", workspace=s.ws, trials=done + 2)  # torn tail repaired
    assert res.trials == done + 2


_KILLED = textwrap.dedent(
    """
    import json, sys, time
    import sslstack.classify.fit as fit
    real = fit.cross_validate
    def slow(*a, **k):
        print("cv", flush=True)
        time.sleep(0.4)
        return real(*a, **k)
    fit.cross_validate = slow
    kw = json.loads(sys.argv[1])
    fit.fit_head(kw.pop("head"), "fake", **kw)
    """
)


def _run_killed(kw: dict, after: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED, json.dumps(kw)],
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    assert proc.stdout is not None
    for _ in range(after):
        assert proc.stdout.readline().startswith("cv")
    os.kill(proc.pid, signal.SIGKILL)  # in the middle of trial `after - 1`
    proc.wait()


@pytest.mark.parametrize(("head", "after"), [("logreg", 4), ("logreg", 1), ("xgb", 1)])
def test_a_killed_and_resumed_study_reaches_the_same_trials_and_score(
    tmp_path: Path, head: str, after: int
) -> None:
    n = 6
    kw = {"trials": n, "max_rounds": 20} if head == "xgb" else {"trials": n}
    a = make_synth(tmp_path / "a", n=60, layers=3)
    straight = fit_head(head, "fake", data=a.csv, workspace=a.ws, **kw)
    b = make_synth(tmp_path / "b", n=60, layers=3)
    _run_killed({"head": head, "data": str(b.csv), "workspace": str(b.ws.root), **kw}, after)
    resumed = fit_head(head, "fake", data=b.csv, workspace=b.ws, **kw)
    assert _trials(b.ws) == _trials(a.ws)
    assert resumed.best_params == straight.best_params
    assert resumed.score == straight.score


def test_a_finished_study_rerun_saves_no_duplicate_and_stale_tmp_runs_go(tmp_path: Path) -> None:
    s = make_synth(tmp_path, n=60, layers=2)
    first = fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=3)
    stale = s.ws.runs / ".r0009-logreg-fake.tmp-999999999"  # a save killed midway
    (stale / "models").mkdir(parents=True)
    again = fit_head("logreg", "fake", workspace=s.ws, trials=3)
    fewer = fit_head("logreg", "fake", workspace=s.ws, trials=2)
    assert again.run == fewer.run == first.run and again.score == first.score
    assert any("nothing new was saved" in w for w in again.warnings)
    assert [r.id for r in list_runs(s.ws)] == [first.run]
    more = fit_head("logreg", "fake", workspace=s.ws, trials=4)  # a new trial: a new run
    assert more.run != first.run and len(list_runs(s.ws)) == 2
    assert not stale.exists()
    defaults = [fit_head("logreg", "fake", workspace=s.ws, trials=0).run for _ in range(2)]
    assert defaults[0] == defaults[1]


_DISK_FULL_AFTER_CREATE = textwrap.dedent(
    """
    import errno, sys
    from optuna.storages.journal import _storage as js
    real = js.JournalStorage._write_log
    seen = {"create": 0, "fail": False, "nth": int(sys.argv[3])}
    def write(self, op, log):
        if seen["fail"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, op, log)
        if op == js.JournalOperation.CREATE_TRIAL:
            seen["create"] += 1
            seen["fail"] = seen["create"] == seen["nth"]
    js.JournalStorage._write_log = write
    sys.argv = ["sslstack", "fit-head", "logreg", "-m", "fake", "--data", sys.argv[1],
                "-w", sys.argv[2], "--trials", "6"]
    from sslstack.cli import main
    main()
    """
)


@pytest.mark.parametrize("nth", [1, 3])
def test_a_full_disk_right_after_a_trial_starts_leaves_no_trial_running(
    tmp_path: Path, nth: int
) -> None:
    """The journal record after a trial's creation fails (a full disk): the trial must not stay
    RUNNING for good, and the resumed study must reach the undisturbed one's trials."""
    a = make_synth(tmp_path / "a", n=60, layers=3)
    straight = fit_head("logreg", "fake", data=a.csv, workspace=a.ws, trials=6)
    b = make_synth(tmp_path / "b", n=60, layers=3)
    r = subprocess.run(
        [sys.executable, "-c", _DISK_FULL_AFTER_CREATE, str(b.csv), str(b.ws.root), str(nth)],
        capture_output=True,
        text=True,
        env=env(),
    )
    assert "No space left" in one_line_error(r)
    resumed = fit_head("logreg", "fake", data=b.csv, workspace=b.ws, trials=6)
    log = _journal(b.ws)
    study = optuna.load_study(study_name=log.name[:-4], storage=open_storage(b.ws, log.name[:-4]))
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    assert _trials(b.ws) == _trials(a.ws)
    assert resumed.best_params == straight.best_params and resumed.score == straight.score


def test_a_journal_record_missing_a_key_is_one_line_not_a_key_error(tmp_path: Path) -> None:
    """A flipped bit in a key name: the line still parses, Optuna's replay raised KeyError."""
    s = make_synth(tmp_path, n=60, layers=2)
    fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=3)
    log = _journal(s.ws)
    lines = log.read_bytes().splitlines(keepends=True)
    n = next(i for i, ln in enumerate(lines) if b'"param_value_internal"' in ln)
    lines[n] = lines[n].replace(b'"param_value_internal"', b'"param_value_interoal"')
    log.write_bytes(b"".join(lines))
    r = subprocess.run(
        [sys.executable, "-m", "sslstack", "fit-head", "logreg", "-m", "fake", "-w",
         str(s.ws.root), "--trials", "4"],
        capture_output=True, text=True, env=env(),
    )  # fmt: skip
    assert f"line {n + 1} of the Optuna journal is damaged" in one_line_error(r)
