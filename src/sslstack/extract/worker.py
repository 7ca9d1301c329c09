"""The worker function of the executor seam: encode one shard of items into store parts.

A :class:`Shard` is plain data (ids, paths, content hashes, extents, manifest lines) and a
:class:`Job` is what every shard of one extraction shares (settings, device, dtype, the store's
folder), so both travel to another process or machine as they are (pickled by Ray, for
instance); :func:`encode_shard` is importable at module level. It loads the encoder (or takes
one already loaded), reads the shard's items through their source, runs the local pipeline
(collate thread -> device loop -> writer thread) and writes one part per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AudioError
from ..sources import SOURCES, Settings, Stream
from .assemble import Assembler
from .base import Encoder, EncoderSpec
from .batching import Batch, BatchBudget, batches, resolve_batch_seconds
from .config import ExtractConfig
from .decode import Reading, decode_events
from .pipeline import run_pipeline
from .pooling import STAT_POOLS


@dataclass(frozen=True)
class Shard:
    """Items to encode, as plain data. ``extents`` may be empty: the worker measures them."""

    ids: tuple[str, ...]
    paths: tuple[str, ...]
    hashes: tuple[str, ...]
    extents: tuple[float, ...] = ()
    lines: tuple[int | None, ...] = ()  # manifest lines, for error messages

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Job:
    """What every shard of one extraction shares."""

    cfg: ExtractConfig
    kind: str  # the item source
    device: str
    dtype: str
    store_path: str
    command: str = "sslstack extract"


@dataclass
class ShardReport:
    """What encoding shards did (summed over shards; updated batch by batch)."""

    computed: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    extent: float = 0.0  # seconds of audio (the source's unit) encoded
    extent_total: float = 0.0  # of the shards begun
    forward_seconds: float = 0.0
    batch_seconds: float | None = None
    model_loaded: bool = False


# called after every written batch with (items finished, extent finished) of that batch
OnBatch = Callable[[int, float], None]


def settings_of(cfg: ExtractConfig) -> Settings:
    return Settings(cfg.window, cfg.hop, cfg.max_seconds, cfg.crop, cfg.tta)


def stream_of(spec: EncoderSpec, encoder: Encoder, rate: int) -> Stream | None:
    """The chunks long inputs are encoded in (None: the encoder takes any length whole)."""
    if spec.stream_seconds is None:
        return None
    step = int(round(spec.stream_seconds * rate))
    return Stream(step, encoder.stream_overlap, encoder.stream_min)


def load_encoder(spec: EncoderSpec, job: Job, shard: Shard) -> tuple[Encoder, tuple[float, ...]]:
    """The encoder, loaded while the shard's extents are read from the items' headers."""
    with ThreadPoolExecutor(1, thread_name_prefix="sslstack-load") as pool:
        loading = pool.submit(spec.load, device=job.device, dtype=job.dtype, layers=job.cfg.layers)
        extents = shard.extents or measure_extents(spec, job, shard)
        return loading.result(), extents


def encode_shard(
    shard: Shard,
    job: Job,
    spec: EncoderSpec,
    *,
    encoder: Encoder | None = None,
    report: ShardReport | None = None,
    on_batch: OnBatch | None = None,
) -> ShardReport:
    """Encode ``shard`` into parts of the store at ``job.store_path``.

    Args:
        shard: the items (none of them in the store yet).
        job: the extraction's settings.
        spec: the resolved encoder (its weights load here unless ``encoder`` is given).
        encoder: an encoder loaded already (a worker that runs many shards keeps one).
        report: added to as batches are written (what a Ctrl-C leaves is still counted).
        on_batch: called after each batch is written, from the writer thread.

    Raises:
        AudioError: an item cannot be decoded and ``on_error`` is ``stop`` (the items written
            before it are kept).
    """
    from ..cache.store import Store

    report = report if report is not None else ShardReport()
    if encoder is None:
        encoder, extents = load_encoder(spec, job, shard)
    else:
        extents = shard.extents or measure_extents(spec, job, shard)
    report.model_loaded = True
    report.extent_total += sum(extents)
    store = Store(Path(job.store_path))
    with store.part_writer(job.command) as writer:  # the driver commits once
        _ShardRun(shard, job, spec, encoder, extents, writer, report, on_batch).go()
    return report


def measure_extents(spec: EncoderSpec, job: Job, shard: Shard) -> tuple[float, ...]:
    """Each item's extent, from its header (audio: seconds after --max-seconds)."""
    source, settings = SOURCES[job.kind], settings_of(job.cfg)
    return tuple(source.extent(p, spec.sample_rate, settings) for p in shard.paths)


@dataclass
class _ShardRun:
    shard: Shard
    job: Job
    spec: EncoderSpec
    encoder: Encoder
    extents: Sequence[float]
    writer: Any
    report: ShardReport
    on_batch: OnBatch | None

    def go(self) -> None:
        cfg, enc, rate = self.job.cfg, self.encoder, self.spec.sample_rate
        self.layer_names = list(enc.layer_names)
        self.assembler = Assembler(cfg.pools, settings_of(cfg).windowed)
        order = sorted(range(len(self.shard)), key=lambda i: self.extents[i])
        stream = stream_of(self.spec, enc, rate)
        longest = cfg.window if cfg.window is not None else max(self.extents, default=1.0)
        if stream is not None:
            longest = min(longest, stream.size / rate)
        seconds = resolve_batch_seconds(cfg.batch_seconds, self.job.device, enc, rate, longest)
        self.report.batch_seconds = seconds
        budget = BatchBudget(seconds)
        source = SOURCES[self.job.kind]
        reading = Reading(source, rate, settings_of(cfg), stream, cfg.workers)
        extents = dict(enumerate(self.extents))
        events = decode_events(reading, self.shard.paths, order, extents)
        self.report.forward_seconds += run_pipeline(
            enc,
            batches(events, budget, rate),
            STAT_POOLS,
            self._sink,
            budget,
            threaded=cfg.workers > 0,
        )

    def _sink(self, batch: Batch, outs: list[dict[str, np.ndarray]]) -> None:
        """Write one encoded batch (runs in the pipeline's writer thread, batches in order)."""
        shard, rep, asm = self.shard, self.report, self.assembler
        for u, out in zip(batch.units, outs, strict=True):
            asm.add(u.row, u.start, out)
        for r, _ in batch.fails:  # the units of an item that failed midway are dropped
            asm.drop(r)
        finished = [r for r in batch.done if r in asm.open]
        items = asm.finish(finished, shard.ids, shard.hashes, self.extents)
        stop = self.job.cfg.on_error == "stop" and bool(batch.fails)
        fails = [] if stop else [(shard.ids[r], shard.hashes[r], str(e)) for r, e in batch.fails]
        self.writer.write(items, self.layer_names, fails)
        rep.computed += len(items)
        rep.failed += [{"id": i, "error": e} for i, _, e in fails]
        extent = sum(self.extents[r] for r in finished)
        rep.extent += extent
        if self.on_batch:
            self.on_batch(len(finished) + len(batch.fails), extent)
        if stop:
            row, err = batch.fails[0]
            line = shard.lines[row] if shard.lines else None
            raise AudioError(
                f"{err} (line {line or '?'} of the manifest); "
                f"{rep.computed} item(s) extracted before it are kept; fix or remove "
                "the file, or rerun with --on-error skip"
            )
