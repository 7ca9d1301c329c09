"""Audio that a decoder reads without a word but is not the recording: refused, never stored."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sslstack.audio import iter_windows, load_audio
from sslstack.errors import AudioError
from tests.audio_fixtures import tone, write_dataset
from tests.faults.helpers import cli


def _wav(path: Path, seconds: float = 1.0, subtype: str = "PCM_16") -> Path:
    sf.write(path, tone(seconds), 16000, subtype=subtype)
    return path


def _truncated(path: Path) -> Path:
    raw = _wav(path).read_bytes()
    path.write_bytes(raw[: len(raw) - (len(raw) - 44) // 3])  # a third of the data cut off
    return path


def _inflated(path: Path) -> Path:
    raw = bytearray(_wav(path).read_bytes())
    pos = raw.index(b"data")
    (n,) = struct.unpack("<I", raw[pos + 4 : pos + 8])
    raw[pos + 4 : pos + 8] = struct.pack("<I", n * 2)  # the header claims twice the frames
    raw[4:8] = struct.pack("<I", len(raw) - 8 + n)
    path.write_bytes(bytes(raw))
    return path


def _mp3_garbage(path: Path) -> Path:
    sf.write(path, tone(10.0), 16000, format="MP3")
    raw = path.read_bytes()
    half = len(raw) // 2
    junk = np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes()
    path.write_bytes(raw[:half] + junk + raw[half:])
    return path


def _scaled(path: Path) -> Path:
    sf.write(path, tone(1.0).astype(np.float32) * np.float32(1e30), 16000, subtype="FLOAT")
    return path


BAD = {
    "truncated-wav": (_truncated, "wav", "truncated or damaged WAV"),
    "inflated-wav": (_inflated, "wav", "truncated or damaged WAV"),
    "mp3-garbage": (_mp3_garbage, "mp3", "chain of frames breaks"),
    "float-1e30": (_scaled, "wav", "far beyond full scale"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_audio_is_an_audio_error_not_a_silent_vector(tmp_path: Path, kind: str) -> None:
    make, ext, message = BAD[kind]
    path = make(tmp_path / f"x.{ext}")
    sf.read(path)  # what the decoder alone does: no error
    with pytest.raises(AudioError, match=message):
        load_audio(path, 16000)
    with pytest.raises(AudioError, match=message):
        list(iter_windows(path, 16000, 0.5, 0.5))


def test_good_audio_still_decodes(tmp_path: Path) -> None:
    for subtype in ("PCM_16", "FLOAT", "PCM_24"):
        assert len(load_audio(_wav(tmp_path / f"{subtype}.wav", 0.5, subtype), 16000)) == 8000
    sf.write(tmp_path / "ok.mp3", tone(3.0), 16000, format="MP3")
    assert len(load_audio(tmp_path / "ok.mp3", 16000)) > 40000


def test_extract_skips_bad_audio_and_stores_no_nan(tmp_path: Path) -> None:
    from sslstack import load_embeddings

    man = write_dataset(tmp_path / "d", 4, min_s=0.3, max_s=0.5)
    wav = man.parent / "wav"
    names = []
    for kind, (make, ext, _m) in BAD.items():
        make(wav / f"{kind}.{ext}")
        names.append(f"wav/{kind}.{ext}")
    with open(man, "a") as fh:
        fh.writelines(f"{n},a\n" for n in names)
    ws = tmp_path / "ws"
    r = cli(
        "extract", "--model", "logmel", "--data", str(man), "-w", str(ws), "--on-error",
        "skip", "--json",
    )  # fmt: skip
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert sorted(f["id"] for f in res["failed"]) == sorted(names)
    ids, x = load_embeddings("logmel", 0, "mean", workspace=ws)
    assert len(ids) == 4 and np.isfinite(x).all()


def test_the_store_refuses_non_finite_vectors(tmp_path: Path) -> None:
    from sslstack.cache import ItemResult, Store, StoreKey

    store = Store.open_or_create(
        tmp_path / "stores", StoreKey(model="m", revision="x", sample_rate=16000, pools=("mean",))
    )
    bad = ItemResult("a", "h" * 40, 1.0, {"mean": np.array([[np.nan, 1.0]], np.float32)})
    big = ItemResult("b", "g" * 40, 1.0, {"mean": np.array([[1e6, 1.0]], np.float32)})
    with store.writer("t") as w:
        with pytest.raises(AudioError, match="a: the encoder gave NaN"):
            w.write([bad], ["0"])
        if store.key.storage == "float16":  # 1e6 overflows float16 to infinity
            with pytest.raises(AudioError, match="b: the encoder gave NaN"):
                w.write([big], ["0"])
    assert store.keys() == []
