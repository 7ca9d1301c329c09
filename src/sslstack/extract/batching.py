"""Batches sized for the device: units grouped by padded audio seconds, a budget that an
out-of-memory halves for good, and ``--batch-seconds auto``, found by trial forwards on CUDA."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..errors import AudioError
from .config import CPU_BATCH_SECONDS
from .decode import Event, Unit

MAX_AUTO_SECONDS = 4096.0  # beyond this a batch only delays the first write
_SAFETY = 0.7  # share of the free device memory a batch may plan to use


@dataclass
class Batch:
    """Units for one forward, the rows that failed to decode, the rows now complete."""

    units: list[Unit] = field(default_factory=list)
    fails: list[tuple[int, AudioError]] = field(default_factory=list)
    done: list[int] = field(default_factory=list)
    prepared: Any = None


class BatchBudget:
    """Padded audio seconds per batch, shared by the batcher and the device loop; halved (and
    kept halved) when the device runs out of memory."""

    def __init__(self, seconds: float, floor: float = 1.0) -> None:
        self._lock = threading.Lock()
        self.seconds, self.floor, self.halvings = float(seconds), floor, 0

    def halve(self) -> None:
        with self._lock:
            self.seconds = max(self.seconds / 2, self.floor)
            self.halvings += 1


def batches(
    events: Iterator[Event], budget: BatchBudget, sample_rate: int, ramp: int = 3
) -> Iterator[Batch]:
    """Group units into batches of about ``budget.seconds`` of padded audio (read at each
    decision, so a halving applies to the very next batch).

    The first ``ramp`` batches are 1/2**ramp, 1/2**(ramp-1), ... of the budget: the device starts
    on a small batch while the next ones are decoded, instead of waiting for a whole one.
    """
    batch = Batch()
    longest, n = 0, 0
    for kind, row, payload in events:
        if kind == "fail":
            batch.fails.append((row, payload))
            batch.done.append(row)
        elif kind == "done":
            batch.done.append(row)
        else:
            longest_next = max(longest, len(payload.wave))
            limit = budget.seconds * sample_rate / 2 ** max(ramp - n, 0)
            if batch.units and longest_next * (len(batch.units) + 1) > limit:
                yield batch
                n += 1
                batch, longest_next = Batch(), len(payload.wave)
            batch.units.append(payload)
            longest = longest_next
    if batch.units or batch.fails or batch.done:
        yield batch


class DeviceMemory(Protocol):
    """What auto sizing reads of a device (CUDA through torch; tests pass a fake)."""

    def reset_peak(self) -> None: ...

    def peak(self) -> int: ...

    def available(self) -> int: ...


class CudaMemory:
    def __init__(self, device: str) -> None:
        import torch

        self.torch, self.device = torch, torch.device(device)

    def reset_peak(self) -> None:
        self.torch.cuda.synchronize(self.device)
        self.torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int:
        self.torch.cuda.synchronize(self.device)
        return int(self.torch.cuda.max_memory_allocated(self.device))

    def available(self) -> int:
        """Free on the device plus what torch's cache holds but no tensor uses."""
        free, _ = self.torch.cuda.mem_get_info(self.device)
        cuda = self.torch.cuda
        return int(free + cuda.memory_reserved(self.device) - cuda.memory_allocated(self.device))


def auto_batch_seconds(
    run: Callable[[list[np.ndarray]], Any],
    memory: DeviceMemory,
    sample_rate: int,
    clip_seconds: float,
) -> float:
    """The padded audio seconds per batch that fit the device, from two trial forwards.

    ``run`` encodes a list of waves (synchronously). Batches of one and of two clips of
    ``clip_seconds`` (the longest in the data, so attention's quadratic memory is not under-
    estimated) give the memory per audio-second; the budget is what ``_SAFETY`` of the free
    memory holds on top of the one-clip peak, at least one clip, at most ``MAX_AUTO_SECONDS``.
    """
    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal(int(clip_seconds * sample_rate))).astype(np.float32)
    peaks = []
    for k in (1, 2):
        memory.reset_peak()
        run([clip] * k)
        peaks.append(memory.peak())
    per_second = max(peaks[1] - peaks[0], 1) / clip_seconds
    fits = clip_seconds + _SAFETY * memory.available() / per_second
    return float(min(max(fits, clip_seconds), MAX_AUTO_SECONDS))


def resolve_batch_seconds(
    value: float | str,
    device: str,
    encoder: Any,
    sample_rate: int,
    longest_seconds: float,
    memory: DeviceMemory | None = None,
) -> float:
    """``--batch-seconds``: a number as given; ``auto`` is 60 s on the CPU and found by trial
    forwards on CUDA (see :func:`auto_batch_seconds`)."""
    if value != "auto":
        return float(value)
    if not device.startswith("cuda") and memory is None:
        return CPU_BATCH_SECONDS
    clip_s = min(max(longest_seconds, 1.0), 120.0)
    mem = memory or CudaMemory(device)
    return auto_batch_seconds(
        lambda waves: encoder.encode(waves, ("mean",)), mem, sample_rate, clip_s
    )
