"""Long inputs stream in chunks, and every pooling merges across them (memory bounded by default).

What equality holds, precisely:

* log-mel: chunks start every ``stream_seconds`` (a multiple of the 160-sample hop) and carry the
  240 samples that complete their last frame, so the chunks' frames are exactly the clip's frames;
  every pooling of a streamed clip equals the one-shot pooling (float rounding of the merge only).
* transformers: a chunk is encoded alone (its own normalization, attention over its own frames);
  the documented result is the pooling over the concatenation of every chunk's frames. It is
  tested against that reference computed chunk by chunk with the model alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sslstack import extract, load_embeddings
from sslstack.audio import iter_chunks, load_audio
from sslstack.extract import runner
from sslstack.extract.logmel import LogMelEncoder
from sslstack.extract.resolve import resolve_encoder
from sslstack.sources import Stream
from tests.audio_fixtures import voiced

POOLS = ("mean", "std", "max")


def _chunked(monkeypatch: pytest.MonkeyPatch, seconds: float | None) -> list[int]:
    """Make every encoder stream in chunks of ``seconds``; returns the longest input each forward
    got (filled as the extraction runs)."""
    seen: list[int] = []

    def resolve(*a, **kw):  # type: ignore[no-untyped-def]
        spec = resolve_encoder(*a, **kw)
        return dataclasses.replace(spec, stream_seconds=seconds)

    monkeypatch.setattr(runner, "resolve_encoder", resolve)
    prepare = LogMelEncoder.prepare

    def spy(self, waves):  # type: ignore[no-untyped-def]
        seen.append(max(len(w) for w in waves))
        return prepare(self, waves)

    monkeypatch.setattr(LogMelEncoder, "prepare", spy)
    return seen


def _write(folder: Path, lengths: list[int], sr: int = 16000) -> Path:
    folder.mkdir(parents=True)
    for i, n in enumerate(lengths):
        sf.write(folder / f"{i}.wav", voiced(n / sr + 0.01, i, sr)[:n], sr, subtype="FLOAT")
    return folder


def _reference_logmel(path: Path) -> dict[str, np.ndarray]:
    f = LogMelEncoder().frames(torch.from_numpy(load_audio(path, 16000))[None])[0].numpy()
    return {"mean": f.mean(0), "std": f.std(0), "max": f.max(0)}


def test_logmel_streamed_in_chunks_equals_the_whole_clip(tmp_path, monkeypatch):
    # 1 s chunks: tails of 300 samples (no frame of their own: no chunk), 400 (one frame), more
    lengths = [2 * 16000 + 300, 2 * 16000 + 400, 3 * 16000 + 7000, 12000]
    data = _write(tmp_path / "d", lengths)
    seen = _chunked(monkeypatch, 1.0)
    res = extract(data, "logmel", workspace=tmp_path / "ws", pools=POOLS, storage="float32")
    assert res.computed == 4 and not res.failed
    assert max(seen) <= 16000 + 240  # no forward ever saw more than one chunk
    for pool in POOLS:
        ids, x = load_embeddings("logmel", 0, pool, workspace=tmp_path / "ws")
        for i, item in enumerate(ids):
            ref = _reference_logmel(data / item)[pool]
            np.testing.assert_allclose(x[i], ref, rtol=1e-5, atol=1e-5, err_msg=f"{item} {pool}")


def test_windows_longer_than_a_chunk_are_streamed_and_equal(tmp_path, monkeypatch):
    data = _write(tmp_path / "d", [5 * 16000 + 1234])
    kw = dict(pools=POOLS, storage="float32", window=2.5, hop=1.5)
    seen = _chunked(monkeypatch, None)
    extract(data, "logmel", workspace=tmp_path / "whole", **kw)
    assert max(seen) == 40000  # chunking off: each 2.5 s window whole
    seen = _chunked(monkeypatch, 1.0)
    extract(data, "logmel", workspace=tmp_path / "chunks", **kw)
    assert max(seen) <= 16240
    for pool in (*POOLS, "mean_wmax"):
        a = load_embeddings("logmel", 0, pool, workspace=tmp_path / "whole")[1]
        b = load_embeddings("logmel", 0, pool, workspace=tmp_path / "chunks")[1]
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_iter_chunks_tile_the_cropped_file(tmp_path):
    x = voiced(3.0, 1)
    sf.write(tmp_path / "a.wav", x, 16000, subtype="FLOAT")
    stream = Stream(16000, 240, 400)
    chunks = list(iter_chunks(tmp_path / "a.wav", 16000, 16000, 240, 400))
    assert [len(c) for c in chunks] == [16240, 16240, 16000]
    for s, c in zip(stream.starts(len(x)), chunks, strict=True):
        np.testing.assert_array_equal(c, x[s : s + 16240])
    # a crop: the middle 2.2 s, as load_audio crops it
    mid = load_audio(tmp_path / "a.wav", 16000, max_seconds=2.2, crop="center")
    got = list(iter_chunks(tmp_path / "a.wav", 16000, 16000, 0, 1, max_seconds=2.2, crop="center"))
    np.testing.assert_array_equal(np.concatenate(got), mid)


def test_transformers_chunked_result_is_the_pooling_of_every_chunks_frames(
    tmp_path, monkeypatch, tiny_model
):
    from tests.extract.test_encoders import _pool, _reference_frames

    folder = tiny_model("wavlm-layer")
    n = int(2.5 * 16000)
    data = _write(tmp_path / "d", [n])
    _chunked(monkeypatch, 1.0)
    res = extract(data, str(folder), workspace=tmp_path / "ws", pools=POOLS, storage="float32")
    assert res.computed == 1
    wave = load_audio(data / "0.wav", 16000)
    per_chunk = [
        _reference_frames("wavlm-layer", folder, wave[s : s + 16000]) for s in (0, 16000, 32000)
    ]
    frames = [torch.cat([c[layer] for c in per_chunk]) for layer in range(len(per_chunk[0]))]
    ref = _pool(frames)
    names = resolve_encoder(str(folder)).load().layer_names
    for pool in POOLS:
        for k, layer in enumerate(names):
            _, x = load_embeddings(str(folder), layer, pool, workspace=tmp_path / "ws")
            np.testing.assert_allclose(x[0], ref[pool][k], rtol=1e-4, atol=1e-4)


def test_chunk_length_is_in_the_store_key_only_where_it_changes_values(tiny_model):
    from sslstack.extract.config import ExtractConfig, store_key

    wavlm = resolve_encoder(str(tiny_model("wavlm-layer")))
    logmel = resolve_encoder("logmel")
    cfg = ExtractConfig(model="x")
    assert store_key(wavlm, cfg, "fp32").chunk == 30.0
    assert "chunk" not in store_key(logmel, cfg, "fp32").to_dict()  # exact: old folders kept
    short = dataclasses.replace(cfg, window=10.0, hop=10.0)  # no input is ever longer
    assert store_key(wavlm, short, "fp32").chunk is None
