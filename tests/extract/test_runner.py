"""The extraction runner and store, end to end with the built-in logmel encoder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sslstack import extract, load_embeddings
from sslstack.audio import load_audio
from sslstack.embeddings import find_store, list_stores
from sslstack.errors import AudioError, ManifestError, StoreError
from sslstack.extract.logmel import LogMelEncoder
from tests.audio_fixtures import tone, write_dataset

REPO = Path(__file__).resolve().parents[2]


def _reference_logmel(path: Path) -> dict[str, np.ndarray]:
    """Log-mel frames of one clip computed alone, pooled with plain numpy."""
    enc = LogMelEncoder()
    x = torch.from_numpy(load_audio(path, 16000))[None]
    f = enc.frames(x)[0].numpy()
    return {"mean": f.mean(0), "std": f.std(0), "max": f.max(0)}


def test_embeddings_equal_reference_and_batching_is_exact(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 9, sr=8000)
    pools = ("mean", "std", "max")

    def run(name: str, **kw: object) -> dict[str, tuple[list[str], np.ndarray]]:
        res = extract(
            man, "logmel", workspace=tmp_path / name, pools=pools, storage="float32", **kw
        )
        assert res.computed == 9 and res.cached == 0 and not res.failed
        return {p: load_embeddings("logmel", 0, p, workspace=tmp_path / name) for p in pools}

    batched = run("ws", batch_seconds=30)
    for pool, (ids, x) in batched.items():
        for i, item in enumerate(ids):
            ref = _reference_logmel(tmp_path / "d" / item)[pool]
            np.testing.assert_allclose(x[i], ref, rtol=1e-4, atol=1e-4)
    # batch of one per clip gives the same values as the padded batches above
    for pool, (_, x) in run("ws1", batch_seconds=0.01).items():
        np.testing.assert_allclose(batched[pool][1], x, rtol=1e-4, atol=1e-5)
    # decoding inline (--workers 0) stores exactly what the decode threads stored
    for pool, (ids, x) in run("ws0", batch_seconds=30, workers=0).items():
        assert list(ids) == list(batched[pool][0])
        np.testing.assert_array_equal(batched[pool][1], x)


def test_rerun_is_noop_changed_file_recomputed_changed_setting_new_store(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 6)
    ws = tmp_path / "ws"
    first = extract(man, "logmel", workspace=ws)
    again = extract(man, "logmel", workspace=ws)
    assert again.computed == 0 and again.cached == 6 and not again.model_loaded
    _, before = load_embeddings("logmel", 0, "mean", workspace=ws, data=man)
    sf.write(tmp_path / "d/wav/002.wav", tone(0.7, freq=1234.0), 16000)
    third = extract(man, "logmel", workspace=ws)
    assert third.computed == 1 and third.cached == 5 and third.store == first.store
    ids, after = load_embeddings("logmel", 0, "mean", workspace=ws, data=man)
    changed = [i for i in range(6) if not np.array_equal(before[i], after[i])]
    assert [ids[i] for i in changed] == ["wav/002.wav"]
    other = extract(man, "logmel", workspace=ws, max_seconds=0.5)
    assert other.store != first.store and other.computed == 6
    assert len(list_stores(ws)) == 2
    with pytest.raises(StoreError, match="several stores"):
        find_store("logmel", ws)
    assert find_store("logmel", ws, max_seconds=0.5).path.name == other.store


def test_windows_store_each_window_and_clip_aggregates(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    sf.write(tmp_path / "d/long.wav", tone(3.2, 16000), 16000)
    sf.write(tmp_path / "d/short.wav", tone(0.6, 16000, seed=3), 16000)
    ws = tmp_path / "ws"
    extract(
        tmp_path / "d",
        "logmel",
        workspace=ws,
        window=1.0,
        hop=0.5,
        pools=("mean", "max"),
        storage="float32",
    )
    st = find_store("logmel", ws)
    names = st.names()  # the store is keyed by content hash; names are the ids
    keys, starts, wx = st.read_windows(0, "mean")
    wid = [names[k] for k in keys]
    long_rows = [i for i, w in enumerate(wid) if w == "long.wav"]
    assert starts[long_rows].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert [w for w in wid if w == "short.wav"] == ["short.wav"]
    # each window equals the window computed alone
    whole = load_audio(tmp_path / "d/long.wav", 16000)
    enc = LogMelEncoder()
    ref = enc.encode([whole[16000:32000]], ["mean"])[0]["mean"][0]
    np.testing.assert_allclose(wx[long_rows[2]], ref, rtol=1e-3, atol=1e-3)
    keys, clip_mean = st.read(0, "mean")
    _, clip_wmax = st.read(0, "mean_wmax")
    r = [names[k] for k in keys].index("long.wav")
    np.testing.assert_allclose(clip_mean[r], wx[long_rows].mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(clip_wmax[r], wx[long_rows].max(0), rtol=1e-5, atol=1e-5)


def test_corrupt_files_stop_keeps_work_or_skip_records(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 6, min_s=0.3, max_s=0.4)
    (tmp_path / "d/wav/005.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    ws = tmp_path / "ws"
    with pytest.raises(AudioError, match=r"005.wav.*line 7.*--on-error skip"):
        extract(man, "logmel", workspace=ws, batch_seconds=0.5)
    st = find_store("logmel", ws)
    assert 0 < len(st.keys()) <= 5  # what was extracted before the failure is kept
    res = extract(man, "logmel", workspace=ws, on_error="skip")
    assert [f["id"] for f in res.failed] == ["wav/005.wav"]
    st.refresh()
    assert sorted(st.names().values()) == [f"wav/{i:03d}.wav" for i in range(5)]
    assert [name for name, _ in st.failures.values()] == ["wav/005.wav"]
    again = extract(man, "logmel", workspace=ws, on_error="skip")
    assert again.computed == 0 and len(again.failed) == 1 and not again.model_loaded


def test_missing_files_fail_before_model_load(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 3)
    (tmp_path / "d/wav/001.wav").unlink()
    with pytest.raises(ManifestError, match="line 3: wav/001.wav"):
        extract(man, "logmel", workspace=tmp_path / "ws")
    assert not (tmp_path / "ws" / "stores").exists()


_CHILD = textwrap.dedent(
    """
    import sys, time
    from sslstack import extract
    def slow(n, a):
        print("done", n, flush=True)
        time.sleep(0.15)
    extract(sys.argv[1], "logmel", workspace=sys.argv[2], batch_seconds=0.6,
            on_progress=slow, pools=("mean", "max"))
    """
)


def test_sigkill_mid_run_then_rerun_equals_uninterrupted(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 30, min_s=0.2, max_s=0.5)
    ws = tmp_path / "ws"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(man), str(ws)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for _ in range(4):  # let a few batches land, then kill without warning
        line = proc.stdout.readline()
        assert line.startswith("done"), line
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    st = find_store("logmel", ws)
    kept = len(st.keys())
    assert 0 < kept < 30
    res = extract(man, "logmel", workspace=ws, pools=("mean", "max"))
    assert res.computed == 30 - kept
    extract(man, "logmel", workspace=tmp_path / "clean", pools=("mean", "max"))
    st.refresh()
    assert len(st.keys()) == 30
    for pool in ("mean", "max"):
        a_ids, a = load_embeddings("logmel", 0, pool, workspace=ws)
        _, b = load_embeddings("logmel", 0, pool, workspace=tmp_path / "clean", ids=a_ids)
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3)
    assert len(list((st.path / "parts").glob("*.h5"))) == 1  # compacted after the rerun


def test_cli_extract_json_and_cache_export(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 4)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "SSLSTACK_WORKSPACE": str(tmp_path / "ws"),
    }

    def run(*a: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sslstack", *a], capture_output=True, text=True, env=env
        )

    r = run("extract", "--model", "logmel", "--data", str(man), "--pool", "mean,std", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["computed"] == 4 and out["store"].startswith("logmel-")
    r = run(
        "cache",
        "export",
        "--model",
        "logmel",
        "--layer",
        "0",
        "--pool",
        "std",
        "--out",
        str(tmp_path / "e.npz"),
    )
    assert r.returncode == 0, r.stderr
    z = np.load(tmp_path / "e.npz")
    _, x = load_embeddings("logmel", 0, "std", workspace=tmp_path / "ws", ids=list(z["ids"]))
    np.testing.assert_array_equal(z["X"], x)
    r = run("extract", "--model", "logmel", "--data", str(tmp_path / "nope.csv"))
    assert (
        r.returncode == 2 and "nope.csv: no such file" in r.stderr and "Traceback" not in r.stderr
    )
    r = run("extract", "--model", "logmel", "--data", str(man), "--pool", "median")
    assert r.returncode == 2 and "choose from mean, std, max" in r.stderr
    r = run("extract", "--model", "not-a-family-xyz", "--data", str(man))
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_store_whose_key_disagrees_is_refused_with_both_shown(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 2)
    ws = tmp_path / "ws"
    extract(man, "logmel", workspace=ws)
    st = find_store("logmel", ws)
    meta = json.loads((st.path / "key.json").read_text())
    meta["key"]["sample_rate"] = 8000  # a folder edited or copied by hand
    (st.path / "key.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=r"sample_rate: 16000 != 8000"):
        extract(man, "logmel", workspace=ws)
