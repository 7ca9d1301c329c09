"""``extract``: manifest -> items -> encoder -> pooled layers -> store, incremental and resumable.

This is the driver. The plan (:mod:`.plan`) is made before any model loads, so a rerun with
everything cached never loads the model. The rest becomes shards (plain data: ids, paths,
hashes) that an executor (:mod:`.executors`, ``--executor``, ``local`` by default) runs through
the worker function (:mod:`.worker`): items sorted by extent, decoded ahead through their source
(:mod:`.decode`, :mod:`sslstack.sources`), long ones streamed in chunks, cut into batches by
padded extent (:mod:`.batching`), run through the pipeline (:mod:`.pipeline`) whose writer
turns outputs into items (:mod:`.assemble`) and writes one store part per batch. The driver
commits the store once at the end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..cache import Store
from ..datasets import read_dataset_manifest, register_dataset
from ..errors import ConfigError
from ..manifest import Manifest
from ..parsing import parse_csv_list
from ..progress import ProgressBar
from ..sources import SOURCES
from ..workspace import Workspace
from .base import EncoderSpec, select_layers
from .config import (
    ExtractConfig,
    ExtractResult,
    default_pools,
    legacy_store_keys,
    resolve_device,
    resolve_dtype,
    store_key,
    validate_config,
)
from .executors import EXECUTORS, Executor
from .plan import Plan, make_plan
from .resolve import resolve_encoder
from .worker import Job, Shard, ShardReport


def extract(
    data: str | os.PathLike[str] | Manifest,
    model: str | ExtractConfig,
    *,
    workspace: str | os.PathLike[str] | Workspace | None = None,
    progress: Any = False,
    on_progress: Callable[[int, float], None] | None = None,
    executor_options: dict[str, Any] | None = None,
    **settings: Any,
) -> ExtractResult:
    """Extract every layer's pooled embeddings of ``model`` for the items of ``data``.

    Args:
        data: manifest CSV, folder of items, or an already-read :class:`Manifest`.
        model: an :class:`ExtractConfig` (used as it is), or the model (hub id, local model
            folder, model file, built-in name) with ``settings`` for the other fields.
        workspace: workspace folder (default ``$SSLSTACK_WORKSPACE`` or ``./.sslstack``).
        progress: show a rich progress bar on stderr (True, or the rich Console to draw on).
        on_progress: called with (items done, audio seconds done) after every batch is written
            (from the pipeline's writer thread).
        executor_options: options of ``executor`` (``ray``: address, workers, gpus_per_worker,
            cpus_per_worker, … of :class:`~sslstack.extract.executors.ray.RayOptions`).
        **settings: any :class:`ExtractConfig` field (pools, layers, window, hop, max_seconds,
            crop, dtype, storage, batch_seconds, device, workers, on_error, executor, revision…).

    Returns:
        An :class:`ExtractResult`; the store is readable with :func:`sslstack.load_embeddings`.
    """
    t0 = time.perf_counter()
    ws = Workspace.at(workspace)
    if isinstance(settings.get("pools"), str):
        settings["pools"] = tuple(parse_csv_list(settings["pools"]) or ())
    if isinstance(model, ExtractConfig) and settings:
        raise TypeError(f"extract(data, config) takes no other settings: {sorted(settings)}")
    config = model if isinstance(model, ExtractConfig) else ExtractConfig(model=model, **settings)
    cfg = validate_config(config)
    executor = EXECUTORS[cfg.executor](**(executor_options or {}))
    manifest = data if isinstance(data, Manifest) else read_dataset_manifest(ws, data)
    spec = resolve_encoder(
        cfg.model,
        cfg.revision,
        trust_remote_code=cfg.trust_remote_code,
        allow_unsafe_weights=cfg.allow_unsafe_weights,
    )
    check_kind(spec, manifest)
    if not cfg.pools:  # the encoder's declared default poolings
        cfg = replace(cfg, pools=default_pools(spec))
    if cfg.layers and spec.info.get("n_hidden"):  # before anything is created on disk
        select_layers(int(spec.info["n_hidden"]), cfg.layers)
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device, spec.info.get("dtypes"))
    dataset = register_dataset(ws, manifest)
    store = Store.open_or_create(
        ws.stores,
        store_key(spec, cfg, dtype),
        lambda: _provenance(spec, cfg),
        aliases=legacy_store_keys(spec, cfg, dtype),
    )
    store.heal()  # quarantine damaged parts (recomputed below), clean a killed writer's leftovers
    plan = make_plan(store, manifest, ws, dataset)
    result = ExtractResult(
        store=store.path.name,
        store_path=str(store.path),
        dataset=dataset,
        model=spec.model,
        items=len(manifest),
        computed=0,
        cached=plan.cached,
        failed=[{"id": i, "error": e} for i, e in plan.known_failed.items()],
        reused=len(plan.reuse),
    )
    if plan.todo:
        job = Job(cfg, manifest.kind, device, dtype, str(store.path))
        shards = make_shards(manifest, plan, executor.shards)
        _run_shards(executor, shards, job, spec, result, progress, on_progress)
    if plan.todo:
        store.commit()  # the parts the workers wrote become the store's, once
    result.seconds = time.perf_counter() - t0
    return result


def _run_shards(
    executor: Executor,
    shards: list[Shard],
    job: Job,
    spec: EncoderSpec,
    result: ExtractResult,
    progress: Any,
    on_progress: Callable[[int, float], None] | None,
) -> None:
    report = ShardReport()
    bar = _bar(progress, sum(map(len, shards)), spec)
    try:
        with bar:
            executor.run(shards, job, spec, report, _on_batch(bar, report, on_progress))
    except KeyboardInterrupt:
        result.interrupted = True
        raise
    finally:
        _add_report(result, report)


def check_kind(spec: EncoderSpec, manifest: Manifest) -> None:
    """Refuse, in one line, items of a kind the encoder does not take."""
    if spec.input_kind != manifest.kind:
        raise ConfigError(
            f"--model {spec.model} takes {spec.input_kind} items, but {manifest.source} holds "
            f"{manifest.kind} items; choose an encoder of {manifest.kind}"
        )


def make_shards(manifest: Manifest, plan: Plan, n: int = 1) -> list[Shard]:
    """The rows left to compute as ``n`` shards of plain data (consecutive rows each)."""
    ids, paths = manifest.ids, manifest.frame["path"].tolist()
    lines = manifest.frame["_line"].tolist() if "_line" in manifest.frame else None
    size = -(-len(plan.todo) // max(n, 1))
    shards = []
    for a in range(0, len(plan.todo), max(size, 1)):
        rows = plan.todo[a : a + size]
        shards.append(
            Shard(
                ids=tuple(ids[r] for r in rows),
                paths=tuple(paths[r] for r in rows),
                hashes=tuple(plan.hashes[ids[r]] for r in rows),
                lines=tuple(int(lines[r]) for r in rows) if lines else (),
            )
        )
    return shards


def _bar(progress: Any, total: int, spec: EncoderSpec) -> ProgressBar:
    label = f"extract {spec.model.split('/')[-1]}"
    console = None if isinstance(progress, bool) else progress
    unit = SOURCES[spec.input_kind].unit
    rate = "audio-s/s" if unit == "s" else f"{unit}/s"
    return ProgressBar(total, enabled=bool(progress), label=label, console=console, rate_unit=rate)


def _on_batch(
    bar: ProgressBar, report: ShardReport, on_progress: Callable[[int, float], None] | None
) -> Callable[[int, float], None]:
    def on_batch(items: int, extent: float) -> None:
        bar.total_amount = report.extent_total or None  # the ETA follows the extent left
        bar.advance(items, extent)
        if on_progress:
            on_progress(report.computed, report.extent)

    return on_batch


def _add_report(result: ExtractResult, report: ShardReport) -> None:
    result.computed += report.computed
    result.failed += report.failed
    result.audio_seconds += report.extent
    result.forward_seconds += report.forward_seconds
    result.batch_seconds = report.batch_seconds
    result.model_loaded = result.model_loaded or report.model_loaded


def _provenance(spec: EncoderSpec, cfg: ExtractConfig) -> dict[str, Any]:
    from importlib.metadata import version

    from .._version import __version__

    return {
        "model": spec.model,
        "revision": spec.revision,
        "family": spec.family,
        "sslstack": __version__,
        # the installed versions, read without importing them: a driver that only plans and
        # commits (--executor ray) never needs torch (an import costs seconds of a core)
        "torch": version("torch"),
        "transformers": version("transformers"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "encoder_info": spec.info,
        "config": cfg.to_dict(),
    }


__all__ = ["ExtractConfig", "ExtractResult", "extract"]
