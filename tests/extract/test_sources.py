"""The item source seam, proved by a second, toy source: ``vector`` items (.npy arrays of numbers,
read as frames of 4) encoded by a toy ``vecstat`` encoder, through the same engine to a store.

Nothing here is audio: discovery (a folder of class subfolders of .npy files), the extent
(elements), decoding, streaming in chunks, the store key and the kind check all go through the
source and the encoder's declared ``input_kind``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sslstack import extract, load_embeddings
from sslstack.errors import ConfigError
from sslstack.extract.base import BUILTINS, Encoder, EncoderSpec
from sslstack.extract.pooling import finalize, masked_stats
from sslstack.manifest import read_manifest
from sslstack.sources import SOURCES, Settings, Source, Stream
from tests.audio_fixtures import write_dataset

WIDTH = 4  # numbers per frame


class VectorSource(Source):
    kind = "vector"
    extensions = (".npy",)
    unit = "numbers"

    def extent(self, path: str, rate: int, settings: Settings) -> float:
        return float(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])

    def load(self, path: str, rate: int, settings: Settings) -> np.ndarray:
        return np.load(path, allow_pickle=False).astype(np.float32)

    def chunks(
        self, path: str, rate: int, settings: Settings, stream: Stream
    ) -> Iterator[np.ndarray]:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
        for s in stream.starts(len(x)):
            yield np.array(x[s : s + stream.size], dtype=np.float32)

    def windows(self, path: str, rate: int, settings: Settings) -> Iterator[tuple[float, Any]]:
        raise NotImplementedError

    def key_fields(self, rate: int, settings: Settings) -> dict[str, Any]:
        return {"sample_rate": rate, "window": None, "hop": None, "max_seconds": None}


class VecStat(Encoder):
    """Layer 0: the numbers as (T, 4) frames; layer 1: their squares."""

    input_kind = "vector"
    sample_rate = 1
    layer_names = ["0", "1"]
    stream_min = WIDTH  # a tail of fewer numbers holds no frame
    longest = 0  # the longest input a forward got

    def encode(self, waves: Sequence[np.ndarray], pools: Sequence[str]) -> list[dict]:
        import torch

        out = []
        for w in waves:
            VecStat.longest = max(VecStat.longest, len(w))
            f = torch.from_numpy(np.asarray(w[: len(w) // WIDTH * WIDTH]).reshape(1, -1, WIDTH))
            mask = torch.ones(f.shape[:2], dtype=torch.bool)
            out += finalize(masked_stats([f, f**2], mask), pools)
        return out


def _spec() -> EncoderSpec:
    return EncoderSpec(
        "vecstat", "v1", 1, "vecstat", lambda spec, **kw: VecStat(), {"n_hidden": 2},
        input_kind="vector", stream_seconds=8.0, stream_exact=True,
    )  # fmt: skip


@pytest.fixture
def vectors(tmp_path: Path) -> Iterator[Path]:
    SOURCES.register("vector", VectorSource())
    BUILTINS.register("vecstat", _spec)
    rng = np.random.default_rng(0)
    root = tmp_path / "vec"
    for label, lengths in (("a", (12, 40)), ("b", (8, 20))):  # 40 > 8: streamed in chunks
        (root / label).mkdir(parents=True)
        for i, n in enumerate(lengths):
            np.save(root / label / f"{i}.npy", rng.standard_normal(n).astype(np.float32))
    try:
        yield root
    finally:
        del SOURCES["vector"], BUILTINS["vecstat"]


def test_a_second_source_runs_through_the_same_engine_to_a_store(vectors, tmp_path):
    man = read_manifest(vectors)
    assert man.kind == "vector" and man.frame["label"].tolist() == ["a", "a", "b", "b"]
    res = extract(vectors, "vecstat", workspace=tmp_path / "ws", pools=("mean", "std", "max"),
                  storage="float32", batch_seconds=16)  # fmt: skip
    assert res.computed == 4 and res.audio_seconds == 12 + 40 + 8 + 20
    assert VecStat.longest == 8  # the 40 numbers came in chunks of 8
    for layer, power in (("0", 1), ("1", 2)):
        for pool, fn in (("mean", np.mean), ("std", np.std), ("max", np.max)):
            ids, x = load_embeddings("vecstat", layer, pool, workspace=tmp_path / "ws")
            for i, item in enumerate(ids):
                frames = np.load(vectors / item).reshape(-1, WIDTH) ** power
                np.testing.assert_allclose(x[i], fn(frames, axis=0), rtol=1e-5, atol=1e-6)
    again = extract(vectors, "vecstat", workspace=tmp_path / "ws", pools=("mean", "std", "max"),
                    storage="float32")  # fmt: skip
    assert again.cached == 4 and not again.model_loaded


def test_an_encoder_of_another_kind_is_refused_in_one_line(vectors, tmp_path):
    with pytest.raises(ConfigError, match="--model logmel takes audio items, but .* holds vector"):
        extract(vectors, "logmel", workspace=tmp_path / "ws")
    audio = write_dataset(tmp_path / "d", 2)
    with pytest.raises(ConfigError, match="takes vector items, but .* holds audio items") as e:
        extract(audio, "vecstat", workspace=tmp_path / "ws")
    assert "\n" not in str(e.value)


def test_a_manifest_of_two_kinds_is_refused_in_one_line(vectors, tmp_path):
    from sslstack.errors import ManifestError

    (vectors / "a" / "x.wav").write_bytes(b"")
    with pytest.raises(ManifestError, match="several kinds: (audio|vector) .*one kind") as e:
        read_manifest(vectors)
    assert "\n" not in str(e.value)


def test_a_csv_manifest_takes_its_kind_from_its_files(vectors, tmp_path):
    from sslstack.errors import ManifestError

    (vectors / "m.csv").write_text("path,label\na/0.npy,a\nb/0.npy,b\n")
    assert read_manifest(vectors / "m.csv").kind == "vector"
    audio = write_dataset(tmp_path / "d", 1)
    (vectors / "x.wav").write_bytes((audio.parent / "wav" / "000.wav").read_bytes())
    (vectors / "mixed.csv").write_text("path\na/0.npy\nx.wav\n")
    with pytest.raises(ManifestError, match=r"mixed.csv: holds items of several kinds"):
        read_manifest(vectors / "mixed.csv")
