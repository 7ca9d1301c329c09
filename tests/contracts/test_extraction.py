"""Every pooling, item source and executor of the registries. Poolings: the value over valid
frames (against numpy), padding ignored, and chunks merged equal to the whole. Sources: each
claims its files and no other source's, measures and loads them the same way twice. Executors:
each gives the store that encoding every shard in this process gives. An entry added to its
registry runs here without editing this file (a source needs a sample file: SAMPLES)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from sslstack import extract, load_embeddings
from sslstack.extract import worker
from sslstack.extract.executors import EXECUTORS, Executor
from sslstack.extract.pooling import POOLINGS, finalize, masked_stats
from sslstack.sources import SOURCES, Settings, kind_of
from tests.audio_fixtures import tone, write_dataset

# -- poolings ----------------------------------------------------------------------------------

FRAMES = torch.from_numpy(np.random.default_rng(3).normal(size=(1, 13, 4)).astype(np.float32))
REFERENCES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": lambda x: x.mean(axis=0),
    "std": lambda x: x.std(axis=0),
    "max": lambda x: x.max(axis=0),
}


def _pool(frames: torch.Tensor, name: str, valid: int | None = None) -> np.ndarray:
    mask = torch.zeros(frames.shape[:2], dtype=torch.bool)
    mask[:, : valid or frames.shape[1]] = True
    return finalize(masked_stats([frames], mask), [name])[0][name]


def test_every_pooling_has_a_reference() -> None:
    """A new pooling can not go unchecked: give it a reference in REFERENCES."""
    assert set(POOLINGS) <= set(REFERENCES), set(POOLINGS) - set(REFERENCES)


@pytest.mark.parametrize("name", list(POOLINGS))
def test_every_pooling_over_valid_frames_and_merged_chunks(name: str) -> None:
    whole = _pool(FRAMES, name)
    assert whole.shape == (1, 4) and whole.dtype == np.float32
    np.testing.assert_allclose(whole[0], REFERENCES[name](FRAMES[0].numpy()), rtol=1e-5)
    padded = torch.cat([FRAMES, torch.full((1, 5, 4), 1e3)], dim=1)  # padding never counts
    np.testing.assert_allclose(_pool(padded, name, valid=13), whole, rtol=1e-6)
    ones = torch.ones(1, 1, dtype=torch.bool)
    chunks = [masked_stats([FRAMES[:, a:b]], ones.expand(1, b - a)) for a, b in ((0, 6), (6, 13))]
    merged = finalize(chunks[0].merge(chunks[1]), [name])[0][name]
    np.testing.assert_allclose(merged, whole, rtol=1e-5, atol=1e-6)


# -- sources -----------------------------------------------------------------------------------


def _wav(folder: Path) -> Path:
    import soundfile as sf

    sf.write(folder / "a.wav", tone(0.5), 16000)
    return folder / "a.wav"


def _png(folder: Path) -> Path:
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "a.png")
    return folder / "a.png"


SAMPLES: dict[str, Callable[[Path], Path]] = {"audio": _wav, "image": _png}
RATES = {"audio": 16000, "image": 224}


def test_every_source_has_a_sample() -> None:
    """A new source can not go untested: give it a sample writer in SAMPLES."""
    assert set(SOURCES) <= set(SAMPLES), set(SOURCES) - set(SAMPLES)


@pytest.mark.parametrize("kind", list(SOURCES))
def test_every_source_claims_measures_and_loads_its_items(kind: str, tmp_path: Path) -> None:
    source, path = SOURCES[kind], SAMPLES[kind](tmp_path)
    assert source.claims(path) and kind_of([path], tmp_path) == kind
    assert not any(s.claims(path) for k, s in SOURCES.items() if k != kind)
    settings, rate = Settings(), RATES[kind]
    assert source.extent(str(path), rate, settings) > 0 and source.unit
    item = source.load(str(path), rate, settings)
    assert isinstance(item, np.ndarray) and item.size > 0
    np.testing.assert_array_equal(source.load(str(path), rate, settings), item)
    json.dumps(source.key_fields(rate, settings))  # store-key fields are plain data


# -- executors ---------------------------------------------------------------------------------


class InProcess(Executor):
    """The reference: every shard encoded here, one after another, by the worker function."""

    def run(self, shards: Sequence[worker.Shard], job, spec, report, on_batch=None):
        for shard in shards:
            worker.encode_shard(shard, job, spec, report=report, on_batch=on_batch)
        return report


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, np.ndarray]]:
    root = tmp_path_factory.mktemp("executors")
    man = write_dataset(root / "d", 3, max_s=0.6)
    EXECUTORS.register("in-process", InProcess)
    try:
        extract(man, "logmel", workspace=root / "ref", storage="float32", executor="in-process")
    finally:
        del EXECUTORS["in-process"]
    yield man, load_embeddings("logmel", 0, "mean", workspace=root / "ref")[1]


def _available(name: str, request: pytest.FixtureRequest) -> None:
    if name == "ray":  # optional (pip install 'sslstack[ray]'): the session's shared cluster
        pytest.importorskip("ray")
        request.getfixturevalue("ray_cluster")


@pytest.mark.parametrize("name", list(EXECUTORS))
def test_every_executor_gives_the_in_process_store(
    name: str, reference: tuple[Path, np.ndarray], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    man, want = reference
    _available(name, request)
    res = extract(man, "logmel", workspace=tmp_path, storage="float32", executor=name)
    assert res.computed == 3 and not res.failed
    np.testing.assert_allclose(load_embeddings("logmel", 0, "mean", workspace=tmp_path)[1], want,
                               rtol=1e-6, atol=1e-6)  # fmt: skip
