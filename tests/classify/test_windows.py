"""Window-level heads: windows fit with their clip's label and fold, clips scored by aggregate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sslstack.cache import ItemResult, Store, StoreKey
from sslstack.classify import fit_head, predict_head
from sslstack.classify.cv import Targets, cross_validate
from sslstack.classify.heads import FitContext, LogRegHead
from sslstack.classify.labels import LabelEncoding
from sslstack.classify.metrics import get_metric
from sslstack.classify.windows import WindowData, aggregate, cross_validate_windows
from sslstack.content import file_sha1
from sslstack.errors import ConfigError
from sslstack.workspace import Workspace

ENC = LabelEncoding("multiclass", ("a", "b", "c"))
ACC = get_metric("accuracy", "multiclass")


def _windowed(root: Path, n: int = 90, seed: int = 0) -> tuple[Workspace, Path, list[str]]:
    """Clips of 2-4 windows; the class shows in one window of each clip only (the others are
    noise), so the windows' max finds it where their mean dilutes it."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    audio = root / "audio"
    audio.mkdir(parents=True)
    ids = [f"w{i:03d}.wav" for i in range(n)]
    for i in ids:
        (audio / i).write_bytes(i.encode())  # distinct content: distinct items
    csv = audio / "train.csv"
    pd.DataFrame({"path": ids, "label": [f"{'abc'[v]}" for v in y]}).to_csv(csv, index=False)
    ws = Workspace.at(root / "ws")
    key = StoreKey(model="fake", revision="x", sample_rate=16000, pools=("mean",), window=1.0,
                   hop=1.0)  # fmt: skip
    store = Store.open_or_create(ws.stores, key)
    items = []
    for r, i in enumerate(ids):
        w = int(rng.integers(2, 5))
        win = rng.normal(size=(w, 1, 6)).astype(np.float32)
        win[int(rng.integers(0, w)), 0, :3] += 4.0 * np.eye(3)[y[r]]
        clip = {"mean": win.mean(axis=0), "mean_wmax": win.max(axis=0)}
        starts = [float(s) for s in range(w)]
        items.append(ItemResult(i, file_sha1(audio / i), float(w), clip, starts, {"mean": win}))
    with store.writer() as wr:
        wr.write(items, layer_names=["0"])
    return ws, csv, ids


def test_aggregate_mean_and_max_by_clip() -> None:
    p = np.array([[0.8, 0.2], [0.4, 0.6], [0.1, 0.9]])
    owner = np.array([0, 0, 1])
    np.testing.assert_allclose(aggregate(p, owner, 2, "mean", ENC), [[0.6, 0.4], [0.1, 0.9]])
    np.testing.assert_allclose(aggregate(p, owner, 2, "max", ENC), [[0.8 / 1.4, 0.6 / 1.4],
                                                                   [0.1, 0.9]])  # fmt: skip
    multi = LabelEncoding("multilabel", ("x", "y"))
    np.testing.assert_allclose(aggregate(p, owner, 2, "max", multi), [[0.8, 0.6], [0.1, 0.9]])


def test_windows_of_a_clip_stay_in_its_fold() -> None:
    """The head sees windows of training clips only; each clip is scored from its windows."""
    rng = np.random.default_rng(0)
    owner = np.repeat(np.arange(30), 3)
    y = np.arange(30) % 3
    x = rng.normal(size=(90, 4)) + np.eye(3)[y[owner]] @ rng.normal(size=(3, 4)) * 3
    x = np.column_stack([owner, x]).astype(np.float32)  # column 0: the clip, unscaled
    fold = np.arange(30) % 3
    splits = [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(3)]
    seen: list[set[int]] = []

    class Spy(LogRegHead):
        def fit(self, x, y, params, ctx, es=None):
            seen.append({int(v) for v in x[:, 0]})
            return super().fit(x, y, params, ctx, es)

    ctx = FitContext("multiclass", 3)
    params = {**LogRegHead().defaults(), "standardize": False}
    out = cross_validate_windows(Spy(), WindowData(x, owner), Targets(y, ENC, splits), ACC,
                                 params, ctx, "mean")  # fmt: skip
    for (tr, _), clips in zip(splits, seen, strict=True):
        assert clips == set(tr.tolist())
    # the clips' out-of-fold rows are the mean of their windows' rows
    wsplits = [(np.flatnonzero(np.isin(owner, tr)), np.flatnonzero(np.isin(owner, va)))
               for tr, va in splits]  # fmt: skip
    flat = cross_validate(LogRegHead(), x, Targets(y[owner], ENC, wsplits), ACC, params, ctx)
    np.testing.assert_allclose(out.oof, flat.oof.reshape(30, 3, 3).mean(axis=1))
    assert out.fold_scores == [ACC(y[va], out.oof[va], "multiclass", None) for _, va in splits]


def test_fit_head_windows_beats_clip_pooling_when_one_window_holds_the_class(
    tmp_path: Path,
) -> None:
    ws, csv, ids = _windowed(tmp_path)
    kw = {"data": csv, "workspace": ws, "trials": 0, "folds": 3, "layer": 0}
    clip = fit_head("logreg", "fake", pool="mean", **kw)
    win = fit_head("logreg", "fake", windows="max", **kw)
    assert win.best_params["windows"] == "max" and win.best_params["pool"] == "mean"
    assert win.score > clip.score
    # predict_head aggregates the windows of new items the same way (here: the training items,
    # predicted by the mean of the fold models)
    p = predict_head(ws, win.run, ids[:5])
    assert p.shape == (5, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)


def test_windows_need_a_windowed_store(tmp_path: Path) -> None:
    from tests.classify_synth import make_synth

    s = make_synth(tmp_path, n=60, layers=2)
    with pytest.raises(ConfigError, match="holds no windows; extract with --window"):
        fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=0, windows="mean")
    ws, csv, _ = _windowed(tmp_path / "w")
    with pytest.raises(ConfigError, match="--windows median: choose mean or max"):
        fit_head("logreg", "fake", data=csv, workspace=ws, trials=0, windows="median")
