"""The long fault campaign (``make faults``): kills at random points, a full disk, damaged files.

Run from the repository root::

    python -m tests.faults.campaign --kills 30 --seed 0 --out faults.json

Sections (each prints its figures; ``--out`` gets them all as JSON):

- ``extract``: SIGKILL of ``sslstack extract`` at a random moment (model load, decoding, a part
  being written, the final compaction); the next run must compute exactly what is missing, and
  the store must equal an uninterrupted run's bit for bit.
- ``compaction``: SIGKILL at a random moment of the compaction of a store of many small parts;
  the next run must clean the leftovers, lose nothing and equal the reference.
- ``fit-head``: SIGKILL of ``sslstack fit-head`` at random moments until the study holds its
  trials; every journal left behind must open, and the resumed study must reach the trials
  and the score of an uninterrupted one, with one run saved and no temporary folder left.
- ``full-disk`` (root only): ``extract`` and ``fit-head`` on a tmpfs of a few MiB filled up to
  a few KiB: one error line (never a segfault), no temporary file, and a rerun with space
  completes and equals the reference.
- ``damage``: truncated parts, damaged headers, flipped bits, torn journals, truncated
  ``oof.csv``: each is named and healed (or refused in one line), never read silently.
- ``flips``: one random bit flipped in one file of a whole workspace (every kind: run records,
  out-of-fold predictions, models, folds, dataset records, manifests, the hash memo, store
  keys and parts, study journals), then ``runs ls``, ``extract``, ``fit-head``, ``stack`` and
  ``report``, twice: counts tracebacks, silently different results, and blocked workspaces.
- ``model-disk`` (root only): a full disk while each head saves its models: one line naming
  the path, no half-written run, no trial left RUNNING, and the resumed study saves the run.
- ``audio``: truncated and header-inflated WAVs, an MP3 with garbage inside, a float WAV scaled
  by 1e30: each is an ``--on-error skip`` entry, never a vector, and no NaN enters the store.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tests.audio_fixtures import write_dataset
from tests.faults.helpers import damage_header, env, flip_bits, parts_of, truncate

POOLS = ("mean", "max")
PY = sys.executable


def _extract_cmd(man: Path, ws: Path, *extra: str) -> list[str]:
    return [
        PY,
        "-m",
        "sslstack",
        "extract",
        "--model",
        "logmel",
        "--data",
        str(man),
        "-w",
        str(ws),
        "--pool",
        ",".join(POOLS),
        "--batch-seconds",
        "1",
        "--json",
        *extra,
    ]


def _run_json(cmd: list[str]) -> dict[str, Any]:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env())
    if r.returncode != 0:
        raise SystemExit(f"campaign: {' '.join(cmd[3:6])} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _vectors(ws: Path) -> dict[str, dict[str, np.ndarray]]:
    from sslstack import load_embeddings
    from sslstack.embeddings import list_stores

    if not list_stores(ws):
        return {}
    out: dict[str, dict[str, np.ndarray]] = {}
    for pool in POOLS:
        try:
            ids, x = load_embeddings("logmel", 0, pool, workspace=ws)
        except Exception:  # noqa: BLE001 - an empty store has no layers yet
            return {}
        for i, row in zip(ids, x, strict=True):
            out.setdefault(i, {})[pool] = row
    return out


def _differing(a: dict, b: dict) -> int:
    """Items of ``a`` whose vectors differ from ``b`` (or are absent there)."""
    return sum(
        1
        for i, v in a.items()
        if i not in b or any(not np.array_equal(v[p], b[i][p]) for p in POOLS)
    )


def _wait_or_kill(proc: subprocess.Popen, delay: float) -> int:
    """Wait ``delay`` seconds for ``proc``, then SIGKILL it; 1 when it was killed."""
    try:
        proc.wait(timeout=delay)
        return 0  # finished before the kill
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return 1


def _kill_after(cmd: list[str], delay: float) -> int:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    return _wait_or_kill(proc, delay)


_EXTRACT = """
import sys
from sslstack import extract
print("go", flush=True)
extract(sys.argv[1], "logmel", workspace=sys.argv[2], batch_seconds=1.0, pools=("mean", "max"))
"""


def _go_then_kill(code: str, args: list[str], delay: float) -> int:
    """Start ``code``; once it prints its first line, SIGKILL it after ``delay`` seconds."""
    proc = subprocess.Popen([PY, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env())
    assert proc.stdout is not None
    proc.stdout.readline()
    return _wait_or_kill(proc, delay)


def _time_after_go(code: str, args: list[str]) -> float:
    proc = subprocess.Popen([PY, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env())
    assert proc.stdout is not None
    proc.stdout.readline()
    t0 = time.perf_counter()
    proc.wait()
    return time.perf_counter() - t0


def extract_kills(root: Path, n: int, rng: random.Random) -> dict[str, Any]:
    items = 120
    man = write_dataset(root / "d", items, min_s=0.2, max_s=0.8)
    ref_ws = root / "ref"
    _run_json(_extract_cmd(man, ref_ws))
    span = _time_after_go(_EXTRACT, [str(man), str(root / "timing")])
    ref = _vectors(ref_ws)
    ws = root / "ws"
    fig = {
        "items": items,
        "kills": 0,
        "kills_with_items_stored": 0,
        "items_lost": 0,
        "items_recomputed": 0,
        "extra_recomputed": 0,
        "items_differing": 0,
        "finished_before_kill": 0,
        "rounds": n,
        "run_seconds": round(span, 2),
    }
    for _ in range(n):
        shutil.rmtree(ws, ignore_errors=True)
        after: dict = {}
        for _kill in range(rng.choice((1, 2))):  # sometimes a kill of the resumed run too
            before = after
            killed = _go_then_kill(_EXTRACT, [str(man), str(ws)], rng.uniform(0, span))
            fig["kills"] += killed
            fig["finished_before_kill"] += 1 - killed
            after = _vectors(ws)
            fig["kills_with_items_stored"] += int(killed and 0 < len(after) < items)
            fig["items_lost"] += len(set(before) - set(after))
            fig["items_differing"] += _differing(after, ref)
        res = _run_json(_extract_cmd(man, ws))
        fig["items_recomputed"] += res["computed"]
        fig["extra_recomputed"] += res["computed"] - (items - len(after))
        fig["items_differing"] += _differing(_vectors(ws), ref) + _differing(ref, _vectors(ws))
    return fig


_NO_COMPACT = """
import sys
import sslstack.cache.committer as committer
committer.compact_parts = lambda store, command="": 0
from sslstack import extract
extract(sys.argv[1], "logmel", workspace=sys.argv[2], batch_seconds=0.5, pools=("mean", "max"))
"""

_COMPACT = """
import os, signal, sys
import sslstack.cache.writer as store
from sslstack.embeddings import find_store
mode, arg = sys.argv[2], float(sys.argv[3])
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
if mode == "write":  # killed with a fraction `arg` of the merged part written
    def write(path, data):
        path.write_bytes(data[: int(len(data) * arg)])
        die()
    store._write_bytes = write
elif mode == "delete":  # killed after deleting a fraction `arg` of the merged parts
    def delete(st):
        live = set(st._live_parts())
        gone = [n for n in st._part_names() if n not in live]
        for name in gone[: int(len(gone) * arg)]:
            (st.path / "parts" / name).unlink()
        die()
    import sslstack.cache.committer as committer
    committer.delete_superseded = delete
st = find_store("logmel", sys.argv[1])
st.verify()
print("go", flush=True)
with st.writer("campaign"):
    pass  # leaving the writer compacts
"""


def compaction_kills(root: Path, n: int, rng: random.Random) -> dict[str, Any]:
    items = 80
    man = write_dataset(root / "d", items, min_s=0.2, max_s=0.6)
    ref_ws, template = root / "ref", root / "template"
    _run_json(_extract_cmd(man, ref_ws))
    subprocess.run([PY, "-c", _NO_COMPACT, str(man), str(template)], env=env(), check=True)
    ref = _vectors(ref_ws)
    from sslstack.embeddings import find_store

    n_parts = len(parts_of(find_store("logmel", template).path))
    shutil.copytree(template, root / "timing")
    span = _time_after_go(_COMPACT, [str(root / "timing"), "time", "0"])
    fig: dict[str, Any] = {
        "kills": 0,
        "kills_time": 0,
        "kills_write": 0,
        "kills_delete": 0,
        "parts_before": n_parts,
        "compaction_seconds": round(span, 3),
        "leftovers_seen": 0,
        "leftovers_after_rerun": 0,
        "items_lost": 0,
        "items_recomputed": 0,
        "items_differing": 0,
        "rounds": n,
    }
    for _ in range(n):
        ws = root / "ws"
        shutil.rmtree(ws, ignore_errors=True)
        shutil.copytree(template, ws)
        mode = rng.choice(("time", "write", "delete"))
        if mode == "time":  # at a random moment
            killed = _go_then_kill(_COMPACT, [str(ws), mode, "0"], rng.uniform(0, span))
        else:  # at a random point of writing the merged part, or of deleting the merged ones
            args = [PY, "-c", _COMPACT, str(ws), mode, str(rng.random())]
            p = subprocess.run(args, env=env(), stdout=subprocess.DEVNULL)
            killed = int(p.returncode == -signal.SIGKILL)
        fig["kills"] += killed
        fig[f"kills_{mode}"] += killed
        st = find_store("logmel", ws)
        left = st.leftovers()
        fig["leftovers_seen"] += int(left["temporary"] + left["superseded"] > 0)
        fig["items_lost"] += items - len(_vectors(ws))
        res = _run_json(_extract_cmd(man, ws))
        fig["items_recomputed"] += res["computed"]
        fig["leftovers_after_rerun"] += int(st.leftovers()["wasted_bytes"] > 0)
        fig["items_differing"] += _differing(_vectors(ws), ref) + _differing(ref, _vectors(ws))
    return fig


def _fit_cmd(csv: Path, ws: Path, trials: int) -> list[str]:
    return [
        PY,
        "-m",
        "sslstack",
        "fit-head",
        "logreg",
        "-m",
        "fake",
        "--data",
        str(csv),
        "-w",
        str(ws),
        "--trials",
        str(trials),
        "--json",
    ]


def _study_trials(ws: Path) -> list[tuple[Any, ...]]:
    import optuna

    from sslstack.classify.tuning import open_storage
    from sslstack.workspace import Workspace

    w = Workspace.at(ws)
    logs = sorted(w.studies.glob("*.log"))
    if not logs:
        return []
    name = logs[0].name[: -len(".log")]
    with contextlib.suppress(Exception), _quiet():
        st = optuna.load_study(study_name=name, storage=open_storage(w, name))
        return [
            (t.state.name, json.dumps(t.params, sort_keys=True), t.value)
            for t in st.get_trials(deepcopy=False)
            if t.state.name in ("COMPLETE", "PRUNED")
        ]
    raise RuntimeError(f"study journal {logs[0]} does not open")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def fit_head_kills(root: Path, n: int, rng: random.Random) -> dict[str, Any]:
    from sslstack.runs import list_runs
    from sslstack.workspace import Workspace
    from tests.classify_synth import make_synth

    trials = 12
    a = make_synth(root / "a", n=80, layers=3)
    t0 = time.perf_counter()
    straight = _run_json(_fit_cmd(a.csv, a.ws.root, trials))
    span = time.perf_counter() - t0
    b = make_synth(root / "b", n=80, layers=3)
    fig = {"kills": 0, "unreadable_journals": 0, "rounds": n}
    for _ in range(n):
        fig["kills"] += _kill_after(_fit_cmd(b.csv, b.ws.root, trials), rng.uniform(1.0, span))
        try:
            _study_trials(b.ws.root)
        except RuntimeError:
            fig["unreadable_journals"] += 1
    resumed = _run_json(_fit_cmd(b.csv, b.ws.root, trials))
    again = _run_json(_fit_cmd(b.csv, b.ws.root, trials))
    runs = list_runs(Workspace.at(b.ws.root))
    fig.update(
        same_trials=_study_trials(b.ws.root) == _study_trials(a.ws.root),
        score_uninterrupted=straight["score"],
        score_resumed=resumed["score"],
        rerun_saved_new_run=again["run"] != resumed["run"],
        runs_saved=len(runs),
        stale_tmp_folders=len(list(b.ws.runs.glob(".*.tmp-*"))),
    )
    return fig


@contextlib.contextmanager
def _tmpfs(size: str) -> Iterator[Path | None]:
    mnt = Path(tempfile.mkdtemp(prefix="sslstack-fulldisk-"))
    ok = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield mnt if ok else None
    finally:
        if ok:
            subprocess.run(["umount", str(mnt)], check=False)
        shutil.rmtree(mnt, ignore_errors=True)


def _fill(mnt: Path, leave: int) -> Path:
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    filler = mnt / "filler"
    subprocess.run(["fallocate", "-l", str(max(0, free - leave)), str(filler)], check=True)
    return filler


def full_disk(root: Path, tries: int) -> dict[str, Any]:
    from tests.classify_synth import make_synth

    man = write_dataset(root / "d", 120, min_s=0.2, max_s=0.6)
    ref_ws = root / "ref"
    _run_json(_extract_cmd(man, ref_ws))
    ref = _vectors(ref_ws)
    fig: dict[str, Any] = {
        "runs": 0,
        "segfaults": 0,
        "one_line_errors": 0,
        "tracebacks": 0,
        "tmp_left": 0,
        "items_differing": 0,
        "fit_head_one_line": 0,
        "fit_head_resumed": 0,
    }
    with _tmpfs("8m") as mnt:
        if mnt is None:
            return {"skipped": "needs root and tmpfs"}
        for k in range(tries):
            ws = mnt / f"ws{k}"
            syn = _synth_on(make_synth, mnt, k)
            filler = _fill(mnt, leave=(k + 1) * 40_000)
            for cmd in (_extract_cmd(man, ws), _fit_cmd(*syn, 500)):
                r = subprocess.run(cmd, capture_output=True, text=True, env=env())
                fig["runs"] += 1
                fig["segfaults"] += int(r.returncode in (-11, 139))
                fig["tracebacks"] += int("Traceback" in r.stderr)
                errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
                fig["one_line_errors"] += int(r.returncode == 1 and len(errors) == 1)
                if "fit-head" in cmd:
                    fig["fit_head_one_line"] += int(len(errors) == 1)
            fig["tmp_left"] += len(list(ws.glob("stores/*/parts/.*.tmp")))
            filler.unlink()
            _run_json(_extract_cmd(man, ws))
            fig["items_differing"] += _differing(_vectors(ws), ref) + _differing(ref, _vectors(ws))
            fig["fit_head_resumed"] += int(
                subprocess.run(_fit_cmd(*syn, 3), capture_output=True, env=env()).returncode == 0
            )
            shutil.rmtree(ws, ignore_errors=True)
    return fig


def _synth_on(make_synth: Any, mnt: Path, k: int) -> tuple[Path, Path]:
    folder = Path(tempfile.gettempdir()) / f"sslstack-fulldisk-synth-{os.getpid()}-{k}"
    csv = folder / "audio" / "train.csv"
    if not csv.exists():
        make_synth(folder, n=60, layers=2)
    ws = mnt / f"fit{k}"
    if not ws.exists():  # the synthetic store lives on the small disk too
        shutil.copytree(folder / "ws", ws)
    return csv, ws


def damage(root: Path, rng: random.Random, n: int) -> dict[str, Any]:
    man = write_dataset(root / "d", 40, min_s=0.2, max_s=0.6)
    ref_ws = root / "ref"
    _run_json(_extract_cmd(man, ref_ws))
    ref = _vectors(ref_ws)
    fig: dict[str, Any] = {}
    from sslstack.embeddings import find_store

    harms = {
        "truncated": lambda p: truncate(p, rng.uniform(0.05, 0.95)),
        "header": damage_header,
        "flipped": lambda p: flip_bits(
            p, f"clip/{rng.choice(POOLS)}", rng.randint(1, 64), rng.randint(0, 10**6)
        ),
    }
    for what, harm in harms.items():
        f = {
            "files": 0,
            "named": 0,
            "read_silently": 0,
            "items_recomputed": 0,
            "items_differing": 0,
        }
        for _ in range(n):
            ws = root / f"ws-{what}"
            shutil.rmtree(ws, ignore_errors=True)
            shutil.copytree(ref_ws, ws)
            harm(parts_of(find_store("logmel", ws).path)[0])
            f["files"] += 1
            import warnings

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                seen = _vectors(ws)
            f["read_silently"] += _differing(seen, ref)
            r = subprocess.run(_extract_cmd(man, ws), capture_output=True, text=True, env=env())
            told = "is damaged" in r.stderr or any("is damaged" in str(w.message) for w in caught)
            f["named"] += int(told and r.returncode == 0)
            f["items_recomputed"] += json.loads(r.stdout.strip().splitlines()[-1])["computed"]
            f["items_differing"] += _differing(_vectors(ws), ref) + _differing(ref, _vectors(ws))
        fig[what] = f
    fig["journal"] = _torn_journals(root, rng, n)
    fig["oof"] = _truncated_oof(root, rng, n)
    return fig


def _torn_journals(root: Path, rng: random.Random, n: int) -> dict[str, int]:
    from tests.classify_synth import make_synth

    s = make_synth(root / "j", n=60, layers=2)
    _run_json(_fit_cmd(s.csv, s.ws.root, 3))
    (log,) = s.ws.studies.glob("*.log")
    good = log.read_bytes()
    f = {"cuts": 0, "resumed": 0, "one_line_refusals": 0}
    for _ in range(n):
        log.write_bytes(good[: -rng.randint(1, 400)])
        f["cuts"] += 1
        r = subprocess.run(_fit_cmd(s.csv, s.ws.root, 4), capture_output=True, text=True, env=env())
        f["resumed"] += int(r.returncode == 0)
        f["one_line_refusals"] += int(r.returncode != 0 and "Traceback" not in r.stderr)
    return f


def _truncated_oof(root: Path, rng: random.Random, n: int) -> dict[str, int]:
    from sslstack.runs import list_runs
    from tests.classify_synth import make_synth

    s = make_synth(root / "o", n=80, layers=2)
    res = _run_json(_fit_cmd(s.csv, s.ws.root, 2))
    (run,) = list_runs(s.ws)
    good = run.oof_path.read_bytes()
    f = {"cuts": 0, "refused": 0, "accepted": 0}
    for _ in range(n):
        run.oof_path.write_bytes(good[: rng.randint(20, len(good) - 1)])
        r = subprocess.run(
            [PY, "-m", "sslstack", "stack", "--runs", res["run"], "-w", str(s.ws.root)],
            capture_output=True,
            text=True,
            env=env(),
        )
        f["cuts"] += 1
        f["refused"] += int(r.returncode != 0 and "Traceback" not in r.stderr)
        f["accepted"] += int(r.returncode == 0)
    run.oof_path.write_bytes(good)
    return f


# -- random byte flips in every kind of workspace file ------------------------------------------

_KINDS = {
    "run.json": "runs/r*/run.json",
    "oof.csv": "runs/r*/oof.csv",
    "model": "runs/r*/models/*",
    "folds.csv": "datasets/*/folds.csv",
    "folds.json": "datasets/*/folds.json",
    "dataset.json": "datasets/*/dataset.json",
    "manifest.csv": "datasets/*/manifest.csv",
    "hashes.csv": "datasets/*/hashes.csv",
    "key.json": "stores/*/key.json",
    "part": "stores/*/parts/part-*.h5",
    "journal": "studies/*.log",
}

_FLIP_DRIVER = """
import contextlib, io, json, sys, traceback, warnings
from sslstack.cli import app
out = []
for args in json.loads(sys.argv[1]):
    o, e = io.StringIO(), io.StringIO()
    rc, tb = 0, None
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        try:
            rc = app(args, standalone_mode=False) or 0
        except SystemExit as x:
            rc = x.code or 0
        except BaseException:
            rc, tb = 99, traceback.format_exc()
    out.append({"args": args[:1], "rc": rc, "stdout": o.getvalue(), "stderr": e.getvalue(),
                "traceback": tb})
print(json.dumps(out))
"""


def _flip_commands(man: Path, ws: Path, html: Path) -> list[list[str]]:
    w = ["-w", str(ws)]
    return [
        ["runs", "ls", *w, "--json"],
        ["extract", "--model", "logmel", "--data", str(man), *w, "--pool", "mean,max", "--json"],
        [
            "fit-head",
            "logreg",
            "-m",
            "logmel",
            "--data",
            str(man),
            *w,
            "--trials",
            "3",
            "--positive",
            "b",
            "--json",
        ],  # fmt: skip
        ["stack", *w, "--method", "mean", "--json"],
        ["report", *w, "--out", str(html)],
    ]


def _drive(cmds: list[list[str]]) -> list[dict[str, Any]]:
    r = subprocess.run([PY, "-c", _FLIP_DRIVER, json.dumps(cmds)], capture_output=True,
                       text=True, env=env())  # fmt: skip
    if r.returncode != 0:  # the interpreter itself died (a segfault): count it as a traceback
        return [{"args": ["python"], "rc": r.returncode, "stdout": "", "stderr": r.stderr,
                 "traceback": r.stderr[-2000:] or "died"}]  # fmt: skip
    return json.loads(r.stdout.strip().splitlines()[-1])


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        with contextlib.suppress(ValueError):
            return json.loads(line)
    return None


def _told(res: dict[str, Any]) -> bool:
    return "warning:" in res["stderr"] or "error:" in res["stderr"]


def flips(root: Path, n: int, rng: random.Random, only: str = "") -> dict[str, Any]:
    man = write_dataset(root / "d", 24, min_s=0.2, max_s=0.5)
    tpl = root / "tpl"
    xgb = ["fit-head", "xgb", "-m", "logmel", "--data", str(man), "-w", str(tpl), "--trials",
           "2", "--max-rounds", "10", "--positive", "b"]  # fmt: skip
    cmds = _flip_commands(man, tpl, root / "ref.html")
    ref = _drive([*cmds[1:3], xgb, *cmds[3:]])
    assert all(r["rc"] == 0 for r in ref), ref
    ref = [ref[0], ref[0], ref[1], ref[3]]  # as _flip_commands orders them (runs ls unused)
    ref_vec = _vectors(tpl)
    ref_fit = _last_json(ref[2]["stdout"])["score"]
    ref_stack = _last_json(ref[3]["stdout"])["score"]
    kinds = {k: sorted(tpl.glob(g)) for k, g in _KINDS.items()}
    fig: dict[str, Any] = {"flips": 0, "tracebacks": 0, "silent": 0, "blocked": 0, "by_kind": {}}
    names = [k for k in kinds if kinds[k] and (not only or k in only.split(","))]
    for i in range(n):
        kind = names[i % len(names)]
        target = rng.choice(kinds[kind]).relative_to(tpl)
        ws = root / "ws"
        shutil.rmtree(ws, ignore_errors=True)
        shutil.copytree(tpl, ws)
        raw = bytearray((ws / target).read_bytes())
        pos = rng.randrange(len(raw))
        raw[pos] ^= 1 << rng.randrange(8)
        (ws / target).write_bytes(bytes(raw))
        cmds = _flip_commands(man, ws, root / "out.html")
        first = _drive(cmds)
        # what the next attempt meets, without any repair by hand (the same when all passed)
        second = _drive(cmds) if any(r["rc"] != 0 for r in first) else first
        k = fig["by_kind"].setdefault(kind, {"flips": 0, "healed": 0, "refused": 0, "bad": 0})
        k["flips"] += 1
        fig["flips"] += 1
        tb = [r for r in first + second if r["traceback"] or "Traceback" in r["stderr"]]
        silent = _silent(first, ws, ref_vec, ref_fit, ref_stack)
        # blocked: a command still fails the second time without a one-line error naming a file
        failing = [r for r in second if r["rc"] != 0]
        blocked = [r for r in failing if not _names_a_file(r["stderr"])]
        fig["tracebacks"] += int(bool(tb))
        fig["silent"] += int(bool(silent))
        fig["blocked"] += int(bool(blocked))
        k["refused"] += int(bool(failing) and not blocked)
        k["healed"] += int(not failing)
        k["bad"] += int(bool(tb or silent or blocked))
        if tb or silent or blocked:
            what = tb[0]["traceback"] or tb[0]["stderr"] if tb else (silent or blocked[0]["stderr"])
            fig.setdefault("cases", []).append(
                {"file": str(target), "byte": pos, "what": str(what)[-600:]}
            )
    return fig


def _names_a_file(stderr: str) -> bool:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    return len(lines) == 1 and "/" in lines[0]


def _silent(
    first: list[dict[str, Any]], ws: Path, ref_vec: dict, ref_fit: float, ref_stack: float
) -> str | None:
    """What differs from the undamaged workspace's results without a word, if anything."""
    ex, fit, st = first[1], first[2], first[3]
    if ex["rc"] == 0 and not _told(ex):
        vec = _vectors(ws)
        if _differing(vec, ref_vec) + _differing(ref_vec, vec):
            return "extract: vectors differ from the reference"
    got = _last_json(fit["stdout"]) if fit["rc"] == 0 else None
    if got is not None and got.get("score") != ref_fit and not _told(fit):
        return f"fit-head: score {got.get('score')} != {ref_fit}"
    got = _last_json(st["stdout"]) if st["rc"] == 0 else None
    if got is not None and got.get("score") != ref_stack and not _told(st) and not _told(fit):
        return f"stack: score {got.get('score')} != {ref_stack}"
    return None


# -- a full disk while each head saves its models ------------------------------------------------


_MODEL_DISK = """
import os, subprocess, sys
import sslstack.classify.fit as fit
real = fit._save_models
filler, leave = sys.argv[1], int(sys.argv[2])
def full(hd, models, folder, *rest):  # the disk fills up just as the models are written
    st = os.statvfs(folder.parent)
    size = max(1, st.f_bavail * st.f_frsize - leave)
    subprocess.run(["fallocate", "-l", str(size), filler], check=True)
    return real(hd, models, folder, *rest)
fit._save_models = full
sys.argv = ["sslstack", *sys.argv[3:]]
from sslstack.cli import main
main()
"""


def model_disk(root: Path) -> dict[str, Any]:
    """Each head fitted on a small tmpfs that fills up (leaving a few KiB) just as the run's
    models are written: one error line naming the path, no half-written run, no trial left
    RUNNING; then, with the space back, the same command saves the run."""
    from sslstack.classify.heads import HEADS
    from tests.classify_synth import make_synth

    fig: dict[str, Any] = {}
    with _tmpfs("32m") as mnt:
        if mnt is None:
            return {"skipped": "needs root and tmpfs"}
        for head in HEADS.names():
            for leave in (0, 4_000):
                src = make_synth(root / f"{head}-{leave}", n=60, layers=2)
                ws = mnt / head
                shutil.copytree(src.ws.root, ws)
                args = ["fit-head", head, "-m", "fake", "--data", str(src.csv), "-w", str(ws),
                        "--trials", "2", "--max-rounds", "20", "--json"]  # fmt: skip
                filler = mnt / "filler"
                r = subprocess.run([PY, "-c", _MODEL_DISK, str(filler), str(leave), *args],
                                   capture_output=True, text=True, env=env())  # fmt: skip
                errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
                running = _running_trials(ws)
                half = [p.name for p in (ws / "runs").glob(".*tmp*")]
                filler.unlink(missing_ok=True)
                again = subprocess.run([PY, "-m", "sslstack", *args], capture_output=True,
                                       text=True, env=env())  # fmt: skip
                fig[f"{head}-leave{leave}"] = {
                    "rc": r.returncode,
                    "one_line": r.returncode == 1 and len(errors) == 1,
                    "line": errors[0][:220] if errors else r.stderr[-300:],
                    "tracebacks": int("Traceback" in r.stderr),
                    "half_written": half,
                    "running_trials": running,
                    "resumed_rc": again.returncode,
                    "runs_after_resume": len(list((ws / "runs").glob("r*/run.json"))),
                }
                shutil.rmtree(ws, ignore_errors=True)
    return fig


def _running_trials(ws: Path) -> int:
    import optuna

    from sslstack.classify.tuning import open_storage
    from sslstack.workspace import Workspace

    w = Workspace.at(ws)
    n = 0
    for log in w.studies.glob("*.log"):
        name = log.name[: -len(".log")]
        with contextlib.suppress(Exception), _quiet():
            st = optuna.load_study(study_name=name, storage=open_storage(w, name))
            n += sum(t.state.name == "RUNNING" for t in st.trials)
    return n


# -- bad audio ------------------------------------------------------------------------------------


def bad_audio(root: Path) -> dict[str, Any]:
    from tests.faults.test_audio_faults import BAD

    man = write_dataset(root / "d", 4, min_s=0.3, max_s=0.5)
    names = []
    for kind, (make, ext, _m) in BAD.items():
        make(man.parent / "wav" / f"{kind}.{ext}")
        names.append(f"wav/{kind}.{ext}")
    with open(man, "a") as fh:
        fh.writelines(f"{n},a\n" for n in names)
    ws = root / "ws"
    res = _run_json(_extract_cmd(man, ws, "--on-error", "skip"))
    from sslstack import load_embeddings

    ids, x = load_embeddings("logmel", 0, "mean", workspace=ws)
    return {
        "bad_files": len(names),
        "skipped_with_a_reason": sum(f["id"] in names for f in res["failed"]),
        "stored_from_bad_files": sum(i in names for i in ids),
        "non_finite_values_stored": int((~np.isfinite(x)).sum()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20, help="kills per section")
    ap.add_argument("--damage", type=int, default=10, help="damaged files per kind")
    ap.add_argument("--disk-tries", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--flips", type=int, default=110, help="random byte flips (flips section)")
    ap.add_argument("--kinds", default="", help="flips: only these file kinds (comma list)")
    ap.add_argument(
        "--only",
        default="extract,compaction,fit-head,full-disk,damage,flips,model-disk,audio",
    )
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    sections = {
        "extract": lambda r: extract_kills(r, args.kills, rng),
        "compaction": lambda r: compaction_kills(r, args.kills, rng),
        "fit-head": lambda r: fit_head_kills(r, args.kills, rng),
        "full-disk": lambda r: full_disk(r, args.disk_tries),
        "damage": lambda r: damage(r, rng, args.damage),
        "flips": lambda r: flips(r, args.flips, rng, args.kinds),
        "model-disk": model_disk,
        "audio": bad_audio,
    }
    figures: dict[str, Any] = {"seed": args.seed, "kills_per_section": args.kills}
    with tempfile.TemporaryDirectory(prefix="sslstack-faults-") as tmp:
        for name in args.only.split(","):
            t0 = time.perf_counter()
            figures[name] = sections[name](Path(tmp) / name)
            figures[name]["seconds"] = round(time.perf_counter() - t0, 1)
            print(f"{name}: {json.dumps(figures[name], sort_keys=True)}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
