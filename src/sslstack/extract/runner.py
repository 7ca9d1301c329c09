"""``extract``: manifest -> audio -> encoder -> pooled layers -> store, incremental and resumable.

The plan is made before any model loads: items whose id and audio hash the store already holds are
skipped, so a rerun with everything cached never loads the model. The rest is sorted by length,
cut into batches by total audio seconds, decoded and resampled by background threads while the
encoder runs, and written one batch per atomic store part.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import audio_duration, file_digest, iter_windows, load_audio
from ..cache.key import StoreKey
from ..cache.store import ItemResult, Store
from ..datasets import register_dataset
from ..errors import AudioError, ConfigError
from ..manifest import Manifest, read_manifest
from ..workspace import Workspace, atomic_write_text
from .base import Encoder, EncoderSpec, resolve_encoder
from .pooling import check_pools


@dataclass(frozen=True)
class ExtractConfig:
    """Settings of one extraction. Fields in the store key change values; the others do not."""

    model: str
    revision: str | None = None
    pools: tuple[str, ...] = ("mean",)
    layers: tuple[int, ...] | None = None
    window: float | None = None
    hop: float | None = None
    max_seconds: float | None = None
    crop: str = "start"
    dtype: str = "auto"
    storage: str = "float16"
    batch_seconds: float = 60.0
    device: str = "auto"
    workers: int = 2
    on_error: str = "stop"
    trust_remote_code: bool = False
    allow_unsafe_weights: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExtractConfig:
        return cls(**d)


@dataclass
class ExtractResult:
    """What one extraction did (also the ``--json`` line of ``sslstack extract``)."""

    store: str
    store_path: str
    dataset: str
    model: str
    items: int
    computed: int
    cached: int
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    audio_seconds: float = 0.0
    model_loaded: bool = False
    interrupted: bool = False

    @property
    def rate(self) -> float:
        return self.audio_seconds / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["audio_seconds_per_second"] = round(self.rate, 3)
        return d


def _validate(cfg: ExtractConfig) -> ExtractConfig:
    pools = check_pools(cfg.pools)
    if (cfg.window is None) != (cfg.hop is None) and cfg.window is None:
        raise ConfigError("--hop needs --window")
    hop = cfg.hop if cfg.hop is not None else cfg.window
    if cfg.window is not None and (cfg.window <= 0 or hop is None or hop <= 0):
        raise ConfigError(f"--window {cfg.window} --hop {hop}: both must be positive seconds")
    if cfg.max_seconds is not None and cfg.max_seconds <= 0:
        raise ConfigError(f"--max-seconds {cfg.max_seconds}: must be positive")
    if cfg.crop not in ("start", "center", "centre"):
        raise ConfigError(f"--crop {cfg.crop}: choose start or center")
    if cfg.dtype not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"--dtype {cfg.dtype}: choose auto, fp32 or bf16")
    if cfg.storage not in ("float16", "float32"):
        raise ConfigError(f"--storage {cfg.storage}: choose float16 or float32")
    if cfg.on_error not in ("stop", "skip"):
        raise ConfigError(f"--on-error {cfg.on_error}: choose stop or skip")
    if cfg.batch_seconds <= 0:
        raise ConfigError(f"--batch-seconds {cfg.batch_seconds}: must be positive")
    if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda:"):
        raise ConfigError(f"--device {cfg.device}: choose auto, cpu or cuda")
    layers = tuple(sorted(set(cfg.layers))) if cfg.layers else None
    crop = "center" if cfg.crop == "centre" else cfg.crop
    return ExtractConfig(
        **{**cfg.to_dict(), "pools": pools, "hop": hop, "layers": layers, "crop": crop}
    )


def _cuda_available() -> bool:
    """CUDA check that imports torch only where a GPU may exist (torch takes seconds to import,
    and a fully cached rerun must not pay for it)."""
    import glob
    import sys

    if "torch" not in sys.modules:
        if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
            return False
        if not glob.glob("/dev/nvidia[0-9]*") and not glob.glob("/dev/dxg"):
            return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if _cuda_available() else "cpu"
    if device.startswith("cuda") and not _cuda_available():
        raise ConfigError(f"--device {device}: no CUDA device is visible; use --device cpu")
    return device


def resolve_dtype(dtype: str, device: str, allowed: Sequence[str] | None = None) -> str:
    """``auto``: bf16 on CUDA, fp32 on CPU (bf16 is opt-in there: it is slower on CPUs without
    native bf16 matrix units); an encoder that runs in fp32 only (``allowed``) gets fp32."""
    if dtype != "auto":
        return dtype
    if allowed is not None and "bf16" not in allowed:
        return "fp32"
    return "bf16" if device.startswith("cuda") else "fp32"


def store_key(spec: EncoderSpec, cfg: ExtractConfig, dtype: str) -> StoreKey:
    return StoreKey(
        model=spec.model,
        revision=spec.revision,
        sample_rate=spec.sample_rate,
        pools=cfg.pools,
        layers=cfg.layers,
        window=cfg.window,
        hop=cfg.hop if cfg.window else None,
        max_seconds=cfg.max_seconds,
        crop=cfg.crop,
        dtype=dtype,
        storage=cfg.storage,
    )


def extract(
    data: str | os.PathLike[str] | Manifest,
    model: str,
    *,
    workspace: str | os.PathLike[str] | Workspace | None = None,
    progress: bool = False,
    on_progress: Callable[[int, float], None] | None = None,
    **settings: Any,
) -> ExtractResult:
    """Extract every layer's pooled embeddings of ``model`` for the items of ``data``.

    Args:
        data: manifest CSV, audio folder, or an already-read :class:`Manifest`.
        model: hub id, local model folder, or ``logmel``.
        workspace: workspace folder (default ``$SSLSTACK_WORKSPACE`` or ``./.sslstack``).
        progress: show a rich progress bar on stderr.
        on_progress: called with (items done, audio seconds done) after every batch.
        **settings: any :class:`ExtractConfig` field (pools, layers, window, hop, max_seconds,
            crop, dtype, storage, batch_seconds, device, workers, on_error, revision, …).

    Returns:
        An :class:`ExtractResult`; the store is readable with :func:`sslstack.load_embeddings`.
    """
    t0 = time.perf_counter()
    ws = Workspace.at(workspace)
    if isinstance(settings.get("pools"), str):
        settings["pools"] = tuple(settings["pools"].split(","))
    cfg = _validate(ExtractConfig(model=model, **settings))
    manifest = data if isinstance(data, Manifest) else read_manifest(data)
    dataset = register_dataset(ws, manifest)
    spec = resolve_encoder(
        cfg.model,
        cfg.revision,
        trust_remote_code=cfg.trust_remote_code,
        allow_unsafe_weights=cfg.allow_unsafe_weights,
    )
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device, spec.info.get("dtypes"))
    key = store_key(spec, cfg, dtype)
    store = Store.open_or_create(ws.stores, key, lambda: _provenance(spec, cfg))
    todo, hashes, known_failed = _plan(store, manifest, ws, dataset)
    result = ExtractResult(
        store=store.path.name,
        store_path=str(store.path),
        dataset=dataset,
        model=spec.model,
        items=len(manifest),
        computed=0,
        cached=len(manifest) - len(todo) - len(known_failed),
        failed=[{"id": i, "error": e} for i, e in known_failed.items()],
    )
    if todo:
        with store.writer() as writer:
            _run(
                spec,
                cfg,
                device,
                dtype,
                manifest,
                todo,
                hashes,
                writer,
                result,
                progress,
                on_progress,
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


def _hash_memo_path(ws: Workspace, dataset: str) -> Path:
    return ws.dataset_dir(dataset) / "hashes.csv"


def _content_hashes(ws: Workspace, dataset: str, manifest: Manifest) -> dict[str, str]:
    """SHA-1 of every file, reusing the memo when size and mtime are unchanged."""
    memo_path = _hash_memo_path(ws, dataset)
    memo: dict[str, tuple[int, int, str]] = {}
    if memo_path.exists():
        for line in memo_path.read_text().splitlines()[1:]:
            path, size, mtime, digest = line.rsplit(",", 3)
            memo[path] = (int(size), int(mtime), digest)
    out: dict[str, str] = {}
    changed = False
    for item, path in zip(manifest.ids, manifest.frame["path"], strict=True):
        st = os.stat(path)
        hit = memo.get(path)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            out[item] = hit[2]
            continue
        digest = file_digest(path)
        memo[path] = (st.st_size, st.st_mtime_ns, digest)
        out[item] = digest
        changed = True
    if changed:
        rows = ["path,size,mtime_ns,sha1"] + [f"{p},{s},{m},{d}" for p, (s, m, d) in memo.items()]
        atomic_write_text(memo_path, "\n".join(rows) + "\n")
    return out


def _plan(
    store: Store, manifest: Manifest, ws: Workspace, dataset: str
) -> tuple[list[int], dict[str, str], dict[str, str]]:
    """Rows still to compute, every item's hash, and known failures with unchanged audio."""
    hashes = _content_hashes(ws, dataset, manifest)
    stored = store.hashes()
    failed = store.failures
    todo, known_failed = [], {}
    for row, item in enumerate(manifest.ids):
        if stored.get(item) == hashes[item]:
            continue
        if item in failed and failed[item][0] == hashes[item]:
            known_failed[item] = failed[item][1]
            continue
        todo.append(row)
    return todo, hashes, known_failed


@dataclass
class _Unit:
    """One waveform sent to the encoder: a whole clip or one window of a clip."""

    row: int
    start: float | None
    wave: np.ndarray


_Event = tuple[
    str, int, Any
]  # ("unit", row, _Unit) | ("done", row, None) | ("fail", row, AudioError)


def _decode_error(path: str, e: Exception) -> AudioError:
    if isinstance(e, AudioError):
        return e
    return AudioError(f"{path}: cannot decode audio ({type(e).__name__}: {e})")


def _units(
    manifest: Manifest, rows: Sequence[int], cfg: ExtractConfig, sample_rate: int
) -> Iterator[_Event]:
    """Decoded units of the rows, in order, produced by background threads.

    Whole clips are decoded by a pool of ``workers`` threads a few files ahead. Windows are
    streamed by one thread through a bounded queue, so a 2-hour recording never sits in memory.
    """
    paths = manifest.frame["path"].tolist()
    if cfg.window is not None:
        _fixed_mmap_threshold()
        yield from _prefetch(_window_events(paths, rows, cfg, sample_rate), maxsize=64)
        return

    def load(row: int) -> _Unit | AudioError:
        try:
            wave = load_audio(paths[row], sample_rate, max_seconds=cfg.max_seconds, crop=cfg.crop)
            return _Unit(row, None, wave)
        except Exception as e:  # a decoder crash on a corrupt file must name the file
            return _decode_error(paths[row], e)

    def loaded() -> Iterator[tuple[int, _Unit | AudioError]]:
        if cfg.workers <= 0:  # decode in this thread, between forwards
            for row in rows:
                yield row, load(row)
            return
        workers = cfg.workers
        with ThreadPoolExecutor(workers, thread_name_prefix="sslstack-decode") as pool:
            it = iter(rows)
            pending = [
                (r, pool.submit(load, r)) for _, r in zip(range(workers * 4), it, strict=False)
            ]
            while pending:
                row, fut = pending.pop(0)
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(load, nxt)))
                yield row, fut.result()

    for row, got in loaded():
        if isinstance(got, AudioError):
            yield ("fail", row, got)
        else:
            yield ("unit", row, got)
            yield ("done", row, None)


def _fixed_mmap_threshold() -> None:
    """Stop glibc from raising its mmap threshold. Windows are allocated by one thread and freed
    by another; with the dynamic threshold those buffers land in heap arenas that fragment, and
    peak memory grows with the recording's length (measured: 653 MiB for a 2-hour file against
    463 MiB with a fixed threshold, see docs/benchmarks.md)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 1 << 17)  # M_MMAP_THRESHOLD = 128 KiB
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def _window_events(
    paths: list[str], rows: Sequence[int], cfg: ExtractConfig, sample_rate: int
) -> Iterator[_Event]:
    assert cfg.window is not None and cfg.hop is not None
    for row in rows:
        try:
            for start, wave in iter_windows(paths[row], sample_rate, cfg.window, cfg.hop):
                yield ("unit", row, _Unit(row, start, wave))
        except Exception as e:
            yield ("fail", row, _decode_error(paths[row], e))
            continue
        yield ("done", row, None)


def _prefetch(events: Iterator[_Event], maxsize: int) -> Iterator[_Event]:
    """Run ``events`` in a background thread, at most ``maxsize`` items ahead."""
    q: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for ev in events:
                while not stop.is_set():
                    try:
                        q.put(ev, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as e:  # surfaced in the consumer
            q.put(e)
        q.put(end)

    t = threading.Thread(target=produce, name="sslstack-windows", daemon=True)
    t.start()
    try:
        while (item := q.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def _batches(
    events: Iterator[_Event], batch_seconds: float, sample_rate: int
) -> Iterator[tuple[list[_Unit], list[tuple[int, AudioError]], list[int]]]:
    """Group units into batches of about ``batch_seconds`` of padded audio.

    Yields (units, failures, rows whose every unit has now been yielded)."""
    budget = batch_seconds * sample_rate
    batch: list[_Unit] = []
    fails: list[tuple[int, AudioError]] = []
    done: list[int] = []
    longest = 0
    for kind, row, payload in events:
        if kind == "fail":
            fails.append((row, payload))
            done.append(row)
        elif kind == "done":
            done.append(row)
        else:
            longest_next = max(longest, len(payload.wave))
            if batch and longest_next * (len(batch) + 1) > budget:
                yield batch, fails, done
                batch, fails, done, longest_next = [], [], [], len(payload.wave)
            batch.append(payload)
            longest = longest_next
    if batch or fails or done:
        yield batch, fails, done


def _run(
    spec: EncoderSpec,
    cfg: ExtractConfig,
    device: str,
    dtype: str,
    manifest: Manifest,
    todo: list[int],
    hashes: dict[str, str],
    writer: Any,
    result: ExtractResult,
    progress: bool,
    on_progress: Callable[[int, float], None] | None,
) -> None:
    ids = manifest.ids
    paths = manifest.frame["path"].tolist()
    durations = {r: audio_duration(paths[r]) for r in todo}
    if cfg.max_seconds is not None:
        durations = {r: min(d, cfg.max_seconds) for r, d in durations.items()}
    order = sorted(todo, key=lambda r: durations[r])
    total_audio = float(sum(durations.values()))
    encoder: Encoder = spec.load(device=device, dtype=dtype, layers=cfg.layers)
    result.model_loaded = True
    layer_names = list(encoder.layer_names)
    partial: dict[int, list[tuple[float | None, dict[str, np.ndarray]]]] = {}
    bar = _Progress(
        len(todo), total_audio, enabled=progress, label=f"extract {spec.model.split('/')[-1]}"
    )
    units = _units(manifest, order, cfg, spec.sample_rate)
    try:
        with bar:
            for batch, fails, done_rows in _batches(units, cfg.batch_seconds, spec.sample_rate):
                if batch:
                    outs = encoder.encode([u.wave for u in batch], cfg.pools)
                    for u, out in zip(batch, outs, strict=True):
                        partial.setdefault(u.row, []).append((u.start, out))
                failed_rows = {r for r, _ in fails}
                for r in failed_rows:  # windows of a file that failed midway are dropped
                    partial.pop(r, None)
                finished = [r for r in done_rows if r in partial]
                items = _complete(partial, finished, ids, hashes, durations, cfg)
                stop = cfg.on_error == "stop" and bool(fails)
                failures = [] if stop else [(ids[r], hashes[ids[r]], str(e)) for r, e in fails]
                writer.write(items, layer_names, failures)
                result.computed += len(items)
                result.failed += [{"id": i, "error": e} for i, _, e in failures]
                result.audio_seconds += sum(durations[r] for r in finished)
                bar.advance(len(finished) + len(fails), sum(durations[r] for r in finished))
                if on_progress:
                    on_progress(result.computed, result.audio_seconds)
                if stop:
                    row, err = fails[0]
                    raise AudioError(
                        f"{err} (line {manifest.line_of(ids[row]) or '?'} of the manifest); "
                        f"{result.computed} item(s) extracted before it are kept; fix or remove "
                        "the file, or rerun with --on-error skip"
                    )
    except KeyboardInterrupt:
        result.interrupted = True
        raise


def _complete(
    partial: dict[int, list[tuple[float | None, dict[str, np.ndarray]]]],
    rows: Sequence[int],
    ids: list[str],
    hashes: dict[str, str],
    durations: dict[int, float],
    cfg: ExtractConfig,
) -> list[ItemResult]:
    """Turn finished rows into store items (window rows: per-window vectors + clip aggregates)."""
    items = []
    for r in rows:
        parts = partial.pop(r)
        if cfg.window is None:
            clip = parts[0][1]
            items.append(ItemResult(ids[r], hashes[ids[r]], durations[r], clip))
            continue
        windows = {p: np.stack([o[p] for _, o in parts]) for p in cfg.pools}
        clip = {p: windows[p].mean(axis=0) for p in cfg.pools}
        clip.update({f"{p}_wmax": windows[p].max(axis=0) for p in cfg.pools})
        items.append(
            ItemResult(
                ids[r],
                hashes[ids[r]],
                durations[r],
                clip,
                [float(s or 0.0) for s, _ in parts],
                windows,
            )
        )
    return items


class _Progress:
    """A rich progress bar (files, audio-seconds/s, ETA) on stderr, or nothing."""

    def __init__(self, total: int, total_audio: float, *, enabled: bool, label: str) -> None:
        self.enabled = enabled
        self.total_audio = total_audio
        self._lock = threading.Lock()
        self._audio = 0.0
        self._t0 = time.perf_counter()
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            from .._cli_common import console

            self._p = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("files"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self._task = self._p.add_task(label, total=total, rate="")

    def __enter__(self) -> _Progress:
        if self.enabled:
            self._p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._p.stop()

    def advance(self, files: int, audio: float) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._audio += audio
            dt = max(time.perf_counter() - self._t0, 1e-9)
            self._p.update(self._task, advance=files, rate=f"{self._audio / dt:.1f} audio-s/s")


__all__ = ["ExtractConfig", "ExtractResult", "extract"]
