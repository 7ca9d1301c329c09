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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20, help="kills per section")
    ap.add_argument("--damage", type=int, default=10, help="damaged files per kind")
    ap.add_argument("--disk-tries", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="extract,compaction,fit-head,full-disk,damage")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    sections = {
        "extract": lambda r: extract_kills(r, args.kills, rng),
        "compaction": lambda r: compaction_kills(r, args.kills, rng),
        "fit-head": lambda r: fit_head_kills(r, args.kills, rng),
        "full-disk": lambda r: full_disk(r, args.disk_tries),
        "damage": lambda r: damage(r, rng, args.damage),
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
