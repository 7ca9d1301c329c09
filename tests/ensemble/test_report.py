"""``report``: one self-contained HTML file whose plots are embedded PNGs, checked in Chromium."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from sslstack.ensemble import report, stack
from tests.ensemble_synth import add_run, make_dataset, probs

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
IMG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _workspace(tmp_path: Path, task: str):
    s = make_dataset(tmp_path, task, n=160)
    for layer in (2, 6, 10):
        for pool in ("mean", "std"):
            feats = [{"store": "fake-0123", "model": "org/tiny", "layer": str(layer), "pool": pool}]
            scores = {}
            add_run(
                s,
                probs(s, 0.5 + layer / 8, seed=layer + len(pool), temp=2.0),
                f"logreg-{layer}-{pool}",
                meta={"features": feats, "scores": scores, "encoder": "org/tiny"},
            )
    # runs.json scores as fit-head writes them: every metric of the task
    from sslstack.ensemble.base_runs import join_runs
    from sslstack.ensemble.encoding import score_all
    from sslstack.runs import list_runs
    from sslstack.workspace import atomic_write_json

    for r in list_runs(s.ws):
        base = join_runs(s.ws, [r])
        atomic_write_json(
            r.dir / "run.json",
            {**r.record.to_dict(), "scores": score_all(s.enc, base.y, base.P[0])},
            checksum=True,
        )
    stack(s.ws, method="logreg", calibrate="temperature")
    return s


def _pngs(html: str) -> dict[str, bytes]:
    return {alt: base64.b64decode(data) for alt, data in IMG.findall(html)}


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_report_embeds_valid_pngs(tmp_path: Path, task: str) -> None:
    s = _workspace(tmp_path, task)
    out = tmp_path / "report.html"
    res = report(s.ws, out=out)
    html = out.read_text()
    pngs = _pngs(html)
    assert res["plots"] == len(pngs) > 0
    for alt, png in pngs.items():
        assert png[:8] == b"\x89PNG\r\n\x1a\n", alt
        img = imread(io.BytesIO(png), format="png")
        assert img.shape[0] > 50 and img.shape[1] > 50, alt
    names = set(pngs)
    assert "reliability diagram" in names
    assert any(n.startswith("tiny:") for n in names)  # score against layer of the runs
    assert ("confusion matrix" in names) == (task != "multilabel")
    assert ({"ROC curve with the EER point", "DET curve with the EER point"} <= names) == (
        task == "binary"
    )
    assert ("per-label scores" in names) == (task == "multilabel")
    assert "Leaderboard" in html and res["run"] in html and "Calibration (temperature" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    s = _workspace(tmp_path, "binary")
    out = tmp_path / "report.html"
    report(s.ws, out=out)
    # a copy that records, once loaded, each image's decoded width into the DOM
    probe = tmp_path / "probe.html"
    probe.write_text(
        out.read_text().replace(
            "</body>",
            "<script>window.addEventListener('load',()=>{for(const i of document.images)"
            "{i.setAttribute('data-w',i.naturalWidth);i.setAttribute('data-ok',i.complete)}});"
            "</script></body>",
        )
    )
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chrome'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        probe.as_uri(),
    ]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    widths = [int(w) for w in re.findall(r'data-w="(\d+)"', dom)]
    assert len(widths) == len(_pngs(out.read_text())) >= 4
    assert all(w > 50 for w in widths), widths
    assert "Leaderboard" in dom
    assert np.all([ok == "true" for ok in re.findall(r'data-ok="(\w+)"', dom)])


def test_layer_plots_show_single_layer_encoders_pool_concatenations_and_probes(
    tmp_path: Path,
) -> None:
    """An encoder with one layer, a run over two poolings and a probe saved outside the
    workspace all reach the score-against-layer section."""
    from sslstack.classify import fit_head, probe
    from sslstack.ensemble.report_layers import layers_section
    from sslstack.runs import list_runs
    from tests.classify_synth import make_synth

    s = make_synth(tmp_path, n=60, layers=1)  # one layer, like logmel
    mean = fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=0, folds=3)
    both = fit_head("logreg", "fake", workspace=s.ws, trials=0, pool="mean+std")
    assert both.best_params["pool"] == "mean+std"
    elsewhere = tmp_path / "plots" / "probe.png"
    probe("fake", workspace=s.ws, png=elsewhere)
    captured: list = []

    def figure(fig, caption, figs):
        captured.append((caption, fig.axes[0]))
        figs.append(caption)
        return caption

    html = layers_section(s.ws, list_runs(s.ws), "accuracy", True, [], figure, lambda *a: "")
    captions = [c for c, _ in captured]
    assert captions == [
        "fake: accuracy of head runs by layer choice",
        f"probe of {s.store.path.name} (accuracy)",
    ]
    ax = captured[0][1]
    assert ax.get_xlim() == (-0.5, 0.5)  # one layer: a readable axis, not -0.04..0.04
    lines = {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata())) for ln in ax.lines}
    assert lines == {
        "logreg / mean": ([0], [pytest.approx(mean.score)]),
        "logreg / mean+std": ([0], [pytest.approx(both.score)]),
    }
    probe_ax = captured[1][1]
    assert {ln.get_label() for ln in probe_ax.lines} == {"mean", "std", "mean+std"}
    assert "probe of" in html
    out = tmp_path / "r.html"
    report(s.ws, out=out)
    assert f"probe of {s.store.path.name} (accuracy)" in set(_pngs(out.read_text()))
