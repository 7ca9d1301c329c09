"""The encoder contract, and the registry that turns a ``--model`` string into an encoder.

An :class:`EncoderSpec` is what is known without loading weights (enough to build the store key
and to skip the model entirely when everything is cached); :meth:`EncoderSpec.load` gives an
:class:`Encoder` that pools every hidden state of a list of waveforms.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EncoderError
from ..registry import Registry
from .pooling import Pooled


class Encoder(ABC):
    """A loaded encoder. ``encode`` must be exact: a clip's pooled vectors may not depend on
    which other clips share its call (padding never changes an embedding).

    ``input_kind`` names the item source whose arrays it takes (:mod:`sslstack.sources`).
    Long inputs reach it in chunks (see :class:`sslstack.sources.Stream`): every
    ``spec.stream_seconds``, each holding ``stream_overlap`` more samples (what completes the
    last frame of a chunk), a last chunk only with at least ``stream_min`` samples. The engine asks
    for the raw statistics (:data:`~sslstack.extract.pooling.STAT_POOLS`) and merges the chunks'.
    """

    sample_rate: int
    layer_names: list[str]
    input_kind: str = "audio"
    device: str = "cpu"
    dtype: str = "fp32"
    oom_splits: int = 0  # batches halved after a device out-of-memory (the pipeline reads it)
    stream_overlap: int = 0
    stream_min: int = 1

    @abstractmethod
    def encode(
        self, waves: Sequence[np.ndarray], pools: Sequence[str]
    ) -> list[dict[str, np.ndarray]]:
        """Pool every kept hidden state of each waveform (float32 mono at ``sample_rate``, any
        length) over its valid frames: one ``{pool: (L, D) float32}`` per wave."""

    def prepare(self, waves: Sequence[np.ndarray]) -> Any:
        """The host-side half of :meth:`encode` (normalize, pad, pin): thread-safe and touching
        no device, so the extraction pipeline runs it in a worker ahead of the device. The
        default does nothing: :meth:`forward` then encodes the waves."""
        return list(waves)

    def forward(self, prepared: Any, pools: Sequence[str]) -> Pooled:
        """The device half: run a prepared batch; the result's ``get()`` gives what
        :meth:`encode` gives (it may wait for the device)."""
        return Pooled.ready(self.encode(prepared, pools))


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder resolved without loading weights.

    ``stream_seconds`` is the chunk length long inputs are encoded in (None: never cut);
    ``stream_exact`` says the chunks' merged statistics equal the whole input's (frames that
    never see past their own samples: log-mel), else the chunk length is part of the store key.
    """

    model: str  # normalized: hub id, absolute local path, or a built-in name
    revision: str
    sample_rate: int
    family: str
    loader: Callable[..., Encoder] = field(compare=False, repr=False)
    info: dict[str, Any] = field(default_factory=dict, compare=False)
    input_kind: str = "audio"
    stream_seconds: float | None = 30.0
    stream_exact: bool = False

    def load(
        self, *, device: str = "cpu", dtype: str = "fp32", layers: Sequence[int] | None = None
    ) -> Encoder:
        return self.loader(self, device=device, dtype=dtype, layers=layers)


BUILTINS: Registry[Callable[[], EncoderSpec]] = Registry(
    "built-in encoder",
    flag="--model",
    error=EncoderError,
    load=tuple(
        f"sslstack.extract.{m}" for m in ("logmel", "ge2e", "pretrained", "vision_pretrained")
    ),
)


def register_builtin(name: str) -> Callable[[Callable[[], EncoderSpec]], Callable[[], EncoderSpec]]:
    """Register a built-in encoder (``--model NAME``): a function giving its spec."""
    return BUILTINS.register(name)


def select_layers(n_hidden: int, layers: Sequence[int] | None) -> list[int]:
    """Validate ``--layers`` against the number of hidden states (embedding output = 0)."""
    if layers is None:
        return list(range(n_hidden))
    bad = [i for i in layers if not 0 <= i < n_hidden]
    if bad:
        raise EncoderError(
            f"--layers {','.join(map(str, layers))}: the model has hidden states 0..{n_hidden - 1} "
            f"(0 is the embedding output); {', '.join(map(str, bad))} out of range"
        )
    return sorted(set(layers))
