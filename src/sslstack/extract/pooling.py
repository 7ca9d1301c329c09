"""Masked pooling over valid frames, on the device; only pooled vectors leave it.

Poolings are computed from mergeable statistics (count, mean, M2, max), so a clip that an
encoder must cut into chunks (Whisper's 30 s, AST's 10.24 s) pools exactly as if it were one
sequence: chunks merge with Chan's parallel update.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, EncoderError
from ..registry import Registry

if TYPE_CHECKING:  # torch is imported lazily: a fully cached rerun never loads it
    import torch


@dataclass
class Stats:
    """Per-item frame statistics of a stack of hidden states: tensors of shape (B, L, D)."""

    count: torch.Tensor  # (B, 1, 1)
    mean: torch.Tensor
    m2: torch.Tensor
    max: torch.Tensor

    def merge(self, other: Stats) -> Stats:
        import torch

        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n.clamp_min(1))
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / n.clamp_min(1))
        return Stats(n, mean, m2, torch.maximum(self.max, other.max))


def masked_stats(
    hidden: Sequence[torch.Tensor], mask: torch.Tensor | Sequence[torch.Tensor]
) -> Stats:
    """Statistics of each hidden state over the frames where ``mask`` is true.

    Args:
        hidden: L tensors of shape (B, T_l, D) (T may differ per layer, e.g. SEW).
        mask: (B, T) boolean tensor shared by all layers, or one mask per layer.
    """
    import torch

    counts, means, m2s, maxs = [], [], [], []
    for i, h in enumerate(hidden):
        m: torch.Tensor = mask[i] if isinstance(mask, (list, tuple)) else mask  # type: ignore[assignment]
        h = h.float()
        mf = m.to(h.dtype).unsqueeze(-1)  # (B, T, 1)
        n = mf.sum(dim=1).clamp_min(1.0)  # (B, 1)
        mean = (h * mf).sum(dim=1) / n
        m2 = (((h - mean.unsqueeze(1)) ** 2) * mf).sum(dim=1)
        mx = h.masked_fill(~m.unsqueeze(-1), float("-inf")).amax(dim=1)
        counts.append(n)
        means.append(mean)
        m2s.append(m2)
        maxs.append(mx)
    return Stats(
        torch.stack(counts, 1), torch.stack(means, 1), torch.stack(m2s, 1), torch.stack(maxs, 1)
    )


def split_stats(s: Stats) -> list[Stats]:
    """One :class:`Stats` per item of a batch."""
    return [
        Stats(s.count[b : b + 1], s.mean[b : b + 1], s.m2[b : b + 1], s.max[b : b + 1])
        for b in range(s.mean.shape[0])
    ]


def cat_stats(items: Sequence[Stats]) -> Stats:
    """Items' statistics as one batch (the inverse of :func:`split_stats`)."""
    import torch

    return Stats(
        *(torch.cat([getattr(s, f) for s in items]) for f in ("count", "mean", "m2", "max"))
    )


def cut_pieces(
    waves: Sequence[np.ndarray], cut: Callable[[np.ndarray], list[np.ndarray]]
) -> tuple[list[np.ndarray], list[int]]:
    """Every clip's pieces (``cut(wave)``), in clip order, and the clip each piece came from:
    what :func:`merge_pieces` takes back to per-clip statistics."""
    pieces: list[np.ndarray] = []
    owners: list[int] = []
    for i, w in enumerate(waves):
        cut_i = cut(w)
        pieces += cut_i
        owners += [i] * len(cut_i)
    return pieces, owners


def merge_pieces(piece_stats: Sequence[Stats], owners: Sequence[int], n_clips: int) -> Stats:
    """Merge per-piece statistics (one item each) into per-clip statistics, in clip order."""
    per_clip: list[list[Stats]] = [[] for _ in range(n_clips)]
    for s, i in zip(piece_stats, owners, strict=True):
        per_clip[i].append(s)
    if any(not p for p in per_clip):
        raise EncoderError("a clip produced no window")  # pragma: no cover (plans give one)
    return cat_stats([reduce(Stats.merge, p) for p in per_clip])


def _std(s: Stats) -> torch.Tensor:
    return (s.m2 / s.count.clamp_min(1.0)).clamp_min(0).sqrt()


POOLINGS: Registry[Callable[[Stats], torch.Tensor]] = Registry("pooling", flag="--pool")
POOLINGS.register("mean", lambda s: s.mean)
POOLINGS.register("std", _std)
POOLINGS.register("max", lambda s: s.max)


# The raw statistics, by the names an engine asks an encoder for instead of poolings: the engine
# merges them across the chunks of a long input and pools on the host (see pool_stats).
STAT_POOLS = ("stat:count", "stat:mean", "stat:m2", "stat:max")
_STAT_FIELDS = dict(zip(STAT_POOLS, ("count", "mean", "m2", "max"), strict=True))


def _pooling(name: str) -> Callable[[Stats], torch.Tensor]:
    field = _STAT_FIELDS.get(name)
    if field is not None:
        return lambda s: getattr(s, field)
    return POOLINGS[name]


def stats_of(out: dict[str, np.ndarray]) -> Stats:
    """One item's statistics from an encoder output holding :data:`STAT_POOLS` (host tensors)."""
    import torch

    try:
        return Stats(*(torch.from_numpy(np.asarray(out[p]))[None] for p in STAT_POOLS))
    except KeyError:
        raise EncoderError(
            "the encoder gave pooled vectors, not the statistics the engine asked for; an "
            "encoder must pool through sslstack.extract.pooling (finalize or Pooled.from_stats)"
        ) from None


def pool_stats(stats: Sequence[Stats], pools: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """``{pool: (L, D) float32}`` per item of ``stats`` (one item each), pooled on the host."""
    if not stats:
        return []
    return finalize(cat_stats(stats), pools)


def pool_names() -> list[str]:
    return POOLINGS.names()


def check_pools(pools: Sequence[str]) -> tuple[str, ...]:
    """Validate a list of pooling names (``--pool mean,std``)."""
    out = tuple(dict.fromkeys(p.strip() for p in pools if p.strip()))
    if not out:
        raise ConfigError(
            f"--pool {','.join(pools)}: no pooling given; choose from {POOLINGS.choices()}"
        )
    for p in out:
        POOLINGS.get(p)  # an unknown name: the registry's one message
    return out


def finalize(stats: Stats, pools: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """Per item: ``{pool: (L, D) float32 array}``."""
    return Pooled.from_stats(stats, pools, "cpu").get()


class Pooled:
    """The pooled vectors of one batch, possibly still on their way from the device.

    :meth:`from_stats` computes the poolings where the statistics are and, on CUDA, starts their
    copy into pinned host memory without waiting; :meth:`get` waits for that copy only (the one
    host-device synchronisation of a batch) and gives ``{pool: (L, D) float32}`` per item.
    """

    def __init__(
        self,
        arrays: dict[str, Any],
        event: Any = None,
        n: int = 0,
        items: list[dict[str, np.ndarray]] | None = None,
    ) -> None:
        self._arrays, self._event, self._n, self._items = arrays, event, n, items

    @classmethod
    def ready(cls, items: list[dict[str, np.ndarray]]) -> Pooled:
        """Vectors already on the host."""
        return cls({}, n=len(items), items=items)

    @classmethod
    def from_stats(cls, stats: Stats, pools: Sequence[str], device: str) -> Pooled:
        import torch

        arrays = {p: _pooling(p)(stats).float() for p in pools}
        if not device.startswith("cuda"):
            return cls(arrays, n=int(stats.mean.shape[0]))
        host = {}
        for p, t in arrays.items():
            host[p] = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            host[p].copy_(t, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return cls(host, event, int(stats.mean.shape[0]))

    def get(self) -> list[dict[str, np.ndarray]]:
        if self._items is not None:
            return self._items
        if self._event is not None:
            self._event.synchronize()
        out: list[dict[str, np.ndarray]] = [{} for _ in range(self._n)]
        for p, t in self._arrays.items():
            arr = t.cpu().numpy()
            for b in range(self._n):
                out[b][p] = arr[b]
        self._items = out
        return out
