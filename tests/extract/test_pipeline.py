"""The extraction pipeline: stages, order, back-pressure, faults in every stage, batch sizing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sslstack import extract, load_embeddings
from sslstack.cache import Store
from sslstack.embeddings import find_store
from sslstack.errors import EncoderError
from sslstack.extract.base import Encoder
from sslstack.extract.batching import (
    Batch,
    BatchBudget,
    auto_batch_seconds,
    batches,
    resolve_batch_seconds,
)
from sslstack.extract.decode import Unit
from sslstack.extract.pipeline import run_pipeline
from tests.audio_fixtures import write_dataset


class _Fake(Encoder):
    """Encodes a wave as its mean; records which thread ran each half."""

    sample_rate = 100
    layer_names = ["0"]

    def __init__(self, fail_prepare_at: int = -1, interrupt_at: int = -1) -> None:
        self.calls = 0
        self.threads: dict[str, set[str]] = {"prepare": set(), "forward": set()}
        self.fail_prepare_at, self.interrupt_at = fail_prepare_at, interrupt_at
        self.prepared = 0

    def encode(self, waves, pools):  # type: ignore[no-untyped-def]
        return [{p: np.full((1, 2), float(np.mean(w)), np.float32) for p in pools} for w in waves]

    def prepare(self, waves):  # type: ignore[no-untyped-def]
        self.threads["prepare"].add(threading.current_thread().name)
        if self.prepared == self.fail_prepare_at:
            raise ValueError("collate failed")
        self.prepared += 1
        return list(waves)

    def forward(self, prepared, pools):  # type: ignore[no-untyped-def]
        self.threads["forward"].add(threading.current_thread().name)
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        self.calls += 1
        return super().forward(prepared, pools)


def _stream(n: int, produced: list[int] | None = None) -> Iterator[Batch]:
    for i in range(n):
        if produced is not None:
            produced.append(i)
        yield Batch([Unit(i, None, np.full(10, float(i), np.float32))], [], [i])


def _collect(seen: list[tuple[int, float]], threads: set[str], delay: float = 0.0):  # type: ignore[no-untyped-def]
    def sink(batch: Batch, outs: list[dict[str, np.ndarray]]) -> None:
        threads.add(threading.current_thread().name)
        time.sleep(delay)
        for u, o in zip(batch.units, outs, strict=True):
            seen.append((u.row, float(o["mean"][0, 0])))

    return sink


@pytest.mark.parametrize("threaded", [True, False])
def test_every_batch_reaches_the_sink_in_order_with_its_own_vectors(threaded: bool) -> None:
    enc, seen, sink_threads = _Fake(), [], set()
    run_pipeline(
        enc, _stream(12), ("mean",), _collect(seen, sink_threads), BatchBudget(1), threaded=threaded
    )
    assert seen == [(i, float(i)) for i in range(12)]
    main = threading.current_thread().name
    assert enc.threads["forward"] == {main}
    if threaded:  # host work and writes are off the device loop
        assert enc.threads["prepare"] == {"sslstack-collate"}
        assert sink_threads == {"sslstack-writer"}
    else:
        assert enc.threads["prepare"] == {main} and sink_threads == {main}


def test_a_slow_writer_holds_the_other_stages_back() -> None:
    produced: list[int] = []
    seen: list[tuple[int, float]] = []
    enc = _Fake()
    ahead = []

    def sink(batch: Batch, outs: list[dict[str, np.ndarray]]) -> None:
        time.sleep(0.02)
        ahead.append(len(produced) - batch.units[0].row)
        seen.append((batch.units[0].row, 0.0))

    run_pipeline(enc, _stream(30, produced), ("mean",), sink, BatchBudget(1), depth=2)
    assert len(seen) == 30
    # writer queue (2) + the batch on the device loop + collate queue (2) + the one collating
    assert max(ahead) <= 2 + 1 + 2 + 2


def test_an_error_in_the_writer_stops_the_run_after_what_it_wrote() -> None:
    enc, written = _Fake(), []

    def sink(batch: Batch, outs: list[dict[str, np.ndarray]]) -> None:
        if batch.units[0].row == 3:
            raise OSError("disk full")
        written.append(batch.units[0].row)

    with pytest.raises(OSError, match="disk full"):
        run_pipeline(enc, _stream(20), ("mean",), sink, BatchBudget(1))
    assert written == [0, 1, 2]
    assert enc.calls <= 3 + 2 + 2  # the device loop stopped soon after, not at the end


@pytest.mark.parametrize("fault", ["collate", "ctrl-c"])
def test_a_fault_upstream_first_writes_every_batch_the_device_finished(fault: str) -> None:
    enc = _Fake(fail_prepare_at=5) if fault == "collate" else _Fake(interrupt_at=5)
    seen: list[tuple[int, float]] = []
    error = ValueError if fault == "collate" else KeyboardInterrupt
    with pytest.raises(error):
        run_pipeline(enc, _stream(20), ("mean",), _collect(seen, set(), 0.01), BatchBudget(1))
    assert seen == [(i, float(i)) for i in range(5)]  # all 5 forwarded batches, none lost


def test_an_out_of_memory_split_halves_every_later_batch() -> None:
    class Splitting(_Fake):
        oom_splits = 0

        def forward(self, prepared, pools):  # type: ignore[no-untyped-def]
            if len(prepared) > 2:
                self.oom_splits += 1  # what HFEncoder._run counts when it halves a group
            return super().forward(prepared, pools)

    budget = BatchBudget(0.4, floor=0.01)  # 4 units of 10 samples at 100 Hz
    events = []
    for i in range(24):
        events += [("unit", i, Unit(i, None, np.zeros(10, np.float32))), ("done", i, None)]
    sizes: list[int] = []

    def sink(batch: Batch, outs: list[dict[str, np.ndarray]]) -> None:
        sizes.append(len(batch.units))

    run_pipeline(
        Splitting(),
        batches(iter(events), budget, 100, ramp=0),
        ("mean",),
        sink,
        budget,
        threaded=False,
    )
    assert sizes[0] == 4 and budget.halvings == 1 and set(sizes[1:]) == {2}
    assert sum(sizes) == 24


def test_the_first_batches_ramp_up_to_the_budget() -> None:
    events = []
    for i in range(60):
        events += [("unit", i, Unit(i, None, np.zeros(10, np.float32))), ("done", i, None)]
    sizes = [len(b.units) for b in batches(iter(events), BatchBudget(1.6), 100, ramp=3)]
    assert sizes[:5] == [2, 4, 8, 16, 16] and sum(sizes) == 60


class _LinearMemory:
    """A device whose peak memory is ``base + per_s * padded seconds`` of the last run."""

    def __init__(self, base: int, per_s: int, free: int) -> None:
        self.base, self.per_s, self.free, self.last = base, per_s, free, 0

    def reset_peak(self) -> None:
        self.last = 0

    def peak(self) -> int:
        return self.last

    def available(self) -> int:
        return self.free


def test_auto_batch_size_is_what_the_free_memory_holds() -> None:
    mem = _LinearMemory(base=10_000, per_s=1_000, free=2_000_000)

    def run(waves: list[np.ndarray]) -> None:
        mem.last = mem.base + mem.per_s * sum(len(w) for w in waves) // 16000

    got = auto_batch_seconds(run, mem, 16000, clip_seconds=10.0)
    assert got == pytest.approx(10 + 0.7 * 2_000_000 / 1_000)
    mem.free = 10**15  # never more than the cap
    assert auto_batch_seconds(run, mem, 16000, 10.0) == 4096.0
    mem.free = 0  # never less than one clip
    assert auto_batch_seconds(run, mem, 16000, 10.0) == 10.0


def test_batch_seconds_auto_is_60_on_the_cpu_and_a_number_stays_as_given() -> None:
    assert resolve_batch_seconds("auto", "cpu", None, 16000, 5.0) == 60.0
    assert resolve_batch_seconds(12.5, "cuda", None, 16000, 5.0) == 12.5


# --- end to end through extract() ---------------------------------------------------------------


def _all_layers(ws: Path, model: str, pools: tuple[str, ...]) -> dict[str, np.ndarray]:
    store = find_store(model, workspace=ws)
    out = {}
    for p in pools:
        ids = store.keys()
        out[p] = np.stack([store.read(layer, p, ids)[1] for layer in store.layer_names], 1)
    return out


def test_pipeline_and_workers_0_store_identical_vectors_for_a_transformers_encoder(
    tiny_model, tmp_path: Path
) -> None:
    man = write_dataset(tmp_path / "d", 10, sr=16000)
    model = str(tiny_model("wavlm-layer"))
    pools = ("mean", "max")
    got = {}
    for workers in (0, 2):
        ws = tmp_path / f"ws{workers}"
        r = extract(
            man,
            model,
            workspace=ws,
            pools=pools,
            storage="float32",
            batch_seconds=3,
            workers=workers,
        )
        assert r.computed == 10 and r.forward_seconds > 0 and r.batch_seconds == 3
        got[workers] = _all_layers(ws, model, pools)
    for p in pools:
        np.testing.assert_array_equal(got[0][p], got[2][p])


def test_ctrl_c_keeps_every_written_batch_and_a_rerun_equals_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    man = write_dataset(tmp_path / "d", 16, sr=8000)
    calls = []

    def interrupt(done: int, audio: float) -> None:
        calls.append(done)
        if len(calls) == 3:
            raise KeyboardInterrupt

    kw = dict(pools=("mean",), storage="float32", batch_seconds=2.0)
    with pytest.raises(KeyboardInterrupt):
        extract(man, "logmel", workspace=tmp_path / "ws", on_progress=interrupt, **kw)
    kept = Store(find_store("logmel", workspace=tmp_path / "ws").path).keys()
    assert len(kept) == calls[-1] and 0 < len(kept) < 16
    rest = extract(man, "logmel", workspace=tmp_path / "ws", **kw)
    assert rest.computed == 16 - len(kept) and rest.cached == len(kept)
    extract(man, "logmel", workspace=tmp_path / "clean", **kw)
    a = load_embeddings("logmel", 0, "mean", workspace=tmp_path / "ws")
    b = load_embeddings("logmel", 0, "mean", workspace=tmp_path / "clean")
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


def test_the_same_audio_under_another_id_is_copied_not_recomputed(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 6, sr=8000)
    kw = dict(pools=("mean", "std"), storage="float32", workspace=tmp_path / "ws")
    extract(man, "logmel", **kw)
    absolute = tmp_path / "absolute.csv"  # the same files, listed by absolute path
    lines = man.read_text().splitlines()
    absolute.write_text(
        "\n".join(
            [lines[0]]
            + [f"{tmp_path / 'd' / ln.split(',')[0]},{ln.split(',')[1]}" for ln in lines[1:]]
        )
        + "\n"
    )
    r = extract(absolute, "logmel", **kw)
    assert (r.computed, r.reused, r.model_loaded) == (0, 6, False)
    ids_rel, x_rel = load_embeddings("logmel", 0, "std", workspace=tmp_path / "ws")
    store = find_store("logmel", workspace=tmp_path / "ws")
    for item in ids_rel:
        (_, y), (_, z) = (
            store.read(0, "std", [item]),
            store.read(0, "std", [str(tmp_path / "d" / item)]),
        )
        np.testing.assert_array_equal(y, z)
    again = extract(absolute, "logmel", **kw)  # the copies are stored: plain cache hits now
    assert (again.cached, again.reused) == (6, 0)


def test_layers_out_of_range_fail_before_any_store_is_created(tiny_model, tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 3, sr=16000)
    with pytest.raises(EncoderError, match="out of range"):
        extract(man, str(tiny_model("wavlm-layer")), workspace=tmp_path / "ws", layers=(1, 99))
    assert not list((tmp_path / "ws").glob("stores/*"))
    with pytest.raises(EncoderError, match="out of range"):
        extract(man, "logmel", workspace=tmp_path / "ws", layers=(3,))
    assert not list((tmp_path / "ws").glob("stores/*"))


@pytest.mark.parametrize("normalize", [True, False])
def test_host_normalization_equals_the_feature_extractor(
    tiny_model, normalize: bool, monkeypatch
) -> None:
    from sslstack.extract.resolve import resolve_encoder

    enc = resolve_encoder(str(tiny_model("wav2vec2-layer"))).load()
    monkeypatch.setattr(enc.fe, "do_normalize", normalize)
    rng = np.random.default_rng(3)
    for n in (400, 16000, 23457):
        w = (0.3 * rng.standard_normal(n) + 0.05).astype(np.float32)
        ref = enc.fe(w, sampling_rate=16000, return_tensors="np")["input_values"][0]
        np.testing.assert_array_equal(enc._normalize(w), np.asarray(ref, dtype=np.float32))
