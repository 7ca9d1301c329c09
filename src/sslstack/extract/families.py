"""The transformers encoder families sslstack knows, keyed by ``config.model_type``.

Each entry is small: what the model reads (raw waveform or a spectrogram made by its own feature
extractor), where its transformer layer list lives (so ``--layers`` can cut the layers above the
highest one asked for), how a batch may be formed without changing any clip's embedding, whether
the model is pre-LayerNorm (its last hidden state is taken before the final LayerNorm), and the
frame rate of its hidden states. Adding a family touches this file and one test parametrization.

Batching policies, measured with tiny random-init models (see ``tests/extract/test_encoders.py``):

* ``pad``: zero-pad to the longest clip and pass the attention mask; exact (max relative
  difference 0) for wav2vec2, HuBERT, WavLM, UniSpeech and UniSpeech-SAT whose feature encoder
  uses per-frame LayerNorm (``feat_extract_norm == "layer"``). Their GroupNorm variants (the
  ``-base`` checkpoints) normalize the first convolution's output over time, which padding
  would shift by 11-17 %; the convolutions themselves are unpadded ("valid"), so that one norm
  is the only place padding leaks in. ``masked_norm.MaskedGroupNorm`` takes each clip's statistics
  over its own frames only, which makes padding exact for them too. data2vec-audio (stacked
  positional convolutions, 40 % off), the conformer (depthwise convolution over time, 30-60 %)
  and SEW/SEW-D (a squeezed attention key that is half padding, 0.02-0.06 %) leak padding in
  their transformers forward; ``exact_batch.exact_batches`` masks each leak, which makes them
  exact too (max relative difference ~1e-6, ``tests/extract/test_exact_batch.py``).
* ``bucket``: only clips of identical length share a forward (no padding at all): the policy
  for a family whose padding has not been made exact (none of the registered ones today).
* ``fixed``: the model always reads one fixed-size input (Whisper 30 s, AST 1024 frames), so
  every clip is padded anyway and any clips may share a batch; only frames holding audio are
  pooled, and longer clips are cut into full-size chunks whose statistics are merged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import EncoderError
from ..registry import Registry

if TYPE_CHECKING:  # imported lazily: resolving a model must not pay for torch
    import torch


def _never(cfg: Any) -> bool:
    return False


def _always(cfg: Any) -> bool:
    return True


def _stable_ln(cfg: Any) -> bool:
    return bool(getattr(cfg, "do_stable_layer_norm", False))


def _pad(cfg: Any) -> str:
    return "pad"


def _bucket(cfg: Any) -> str:
    return "bucket"


def _fixed(cfg: Any) -> str:
    return "fixed"


def _one(cfg: Any) -> int:
    return 1


def _squeeze(cfg: Any) -> int:
    return int(cfg.squeeze_factor)


@dataclass(frozen=True)
class Family:
    """One transformers encoder family.

    Attributes:
        model_type: ``config.model_type`` this entry handles.
        input: ``"waveform"`` (normalized raw samples) or ``"spectrogram"`` (the model's own
            feature extractor makes a fixed-size spectrogram).
        layers_path: dotted attribute path of the transformer layer list in the loaded module.
        batching: config -> ``"pad"``, ``"bucket"`` or ``"fixed"`` (see the module docstring).
        pre_ln: config -> True when ``hidden_states[-1]`` precedes a final LayerNorm; the
            normalized output (``last_hidden_state``) is then stored too, as layer ``"final"``.
        squeeze: config -> hidden states run at feature-encoder rate / squeeze (SEW: 2).
        encoder_only: take ``model.get_encoder()`` from the loaded model (Whisper).
        frontend: spectrogram families: ``"whisper"`` or ``"ast"`` (how frames map to audio).
        prepare: optional fix-up of the loaded module (exact padded batches, WavLM's SDPA
            attention).
    """

    model_type: str
    input: str
    layers_path: str
    batching: Callable[[Any], str] = _bucket
    pre_ln: Callable[[Any], bool] = _never
    squeeze: Callable[[Any], int] = _one
    encoder_only: bool = False
    frontend: str | None = None
    prepare: Callable[[torch.nn.Module], None] | None = None


FAMILIES: Registry[Family] = Registry(
    "encoder family", flag="config.model_type", error=EncoderError
)


def register(family: Family) -> Family:
    return FAMILIES.register(family.model_type, family)


def names() -> list[str]:
    return sorted(FAMILIES)


def _seq_first_contiguous(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple:
    h = args[0]  # (B, T, E), laid out so that the (T, B, E) view taken inside is contiguous
    return (h.transpose(0, 1).contiguous().transpose(0, 1), *args[1:]), kwargs


def _wavlm_contiguous(model: torch.nn.Module) -> None:
    """WavLM's attention calls ``F.multi_head_attention_forward`` on ``hidden_states.transpose(0,
    1)``. On CPU in bf16 the q/k/v projections of that non-contiguous (T, B, E) input fall back to
    a batched matmul that materializes the weight T times (aten::copy_ of [T, E, E]: 74 % of the
    time, bf16 3.6x slower than fp32 for a WavLM-large config). Handing the attention a tensor
    whose (T, B, E) view is contiguous keeps every value and takes the fast GEMM path."""
    for m in model.modules():
        if type(m).__name__ == "WavLMAttention":
            m.register_forward_pre_hook(_seq_first_contiguous, with_kwargs=True)


def _wav2vec2_prepare(model: torch.nn.Module) -> None:
    """Exact padded batches for GroupNorm feature encoders (nothing to do for LayerNorm ones)."""
    from .masked_norm import mask_group_norm  # torch-side; families.py stays torch-free

    mask_group_norm(model)


def _wavlm_prepare(model: torch.nn.Module) -> None:
    """Exact padded batches (as wav2vec2), and attention through SDPA with the same gated
    relative-position bias (which also avoids the bf16 CPU slow path of
    :func:`_wavlm_contiguous`, kept for transformers' own attention)."""
    from .attention import wavlm_sdpa

    _wav2vec2_prepare(model)
    wavlm_sdpa(model)


def _exact(model: torch.nn.Module) -> None:
    """Exact padded batches where padding leaks (see :mod:`sslstack.extract.exact_batch`)."""
    from .exact_batch import exact_batches

    exact_batches(model)


for _t in ("wav2vec2", "hubert", "unispeech", "unispeech-sat"):
    register(Family(_t, "waveform", "encoder.layers", _pad, _stable_ln, prepare=_wav2vec2_prepare))
register(Family("wavlm", "waveform", "encoder.layers", _pad, _stable_ln, prepare=_wavlm_prepare))
register(Family("data2vec-audio", "waveform", "encoder.layers", _pad, _never, prepare=_exact))
register(Family("sew", "waveform", "encoder.layers", _pad, _never, _squeeze, prepare=_exact))
register(
    Family("sew-d", "waveform", "encoder.encoder.layer", _pad, _never, _squeeze, prepare=_exact)
)
register(Family("wav2vec2-conformer", "waveform", "encoder.layers", _pad, _always, prepare=_exact))
register(
    Family(
        "audio-spectrogram-transformer", "spectrogram", "layers", _fixed, _always, frontend="ast"
    )
)
register(
    Family(
        "whisper", "spectrogram", "layers", _fixed, _always, encoder_only=True, frontend="whisper"
    )
)


# --- spectrogram frontends: chunk size and the frames that hold audio -------------------------


def chunk_samples(family: Family, fe: Any) -> int | None:
    """Samples of one full-size model input (None: the model takes any length)."""
    if family.frontend == "whisper":
        return int(fe.n_samples)
    if family.frontend == "ast":  # kaldi frames: 25 ms window, 10 ms hop, no centering
        return 400 + (int(fe.max_length) - 1) * 160
    return None


def chunk_spans(family: Family, fe: Any, n: int) -> list[tuple[int, int]]:
    """(start, stop) sample spans of the model inputs one clip of ``n`` samples needs.

    Whisper: consecutive 30 s pieces. AST: pieces whose 1024 frames tile the clip's frames
    exactly (each piece overlaps the next by the 240 samples that complete its last frame), and
    a tail only if it holds a whole frame.
    """
    size = chunk_samples(family, fe)
    if size is None or n <= size:
        return [(0, n)]
    if family.frontend == "ast":
        hop, tail = int(fe.max_length) * 160, 400
    else:
        hop, tail = size, 1
    return [(s, min(s + size, n)) for s in range(0, n, hop) if s == 0 or n - s >= tail]


def spectrogram_mask(
    family: Family, cfg: Any, fe: Any, n_samples: torch.Tensor, length: int
) -> torch.Tensor:
    """(B, length) mask of the hidden-state positions that hold audio, for chunks of
    ``n_samples`` samples each (padded by the feature extractor to the full input size).

    Whisper: 50 frames per audio-second (hop 160, conv stride 2). AST: the patch tokens whose
    time span is at least half audio (and always the first column); the CLS and distillation
    tokens are not frames and are not pooled.
    """
    import torch

    if family.frontend == "whisper":
        per_frame = 2 * int(fe.hop_length)  # mel hop, then the stride-2 convolution
        valid = torch.div(n_samples + per_frame - 1, per_frame, rounding_mode="floor")
        valid = valid.clamp(1, length)
        return torch.arange(length, device=n_samples.device)[None, :] < valid[:, None]
    f_dim = (cfg.num_mel_bins - cfg.patch_size) // cfg.frequency_stride + 1
    t_dim = (cfg.max_length - cfg.patch_size) // cfg.time_stride + 1
    if length != 2 + f_dim * t_dim:
        raise EncoderError(f"AST hidden states have {length} tokens, expected 2 + {f_dim}x{t_dim}")
    frames = torch.div(n_samples - 400, 160, rounding_mode="floor") + 1
    ti = torch.arange(t_dim, device=n_samples.device).repeat(f_dim)  # patches are frequency-major
    ok = (ti[None, :] * cfg.time_stride + cfg.patch_size // 2 <= frames[:, None]) | (
        ti[None, :] == 0
    )
    cls = torch.zeros(len(n_samples), 2, dtype=torch.bool, device=n_samples.device)
    return torch.cat([cls, ok], dim=1)


def max_seconds(family: Family, fe: Any) -> float | None:
    """The longest audio one model input holds (longer clips are chunked and merged)."""
    if family.frontend == "ast":
        return round(int(fe.max_length) * 160 / fe.sampling_rate, 3)
    n = chunk_samples(family, fe)
    return None if n is None else round(n / fe.sampling_rate, 3)


def frame_rate(family: Family, cfg: Any, fe: Any) -> float | None:
    """Hidden-state frames per audio-second (None for AST's 2-D patch grid)."""
    if family.frontend == "ast":
        return None
    if family.frontend == "whisper":
        return fe.sampling_rate / (2 * fe.hop_length)
    stride = math.prod(getattr(cfg, "conv_stride", (320,)))
    return fe.sampling_rate / stride / family.squeeze(cfg)


def layer_semantics(final: bool) -> str:
    """What the stored layer names mean for a transformers encoder (kept in the provenance)."""
    s = "layer i = hidden_states[i] (0: embedding output, i: output of transformer layer i)"
    if final:
        s += (
            ", taken before the final LayerNorm; 'final' = last_hidden_state, after it "
            "(stored when the last layer runs)"
        )
    return s
