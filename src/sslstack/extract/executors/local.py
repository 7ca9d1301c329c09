"""``--executor local``: the shards run one after another in this process, on one device,
through the pipeline of :mod:`sslstack.extract.pipeline`; the model loads once for all."""

from __future__ import annotations

from collections.abc import Sequence

from ..base import Encoder, EncoderSpec
from ..worker import Job, OnBatch, Shard, ShardReport, encode_shard, load_encoder
from . import Executor


class LocalExecutor(Executor):
    shards = 1

    def run(
        self,
        shards: Sequence[Shard],
        job: Job,
        spec: EncoderSpec,
        report: ShardReport,
        on_batch: OnBatch | None = None,
    ) -> ShardReport:
        encoder: Encoder | None = None
        for shard in shards:
            if not len(shard):
                continue
            if encoder is None:  # the weights load while the first shard's extents are read
                encoder, extents = load_encoder(spec, job, shard)
                shard = Shard(shard.ids, shard.paths, shard.hashes, extents, shard.lines)
            encode_shard(shard, job, spec, encoder=encoder, report=report, on_batch=on_batch)
        return report
