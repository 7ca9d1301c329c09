"""Executors: what runs the shards of an extraction (``--executor NAME``), a registry by name.

An executor takes the shards (plain data, see :mod:`sslstack.extract.worker`), runs
:func:`~sslstack.extract.worker.encode_shard` on each wherever it likes (this process; Ray
actors, one model per GPU) and returns the summed :class:`~sslstack.extract.worker.ShardReport`;
the driver commits the store once afterwards. ``local`` (this process: the collate thread ->
device loop -> writer thread pipeline) is the default and the only one in the base install.
Adding an executor is one file here with an :class:`Executor` subclass registered in
:data:`EXECUTORS`; an executor needing an optional package imports it in ``run``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ...registry import Registry

if TYPE_CHECKING:
    from ..base import EncoderSpec
    from ..worker import Job, OnBatch, Shard, ShardReport


class Executor(ABC):
    """Runs shards. ``shards`` hints how many shards it wants (1: all items in one)."""

    shards: int = 1

    @abstractmethod
    def run(
        self,
        shards: Sequence[Shard],
        job: Job,
        spec: EncoderSpec,
        report: ShardReport,
        on_batch: OnBatch | None = None,
    ) -> ShardReport:
        """Encode every shard into the store's parts; add what was done to ``report``."""


EXECUTORS: Registry[Callable[..., Executor]] = Registry("executor", flag="--executor")


def _local(**options: Any) -> Executor:
    from .local import LocalExecutor  # imports the pipeline and the store: only when run

    return LocalExecutor(**options)


def _ray(**options: Any) -> Executor:
    from .ray import RayExecutor  # imports Ray: only when asked for

    return RayExecutor(**options)


EXECUTORS.register("local", _local)
EXECUTORS.register("ray", _ray)


__all__ = ["EXECUTORS", "Executor"]
