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

from sslstack import extract
from sslstack.cache import find_store
from tests.audio_fixtures import write_dataset

from .helpers import assert_same_store, encoder_actor_pids, stored_copies

pytestmark = pytest.mark.usefixtures("ray_cluster")

REPO = Path(__file__).resolve().parents[2]
POOLS = ("mean", "std", "max")
# half a CPU per actor (see conftest); small calls so a run has many parts to interrupt
OPTS = {"workers": 2, "cpus_per_worker": 0.5, "items_per_call": 3}


def _both(man: Path, model: str, tmp: Path, atol: float = 1e-6, **kw: object) -> None:
    """Extract with the local executor and with Ray; the stores must be equal."""
    local = extract(man, model, workspace=tmp / "local", storage="float32", dtype="fp32", **kw)
    on_ray = extract(
        man, model, workspace=tmp / "ray", storage="float32", dtype="fp32",
        executor="ray", executor_options=OPTS, **kw,
    )
    assert on_ray.computed == local.computed == local.items and not on_ray.failed
    assert abs(on_ray.audio_seconds - local.audio_seconds) < 1e-6
    key = {k: v for k, v in kw.items() if k != "batch_seconds"}
    assert assert_same_store(tmp / "local", tmp / "ray", model, atol, **key) == local.items
    assert set(stored_copies(tmp / "ray", model).values()) == {1}


def test_ray_equals_local_logmel_clips_and_windows(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 14, sr=8000)
    _both(man, "logmel", tmp_path / "clips", pools=POOLS)
    _both(man, "logmel", tmp_path / "windows", pools=POOLS, window=0.4, hop=0.25)


def test_ray_equals_local_tiny_transformers(tmp_path: Path, tiny_model) -> None:
    """Batched alike (one clip per forward), the executors agree to 1e-6; batched as each
    likes, to the encoder's own padding noise (1e-5: see tests/extract/test_exact_batch.py)."""
    man = write_dataset(tmp_path / "d", 10, min_s=0.4, max_s=1.6)
    model = str(tiny_model("wav2vec2-layer"))
    _both(man, model, tmp_path / "alike", pools=("mean", "max"), batch_seconds=0.01)
    _both(man, model, tmp_path / "batched", 1e-5, pools=("mean", "max"), batch_seconds=4)
