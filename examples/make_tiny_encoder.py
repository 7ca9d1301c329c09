"""Build a small random-initialized WavLM (no download) and save it like a hub model.

    python examples/make_tiny_encoder.py demo-out/tiny-wavlm

The folder then works wherever a hub id does: ``sslstack extract --model demo-out/tiny-wavlm``.
Random weights are no substitute for pretrained ones, but they exercise the exact code path of
``microsoft/wavlm-large`` (same family, same loader, same pooling) on a machine with no hub access.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import transformers as tf


def main(out: str, seed: int = 0) -> None:
    torch.manual_seed(seed)
    cfg = tf.WavLMConfig(
        hidden_size=96,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=192,
        conv_dim=(64,) * 7,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        conv_bias=True,
        num_conv_pos_embeddings=32,
        num_conv_pos_embedding_groups=4,
    )
    model = tf.WavLMModel(cfg).eval()
    tf.utils.logging.disable_progress_bar()  # no 'Writing model shards' bar in the demo
    model.save_pretrained(out)  # safetensors
    tf.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, do_normalize=True, return_attention_mask=True
    ).save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    layers = cfg.num_hidden_layers
    print(f"wrote {out}: random-init WavLM, {layers} layers, {n / 1e6:.2f} M parameters")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/make_tiny_encoder.py OUT_DIR")
    Path(sys.argv[1]).parent.mkdir(parents=True, exist_ok=True)
    main(sys.argv[1])
