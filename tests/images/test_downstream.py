"""Everything after extraction reads matrices by id and does not care that the items are
images: probe, every head, stack, predict (re-extracting the test images with the store's own
views, --tta included) and the report with misclassified thumbnails, through the Python API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sslstack import extract
from sslstack.classify.fit import fit_head
from sslstack.classify.heads import HEADS
from sslstack.classify.probing import probe
from sslstack.ensemble.predict import predict
from sslstack.ensemble.report import report
from sslstack.ensemble.stack import stack

RNG = np.random.default_rng(5)


def _write(folder: Path, n: int, start: int, flip_every: int = 0) -> Path:
    rows = []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        label = "top" if i % 2 else "bottom"
        img = RNG.integers(0, 120, (30, 30, 3), dtype=np.uint8)
        bright = slice(0, 15) if label == "top" else slice(15, 30)
        if flip_every and i % flip_every == 0:  # a few mislabeled items: something to show
            bright = slice(15, 30) if label == "top" else slice(0, 15)
        img[bright] += 120
        Image.fromarray(img).save(folder / f"{i:03d}.png")
        rows.append({"path": f"{folder.name}/{i:03d}.png", "label": label})
    manifest = folder.parent / f"{folder.name}.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


@pytest.mark.slow
def test_probe_heads_stack_predict_report(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    train = _write(tmp_path / "train", 40, 0, flip_every=9)
    test = _write(tmp_path / "test", 10, 100)
    extract(train, "pixels", workspace=ws, pools="mean,max", tta="flip")
    res = probe("pixels", workspace=ws, data=str(train), positive="top", metric="accuracy")
    assert res.best()[2] > 0.8
    runs = []
    for head in HEADS.names():
        fit = fit_head(
            head,
            "pixels",
            workspace=ws,
            data=str(train),
            trials=2,
            positive="top",
            metric="accuracy",
            max_rounds=30,
        )
        runs.append(fit)
        assert fit.score > 0.7, (head, fit.score)
    st = stack(ws, data=None)
    assert st.score >= max(r.score for r in runs) - 1e-9
    pred = predict(str(test), workspace=ws, out=tmp_path / "sub.csv", label=True)
    assert pred.items == 10 and pred.scores is not None and pred.scores["accuracy"] >= 0.8
    assert pred.extracted and pred.extracted[0]["computed"] == 10  # into the --tta flip store
    out = report(ws, out=tmp_path / "r.html", data=str(train))
    html = (tmp_path / "r.html").read_text()
    assert "Misclassified images" in html and "predicted" in html
    assert out["plots"] >= 3
