"""The stages of the Ray executor's pipeline, as they run in the cluster's workers.

* :func:`decode_batch` — a CPU task: a batch of items, read through their source, becomes one
  row per item holding its units (the whole item, or its windows) back to back. Used when the
  encoder actors have GPUs, so decoding stays out of the process that feeds the GPU.
* :class:`EncoderActor` — one loaded encoder per actor: the units of a call go through the
  local executor's steps (chunks of long units, batches by padded extent, ``prepare`` then
  ``forward``, statistics merged and pooled by the :class:`~sslstack.extract.assemble.Assembler`)
  so an item's vectors are the local executor's. An actor without a GPU does the whole item's
  work itself, as the local executor does: it reads its items (``decode_events``: decoding
  threads beside the forwards, long items streamed in chunks) and writes their part. On CPUs a
  decoding or writing task would only compete with the encoder for the same cores, ship every
  array through the object store, and cost a worker process.
* :func:`write_part` — a block of encoded items becomes one store part (the lock-free part
  writer; a name unique across hosts and processes): in a CPU task after GPU actors, so a GPU's
  actor never waits on a disk, or in the CPU actor that encoded the block.

Every path ends in one small summary row per part (:func:`write_part`): the driver iterates them
as they come (its progress bar), sums them, and then commits the store once.

Everything here travels as plain data (:class:`RayJob`); Ray is imported by the caller.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..worker import Job, Shard, settings_of


@dataclass(frozen=True)
class RayJob:
    """What every stage shares: the extraction's :class:`~sslstack.extract.worker.Job` and what
    the driver resolved for it (no open file, no loaded model)."""

    job: Job
    rate: int  # the encoder's sample rate (the source's unit per second)
    longest: float  # extent of the longest item (or the window): sizes `--batch-seconds auto`
    torch_threads: int = 1
    in_actor: bool = False  # the actor reads its items (rows of paths) and writes their part

    @property
    def command(self) -> str:
        """The part writer's record of who wrote a part."""
        return f"{self.job.command} --executor ray"


def item_rows(shard: Shard, extents: Sequence[float]) -> list[dict[str, Any]]:
    """The item list: one small record per item (what travels to the first stage)."""
    lines = shard.lines or (None,) * len(shard)
    return [
        {
            "id": i,
            "path": str(p),
            "hash": h,
            "extent": float(e),
            "line": -1 if ln is None else int(ln),
        }
        for i, p, h, e, ln in zip(shard.ids, shard.paths, shard.hashes, extents, lines, strict=True)
    ]


# ------------------------------------------------------------------ stage 1: decode (CPU tasks)
def decode_batch(batch: dict[str, np.ndarray], rjob: RayJob) -> dict[str, Any]:
    """Decode a batch of items through their source (a Ray Data CPU task).

    Each item becomes one row: its units (the whole item, or its windows) concatenated in
    ``wave`` with their ``lengths`` and ``starts`` (NaN: not windowed); an item that cannot be
    decoded has no units and its one-line ``error``.
    """
    from ...sources import SOURCES
    from ..decode import _decode_error

    source, settings = SOURCES[rjob.job.kind], settings_of(rjob.job.cfg)
    waves, lengths, starts, errors = [], [], [], []
    for path in batch["path"]:
        try:
            if settings.window is not None:
                units = [(float(s), w) for s, w in source.windows(path, rjob.rate, settings)]
            else:
                units = [(float("nan"), source.load(path, rjob.rate, settings))]
            err = ""
        except Exception as e:  # a decoder crash on a corrupt file must name the file
            units, err = [], str(_decode_error(str(path), e, source.kind))
        waves.append(np.concatenate([w for _, w in units]) if units else np.zeros(0, np.float32))
        lengths.append(np.array([len(w) for _, w in units], np.int64))
        starts.append(np.array([s for s, _ in units], np.float64))
        errors.append(err)
    return {
        **{k: batch[k] for k in ("id", "hash", "extent", "line")},
        "wave": ragged(waves),
        "lengths": ragged(lengths),
        "starts": ragged(starts),
        "error": np.array(errors, dtype=object),
    }


def decoded_bytes(rjob: RayJob, items: int) -> int:
    """Bytes of one decoded batch (float32 at the encoder's rate), between 16 MiB and 1 GiB."""
    longest = rjob.job.cfg.max_seconds or rjob.longest
    need = int(items * longest * rjob.rate * 4)
    return min(max(need, 16 << 20), 1 << 30)


def ragged(arrays: list[np.ndarray]) -> np.ndarray:
    """An object array of arrays (Ray Data stores it as a variable-shaped tensor column)."""
    out = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        out[i] = a
    return out


# ------------------------------------------------------------------ stage 2: encode (actors)
class EncoderActor:
    """One loaded encoder (on one GPU, or some CPUs), called with batches of decoded items.

    The driver subclasses it with ``rjob`` set (constructor arguments would sit in the object
    store, where a restarted actor may not find them: ray-project/ray#53727).
    """

    rjob: RayJob

    def __init__(self) -> None:
        import torch

        from ..batching import BatchBudget, resolve_batch_seconds
        from ..resolve import resolve_encoder
        from ..worker import stream_of

        torch.set_num_threads(max(1, self.rjob.torch_threads))
        job, cfg = self.rjob.job, self.rjob.job.cfg
        spec = resolve_encoder(
            cfg.model,
            cfg.revision,
            trust_remote_code=cfg.trust_remote_code,
            allow_unsafe_weights=cfg.allow_unsafe_weights,
        )
        self.encoder = spec.load(device=job.device, dtype=job.dtype, layers=cfg.layers)
        self.stream = stream_of(spec, self.encoder, self.rjob.rate)
        longest = self.rjob.longest
        if self.stream is not None:
            longest = min(longest, self.stream.size / self.rjob.rate)
        seconds = resolve_batch_seconds(
            cfg.batch_seconds, job.device, self.encoder, self.rjob.rate, longest
        )
        self.budget = BatchBudget(seconds)
        self.layers_json = json.dumps(list(self.encoder.layer_names))
        self.ramp = 3  # small first batches on the first call only (later ones find work queued)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from ..assemble import Assembler
        from ..batching import batches
        from ..pipeline import run_pipeline
        from ..pooling import STAT_POOLS

        cfg = self.rjob.job.cfg
        ids = [str(x) for x in batch["id"]]
        hashes = [str(h) for h in batch["hash"]]
        extents = [float(x) for x in batch["extent"]]
        asm = Assembler(cfg.pools, cfg.window is not None)
        done: list[Any] = []
        fails: list[tuple[int, str]] = []

        def sink(b: Any, outs: list[dict[str, np.ndarray]]) -> None:
            for u, out in zip(b.units, outs, strict=True):
                asm.add(u.row, u.start, out)
            for r, err in b.fails:
                asm.drop(r)
                fails.append((r, str(err)))
            done.extend(asm.finish([r for r in b.done if r in asm.open], ids, hashes, extents))

        events = self._read(batch) if self.rjob.in_actor else self._events(batch)
        stream = batches(events, self.budget, self.rjob.rate, ramp=self.ramp)
        self.ramp = 0
        threaded = cfg.workers > 0
        run_pipeline(self.encoder, stream, STAT_POOLS, sink, self.budget, threaded=threaded)
        cols = encoded_columns(done, fails, batch, cfg.pools, self.layers_json)
        return write_part(cols, self.rjob) if self.rjob.in_actor else cols

    def _read(self, batch: dict[str, np.ndarray]) -> Iterator[tuple[str, int, Any]]:
        """The local executor's decode events for rows of paths (decoding threads here)."""
        from ...sources import SOURCES
        from ..decode import Reading, decode_events

        job, rate = self.rjob.job, self.rjob.rate
        reading = Reading(
            SOURCES[job.kind], rate, settings_of(job.cfg), self.stream, job.cfg.workers
        )
        paths = [str(p) for p in batch["path"]]
        extents = {k: float(x) for k, x in enumerate(batch["extent"])}
        return decode_events(reading, paths, range(len(paths)), extents)

    def _events(self, batch: dict[str, np.ndarray]) -> Iterator[tuple[str, int, Any]]:
        """The decode events of the local executor, units longer than a chunk in chunks."""
        from ...errors import AudioError
        from ..decode import Unit

        for k in range(len(batch["id"])):
            if batch["error"][k]:
                yield ("fail", k, AudioError(str(batch["error"][k])))
                continue
            wave, offset = batch["wave"][k], 0
            for length, start in zip(batch["lengths"][k], batch["starts"][k], strict=True):
                unit = wave[offset : offset + int(length)]
                offset += int(length)
                s = None if np.isnan(start) else float(start)
                cuts = self.stream.starts(len(unit)) if self.stream is not None else [0]
                size = self.stream.size if self.stream is not None else len(unit)
                for c in cuts:
                    yield ("unit", k, Unit(k, s, unit[c : c + size]))
            yield ("done", k, None)


def encoded_columns(
    items: list[Any],
    fails: list[tuple[int, str]],
    batch: dict[str, np.ndarray],
    pools: tuple[str, ...],
    layers_json: str,
) -> dict[str, Any]:
    """Items and the rows of ``batch`` that failed as columns: ``clip`` (P, L, D) and
    ``windows`` (P, w, L, D) per item, empty for a failure."""
    keys = list(items[0].clip) if items else list(pools)
    none3, none4 = np.zeros((0, 0, 0), np.float32), np.zeros((0, 0, 0, 0), np.float32)
    rows = []
    for it in items:
        clip = np.stack([it.clip[p] for p in keys]).astype(np.float32)
        win = np.stack([it.windows[p] for p in pools]).astype(np.float32) if it.windows else none4
        starts = np.asarray(it.window_starts, np.float64)
        rows.append((it.id, it.hash, it.extent, clip, starts, win, ""))
    for k, err in fails:
        line = int(batch["line"][k])
        where = f" (line {line} of the manifest)" if line >= 0 else ""
        item = (str(batch["id"][k]), str(batch["hash"][k]), float(batch["extent"][k]))
        rows.append((*item, none3, np.zeros(0), none4, f"{err}{where}"))
    cols = list(zip(*rows, strict=True)) if rows else [()] * 7
    n = len(rows)
    return {
        "id": np.array(cols[0], dtype=object),
        "hash": np.array(cols[1], dtype=object),
        "extent": np.array(cols[2], dtype=np.float64),
        "clip": ragged(list(cols[3])),
        "starts": ragged(list(cols[4])),
        "windows": ragged(list(cols[5])),
        "error": np.array(cols[6], dtype=object),
        "layers": np.array([layers_json] * n, dtype=object),
        "keys": np.array([json.dumps([keys, list(pools)])] * n, dtype=object),
    }


def items_of(cols: dict[str, np.ndarray]) -> tuple[list[Any], list[tuple[str, str, str]]]:
    """Encoded columns back into store items and ``(id, hash, error)`` failures."""
    from ...cache.item import ItemResult

    keys, pools = json.loads(str(cols["keys"][0]))
    items, failures = [], []
    for k in range(len(cols["id"])):
        item, digest, err = str(cols["id"][k]), str(cols["hash"][k]), str(cols["error"][k])
        if err:
            failures.append((item, digest, err))
            continue
        clip = np.asarray(cols["clip"][k], np.float32)
        starts = [float(s) for s in np.asarray(cols["starts"][k])]
        win = np.asarray(cols["windows"][k], np.float32)
        items.append(
            ItemResult(
                item,
                digest,
                float(cols["extent"][k]),
                {p: clip[j] for j, p in enumerate(keys)},
                starts,
                {p: win[j] for j, p in enumerate(pools)} if starts else {},
            )
        )
    return items, failures


# ------------------------------------------------------------------ stage 3: write a part
def write_part(cols: dict[str, np.ndarray], rjob: RayJob) -> dict[str, np.ndarray]:
    """Store a block of encoded items (:func:`encoded_columns`) as one part, in this worker.

    Returns one summary row: ``computed`` (items stored), ``extent`` (their seconds), ``failed``
    (JSON ``[[id, error], ...]``). With ``--on-error stop`` a failure is not stored, so a rerun
    tries the item again; the driver stops the run on the first one it is told of.
    """
    from ...cache.store import Store

    items, failures = items_of(cols) if len(cols["id"]) else ([], [])
    kept = failures if rjob.job.cfg.on_error == "skip" else []
    if items or kept:
        layers = json.loads(str(cols["layers"][0]))
        # the store's lock-free part writer, opened here; the driver commits
        with Store(Path(rjob.job.store_path)).part_writer(rjob.command) as writer:
            writer.write(items, layers, kept)
    return {
        "computed": np.array([len(items)], np.int64),
        "extent": np.array([float(sum(it.extent for it in items))], np.float64),
        "failed": np.array([json.dumps([[i, e] for i, _, e in failures])], dtype=object),
    }
