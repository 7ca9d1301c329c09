"""The loaded transformers encoder: one forward with every hidden state, pooled on the device.

Split from :mod:`sslstack.extract.hf_resolve` so that resolving a model (what a fully cached
rerun does) never imports torch or transformers.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import EncoderError
from .attention import use_sdpa
from .base import Encoder, EncoderSpec, Pooled, select_layers
from .families import (
    FAMILIES,
    Family,
    chunk_spans,
    frame_rate,
    layer_semantics,
    max_seconds,
    spectrogram_mask,
)
from .masked_norm import MaskedGroupNorm
from .pooling import Stats, masked_stats, merge_pieces, split_stats
from .precision import BF16_WEIGHTS, bf16_mode, fp32_grouped_convs

_PAD_WASTE = 1.25  # a pad group's padded samples stay within this factor of its real samples
_MAX_BUCKET = 64  # clips per forward in a bucket of identical lengths


def load_hf(
    spec: EncoderSpec,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    layers: Sequence[int] | None = None,
) -> HFEncoder:
    """Load the weights of a resolved spec (the ``EncoderSpec.load`` of transformers encoders)."""
    import transformers

    if dtype not in ("fp32", "bf16"):
        raise EncoderError(f"--dtype {dtype}: choose fp32 or bf16")
    folder, family = spec.info["path"], FAMILIES[spec.family]
    safe = any(Path(folder).glob("*.safetensors"))
    kw: dict[str, Any] = dict(
        trust_remote_code=spec.info.get("trust_remote_code", False),
        use_safetensors=safe,
        dtype=torch.float32,
        output_loading_info=True,
    )
    try:
        with _quiet(transformers):
            model, loading = transformers.AutoModel.from_pretrained(folder, **kw)
            fe = transformers.AutoFeatureExtractor.from_pretrained(
                folder, trust_remote_code=kw["trust_remote_code"]
            )
    except (OSError, ValueError) as e:
        raise EncoderError(f"--model {spec.model}: transformers cannot load it: {e}") from e
    module = model.get_encoder() if family.encoder_only else model
    _check_loaded(spec.model, module, loading, "encoder." if family.encoder_only else "")
    return HFEncoder(module, fe, family, spec, device=device, dtype=dtype, layers=layers)


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    log = transformers.utils.logging
    level, bars = log.get_verbosity(), log.is_progress_bar_enabled()
    log.set_verbosity_error()
    log.disable_progress_bar()  # the runner draws its own progress
    try:
        yield
    finally:
        log.set_verbosity(level)
        if bars:
            log.enable_progress_bar()


def _check_loaded(
    model: str, module: torch.nn.Module, loading: dict[str, Any], prefix: str
) -> None:
    """Refuse a model whose weights did not load (transformers only warns)."""
    params = dict(module.named_parameters())
    missing = [
        k[len(prefix) :]
        for k in loading.get("missing_keys", ())
        if k.startswith(prefix) and "masked_spec_embed" not in k
    ]
    n_missing = sum(params[k].numel() for k in missing if k in params)
    if n_missing > 0.01 * sum(p.numel() for p in params.values()):
        raise EncoderError(
            f"--model {model}: {len(missing)} weight tensors were not in the checkpoint "
            f"({', '.join(missing[:4])}, ...); the encoder would be random"
        )


class HFEncoder(Encoder):
    """A transformers encoder that pools every kept hidden state over valid frames.

    Layer ``"i"`` is ``hidden_states[i]``: 0 is the input of the first transformer layer (the
    embedding output), i the output of layer i. Pre-LayerNorm families also give ``"final"``,
    the model's ``last_hidden_state`` after its final LayerNorm (only when the last layer runs).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        fe: Any,
        family: Family,
        spec: EncoderSpec,
        *,
        device: str = "cpu",
        dtype: str = "fp32",
        layers: Sequence[int] | None = None,
    ) -> None:
        self.family, self.fe = family, fe
        self.cfg: Any = getattr(model, "config")  # noqa: B009  (typed as Any, not Module)
        self.sample_rate = int(fe.sampling_rate)
        self.device, self.dtype = device, dtype
        blocks = _get_attr(model, family.layers_path)
        self.keep = select_layers(len(blocks) + 1, layers)
        top = max(self.keep)
        if top < len(blocks):  # layers above the highest requested are never computed
            _set_attr(model, family.layers_path, type(blocks)(list(blocks)[:top]))
        self.final = family.pre_ln(self.cfg) and top == len(blocks)
        # Whisper ties hidden_states[-1] to the normalized output; untie it like the others
        self.cfg.tie_last_hidden_states = False
        self.layer_names = [str(i) for i in self.keep] + (["final"] if self.final else [])
        self.attn = use_sdpa(model)
        if family.prepare is not None:
            family.prepare(model)
        self.model: Any = model.eval().to(device)
        self._masked_norms = [m for m in model.modules() if isinstance(m, MaskedGroupNorm)]
        self._set_precision()
        self.batching = family.batching(self.cfg)
        self.min_samples = self._min_samples() if family.input == "waveform" else 400
        self.stream_min = self.min_samples  # a shorter tail of a long input gives no frame
        self.info = {
            **spec.info,
            "layers": self.layer_names,
            "n_layers": len(blocks),
            "frame_rate": frame_rate(family, self.cfg, fe),
            "max_input_s": max_seconds(family, fe),
            "layer_semantics": layer_semantics(self.final),
        }

    def _set_precision(self) -> None:
        """bf16: weights cast on CUDA, autocast on the CPU, whose grouped convolutions run in
        fp32 (see :mod:`sslstack.extract.precision`). fp32 changes nothing."""
        self.bf16 = bf16_mode(self.device) if self.dtype == "bf16" else None
        if self.bf16 == BF16_WEIGHTS:
            self.model.to(torch.bfloat16)
        if self.bf16 is not None and not self.device.startswith("cuda"):
            fp32_grouped_convs(self.model)

    def _min_samples(self) -> int:
        """Shortest input giving one frame in every hidden state; shorter clips get zero-padded."""
        need = self.family.squeeze(self.cfg)
        lo, hi = 1, 1 << 16
        while lo < hi:
            mid = (lo + hi) // 2
            if int(self.model._get_feat_extract_output_lengths(torch.tensor(mid))) >= need:
                hi = mid
            else:
                lo = mid + 1
        return lo

    # --- encode: prepare (CPU, any thread) then forward (the device) -----------------------

    def encode(
        self, waves: Sequence[np.ndarray], pools: Sequence[str]
    ) -> list[dict[str, np.ndarray]]:
        """Pool every kept hidden state of each wave over its valid frames.

        Returns:
            Per wave, ``{pool: (L, D) float32}`` with L = ``len(self.layer_names)``.
        """
        return self.forward(self.prepare(waves), pools).get()

    def prepare(self, waves: Sequence[np.ndarray]) -> _Prepared:
        """The CPU side of :meth:`encode`: chunk, group, normalize each clip, pad and pin.
        Touches no device, so a pipeline runs it in a worker while the device computes."""
        pieces: list[tuple[int, np.ndarray]] = []
        for i, w in enumerate(waves):
            pieces += [(i, c) for c in self._chunks(np.asarray(w, dtype=np.float32).reshape(-1))]
        groups = [
            (group, *self._collate([pieces[j][1] for j in group]))
            for group in self._groups([len(p[1]) for p in pieces])
        ]
        return _Prepared(len(waves), [i for i, _ in pieces], groups)

    def forward(self, prep: _Prepared, pools: Sequence[str]) -> Pooled:
        """Run the prepared groups on the device; the pooled statistics come back to the host
        without waiting (pinned, non-blocking) and :meth:`Pooled.get` waits for them."""
        if not prep.n_items:
            return Pooled.ready([])
        stats: dict[int, Stats] = {}
        for group, x, mask, n in prep.groups:
            stats.update(zip(group, self._run(x, mask, n), strict=True))
        merged = merge_pieces([stats[j] for j in range(len(prep.owner))], prep.owner, prep.n_items)
        return Pooled.from_stats(merged, pools, self.device)

    def _chunks(self, w: np.ndarray) -> list[np.ndarray]:
        """The model inputs of one clip: itself (zero-padded to the shortest input the model
        takes) or, for fixed-size models, consecutive full-size chunks."""
        if len(w) < self.min_samples:
            w = np.pad(w, (0, self.min_samples - len(w)))
        return [w[a:b] for a, b in chunk_spans(self.family, self.fe, len(w))]

    def _groups(self, lengths: list[int]) -> list[list[int]]:
        """Indices of pieces that may share one forward, per the family's batching policy."""
        order = sorted(range(len(lengths)), key=lambda j: lengths[j])
        if self.batching == "fixed":
            return [order]
        groups: list[list[int]] = []
        for j in order:
            if groups and self._joins(groups[-1], j, lengths):
                groups[-1].append(j)
            else:
                groups.append([j])
        return groups

    def _joins(self, group: list[int], j: int, lengths: list[int]) -> bool:
        if self.batching == "bucket":  # identical lengths only: no padding at all
            return lengths[group[0]] == lengths[j] and len(group) < _MAX_BUCKET
        real = sum(lengths[k] for k in group) + lengths[j]  # pad: bound the padding waste
        return lengths[j] * (len(group) + 1) <= _PAD_WASTE * real

    def _run(self, x: torch.Tensor, mask: torch.Tensor | None, n: torch.Tensor) -> list[Stats]:
        """Forward a group, halving it on CUDA out-of-memory (``oom_splits`` counts the halvings,
        so the pipeline can make its later batches smaller)."""
        try:
            return split_stats(self._forward(x, mask, n))
        except torch.cuda.OutOfMemoryError:
            if len(n) == 1:
                raise
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
            self.oom_splits += 1
            h = len(n) // 2
            lo = self._run(x[:h], None if mask is None else mask[:h], n[:h])
            return lo + self._run(x[h:], None if mask is None else mask[h:], n[h:])

    @torch.inference_mode()
    def _forward(self, x: torch.Tensor, mask: torch.Tensor | None, n: torch.Tensor) -> Stats:
        for norm in self._masked_norms:  # clip lengths known here: no device sync in the norm
            norm.host_samples = n
        x = self._to_device(x)
        kw = {"attention_mask": self._to_device(mask)} if mask is not None else {}
        with self._autocast(), warnings.catch_warnings():
            # WavLM mixes a bool padding mask with a float position bias: torch warns on
            # every forward, about its own deprecation, not about anything the user can fix
            warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
            out = self.model(x, output_hidden_states=True, **kw)
        hidden = [out.hidden_states[i] for i in self.keep]
        if self.final:
            hidden.append(out.last_hidden_state)
        n = n.to(self.device, non_blocking=True)
        if self.family.input == "waveform":
            masks = self._frame_masks(n, x.shape[1], hidden)
        else:
            masks = [
                spectrogram_mask(self.family, self.cfg, self.fe, n, h.shape[1]) for h in hidden
            ]
        return masked_stats(hidden, masks)

    def _collate(
        self, waves: list[np.ndarray]
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """A group's model input on the host (pinned for CUDA): (input, mask or None, lengths)."""
        n = torch.tensor([len(w) for w in waves])
        if self.family.input == "waveform":
            x, mask = self._waveform_inputs(waves)
        else:
            x, mask = self._spectrogram_inputs(waves), None
        if self.bf16 == BF16_WEIGHTS:  # the model's dtype, cast on the host: half the copy
            x = x.to(torch.bfloat16)
        if self.device.startswith("cuda"):
            x = x.pin_memory()
            mask = None if mask is None else mask.pin_memory()
        return x, mask, n

    def _normalize(self, w: np.ndarray) -> np.ndarray:
        """One clip through the feature extractor. ``Wav2Vec2FeatureExtractor`` (every waveform
        family's) is computed here directly: the same zero-mean unit-variance formula, without
        the ~0.2 ms of its call per clip (tested equal to the extractor's output)."""
        if type(self.fe).__name__ == "Wav2Vec2FeatureExtractor":
            x = np.asarray(w, dtype=np.float32)
            if self.fe.do_normalize:
                x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
            return x
        return self.fe(w, sampling_rate=self.sample_rate, return_tensors="np")["input_values"][0]

    def _waveform_inputs(self, waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor | None]:
        # normalize each clip alone (as the feature extractor would), then pad
        norm = [self._normalize(w) for w in waves]
        lens = [len(v) for v in norm]
        x = torch.full((len(norm), max(lens)), float(self.fe.padding_value))
        for b, v in enumerate(norm):
            x[b, : len(v)] = torch.from_numpy(np.asarray(v, dtype=np.float32))
        mask = None
        if min(lens) != max(lens):
            mask = (torch.arange(max(lens))[None, :] < torch.tensor(lens)[:, None]).long()
        return x, mask

    def _spectrogram_inputs(self, waves: list[np.ndarray]) -> torch.Tensor:
        feats = self.fe(waves, sampling_rate=self.sample_rate, return_tensors="pt")
        key = "input_features" if "input_features" in feats else "input_values"
        return feats[key].float()

    def _frame_masks(
        self, n: torch.Tensor, padded: int, hidden: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Each hidden state's valid frames, following its own length (SEW: half rate inside)."""
        lengths = self.model._get_feat_extract_output_lengths
        frames, full = lengths(n).long(), int(lengths(torch.tensor(padded)))
        squeeze = self.family.squeeze(self.cfg)
        masks = []
        for h in hidden:
            if h.shape[1] == full:
                valid = frames
            elif h.shape[1] == full // squeeze:
                valid = torch.div(frames, squeeze, rounding_mode="floor")
            else:
                raise EncoderError(
                    f"{self.family.model_type}: a hidden state has {h.shape[1]} frames, expected "
                    f"{full} or {full // squeeze}"
                )
            masks.append(torch.arange(h.shape[1], device=n.device)[None, :] < valid[:, None])
        return masks

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        """Host -> device without waiting (the input is pinned by :meth:`_collate` on CUDA)."""
        return t.to(self.device, non_blocking=True)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.bf16 is None or self.bf16 == BF16_WEIGHTS:
            return contextlib.nullcontext()
        return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)


@dataclass
class _Prepared:
    """A batch made ready on the host: per group (piece indices, input, mask, lengths)."""

    n_items: int
    owner: list[int]  # piece -> index of its wave
    groups: list[tuple[list[int], torch.Tensor, torch.Tensor | None, torch.Tensor]]


def _get_attr(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _set_attr(obj: Any, path: str, value: Any) -> None:
    *head, last = path.split(".")
    setattr(_get_attr(obj, ".".join(head)) if head else obj, last, value)
