"""What one extraction is asked to do (:class:`ExtractConfig`), what it did
(:class:`ExtractResult`), and what is resolved before anything loads: device, dtype, store key."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..cache.key import StoreKey
from ..errors import ConfigError
from .base import EncoderSpec
from .pooling import check_pools

DEFAULT_POOLS = ("mean",)  # an encoder that declares no default poolings
CPU_BATCH_SECONDS = 60.0  # measured on CPU: larger batches only add padding (docs/benchmarks.md)


@dataclass(frozen=True)
class ExtractConfig:
    """Settings of one extraction. Fields in the store key change values; the others do not.

    ``batch_seconds`` is the padded audio seconds per forward, or ``"auto"``: the largest batch
    that fits the GPU (found by a trial forward), 60 s on the CPU.
    """

    model: str
    revision: str | None = None
    pools: tuple[str, ...] = ()  # empty: the encoder's default (spec.info["pools"], else mean)
    layers: tuple[int, ...] | None = None
    window: float | None = None
    hop: float | None = None
    max_seconds: float | None = None
    crop: str = "start"
    tta: str = "none"
    dtype: str = "auto"
    storage: str = "float16"
    batch_seconds: float | str = "auto"
    device: str = "auto"
    workers: int = 2
    on_error: str = "stop"
    executor: str = "local"
    trust_remote_code: bool = False
    allow_unsafe_weights: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExtractConfig:
        return cls(**d)


@dataclass
class ExtractResult:
    """What one extraction did (also the ``--json`` line of ``sslstack extract``).

    ``forward_seconds`` is the time the device loop spent in the encoder; ``reused`` counts items
    whose content the store holds, or this run computes, under another id (not recomputed).
    """

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
    reused: int = 0
    forward_seconds: float = 0.0
    batch_seconds: float | None = None

    @property
    def rate(self) -> float:
        return self.audio_seconds / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["audio_seconds_per_second"] = round(self.rate, 3)
        return d


def default_pools(spec: EncoderSpec) -> tuple[str, ...]:
    """The poolings an encoder extracts when ``--pool`` is not given: what its spec declares
    (``info["pools"]``, chosen from measurements: docs/encoders.md), else ``mean``."""
    return tuple(spec.info.get("pools") or DEFAULT_POOLS)


def _check_choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{flag} {value}: choose {', '.join(choices[:-1])} or {choices[-1]}")


def validate_config(cfg: ExtractConfig) -> ExtractConfig:
    """Check every setting and return the normalized config (sorted layers, hop = window)."""
    from ..sources.image import views_from_key  # an image store's key read back (predict)

    crop, window, hop, tta = views_from_key(cfg.crop, cfg.window, cfg.hop, cfg.tta)
    cfg = replace(cfg, crop=crop, window=window, hop=hop, tta=tta)
    pools = check_pools(cfg.pools) if cfg.pools else ()
    if cfg.hop is not None and cfg.window is None:
        raise ConfigError("--hop needs --window")
    hop = cfg.hop if cfg.hop is not None else cfg.window
    if cfg.window is not None and (cfg.window <= 0 or hop is None or hop <= 0):
        raise ConfigError(f"--window {cfg.window} --hop {hop}: both must be positive seconds")
    if cfg.max_seconds is not None and cfg.max_seconds <= 0:
        raise ConfigError(f"--max-seconds {cfg.max_seconds}: must be positive")
    _check_choice("--crop", cfg.crop, ("start", "center", "centre"))
    _check_choice("--dtype", cfg.dtype, ("auto", "fp32", "bf16"))
    _check_choice("--storage", cfg.storage, ("float16", "float32"))
    _check_choice("--on-error", cfg.on_error, ("stop", "skip"))
    _check_choice("--tta", cfg.tta, ("none", "flip", "five-crop", "ten-crop"))
    batch = _batch_seconds(cfg.batch_seconds)
    if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda:"):
        raise ConfigError(f"--device {cfg.device}: choose auto, cpu or cuda")
    if cfg.layers is not None and any(int(i) < 0 for i in cfg.layers):
        raise ConfigError(f"--layer {','.join(map(str, cfg.layers))}: layers are 0 or more")
    layers = tuple(sorted(set(cfg.layers))) if cfg.layers else None
    crop = "center" if cfg.crop == "centre" else cfg.crop
    return replace(cfg, pools=pools, hop=hop, layers=layers, crop=crop, batch_seconds=batch)


def _batch_seconds(value: float | str) -> float | str:
    if value == "auto":
        return value
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--batch-seconds {value}: give seconds or 'auto'") from None
    if seconds <= 0:
        raise ConfigError(f"--batch-seconds {value}: must be positive")
    return seconds


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
    """The store of these settings: the encoder's identity and poolings, the item source's own
    fields (audio: sample rate, window, hop, crop), and the chunk length long inputs are
    encoded in when chunking changes values (never for log-mel; only when an input can be
    longer than one chunk). A local model (folder or file) is keyed by its content fingerprint
    alone, never its path: a copy elsewhere shares its store."""
    from ..sources import SOURCES, Settings

    settings = Settings(cfg.window, cfg.hop, cfg.max_seconds, cfg.crop, cfg.tta)
    fields = SOURCES[spec.input_kind].key_fields(spec.sample_rate, settings)
    local = Path(spec.model).is_absolute()
    return StoreKey(
        model=spec.revision if local else spec.model,
        revision=spec.revision,
        pools=cfg.pools,
        layers=cfg.layers,
        dtype=dtype,
        storage=cfg.storage,
        chunk=_chunk_key(spec, cfg),
        **fields,
    )


def _chunk_key(spec: EncoderSpec, cfg: ExtractConfig) -> float | None:
    chunk = spec.stream_seconds
    if chunk is None or spec.stream_exact:
        return None
    bounded = [s for s in (cfg.window, cfg.max_seconds) if s is not None]
    if bounded and min(bounded) <= chunk:  # no input is ever longer than one chunk
        return None
    return chunk


def legacy_store_keys(spec: EncoderSpec, cfg: ExtractConfig, dtype: str) -> list[StoreKey]:
    """Keys an older sslstack gave the same store (a local model keyed by its absolute path):
    ``extract`` keeps extending such a store instead of starting a new one."""
    key = store_key(spec, cfg, dtype)
    if key.model == spec.model:
        return []
    return [replace(key, model=spec.model)]
