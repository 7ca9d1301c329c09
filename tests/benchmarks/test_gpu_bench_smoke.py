"""The GPU benchmark's code path, on the CPU with tiny configs: it must not rot between lent GPUs.

``benchmarks/extract.py`` runs once over every family it knows (``--arch all`` and the rest) on a
few seconds of audio; every sslstack row must carry a FLOP figure, a share of the (given) peak,
a ratio to the naive loop and a relative L2 distance from it. The FLOP count is checked against
a count by hand, and WavLM-large's against the figure the earlier GPU scripts measured.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as tf

from benchmarks import extract as bench
from benchmarks.flops import analytic_gflop_per_audio_s, counted_gflop_per_audio_s

MINI = Path(__file__).resolve().parents[2] / "examples" / "fsdd-mini"
WAVE = ("wav2vec2-base", "hubert-large", "data2vec-audio-base", "wavlm-large")


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    argv = ["--arch", *bench.ARCHS, "--tiny", "--data", str(MINI), "--hours", "0.002"]
    argv += ["--naive", "2", "--dtype", "fp32", "--flops", "--peak-tflops", "1"]
    argv += ["--workers", "1", "--threads", "1", "--json", str(out)]
    threads = torch.get_num_threads()
    try:
        res = bench.run(argv)
    finally:  # --threads sets torch's threads for the process: give the other tests theirs back
        torch.set_num_threads(threads)
    res["report"] = bench.report(res)
    res["json"] = out
    return res


def _ours(rows: list[dict]) -> dict[str, dict]:
    return {r["arch"]: r for r in rows if r["method"].startswith("sslstack")}


def test_all_families_are_covered() -> None:
    assert set(bench.ALL) <= set(bench.ARCHS)


def test_every_sslstack_row_has_flops_ratio_and_l2(result: dict) -> None:
    ours = _ours(result["rows"])
    assert sorted(ours) == sorted(bench.ARCHS)
    for arch, r in ours.items():
        assert r["gflop_per_audio_s"] > 0, arch
        expect = r["audio_s_per_s"] * r["gflop_per_audio_s"] * 1e9 / 1e12
        assert r["peak_frac"] == pytest.approx(expect), arch
        assert r["ratio_vs_naive"] > 0, arch
        assert math.isfinite(r["rel_l2_max"]) and r["rel_l2_max"] >= 0, arch
        assert r["batch_seconds"] and r["batch_seconds"] > 0, arch
    for arch in WAVE:  # exact batching: the same vectors as the naive fp32 loop
        assert ours[arch]["rel_l2_max"] < 1e-4, arch


def test_report_and_json_name_the_setup(result: dict) -> None:
    text = result["report"]
    assert "bf16 peak used: 1 TFLOP/s (--peak-tflops)" in text
    assert f"torch {torch.__version__} | CUDA" in text and f"transformers {tf.__version__}" in text
    assert "batch seconds chosen: wav2vec2-base 60" in text
    saved = json.loads(result["json"].read_text())
    assert saved["info"]["bf16_peak_tflops"] == 1.0
    assert len(saved["rows"]) == len(result["rows"])


@pytest.mark.parametrize("arch", WAVE)
def test_counted_flops_match_the_count_by_hand(arch: str) -> None:
    cfg = bench.make_config(arch, tiny=True)
    torch.manual_seed(0)
    model = tf.AutoModel.from_config(cfg).eval()
    x = 0.1 * np.random.default_rng(0).standard_normal(32000).astype(np.float32)
    inputs = bench._inputs(bench.ARCHS[arch][3](), x, "cpu")
    counted = counted_gflop_per_audio_s(model, inputs, seconds=2.0)
    # the issue asks for 10 %; the counts agree exactly, and 2 % catches attention going uncounted
    # (torch's counter has no formula for the CPU's fused attention kernel)
    assert counted == pytest.approx(analytic_gflop_per_audio_s(cfg, seconds=2.0), rel=0.02)


def test_wavlm_large_counts_38_4_gflop_per_audio_second() -> None:
    """The config of microsoft/wavlm-large, random init on the meta device (nothing computed)."""
    cfg = bench.make_config("wavlm-large")
    assert (cfg.conv_dim, cfg.conv_kernel, cfg.conv_stride) == (
        (512,) * 7,
        (10, 3, 3, 3, 3, 2, 2),
        (5, 2, 2, 2, 2, 2, 2),
    )
    with torch.device("meta"):
        model = tf.AutoModel.from_config(cfg).eval()
    x = 0.1 * np.random.default_rng(0).standard_normal(160000).astype(np.float32)
    inputs = bench._inputs(bench.ARCHS["wavlm-large"][3](), x, "meta")
    counted = counted_gflop_per_audio_s(model, inputs, seconds=10.0)
    assert counted == pytest.approx(38.4, rel=0.05)
    assert counted == pytest.approx(analytic_gflop_per_audio_s(cfg), rel=0.10)
