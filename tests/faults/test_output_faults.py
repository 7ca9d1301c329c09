"""User text that looks like markup or mathtext; truncated out-of-fold files; Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sslstack.ensemble import report, stack
from sslstack.errors import DataError
from sslstack.runs import list_runs
from tests import ensemble_synth
from tests.classify_synth import make_synth
from tests.ensemble_synth import add_run, make_dataset, probs
from tests.faults.helpers import cli, env, one_line_error


@pytest.mark.parametrize("name", ["missing[/i].wav", "[bold]x.wav", "[red]y[/red].wav"])
def test_bracketed_paths_are_printed_literally(tmp_path: Path, name: str) -> None:
    (tmp_path / "m.csv").write_text(f"path,label\n{name},a\n")
    r = cli(
        "extract", "--model", "logmel", "--data", str(tmp_path / "m.csv"), "-w", "ws", cwd=tmp_path
    )
    # rich's MarkupError used to crash the error message itself; '[bold]' vanished
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: ") and name in r.stderr, r.stderr


def test_bracketed_run_names_and_labels_in_tables(tmp_path: Path) -> None:
    s = make_dataset(tmp_path, "binary", n=60)
    add_run(s, probs(s, 1.0, seed=1), "logreg", meta={"encoder": "[bold]enc/[x]"})
    r = cli("runs", "ls", "-w", str(s.ws.root))
    assert r.returncode == 0, r.stderr
    assert "[bold]enc/[x]" in r.stdout, r.stdout


def test_labels_with_dollars_are_plotted_literally(tmp_path: Path, monkeypatch) -> None:
    labels = ("$a$", "$\\foo{$", "cost $5 or $6", "[b]")  # '$\\foo{$' is bad mathtext
    monkeypatch.setitem(ensemble_synth.LABELS, "multiclass", labels)
    s = make_dataset(tmp_path, "multiclass", n=80)
    for seed in (1, 2):
        add_run(s, probs(s, 1.0 + seed, seed=seed), f"logreg-{seed}")
    stack(s.ws, method="mean")
    res = report(s.ws, out=tmp_path / "r.html")  # mathtext used to raise ParseFatalException
    html = (tmp_path / "r.html").read_text()
    assert res["plots"] >= 2 and "<img" in html


def _truncate_oof(run_dir: Path, keep: int) -> None:
    frame = pd.read_csv(run_dir / "oof.csv", dtype={"id": str})
    frame.iloc[:keep].to_csv(run_dir / "oof.csv", index=False, float_format="%.9g")


def test_a_truncated_oof_is_refused_even_for_one_run(tmp_path: Path) -> None:
    s = make_dataset(tmp_path, "multiclass", n=100)
    run = add_run(s, probs(s, 1.5, seed=1), "logreg")
    (r,) = list_runs(s.ws)
    _truncate_oof(r.dir, 90)
    with pytest.raises(DataError, match=r"oof.csv differs from the file saved.*90 rows, 100"):
        stack(s.ws, runs=[run], method="mean")
    res = cli("stack", "--runs", run, "-w", str(s.ws.root))
    assert "truncated or edited" in one_line_error(res)


def test_an_edited_oof_probability_is_refused(tmp_path: Path) -> None:
    s = make_dataset(tmp_path, "binary", n=60)
    run = add_run(s, probs(s, 1.5, seed=1), "logreg")
    (r,) = list_runs(s.ws)
    text = (r.dir / "oof.csv").read_text().splitlines()
    cells = text[5].split(",")
    cells[2] = "0.5"
    text[5] = ",".join(cells)
    (r.dir / "oof.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match="checksum mismatch"):
        stack(s.ws, runs=[run], method="mean")


def test_an_old_run_without_checksum_is_still_checked_against_the_folds(tmp_path: Path) -> None:
    s = make_dataset(tmp_path, "binary", n=60)
    run = add_run(s, probs(s, 1.5, seed=1), "logreg")
    (r,) = list_runs(s.ws)
    frame = pd.read_csv(r.dir / "oof.csv", dtype={"id": str})
    frame.loc[3, "fold"] = (frame.loc[3, "fold"] + 1) % 5  # a row moved to another fold
    frame.to_csv(r.dir / "oof.csv", index=False)
    import json

    meta = json.loads((r.dir / "run.json").read_text())
    for key in ("oof_sha256", "_sha256", "files"):  # as a run saved before checksums
        meta.pop(key)
    meta["schema"] = 2
    (r.dir / "run.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="disagree with the dataset's folds"):
        stack(s.ws, runs=[run], method="mean")


_SLOW_FIT = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even when the
# test runs in a background job (which starts children with SIGINT ignored)
import sslstack.classify.fit as fit
real = fit.cross_validate
def slow(*a, **k):
    print("fold", flush=True)
    time.sleep(0.5)
    return real(*a, **k)
fit.cross_validate = slow
sys.argv = ["sslstack", "fit-head", "logreg", "-m", "fake", "--data", sys.argv[1], "-w",
            sys.argv[2], "--trials", "50"]
from sslstack.cli import main
main()
"""


def test_ctrl_c_during_fit_head_prints_one_line(tmp_path: Path) -> None:
    s = make_synth(tmp_path, n=60, layers=2)
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_FIT, str(s.csv), str(s.ws.root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    assert proc.stdout is not None
    for _ in range(3):
        assert proc.stdout.readline().startswith("fold")
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    progress = ("trial ", "first trial: ")  # the progress lines before the interrupt
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(progress)]
    assert lines == ["interrupted: everything written so far is kept"], err
    assert np.isfinite(1.0)
