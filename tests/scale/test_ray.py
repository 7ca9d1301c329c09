"""``sslstack extract --executor ray`` on a local Ray cluster: the same vectors as the local
executor, and no item lost or duplicated when an actor or the driver is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf

from sslstack import extract
from sslstack.embeddings import find_store
from tests.audio_fixtures import tone, write_dataset

from .helpers import actors_gone, assert_same_store, encoder_actor_pids, stored_copies

pytestmark = pytest.mark.usefixtures("ray_cluster")

REPO = Path(__file__).resolve().parents[2]
POOLS = ("mean", "std", "max")
# half a CPU per actor (see conftest); small calls so a run has many parts to interrupt
OPTS = {"workers": 1, "cpus_per_worker": 0.5, "items_per_call": 3}
# where items are decoded: in the encoder actor (the default without a GPU), or in decoding
# tasks that ship the arrays to it (the default with GPUs)
DECODE = pytest.mark.parametrize("in_actor", [True, False], ids=["actor-decodes", "decode-tasks"])


def _both(
    man: Path, model: str, tmp: Path, in_actor: bool, atol: float = 1e-6, **kw: object
) -> None:
    """Extract with the local executor and with Ray; the stores must be equal."""
    local = extract(man, model, workspace=tmp / "local", storage="float32", dtype="fp32", **kw)
    on_ray = extract(
        man,
        model,
        workspace=tmp / "ray",
        storage="float32",
        dtype="fp32",
        executor="ray",
        executor_options={**OPTS, "decode_in_actor": in_actor},
        **kw,
    )
    assert on_ray.computed == local.computed == local.items and not on_ray.failed
    assert abs(on_ray.audio_seconds - local.audio_seconds) < 1e-6
    key = {k: v for k, v in kw.items() if k != "batch_seconds"}
    assert assert_same_store(tmp / "local", tmp / "ray", model, atol, **key) == local.items
    assert set(stored_copies(tmp / "ray", model).values()) == {1}


@DECODE
def test_ray_equals_local_logmel_clips_and_windows(tmp_path: Path, in_actor: bool) -> None:
    """Clips, a 70 s recording (longer than log-mel's 60 s chunk: streamed in chunks by an actor
    that decodes, as locally; decoded whole in a decoding task and cut into chunks by the
    actor), and windows."""
    man = write_dataset(tmp_path / "d", 14, sr=8000)
    sf.write(tmp_path / "d" / "wav" / "long.wav", tone(70.0, 8000, seed=99), 8000)
    with man.open("a") as fh:
        fh.write("wav/long.wav,a\n")
    _both(man, "logmel", tmp_path / "clips", in_actor, pools=POOLS)
    _both(man, "logmel", tmp_path / "windows", in_actor, pools=POOLS, window=0.4, hop=0.25)


@DECODE
def test_ray_equals_local_tiny_transformers(tmp_path: Path, tiny_model, in_actor: bool) -> None:
    """Batched alike (one clip per forward) the executors agree to 1e-6. (Batched as each
    likes, they differ by the encoder's own padding noise, about 1e-6 relative here: see
    tests/extract/test_exact_batch.py.)"""
    man = write_dataset(tmp_path / "d", 10, min_s=0.4, max_s=1.6)
    model = str(tiny_model("wav2vec2-layer"))
    _both(man, model, tmp_path / "alike", in_actor, pools=("mean", "max"), batch_seconds=0.01)


def _parts(ws: Path) -> int:
    return len(list(ws.glob("stores/*/parts/part-*.h5")))


def test_actor_killed_mid_run_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 30, sr=8000, min_s=0.2, max_s=0.5)
    ws = tmp_path / "ray"
    assert actors_gone()  # the runs before this one have ended theirs
    killed: list[tuple[int, int]] = []

    def kill_an_actor_once_parts_appear() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            pids = encoder_actor_pids()
            if pids and _parts(ws) >= 2:
                os.kill(pids[0], signal.SIGKILL)
                killed.append((pids[0], _parts(ws)))
            time.sleep(0.005)

    killer = threading.Thread(target=kill_an_actor_once_parts_appear)
    killer.start()
    opts = {"workers": 2, "cpus_per_worker": 0.5, "items_per_call": 1}
    res = extract(
        man, "logmel", workspace=ws, storage="float32", executor="ray", executor_options=opts
    )
    killer.join()
    assert killed and killed[0][1] < 30  # killed while items were still to come
    assert res.computed == 30 and not res.failed
    extract(man, "logmel", workspace=tmp_path / "local", storage="float32")
    assert assert_same_store(tmp_path / "local", ws, "logmel") == 30
    assert set(stored_copies(ws, "logmel").values()) == {1}


_DRIVER = """
import sys
from sslstack import extract
try:
    extract(sys.argv[1], "logmel", workspace=sys.argv[2], storage="float32", executor="ray",
            executor_options={"address": sys.argv[3], "workers": 1, "cpus_per_worker": 0.5,
                              "items_per_call": 1})
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def _driver(man: Path, ws: Path, address: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    cmd = [sys.executable, "-c", _DRIVER, str(man), str(ws), address]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _stop_after(proc: subprocess.Popen[bytes], ws: Path, parts: int, sig: int) -> str:
    """Send ``sig`` once the store has ``parts`` parts; wait for the driver and its actors."""
    deadline = time.monotonic() + 120
    while _parts(ws) < parts and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
    proc.send_signal(sig)
    out = proc.communicate(timeout=60)[0].decode()
    assert actors_gone(), "the driver's actors outlived it"  # the cluster stopped them
    return out


def test_ctrl_c_then_driver_killed_keep_parts_and_rerun_computes_only_the_rest(
    tmp_path: Path, ray_cluster: str
) -> None:
    """Ctrl-C: the driver says so and exits 130; killed: nothing more. Either way the cluster's
    work for it stops, every part written stays, and a rerun computes exactly what is left."""
    man = write_dataset(tmp_path / "d", 40, sr=8000, min_s=0.2, max_s=0.5)
    ws = tmp_path / "ray"
    assert actors_gone()  # the runs before this one have ended theirs
    proc = _driver(man, ws, ray_cluster)
    out = _stop_after(proc, ws, 3, signal.SIGINT)
    assert proc.returncode == 130 and "interrupted" in out, out
    after_ctrl_c = len(find_store("logmel", ws).keys())
    proc = _driver(man, ws, ray_cluster)
    _stop_after(proc, ws, _parts(ws) + 3, signal.SIGKILL)
    time.sleep(1.0)  # a write task in flight when the driver went finishes or is gone
    kept = len(find_store("logmel", ws).keys())
    assert 0 < after_ctrl_c < kept < 40
    rerun = extract(
        man, "logmel", workspace=ws, storage="float32", executor="ray", executor_options=OPTS
    )
    assert (rerun.cached, rerun.computed) == (kept, 40 - kept)
    extract(man, "logmel", workspace=tmp_path / "local", storage="float32")
    assert assert_same_store(tmp_path / "local", ws, "logmel") == 40
    assert set(stored_copies(ws, "logmel").values()) == {1}


@DECODE
def test_progress_follows_each_part_and_a_bad_file_is_reported(
    tmp_path: Path, in_actor: bool
) -> None:
    """The driver's progress moves once per part as parts are written (the actor's, or a write
    task's after decoding tasks), ends at the run's totals, and a file that cannot be decoded is
    a failure naming it, not a lost item."""
    man = write_dataset(tmp_path / "d", 10, sr=8000)
    (tmp_path / "d" / "wav" / "bad.wav").write_bytes(b"RIFF not audio")
    with man.open("a") as fh:
        fh.write("wav/bad.wav,a\n")
    seen: list[tuple[int, float]] = []
    res = extract(
        man,
        "logmel",
        workspace=tmp_path / "ws",
        storage="float32",
        on_error="skip",
        executor="ray",
        executor_options={**OPTS, "decode_in_actor": in_actor},
        on_progress=lambda n, s: seen.append((n, s)),
    )
    assert res.computed == 10 and [f["id"] for f in res.failed] == ["wav/bad.wav"]
    assert "bad.wav" in res.failed[0]["error"]
    assert len(seen) >= 4  # 11 items, 3 per call
    assert [n for n, _ in seen] == sorted(n for n, _ in seen) and seen[-1][0] == 10
    assert abs(seen[-1][1] - res.audio_seconds) < 1e-6 and res.audio_seconds > 0
