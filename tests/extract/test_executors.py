"""The executor seam: shards are plain data, the worker function is importable, and any executor
registered by name gives the store the local executor gives."""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import numpy as np
import pytest

from sslstack import extract, load_embeddings
from sslstack.errors import ConfigError
from sslstack.extract import worker
from sslstack.extract.executors import EXECUTORS, Executor
from sslstack.extract.executors.local import LocalExecutor
from tests.audio_fixtures import write_dataset


class TwoWorkers(Executor):
    """Three shards, each run as a separate worker would: its own copy of the shard and job
    (pickled and back), its own encoder."""

    shards = 3
    ran: list[int] = []

    def run(self, shards: Sequence[worker.Shard], job, spec, report, on_batch=None):
        for shard in shards:
            shard, job2 = pickle.loads(pickle.dumps((shard, job)))
            TwoWorkers.ran.append(len(shard))
            worker.encode_shard(shard, job2, spec, report=report, on_batch=on_batch)
        return report


@pytest.fixture
def two_workers():
    EXECUTORS.register("two-workers", TwoWorkers)
    TwoWorkers.ran = []
    yield
    del EXECUTORS["two-workers"]


def test_local_is_the_default_and_an_unknown_executor_is_one_line(tmp_path):
    assert isinstance(EXECUTORS["local"](), LocalExecutor)
    man = write_dataset(tmp_path / "d", 2)
    with pytest.raises(ConfigError, match=r"^--executor dask: unknown executor; choose from "):
        extract(man, "logmel", workspace=tmp_path / "ws", executor="dask")


def test_shards_and_the_worker_travel_as_plain_data(tmp_path):
    shard = worker.Shard(("a",), ("/x/a.wav",), ("0" * 40,), (1.5,), (2,))
    assert pickle.loads(pickle.dumps(shard)) == shard
    assert pickle.loads(pickle.dumps(worker.encode_shard)) is worker.encode_shard


def test_another_executor_gives_the_local_store(tmp_path, two_workers):
    man = write_dataset(tmp_path / "d", 7)
    pools = ("mean", "std")
    local = extract(man, "logmel", workspace=tmp_path / "a", pools=pools, storage="float32")
    other = extract(man, "logmel", workspace=tmp_path / "b", pools=pools, storage="float32",
                    executor="two-workers")  # fmt: skip
    assert TwoWorkers.ran == [3, 3, 1]
    assert other.computed == local.computed and other.audio_seconds == pytest.approx(
        local.audio_seconds
    )
    assert other.store == local.store  # the executor is not part of the store key
    for pool in pools:
        ids_a, a = load_embeddings("logmel", 0, pool, workspace=tmp_path / "a")
        ids_b, b = load_embeddings("logmel", 0, pool, workspace=tmp_path / "b")
        assert ids_a == ids_b
        np.testing.assert_array_equal(a, b)
