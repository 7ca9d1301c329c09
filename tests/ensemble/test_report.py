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
    from sslstack.classify.metrics import score_all
    from sslstack.ensemble.base_runs import join_runs
    from sslstack.runs import list_runs
    from sslstack.workspace import atomic_write_json

    for r in list_runs(s.ws):
        base = join_runs(s.ws, [r])
        atomic_write_json(
            r.dir / "run.json",
            {
                **r.record.to_dict(),
                "scores": score_all(base.y, base.P[0], s.enc.task, s.enc.positive_index),
            },
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
    assert f"{s.dataset}: roc_auc against layer" in names or (
        f"{s.dataset}: accuracy against layer" in names
        or f"{s.dataset}: lwlrap against layer" in names
    )  # score against layer of the runs, one figure for the dataset
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


def test_layer_figure_of_a_one_layer_encoder_its_heads_and_its_probe(tmp_path: Path) -> None:
    """An encoder with one layer (like logmel), a run over two poolings and a probe saved
    outside the workspace: one figure, the probe's line and both runs as markers."""
    from sslstack.classify import fit_head, probe
    from sslstack.ensemble.report_layers import layers_section
    from sslstack.runs import list_runs
    from tests.classify_synth import make_synth

    s = make_synth(tmp_path, n=60, layers=1)  # one layer, like logmel
    mean = fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=0, folds=3)
    both = fit_head("logreg", "fake", workspace=s.ws, trials=0, pool="mean+std")
    assert both.best_params["pool"] == "mean+std"
    elsewhere = tmp_path / "plots" / "probe.png"
    pr = probe("fake", workspace=s.ws, png=elsewhere)
    captured: list = []

    def figure(fig, caption, figs):
        captured.append((caption, fig.axes[0]))
        figs.append(caption)
        return caption

    runs = list_runs(s.ws)
    html = layers_section(s.ws, runs, "accuracy", True, [], figure, lambda *a: "")
    dataset = runs[0].record.dataset
    assert [c for c, _ in captured] == [f"{dataset}: accuracy against layer"]
    ax = captured[0][1]
    best_probe = float(pr.full.loc["0"].max())  # the best pooling at the one layer
    lines = {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata())) for ln in ax.lines}
    assert lines == {"fake (probe)": ([1.0], [pytest.approx(best_probe)])}
    marks = np.array(sorted(tuple(map(float, c.get_offsets()[0])) for c in ax.collections))
    np.testing.assert_allclose(marks, sorted([(1.0, mean.score), (1.0, both.score)]))
    assert {t.get_text() for t in ax.texts} == {"r1", "r2"}
    best = max([mean, both], key=lambda r: r.score)  # the best-layer table names it
    assert f"{best.run} (logreg, 0 / {best.best_params['pool']})" in html
    out = tmp_path / "r.html"
    report(s.ws, out=out)
    assert f"{dataset}: accuracy against layer" in set(_pngs(out.read_text()))


def _probe_record(ws, dataset: str, store: str, model: str, scores: dict) -> None:
    import json

    (ws.root / "probes").mkdir(exist_ok=True)
    rec = {"dataset": dataset, "store": store, "model": model, "metric": "accuracy",
           "scores": scores, "png_name": f"{store}.png"}  # fmt: skip
    (ws.root / "probes" / f"{store}-{dataset}.json").write_text(json.dumps(rec))


def test_one_layer_figure_per_dataset_with_one_series_per_encoder(tmp_path: Path) -> None:
    from sslstack.ensemble.report_layers import layer_order, layers_section
    from sslstack.runs import list_runs

    s = make_dataset(tmp_path, "multiclass", n=100)
    a = [{"store": "a-1", "model": "org/enc-a", "layer": "4", "pool": "mean"}]
    b = [{"store": "b-1", "model": "org/enc-b", "layer": "conv12", "pool": "max"}]
    b2 = [{"store": "b-1", "model": "org/enc-b", "layer": "conv2", "pool": "max"}]
    for tag, feats, enc, acc in [("a", a, "org/enc-a", 0.6), ("b", b, "org/enc-b", 0.7),
                                 ("b2", b2, "org/enc-b", 0.5)]:  # fmt: skip
        add_run(s, probs(s, 1.0, seed=1), tag, meta={"features": feats, "encoder": enc,
                                                     "scores": {"accuracy": acc}})  # fmt: skip
    a_scores = {str(i): {"mean": 0.1 * i, "max": 0.05 * i} for i in range(5)}
    a_scores["0+2+4"] = {"mean": 0.9}  # a concatenation: no point on the line
    _probe_record(s.ws, s.dataset, "a-1", "enc-a", a_scores)
    _probe_record(s.ws, "other-dataset", "a-1", "enc-a", {"0": {"mean": 0.99}})
    st = stack(s.ws, method="mean")
    captured: list = []

    def figure(fig, caption, figs):
        captured.append(fig.axes[0])
        return caption

    layers_section(s.ws, list_runs(s.ws), "accuracy", True, [], figure, lambda *a: "")
    assert len(captured) == 1  # one dataset, one figure
    ax = captured[0]
    lines = {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata())) for ln in ax.lines}
    stack_line = f"stack r{int(st.run[1:5])} (mean)"
    assert set(lines) == {"enc-a (probe)", "enc-b (head runs)", stack_line}
    assert lines["enc-a (probe)"] == (
        [0, 0.25, 0.5, 0.75, 1.0],
        pytest.approx([0, 0.1, 0.2, 0.3, 0.4]),
    )
    # enc-b has no probe: its line is its head runs, conv2 before conv12
    assert lines["enc-b (head runs)"] == ([0.0, 1.0], [0.5, 0.7])
    assert lines[stack_line][1] == [pytest.approx(st.score)] * 2
    marks = sorted(tuple(map(float, c.get_offsets()[0])) for c in ax.collections)
    assert marks == [(0.0, 0.5), (1.0, 0.6), (1.0, 0.7)]
    assert layer_order({"conv12", "final", "conv2", "10", "9"}) == [
        "9",
        "10",
        "conv2",
        "conv12",
        "final",
    ]


def test_per_class_scores_are_sklearns_worst_first() -> None:
    from sslstack.ensemble.encoding import Encoding
    from sslstack.ensemble.report_scores import per_class_section

    enc = Encoding("multiclass", ("a", "b", "c"), None)
    y = np.array([0, 0, 1, 1, 2, 2])
    P = np.eye(3)[[0, 1, 1, 1, 2, 0]]
    html = per_class_section(y, P, enc)
    rows = re.findall(r"<tr><td class=num>(\d)</td><td>(\w)</td>(.*?)</tr>", html)
    got = [(n, lab, re.findall(r">([\d.]+)<", rest)) for n, lab, rest in rows]
    assert got == [
        ("0", "a", ["2", "2", "0.5000", "0.5000", "0.5000"]),
        ("2", "c", ["2", "1", "1.0000", "0.5000", "0.6667"]),
        ("1", "b", ["2", "3", "0.6667", "1.0000", "0.8000"]),
    ]
    assert "macro F1 0.6556" in html


def test_report_shows_the_test_scores_predict_kept(tmp_path: Path) -> None:
    from sslstack.ensemble.prediction import PredictResult, save_test_scores

    s = _workspace(tmp_path, "multiclass")
    scores = {"accuracy": 0.8125, "macro_f1": 0.75}
    res = PredictResult(
        run="r0001-logreg-2-mean", dataset="test-1", items=30, out=None, columns=[], scores=scores
    )
    res.scored = 24
    save_test_scores(s.ws, res, s.dataset)
    (s.ws.root / "predictions" / "broken.json").write_text("{")  # skipped, not an error
    out = tmp_path / "report.html"
    report(s.ws, out=out)
    html = out.read_text()
    assert "<h2>Test scores</h2>" in html
    row = re.search(
        r"<tr[^>]*><td>r0001-logreg-2-mean</td>(.*?)</tr>", html.split("Test scores")[1]
    )
    assert row is not None
    assert re.findall(r">([^<]+)</td>", row.group(1)) == ["test-1", "24", "0.8125", "0.7500", "0"]


def test_fifty_long_and_non_latin_labels_draw_without_glyph_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import warnings

    import tests.ensemble_synth as synth
    from sslstack.ensemble.report_text import drawable, tick_labels

    labels = [
        "鳥の声",
        "Ünïcödé long label with many words",
        "ناي",
        *[f"c{i:02d}" for i in range(47)],
    ]
    monkeypatch.setitem(synth.LABELS, "multiclass", labels)
    s = make_dataset(tmp_path, "multiclass", n=150)
    add_run(s, probs(s, 2.0, seed=3), "fifty")
    out = tmp_path / "report.html"
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        report(s.ws, out=out)
    said = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "Glyph" in m or "missing from" in m], said
    html = out.read_text()
    assert "鳥の声" in html and "Ünïcödé long label with many words" in html  # the table: in full
    names = set(_pngs(html))
    assert (
        "confusion matrix; labels shortened or numbered (#), in full in the per-class table"
        in names
    )
    ticks, changed = tick_labels(labels)
    assert changed and ticks[1] == "Ünïcödé long label…" and ticks[3:] == labels[3:]
    assert ticks[0] == ("鳥の声" if drawable("鳥の声") else "#0")
