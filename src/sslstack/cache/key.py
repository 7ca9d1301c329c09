"""The store key: every setting that changes stored values, and nothing that does not."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class StoreKey:
    """Identifies one embedding store. Batch size, device and worker count are not part of it.

    Attributes:
        model: hub id as given, or the absolute path of a local model folder, or ``logmel``.
        revision: the resolved commit (hub), a fingerprint of config and weights (local folder),
            or the built-in encoder's version.
        sample_rate: rate the audio is resampled to before the encoder.
        pools: poolings over valid frames, e.g. ``("mean", "std")``.
        layers: hidden-state indices kept (``None``: all of them).
        window: window length in seconds for long recordings (``None``: whole clips).
        hop: hop between windows in seconds.
        max_seconds: crop clips to this length (``None``: no crop).
        crop: ``start`` or ``center``.
        dtype: compute dtype of the forward pass (``fp32`` or ``bf16``).
        storage: ``float16`` or ``float32``.
        schema: layout version of the store.
        chunk: seconds long inputs are encoded in, when that changes values (None: not in the
            key, so stores made before the field existed keep their folder).
    """

    model: str
    revision: str
    sample_rate: int
    pools: tuple[str, ...] = ("mean",)
    layers: tuple[int, ...] | None = None
    window: float | None = None
    hop: float | None = None
    max_seconds: float | None = None
    crop: str = "start"
    dtype: str = "fp32"
    storage: str = "float16"
    schema: int = SCHEMA_VERSION
    chunk: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["chunk"] is None:
            del d["chunk"]
        d["pools"] = list(self.pools)
        d["layers"] = None if self.layers is None else list(self.layers)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StoreKey:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["pools"] = tuple(kw.get("pools", ("mean",)))
        if kw.get("layers") is not None:
            kw["layers"] = tuple(kw["layers"])
        return cls(**kw)

    def digest(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    def dirname(self) -> str:
        base = self.model.rstrip("/").split("/")[-1] if "/" in self.model else self.model
        if self.model.startswith("/"):
            base = "local-" + base
        elif "/" in self.model:
            base = self.model.replace("/", "--")
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-") or "model"
        return f"{slug}-{self.digest()}"

    def differences(self, other: StoreKey) -> list[str]:
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in {**a, **b} if a.get(k) != b.get(k)]


WINDOW_MAX_SUFFIX = "_wmax"


def window_pool_name(pool: str) -> str:
    """The clip-level pooling of a windowed store that takes the max over a recording's windows
    (``<pool>`` itself is their mean)."""
    return f"{pool}{WINDOW_MAX_SUFFIX}"


def is_window_pool(name: str) -> bool:
    return name.endswith(WINDOW_MAX_SUFFIX)
