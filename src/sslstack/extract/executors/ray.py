"""``--executor ray``: extraction across the GPUs and machines of a Ray cluster.

A Ray Data pipeline (stages in :mod:`.ray_stages`) with the same results as ``local``::

    item list (only what the store lacks: ids, paths, content hashes, extents)
      -> decode_batch   CPU tasks: items -> arrays through their source (windows, crops);
                        only for GPU actors: an actor without a GPU reads its items itself
      -> EncoderActor   ActorPoolStrategy: one model per actor (one GPU, or some CPUs)
      -> write_part     CPU tasks: a block of encoded items -> one store part (part writer);
                        only for GPU actors: an actor without a GPU writes its parts itself
      -> the driver     iterates one summary row per part (its progress bar and report),
                        then commits the store once

Parts are written where they are computed, so the workspace must be on a filesystem every worker
sees at the same path (NFS, a cluster filesystem, or one machine); :func:`check_shared_workspace`
refuses in one line, before any model loads, when a node cannot see or write it.

Faults: Ray restarts a killed actor and retries its call; a part is renamed into place whole, so
a retried call at worst stores an item twice, and readers and compaction keep one copy (items
are addressed by content). A killed driver leaves every part written so far: a rerun plans only
the rest. Ctrl-C stops the pipeline (and the cluster's actors of this run); parts are kept.

This module is imported only for ``--executor ray``: the base install and ``local`` never
import Ray.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import AudioError, ConfigError, SslstackError
from . import Executor
from .ray_cluster import INSTALL_HINT, RayExecutorError, check_shared_workspace, connect, shutdown

try:
    import ray
except ImportError:  # the extra is not installed: RayExecutor() says how to install it
    ray = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from ..base import EncoderSpec
    from ..worker import Job, OnBatch, Shard, ShardReport

__all__ = ["RayExecutor", "RayExecutorError", "RayOptions", "check_shared_workspace", "connect"]
log = logging.getLogger(__name__)


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
        decode_in_actor: the encoder actors read their items themselves, in threads, as the
            local executor does (no decoding tasks); None: when they have no GPU.
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    items_per_call: int = 32
    decode_cpus: float = 0.5
    num_cpus: float | None = None
    decode_in_actor: bool | None = None

    def __post_init__(self) -> None:
        checks = (
            ("--ray-workers", self.workers, self.workers is None or self.workers >= 1),
            ("--gpus-per-worker", self.gpus_per_worker, (self.gpus_per_worker or 0) >= 0),  # 0: CPU
            ("--cpus-per-worker", self.cpus_per_worker, self.cpus_per_worker > 0),
            ("items_per_call", self.items_per_call, self.items_per_call >= 1),
            ("decode_cpus", self.decode_cpus, self.decode_cpus > 0),
        )
        for flag, value, ok in checks:
            if not ok:
                raise ConfigError(f"{flag} {value}: must be positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _resources(opts: RayOptions, device: str) -> tuple[int, float, float, bool]:
    """(actors, GPUs per actor, CPUs per actor, whether the actors decode) from the options and
    the cluster.

    Raises:
        RayExecutorError: the cluster cannot hold the actors asked for (they would wait for
            resources without end).
    """
    gpus = opts.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if device.startswith("cuda") else 0.0
    fused = not gpus if opts.decode_in_actor is None else opts.decode_in_actor
    have = ray.cluster_resources()
    workers = opts.workers
    if workers is None:
        workers = max(1, int(float(have.get("GPU", 0)) // gpus)) if gpus else 1
    cpus, decode = opts.cpus_per_worker, 0.0 if fused else opts.decode_cpus
    needs = (  # the CPUs of one decoding task too: actors holding every CPU starve decoding
        ("GPU", workers * gpus, f"--ray-workers {workers} x --gpus-per-worker {gpus:g}"),
        (
            "CPU",
            workers * cpus + decode,
            f"--ray-workers {workers} x --cpus-per-worker {cpus:g}"
            + (f" (+ {decode:g} to decode)" if decode else ""),
        ),
    )
    for name, need, what in needs:
        total = float(have.get(name, 0))
        if need > total:
            raise RayExecutorError(
                f"{what} needs {need:g} {name}(s); the Ray cluster has {total:g}: ask for fewer "
                "or smaller workers" + (", or use --device cpu" if name == "GPU" else "")
            )
    return workers, float(gpus), float(cpus), fused


class RayExecutor(Executor):
    """Runs the items of every shard as one Ray Data pipeline (see the module docstring)."""

    shards = 1

    def __init__(self, **options: Any) -> None:
        if ray is None:  # said before the plan hashes anything
            raise ConfigError(f"--executor ray: {INSTALL_HINT}")
        try:
            self.options = RayOptions(**options)
        except TypeError as e:
            names = ", ".join(RayOptions.__dataclass_fields__)
            raise ConfigError(f"--executor ray: {e}; the options are {names}") from None

    def run(
        self,
        shards: Sequence[Shard],
        job: Job,
        spec: EncoderSpec,
        report: ShardReport,
        on_batch: OnBatch | None = None,
    ) -> ShardReport:
        """Encode every shard's items on the cluster into the store's parts.

        Raises:
            RayExecutorError: the cluster is unreachable or the workspace is not shared.
            AudioError: ``--on-error stop`` and an item could not be decoded (the others are
                kept).
            KeyboardInterrupt: the cluster's work for this run is stopped; parts are kept.
        """
        from ..worker import measure_extents
        from .ray_stages import item_rows

        items = []
        for shard in shards:
            extents = shard.extents or measure_extents(spec, job, shard)
            items += item_rows(shard, extents)
        if not items:
            return report
        items.sort(key=lambda x: (x["extent"], x["id"]))  # similar lengths share a batch
        opts, t0 = self.options, time.perf_counter()
        need = (opts.workers or 1) * opts.cpus_per_worker + 1
        started = connect(opts.address, opts.num_cpus, need_cpus=need)
        phases = {"connect": time.perf_counter() - t0}
        try:
            # a local cluster this run started is this machine alone: its workers see the
            # workspace the driver sees, and the probe's task (a worker process) is not needed
            if started != "local":
                check_shared_workspace(Path(job.store_path) / "parts")
            phases["probe"] = time.perf_counter() - t0
            phases["first_part"] = _pipeline(job, spec, items, opts, report, on_batch) - t0
            phases["pipeline"] = time.perf_counter() - t0
        finally:
            if started:
                shutdown(started)
            phases["shutdown"] = time.perf_counter() - t0
            # where a run's time went (seconds since the start; benchmarks/scale.py shows them)
            log.debug("ray phases %s", {k: round(v, 2) for k, v in phases.items()})
        if job.cfg.on_error == "stop" and report.failed:
            raise AudioError(
                f"{report.failed[0]['error']}; {report.computed} item(s) extracted are kept; "
                "fix or remove the file, or rerun with --on-error skip"
            )
        return report


def _pipeline(
    job: Job,
    spec: EncoderSpec,
    items: list[dict[str, Any]],
    opts: RayOptions,
    report: ShardReport,
    on_batch: OnBatch | None,
) -> float:
    """Run the pipeline, adding each part's summary to ``report`` (and the progress bar) as it
    arrives; returns when (``time.perf_counter()``) the first part was written."""
    import json

    from .ray_stages import write_part

    _data_context()
    shape = _resources(opts, job.device)
    rjob, ds = _encoded(job, spec, items, opts, shape)
    if not rjob.in_actor:  # after GPU actors, parts are written by CPU tasks
        ds = ds.map_batches(write_part, fn_kwargs={"rjob": rjob}, batch_size=None, num_cpus=0.25)
    report.model_loaded = True
    first_at = None
    try:
        # the summaries stream to the driver as parts are written (a row each): the progress
        # bar moves with them, and their sums are the run's report
        for row in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
            failed = [f for js in row["failed"] for f in json.loads(str(js))]
            computed, extent = int(row["computed"].sum()), float(row["extent"].sum())
            report.computed += computed
            report.extent += extent
            report.failed += [{"id": i, "error": e} for i, e in failed]
            first_at = first_at or time.perf_counter()
            if on_batch is not None:
                on_batch(computed + len(failed), extent)
    except Exception as e:
        user = _user_error(e)
        if user is None:
            raise
        raise user from None
    return first_at or time.perf_counter()


def _data_context() -> None:
    """No progress bars or plans of Ray Data's own (sslstack shows its progress), and no memory
    polling in the workers (a thread reading the process's smaps every second: about 1 % of a
    core in an actor holding torch, for statistics nobody reads)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.memory_usage_poll_interval_s = None
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def _encoded(
    job: Job,
    spec: EncoderSpec,
    items: list[dict[str, Any]],
    opts: RayOptions,
    shape: tuple[int, float, float, bool],
) -> tuple[Any, Any]:
    """The stages' shared job and the dataset of encoded items: the item list -> (decoding
    tasks) -> encoder actors.

    With GPUs, decoding runs in CPU tasks on any node, so the actor's process only feeds its
    GPU, and the actors' output is the encoded items; without, the actors read their items in
    threads, as the local executor does, and write their parts: their output is the summaries.
    """
    from ray.data import ActorPoolStrategy

    from .ray_stages import EncoderActor, RayJob, decode_batch, decoded_bytes

    workers, gpus, cpus, fused = shape
    cfg = job.cfg
    longest = cfg.window if cfg.window is not None else max(x["extent"] for x in items)
    rjob = RayJob(job, spec.sample_rate, float(longest or 1.0), max(1, int(cpus)), fused)
    per_call = max(1, opts.items_per_call)
    ds: Any = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // per_call)))
    if not fused:
        ds = ds.map_batches(
            decode_batch,
            fn_kwargs={"rjob": rjob},
            batch_size=per_call,
            batch_format="numpy",
            num_cpus=opts.decode_cpus,
            # the memory a decoded batch holds; as the encoders reserve none, the two stages are
            # never fused: decoding runs in its own tasks, beside the forwards, on any node
            memory=decoded_bytes(rjob, per_call),
        )
    return rjob, ds.map_batches(
        type("EncoderActor", (EncoderActor,), {"rjob": rjob}),
        batch_size=per_call,
        compute=ActorPoolStrategy(size=workers),
        num_gpus=gpus,
        num_cpus=cpus,
        batch_format="numpy",
    )


def _user_error(e: BaseException) -> BaseException | None:
    """The sslstack or OS error a worker raised (a model that does not load, a full disk),
    unwrapped from Ray's task errors, so the CLI says it in one line; None for anything else."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (SslstackError, OSError)) and not isinstance(e, ray.exceptions.RayError):
            return e
        e = getattr(e, "cause", None) or e.__cause__  # type: ignore[assignment]
    return None
