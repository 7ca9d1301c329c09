"""The Ray executor: extraction across the GPUs and machines of a Ray cluster.

A Ray Data pipeline with the same results as the local executor::

    item list (only what the store lacks: ids, paths, content hashes, sizes)
      -> decode           CPU tasks: audio -> waves at the encoder's rate (windows, crops)
      -> _EncoderActor    ActorPoolStrategy: one model per actor (one GPU, or some CPUs);
                          the waves go through the local pipeline's batching and forward
      -> _PartSink        a Datasink: ``write()`` runs in the workers and writes store parts
                          with the part writer; ``on_write_complete`` commits once, on the driver

Parts are written where they are computed, so the workspace must be on a filesystem that every
worker sees (NFS, a cluster filesystem, or one machine); :func:`check_shared_workspace` refuses
in one line before any model loads when a node cannot see or write it.

Faults: Ray restarts a killed actor and retries its batch; a part is renamed into place whole, so
a retried batch at worst writes an item twice, and the store keeps one copy of each (items are
addressed by id and content hash; compaction keeps one). A killed driver leaves every part
written so far: a rerun plans only the rest. Ctrl-C stops the pipeline (and the local cluster
this run started); what was written is kept.

This module is imported only when ``executor="ray"`` is asked for: the base install and the
local executor never import Ray.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, SslstackError

try:
    import ray
    from ray.data import Datasink
except ImportError:  # the extra is not installed: run_ray says how to install it
    ray = None
    Datasink = object

INSTALL_HINT = "the Ray executor needs Ray: pip install 'sslstack[ray]'"


class RayExecutorError(SslstackError):
    """The Ray cluster cannot run this extraction (unreachable, or the workspace is not shared)."""


@dataclass(frozen=True)
class RayOptions:
    """How the Ray executor uses the cluster (none of this changes a stored value).

    Attributes:
        address: cluster to join (``ray://host:10001`` or ``host:6379``); None joins
            ``$RAY_ADDRESS`` when set, else starts a local cluster for this run.
        workers: encoder actors (one model each); None: one per GPU of the cluster for CUDA
            (``gpus_per_worker`` each), one on the CPU.
        gpus_per_worker: GPUs per encoder actor (fractions share a GPU); None: 1 for CUDA, 0
            on the CPU.
        cpus_per_worker: CPUs reserved per encoder actor; also its torch threads (at least 1).
        items_per_call: items per actor call (the actor cuts them into device batches by
            ``--batch-seconds`` as the local executor does).
        decode_cpus: CPUs reserved per decoding task.
        num_cpus: logical CPUs of a local cluster started for this run (None: the machine's).
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    items_per_call: int = 32
    decode_cpus: float = 0.5
    num_cpus: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ what travels to the workers
@dataclass(frozen=True)
class RayJob:
    """Everything a worker needs, as plain data (no open files, no loaded model)."""

    store_path: str
    model: str
    revision: str | None
    sample_rate: int
    device: str
    dtype: str
    config: dict[str, Any]  # ExtractConfig.to_dict()
    longest: float  # seconds of the longest item (or the window): sizes `--batch-seconds auto`
    torch_threads: int = 1


def _item_rows(
    ids: Sequence[str],
    paths: Sequence[str],
    hashes: dict[str, str],
    durations: dict[int, float],
    rows: Sequence[int],
) -> list[dict[str, Any]]:
    """The item list: one small record per item to compute, largest files last."""
    out = [
        {
            "row": int(r),
            "id": ids[r],
            "path": str(paths[r]),
            "hash": hashes[ids[r]],
            "duration": float(durations[r]),
            "size": os.path.getsize(paths[r]),
        }
        for r in rows
    ]
    out.sort(key=lambda x: (x["size"], x["row"]))  # similar lengths share a batch
    return out


# ------------------------------------------------------------------ stage 1: decode (CPU tasks)
def decode_batch(batch: dict[str, np.ndarray], job: RayJob) -> dict[str, Any]:
    """Decode the items of a batch to waves at the encoder's rate (a Ray Data CPU task).

    Each item becomes one row: its units (the clip, or its windows) concatenated in ``wave``
    with their ``lengths`` and ``starts`` (NaN for a whole clip); an item that cannot be decoded
    keeps an empty wave and its one-line ``error``.
    """
    from ..audio import iter_windows, load_audio
    from .decode import _decode_error

    cfg = job.config
    waves, lengths, starts, errors = [], [], [], []
    for path in batch["path"]:
        try:
            if cfg["window"] is not None:
                got = list(iter_windows(path, job.sample_rate, cfg["window"], cfg["hop"]))
                units = [(float(s), w) for s, w in got]
            else:
                w = load_audio(
                    path, job.sample_rate, max_seconds=cfg["max_seconds"], crop=cfg["crop"]
                )
                units = [(float("nan"), w)]
            err = ""
        except Exception as e:  # a decoder crash on a corrupt file must name the file
            units, err = [], str(_decode_error(str(path), e))
        waves.append(np.concatenate([w for _, w in units]) if units else np.zeros(0, np.float32))
        lengths.append(np.array([len(w) for _, w in units], np.int64))
        starts.append(np.array([s for s, _ in units], np.float64))
        errors.append(err)
    return {
        "row": batch["row"],
        "id": batch["id"],
        "hash": batch["hash"],
        "duration": batch["duration"],
        "wave": _ragged(waves),
        "lengths": _ragged(lengths),
        "starts": _ragged(starts),
        "error": np.array(errors, dtype=object),
    }


def _ragged(arrays: list[np.ndarray]) -> np.ndarray:
    """An object array of arrays (Ray Data stores it as a variable-shaped tensor column)."""
    out = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        out[i] = a
    return out


# ------------------------------------------------------------------ stage 2: encode (actors)
class EncoderActor:
    """One loaded encoder (on one GPU, or some CPUs); called with batches of decoded items.

    A call runs the local executor's steps on its items — units cut into device batches by
    padded seconds, ``prepare`` then ``forward``, window aggregates assembled — so an item's
    vectors are exactly the local executor's.
    """

    job: RayJob  # set on the subclass the driver makes (see _pipeline)

    def __init__(self) -> None:
        import torch

        from .batching import BatchBudget, resolve_batch_seconds
        from .resolve import resolve_encoder

        job = self.job
        torch.set_num_threads(max(1, job.torch_threads))
        cfg = job.config
        spec = resolve_encoder(
            job.model,
            job.revision,
            trust_remote_code=cfg["trust_remote_code"],
            allow_unsafe_weights=cfg["allow_unsafe_weights"],
        )
        layers = tuple(cfg["layers"]) if cfg["layers"] else None
        self.encoder = spec.load(device=job.device, dtype=job.dtype, layers=layers)
        self.pools = tuple(cfg["pools"])
        seconds = resolve_batch_seconds(
            cfg["batch_seconds"], job.device, self.encoder, job.sample_rate, job.longest
        )
        self.budget = BatchBudget(seconds)
        self.layers_json = json.dumps(list(self.encoder.layer_names))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from ..errors import AudioError
        from .assemble import assemble
        from .batching import batches
        from .decode import Unit
        from .pipeline import run_pipeline

        n = len(batch["id"])
        events: list[tuple[str, int, Any]] = []
        for k in range(n):
            if batch["error"][k]:
                events.append(("fail", k, AudioError(str(batch["error"][k]))))
                continue
            wave, offset = np.asarray(batch["wave"][k], np.float32), 0
            for length, start in zip(batch["lengths"][k], batch["starts"][k], strict=True):
                s = None if np.isnan(start) else float(start)
                events.append(("unit", k, Unit(k, s, wave[offset : offset + int(length)])))
                offset += int(length)
            events.append(("done", k, None))
        partial: dict[int, list[Any]] = {}
        ids = [str(x) for x in batch["id"]]
        hashes = dict(zip(ids, (str(h) for h in batch["hash"]), strict=True))
        durations = {k: float(batch["duration"][k]) for k in range(n)}
        done: list[Any] = []

        def sink(b: Any, outs: list[dict[str, np.ndarray]]) -> None:
            for u, out in zip(b.units, outs, strict=True):
                partial.setdefault(u.row, []).append((u.start, out))
            for r, _ in b.fails:
                partial.pop(r, None)
            finished = [r for r in b.done if r in partial]
            done.extend(
                assemble(
                    partial,
                    finished,
                    ids,
                    hashes,
                    durations,
                    self.pools,
                    self.job.config["window"] is not None,
                )
            )

        stream = batches(iter(events), self.budget, self.job.sample_rate)
        run_pipeline(
            self.encoder,
            stream,
            self.pools,
            sink,
            self.budget,
            threaded=self.job.config["workers"] > 0,
        )
        return _encoded_columns(done, batch, self.pools, self.layers_json)


def _encoded_columns(
    items: list[Any], batch: dict[str, np.ndarray], pools: Sequence[str], layers_json: str
) -> dict[str, Any]:
    """Items (and the batch's failures) as columns: ``clip`` (P, L, D) and ``windows``
    (P, w, L, D) per item, empty for a failure."""
    rows = []
    clip_keys = list(items[0].clip) if items else list(pools)
    for it in items:
        clip = np.stack([it.clip[p] for p in clip_keys]).astype(np.float32)
        win = (
            np.stack([it.windows[p] for p in pools]).astype(np.float32)
            if it.window_starts
            else np.zeros((0, 0, 0, 0), np.float32)
        )
        rows.append((it.id, it.hash, it.duration, clip, np.asarray(it.window_starts), win, ""))
    for k, err in enumerate(batch["error"]):
        if err:
            empty3, empty4 = np.zeros((0, 0, 0), np.float32), np.zeros((0, 0, 0, 0), np.float32)
            rows.append(
                (
                    str(batch["id"][k]),
                    str(batch["hash"][k]),
                    float(batch["duration"][k]),
                    empty3,
                    np.zeros(0),
                    empty4,
                    str(err),
                )
            )
    cols = list(zip(*rows, strict=True)) if rows else [()] * 7
    return {
        "id": np.array(cols[0], dtype=object),
        "hash": np.array(cols[1], dtype=object),
        "duration": np.array(cols[2], dtype=np.float64),
        "clip": _ragged(list(cols[3])),
        "starts": _ragged(list(cols[4])),
        "windows": _ragged(list(cols[5])),
        "error": np.array(cols[6], dtype=object),
        "layers": np.array([layers_json] * len(rows), dtype=object),
        "keys": np.array([json.dumps([clip_keys, list(pools)])] * len(rows), dtype=object),
    }


# ------------------------------------------------------------------ stage 3: write (Datasink)
class PartSink(Datasink):  # type: ignore[misc,valid-type]
    """Writes each block of encoded items as one store part, in the worker that holds it, with
    the part writer (no lock, a name unique across hosts and processes); commits once on the
    driver when every block is written."""

    def __init__(self, store_path: str, on_error: str, progress: Any = None) -> None:
        self.store_path, self.on_error, self.progress = store_path, on_error, progress
        self.summary: dict[str, Any] = {"computed": 0, "audio": 0.0, "failed": []}

    def write(self, blocks: Iterable[Any], ctx: Any) -> dict[str, Any]:
        from ray.data.block import BlockAccessor

        writer = _part_writer(self.store_path)
        out: dict[str, Any] = {"computed": 0, "audio": 0.0, "failed": []}
        for block in blocks:
            cols = BlockAccessor.for_block(block).to_batch_format("numpy")
            if not len(cols["id"]):
                continue
            items, failures = _items_of(cols)
            layers = json.loads(str(cols["layers"][0]))
            writer.write(items, layers, failures if self.on_error == "skip" else [])
            audio = float(sum(it.duration for it in items))
            out["computed"] += len(items)
            out["audio"] += audio
            out["failed"] += [[i, e] for i, _, e in failures]
            if self.progress is not None:
                self.progress.add.remote(len(items) + len(failures), audio)
        return out

    def on_write_complete(self, write_result: Any) -> None:
        for r in write_result.write_returns:
            self.summary["computed"] += r["computed"]
            self.summary["audio"] += r["audio"]
            self.summary["failed"] += r["failed"]
        commit(self.store_path)


def _part_writer(store_path: str) -> Any:
    """A lock-free part writer of the store (it never touches another writer's files)."""
    from ..cache.store import Store
    from ..cache.writer import StoreWriter

    return StoreWriter(Store(Path(store_path)), command="sslstack extract --executor ray")


def commit(store_path: str) -> None:
    """The one commit of a run, on the driver: heal, compact, clean what dead writers left."""
    from ..cache.store import Store

    with Store(Path(store_path)).writer():
        pass


def _items_of(cols: dict[str, np.ndarray]) -> tuple[list[Any], list[tuple[str, str, str]]]:
    """Encoded columns back into store items and ``(id, hash, error)`` failures."""
    from ..cache.store import ItemResult

    clip_keys, pools = json.loads(str(cols["keys"][0]))
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
                float(cols["duration"][k]),
                {p: clip[j] for j, p in enumerate(clip_keys)},
                starts,
                {p: win[j] for j, p in enumerate(pools)} if starts else {},
            )
        )
    return items, failures


# ------------------------------------------------------------------ the driver
def connect(opts: RayOptions, need_cpus: float = 0.0) -> bool:
    """Join the cluster of ``opts.address`` (or ``$RAY_ADDRESS``), or start a local one.

    Returns:
        True when this call connected (the caller disconnects at the end); False when Ray was
        already initialized in this process (a notebook or a test that manages it).

    Raises:
        ConfigError: Ray is not installed.
        RayExecutorError: the cluster cannot be reached.
    """
    if ray is None:
        raise ConfigError(f"--executor ray: {INSTALL_HINT}")
    if ray.is_initialized():
        return False
    address = opts.address or os.environ.get("RAY_ADDRESS") or None
    # Ray's C++ core logs a warning about every actor pool (constructor arguments in the object
    # store) at error level; sslstack reports the run's errors itself
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    quiet = dict(log_to_driver=False, logging_level=logging.ERROR, include_dashboard=False)
    try:
        with _stderr_silenced():  # the core's "log level set" line: init errors still raise
            if address:
                ray.init(address=address, **quiet)
            else:
                cpus = opts.num_cpus or max(float(os.cpu_count() or 1), need_cpus)
                ray.init(num_cpus=cpus, **quiet)
    except ConnectionError as e:
        raise RayExecutorError(
            f"--address {address}: cannot reach a Ray cluster there ({e}); start one with "
            "'ray start --head' or leave --address out for a local cluster"
        ) from None
    return True


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null (the C++ core writes there, not to ``sys.stderr``)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def check_shared_workspace(folder: Path) -> None:
    """Refuse unless every alive node of the cluster sees ``folder`` and can write into it.

    The driver leaves a token file; a task pinned to each node checks that it sees the token
    (same filesystem, same path) and writes its own, which the driver then must see.

    Raises:
        RayExecutorError: one line naming the node and what it could not do.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = f".ray-probe-{uuid.uuid4().hex}"
    (folder / token).write_text("sslstack")
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe_folder)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    try:
        refs = [
            probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(str(folder), token)
            for n in nodes
        ]
        for node, (host, err) in zip(nodes, ray.get(refs, timeout=120), strict=True):
            if not err and not (folder / f"{token}-{host}").exists():
                err = "its file did not appear here"
            if err:
                raise RayExecutorError(
                    f"workspace {folder.parent.parent.parent}: Ray node {host} "
                    f"({node.get('NodeManagerAddress', '?')}) {err}; the workspace must be on "
                    "a filesystem every worker sees at the same path (NFS or a cluster "
                    "filesystem), or run on one machine"
                )
    finally:
        for f in folder.glob(f"{token}*"):
            f.unlink(missing_ok=True)


def _probe_folder(folder: str, token: str) -> tuple[str, str]:
    import socket

    host = socket.gethostname()
    if not os.path.exists(os.path.join(folder, token)):
        return host, f"does not see {folder} (not the same filesystem)"
    try:
        with open(os.path.join(folder, f"{token}-{host}"), "w") as fh:
            fh.write("sslstack")
    except OSError as e:
        return host, f"cannot write into {folder} ({e.strerror})"
    return host, ""


class _Progress:
    """Counts what the write tasks report (an actor: the driver polls it)."""

    def __init__(self) -> None:
        self.items, self.audio = 0, 0.0

    def add(self, items: int, audio: float) -> None:
        self.items += items
        self.audio += audio

    def get(self) -> tuple[int, float]:
        return self.items, self.audio


class _Poller:
    """Moves the driver's progress bar from the counts of the progress actor (a thread)."""

    def __init__(self, progress: Any, advance: Callable[[int, float], None]) -> None:
        self.progress, self.advance = progress, advance
        self.items, self.audio = 0, 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="sslstack-ray-progress", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.wait(0.5):
            try:  # the actor's first answer waits for its worker process to start
                items, audio = ray.get(self.progress.get.remote(), timeout=30)
            except Exception:  # slow to start, or the cluster is going away
                continue
            self._to(items, audio)

    def _to(self, items: int, audio: float) -> None:
        if items > self.items:
            self.advance(items - self.items, audio - self.audio)
            self.items, self.audio = items, audio

    def close(self, summary: dict[str, Any] | None) -> None:
        """Stop polling; with the run's summary, bring the bar to its exact end."""
        self.stop.set()
        self.thread.join()
        if summary is not None:
            self._to(summary["computed"] + len(summary["failed"]), summary["audio"])


def _resources(opts: RayOptions, device: str) -> tuple[int, float, float]:
    """(actors, GPUs per actor, CPUs per actor) from the options and the cluster."""
    gpus = opts.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if device.startswith("cuda") else 0.0
    workers = opts.workers
    if workers is None:
        have = float(ray.cluster_resources().get("GPU", 0)) if gpus else 0.0
        workers = max(1, int(have // gpus)) if gpus else 1
    if workers < 1:
        raise ConfigError(f"--ray-workers {workers}: give 1 or more")
    return workers, float(gpus), float(opts.cpus_per_worker)


def run_ray(
    job: RayJob,
    items: list[dict[str, Any]],
    opts: RayOptions,
    *,
    on_progress: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Run the pipeline over ``items`` (see the module docstring); commit once at the end.

    Returns:
        ``{"computed": n, "audio": seconds, "failed": [[id, error], ...], "workers": n}``.

    Raises:
        RayExecutorError: the cluster is unreachable or the workspace is not shared.
        KeyboardInterrupt: the cluster's work is stopped; written parts are kept.
    """
    started = connect(opts, need_cpus=(opts.workers or 1) * opts.cpus_per_worker + 1)
    try:
        check_shared_workspace(Path(job.store_path) / "parts")
        return _pipeline(job, items, opts, on_progress)
    finally:
        if started:
            ray.shutdown()


def _pipeline(
    job: RayJob,
    items: list[dict[str, Any]],
    opts: RayOptions,
    on_progress: Callable[[int, float], None] | None,
) -> dict[str, Any]:
    from ray.data import ActorPoolStrategy, DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    workers, gpus, cpus = _resources(opts, job.device)
    job = _with_threads(job, cpus)
    per_call = max(1, opts.items_per_call)
    progress = ray.remote(num_cpus=0)(_Progress).remote()
    sink = PartSink(job.store_path, job.config["on_error"], progress)
    ds = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // per_call)))
    ds = ds.map_batches(
        decode_batch,
        fn_kwargs={"job": job},
        batch_size=per_call,
        batch_format="numpy",
        num_cpus=opts.decode_cpus,
        # the memory a decoded batch holds; as the encoders reserve none, the two stages are
        # never fused: decoding runs in its own tasks, beside the forwards, on any node's CPUs
        memory=_decoded_bytes(job, per_call),
    )
    ds = ds.map_batches(
        # the job travels inside the class: constructor arguments would sit in the object store
        # and a restarted actor could lose them (ray-project/ray#53727)
        type("EncoderActor", (EncoderActor,), {"job": job}),
        batch_size=per_call,
        compute=ActorPoolStrategy(size=workers),
        num_gpus=gpus,
        num_cpus=cpus,
        batch_format="numpy",
    )
    poller = _Poller(progress, on_progress) if on_progress is not None else None
    summary = None
    try:
        ds.write_datasink(sink, ray_remote_args={"num_cpus": 0.25})
        summary = sink.summary
    finally:
        if poller is not None:
            poller.close(summary)
    return {**sink.summary, "workers": workers}


def _decoded_bytes(job: RayJob, items: int) -> int:
    """Bytes of one decoded batch (float32 at the encoder's rate), between 16 MiB and 1 GiB."""
    longest = job.config["max_seconds"] or job.longest
    need = int(items * longest * job.sample_rate * 4)
    return min(max(need, 16 << 20), 1 << 30)


def _with_threads(job: RayJob, cpus: float) -> RayJob:
    from dataclasses import replace

    return replace(job, torch_threads=max(1, int(cpus)))


def extract_on_ray(
    spec: Any,
    cfg: Any,
    device: str,
    dtype: str,
    manifest: Any,
    plan: Any,
    store: Any,
    result: Any,
    progress: Any,
    on_progress: Callable[[int, float], None] | None,
    opts: RayOptions,
) -> None:
    """The runner's hook: the plan's rows to compute, on Ray; fills ``result``.

    Raises:
        AudioError: ``--on-error stop`` and an item could not be decoded (the others are kept).
    """
    from ..audio import audio_duration
    from ..errors import AudioError
    from ..progress import ProgressBar

    paths = manifest.frame["path"].tolist()
    durations = {r: audio_duration(paths[r]) for r in plan.todo}
    if cfg.max_seconds is not None:
        durations = {r: min(d, cfg.max_seconds) for r, d in durations.items()}
    items = _item_rows(manifest.ids, paths, plan.hashes, durations, plan.todo)
    longest = cfg.window if cfg.window is not None else max(durations.values())
    job = RayJob(
        str(store.path),
        spec.model,
        cfg.revision,
        spec.sample_rate,
        device,
        dtype,
        cfg.to_dict(),
        float(longest),
    )
    label = f"extract {spec.model.split('/')[-1]} (ray)"
    console = None if isinstance(progress, bool) else progress
    bar = ProgressBar(len(items), enabled=bool(progress), label=label, console=console)
    done = [0, 0.0]

    def advance(n: int, audio: float) -> None:
        bar.advance(n, audio)
        done[0] += n
        done[1] += audio
        if on_progress:
            on_progress(min(done[0], len(items)), done[1])

    try:
        with bar:
            summary = run_ray(job, items, opts, on_progress=advance)
    except KeyboardInterrupt:
        result.interrupted = True
        raise
    result.model_loaded = True
    result.computed += summary["computed"]
    result.audio_seconds += summary["audio"]
    result.failed += [{"id": i, "error": e} for i, e in summary["failed"]]
    if cfg.on_error == "stop" and summary["failed"]:
        item, err = summary["failed"][0]
        raise AudioError(
            f"{err} (line {manifest.line_of(item) or '?'} of the manifest); "
            f"{result.computed} item(s) extracted are kept; fix or remove the file, or rerun "
            "with --on-error skip"
        )
