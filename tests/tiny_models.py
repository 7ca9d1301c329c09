"""Tiny random-initialized transformers encoders, one per family, saved like a user's local model.

``make_tiny_model("wavlm-layer", tmp_path)`` builds the model from a small config (hidden 32,
2 layers, a 3-layer conv stack with the real 320-sample stride), saves it with ``save_pretrained``
(safetensors) together with its feature extractor, and returns the folder, so tests load it
through the same path as ``sslstack extract --model ./folder``. Nothing touches the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import transformers as tf

_COMMON: dict[str, Any] = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    hidden_dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    feat_proj_dropout=0.0,
    layerdrop=0.0,
    mask_time_prob=0.0,
    vocab_size=8,
)
_CONV: dict[str, Any] = dict(conv_dim=(32, 32, 32), conv_stride=(5, 8, 8), conv_kernel=(10, 8, 8))
_POS = dict(num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)


def _wave_cfg(cls: type, norm: str | None, **extra: Any) -> Any:
    kw: dict[str, Any] = {**_COMMON, **_CONV, **extra}
    if (
        norm is not None
    ):  # the "layer" variant is the large-model recipe: stable (pre-LN) layer norm
        kw.update(feat_extract_norm=norm, do_stable_layer_norm=norm == "layer")
    return cls(**kw)


def _configs() -> dict[str, Any]:
    out: dict[str, Any] = {}
    plain = {
        "wav2vec2": tf.Wav2Vec2Config,
        "hubert": tf.HubertConfig,
        "unispeech": tf.UniSpeechConfig,
        "unispeech-sat": tf.UniSpeechSatConfig,
    }
    for name, cls in plain.items():
        for norm in ("group", "layer"):
            extra = dict(num_codevectors_per_group=4, codevector_dim=8, proj_codevector_dim=8)
            out[f"{name}-{norm}"] = (cls, norm, {**_POS, **extra})
    for norm in ("group", "layer"):
        out[f"wavlm-{norm}"] = (
            tf.WavLMConfig,
            norm,
            {**_POS, "num_buckets": 16, "max_bucket_distance": 64},
        )
        out[f"sew-{norm}"] = (
            tf.SEWConfig,
            None,
            {**_POS, "feat_extract_norm": norm, "squeeze_factor": 2},
        )
        out[f"sew-d-{norm}"] = (
            tf.SEWDConfig,
            None,
            {
                **_POS,
                "feat_extract_norm": norm,
                "squeeze_factor": 2,
                "position_buckets": 16,
                "max_position_embeddings": 64,
                "pos_att_type": ("p2c", "c2p"),
            },
        )
        out[f"wav2vec2-conformer-{norm}"] = (
            tf.Wav2Vec2ConformerConfig,
            None,
            {
                **_POS,
                "feat_extract_norm": norm,
                "conv_depthwise_kernel_size": 7,
                "num_codevectors_per_group": 4,
                "codevector_dim": 8,
                "proj_codevector_dim": 8,
            },
        )
    out["data2vec-audio"] = (
        tf.Data2VecAudioConfig,
        None,
        {
            "num_conv_pos_embeddings": 2,
            "conv_pos_kernel_size": 5,
            "num_conv_pos_embedding_groups": 4,
        },
    )
    return out


_WAVE = _configs()
SPECTROGRAM = ("audio-spectrogram-transformer", "whisper")
#: Every tiny variant: ``<model_type>[-group|-layer]`` (both feature-encoder norms where the
#: family has them).
VARIANTS: tuple[str, ...] = tuple(_WAVE) + SPECTROGRAM


def _build(variant: str) -> tuple[Any, Any]:
    if variant in _WAVE:
        cls, norm, extra = _WAVE[variant]
        cfg = _wave_cfg(cls, norm, **extra)
        layer_fe = getattr(cfg, "feat_extract_norm", "layer") == "layer"
        fe = tf.Wav2Vec2FeatureExtractor(
            feature_size=1,
            sampling_rate=16000,
            padding_value=0.0,
            do_normalize=True,
            return_attention_mask=layer_fe,
        )
        return tf.AutoModel.from_config(cfg), fe
    if variant == "audio-spectrogram-transformer":
        cfg = tf.ASTConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
        )
        return tf.ASTModel(cfg), tf.ASTFeatureExtractor()
    if variant == "whisper":
        cfg = tf.WhisperConfig(
            d_model=32,
            encoder_layers=2,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            vocab_size=64,
            max_target_positions=16,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
            suppress_tokens=None,
            begin_suppress_tokens=None,
        )
        return tf.WhisperModel(cfg), tf.WhisperFeatureExtractor(feature_size=80)
    raise KeyError(f"unknown tiny variant {variant!r}; choose from {', '.join(VARIANTS)}")


def make_tiny_model(family: str, tmpdir: str | Path, seed: int = 0) -> Path:
    """Save a tiny random-init model of ``family`` (a name from :data:`VARIANTS`; a bare
    ``model_type`` such as ``"wavlm"`` picks its group-norm variant) into ``tmpdir/<family>``.

    Returns:
        The folder, loadable with ``sslstack extract --model <folder>``.
    """
    variant = family if family in VARIANTS else f"{family}-group"
    out = Path(tmpdir) / variant
    if (out / "config.json").exists():
        return out
    tf.utils.logging.disable_progress_bar()
    torch.manual_seed(seed)
    model, fe = _build(variant)
    with (
        torch.no_grad()
    ):  # random-init norms are identity; perturb them so pre-/post-LN differ visibly
        for name, p in model.named_parameters():
            if "norm" in name.lower() and p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(out, safe_serialization=True)
    fe.save_pretrained(out)
    return out
