"""``extract``: manifest -> audio -> encoder -> pooled layers -> store, incremental and resumable.

The plan (:mod:`.plan`) is made before any model loads, so a rerun with everything cached never
loads the model. The rest is sorted by length, decoded ahead by threads (:mod:`.decode`), cut
into batches by padded audio seconds (:mod:`.batching`), and run through the pipeline
(:mod:`.pipeline`) whose writer turns outputs into items (:mod:`.assemble`) and writes one atomic
store part per batch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..audio import audio_duration
from ..cache.store import Store, StoreWriter
from ..datasets import read_dataset_manifest, register_dataset
from ..errors import AudioError
from ..manifest import Manifest
from ..parsing import parse_csv_list
from ..progress import ProgressBar
from ..workspace import Workspace
from .assemble import Partial, assemble
from .base import EncoderSpec, select_layers
from .batching import Batch, BatchBudget, batches, resolve_batch_seconds
from .config import (
    ExtractConfig,
    ExtractResult,
    default_pools,
    resolve_device,
    resolve_dtype,
    store_key,
    validate_config,
)
from .decode import decode_events
from .pipeline import run_pipeline
from .plan import Plan, copy_reused, make_plan
from .resolve import resolve_encoder


def extract(
    data: str | os.PathLike[str] | Manifest,
    model: str,
    *,
    workspace: str | os.PathLike[str] | Workspace | None = None,
    progress: Any = False,
    on_progress: Callable[[int, float], None] | None = None,
    **settings: Any,
) -> ExtractResult:
    """Extract every layer's pooled embeddings of ``model`` for the items of ``data``.

    Args:
        data: manifest CSV, audio folder, or an already-read :class:`Manifest`.
        model: hub id, local model folder, or ``logmel``.
        workspace: workspace folder (default ``$SSLSTACK_WORKSPACE`` or ``./.sslstack``).
        progress: show a rich progress bar on stderr (True, or the rich Console to draw on).
        on_progress: called with (items done, audio seconds done) after every batch is written
            (from the pipeline's writer thread).
        **settings: any :class:`ExtractConfig` field (pools, layers, window, hop, max_seconds,
            crop, dtype, storage, batch_seconds, device, workers, on_error, revision, …).

    Returns:
        An :class:`ExtractResult`; the store is readable with :func:`sslstack.load_embeddings`.
    """
    t0 = time.perf_counter()
    ws = Workspace.at(workspace)
    if isinstance(settings.get("pools"), str):
        settings["pools"] = tuple(parse_csv_list(settings["pools"]) or ())
    cfg = validate_config(ExtractConfig(model=model, **settings))
    manifest = data if isinstance(data, Manifest) else read_dataset_manifest(ws, data)
    spec = resolve_encoder(
        cfg.model,
        cfg.revision,
        trust_remote_code=cfg.trust_remote_code,
        allow_unsafe_weights=cfg.allow_unsafe_weights,
    )
    if not cfg.pools:  # the encoder's declared default poolings
        cfg = replace(cfg, pools=default_pools(spec))
    if cfg.layers and spec.info.get("n_hidden"):  # before anything is created on disk
        select_layers(int(spec.info["n_hidden"]), cfg.layers)
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device, spec.info.get("dtypes"))
    dataset = register_dataset(ws, manifest)
    store = Store.open_or_create(
        ws.stores, store_key(spec, cfg, dtype), lambda: _provenance(spec, cfg)
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
    )
    if plan.todo or plan.reuse:
        with store.writer() as writer:
            result.reused = copy_reused(store, plan, writer)
            if plan.todo:
                _Run(spec, cfg, device, dtype, manifest, plan, writer, result).go(
                    progress, on_progress
                )
    result.seconds = time.perf_counter() - t0
    return result


def _provenance(spec: EncoderSpec, cfg: ExtractConfig) -> dict[str, Any]:
    import torch
    import transformers

    from .. import __version__

    return {
        "model": spec.model,
        "revision": spec.revision,
        "family": spec.family,
        "sslstack": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "encoder_info": spec.info,
        "config": cfg.to_dict(),
    }


@dataclass
class _Run:
    """One extraction's computing part: load, pipeline, and the sink that writes the store."""

    spec: EncoderSpec
    cfg: ExtractConfig
    device: str
    dtype: str
    manifest: Manifest
    plan: Plan
    writer: StoreWriter
    result: ExtractResult
    partial: Partial = field(default_factory=dict)
    durations: dict[int, float] = field(default_factory=dict)
    layer_names: list[str] = field(default_factory=list)
    on_progress: Callable[[int, float], None] | None = None
    bar: ProgressBar = field(default_factory=lambda: ProgressBar(0, enabled=False, label=""))

    def go(self, progress: Any, on_progress: Callable[[int, float], None] | None) -> None:
        cfg, todo = self.cfg, self.plan.todo
        with ThreadPoolExecutor(1, thread_name_prefix="sslstack-load") as pool:
            # the weights load while the files' durations are read
            loading = pool.submit(
                self.spec.load, device=self.device, dtype=self.dtype, layers=cfg.layers
            )
            paths = self.manifest.frame["path"].tolist()
            durations = {r: audio_duration(paths[r]) for r in todo}
            if cfg.max_seconds is not None:
                durations = {r: min(d, cfg.max_seconds) for r, d in durations.items()}
            encoder = loading.result()
        self.durations = durations
        self.on_progress = on_progress
        order = sorted(todo, key=lambda r: durations[r])
        self.result.model_loaded = True
        self.layer_names = list(encoder.layer_names)
        longest = cfg.window if cfg.window is not None else max(durations.values())
        seconds = resolve_batch_seconds(
            cfg.batch_seconds, self.device, encoder, self.spec.sample_rate, longest
        )
        self.result.batch_seconds = seconds
        budget = BatchBudget(seconds)
        label = f"extract {self.spec.model.split('/')[-1]}"
        console = None if isinstance(progress, bool) else progress
        self.bar = ProgressBar(len(todo), enabled=bool(progress), label=label, console=console)
        events = decode_events(self.manifest, order, cfg, self.spec.sample_rate)
        stream = batches(events, budget, self.spec.sample_rate)
        try:
            with self.bar:
                self.result.forward_seconds = run_pipeline(
                    encoder, stream, cfg.pools, self._sink, budget, threaded=cfg.workers > 0
                )
        except KeyboardInterrupt:
            self.result.interrupted = True
            raise

    def _sink(self, batch: Batch, outs: list[dict[str, np.ndarray]]) -> None:
        """Write one encoded batch (runs in the pipeline's writer thread, batches in order)."""
        ids, hashes, res = self.manifest.ids, self.plan.hashes, self.result
        for u, out in zip(batch.units, outs, strict=True):
            self.partial.setdefault(u.row, []).append((u.start, out))
        for r, _ in batch.fails:  # windows of a file that failed midway are dropped
            self.partial.pop(r, None)
        finished = [r for r in batch.done if r in self.partial]
        items = assemble(
            self.partial,
            finished,
            ids,
            hashes,
            self.durations,
            self.cfg.pools,
            self.cfg.window is not None,
        )
        stop = self.cfg.on_error == "stop" and bool(batch.fails)
        failures = [] if stop else [(ids[r], hashes[ids[r]], str(e)) for r, e in batch.fails]
        self.writer.write(items, self.layer_names, failures)
        res.computed += len(items)
        res.failed += [{"id": i, "error": e} for i, _, e in failures]
        audio = sum(self.durations[r] for r in finished)
        res.audio_seconds += audio
        self.bar.advance(len(finished) + len(batch.fails), audio)
        if self.on_progress:
            self.on_progress(res.computed, res.audio_seconds)
        if stop:
            row, err = batch.fails[0]
            raise AudioError(
                f"{err} (line {self.manifest.line_of(ids[row]) or '?'} of the manifest); "
                f"{res.computed} item(s) extracted before it are kept; fix or remove "
                "the file, or rerun with --on-error skip"
            )


__all__ = ["ExtractConfig", "ExtractResult", "extract"]
