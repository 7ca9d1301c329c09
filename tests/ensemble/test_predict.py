"""``predict``, ``runs import``, ``blend`` and submission validation."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sslstack.cli import app
from sslstack.ensemble import blend, import_run, predict, stack
from sslstack.ensemble.submission import check_ids, check_probabilities
from sslstack.errors import ConfigError, DataError
from sslstack.runs import load_run
from tests.audio_fixtures import write_dataset
from tests.ensemble_synth import Synth, add_run, make_dataset, probs

# -- submission validation -------------------------------------------------------------------


def test_submission_validation_errors() -> None:
    f = pd.DataFrame({"id": ["a", "b", "a"], "x": [0.2, 0.5, 0.1], "y": [0.8, 0.5, 0.9]})
    with pytest.raises(DataError, match=r"more than once: line 2 \(a\), line 4 \(a\)"):
        check_ids(f, "id", None, "sub.csv")
    f = pd.DataFrame({"id": ["a", "b"], "x": [0.2, 0.5], "y": [0.8, 0.5]})
    with pytest.raises(DataError, match=r"missing, first: c"):
        check_ids(f, "id", ["a", "b", "c"], "sub.csv")
    with pytest.raises(DataError, match=r"not in the dataset: line 3 \(b\)"):
        check_ids(f, "id", ["a"], "sub.csv")
    bad = pd.DataFrame({"id": ["a", "b", "c"], "x": [0.2, np.nan, 1.5], "y": [0.8, 0.5, -0.5]})
    with pytest.raises(DataError, match=r"2 row\(s\).*not finite.*line 3 \(b\), line 4 \(c\)"):
        check_probabilities(bad, ["x", "y"], single_label=True, source="sub.csv")
    off = pd.DataFrame({"id": ["a", "b"], "x": [0.2, 0.3], "y": [0.8, 0.3]})
    with pytest.raises(DataError, match=r"do not sum to 1.*line 3 \(b\).*sums 0.6"):
        check_probabilities(off, ["x", "y"], single_label=True, source="sub.csv")
    check_probabilities(off, ["x", "y"], single_label=False, source="sub.csv")  # multi-label ok


# -- runs import ------------------------------------------------------------------------------


def _write_oof(s: Synth, P: np.ndarray, path: Path, *, fold: bool = True) -> Path:
    frame = pd.DataFrame({"id": s.ids})
    if fold:
        frame["fold"] = s.fold
    for c, lab in enumerate(s.enc.labels):
        frame[lab] = P[:, c]
    frame.to_csv(path, index=False)
    return path


def _test_set(s: Synth, n: int = 12, seed: int = 7) -> tuple[Path, list[str], list[str]]:
    rng = np.random.default_rng(seed)
    ids = [f"test_{i:03d}.wav" for i in range(n)]
    for i in ids:
        (s.root / "audio" / i).write_bytes(i.encode())  # distinct content
    labels = [s.enc.labels[i % len(s.enc.labels)] for i in range(n)]
    rng.shuffle(labels)
    path = s.root / "audio" / "test.csv"
    pd.DataFrame({"path": ids, "label": labels}).to_csv(path, index=False)
    return path, ids, labels


def _test_probs(s: Synth, labels: list[str], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = 2.0 * np.eye(len(s.enc.labels))[[s.enc.labels.index(lab) for lab in labels]]
    z = z + rng.normal(size=z.shape)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def test_import_stack_predict(tmp_path: Path) -> None:
    s = make_dataset(tmp_path, "multiclass", n=120)
    head = add_run(s, probs(s, 1.0, seed=1), "head")
    test_csv, test_ids, test_labels = _test_set(s)
    imported = []
    for j in range(2):
        oof = _write_oof(s, probs(s, 1.2, seed=10 + j), tmp_path / f"oof{j}.csv", fold=j == 0)
        tp = _test_probs(s, test_labels, seed=20 + j)
        test = pd.DataFrame(
            {"id": test_ids[::-1], **{lab: tp[::-1, c] for c, lab in enumerate(s.enc.labels)}}
        )
        test.to_csv(tmp_path / f"test{j}.csv", index=False)
        res = import_run(f"cnn{j}", oof, test=tmp_path / f"test{j}.csv", workspace=s.ws)
        assert res["items"] == 120 and res["test_items"] == 12
        imported.append(res["run"])
    assert load_run(s.ws, imported[0]).record.kind == "import"
    # an imported run stacks with sslstack's own runs
    res = stack(s.ws, runs=[head, *imported], method="logreg")
    assert res.base_runs == [head, *imported]
    # predicting a stack of imported runs: combine their saved test predictions
    st = stack(s.ws, runs=imported, method="mean")
    out = tmp_path / "sub.csv"
    pred = predict(test_csv, run=st.run, workspace=s.ws, out=out)
    sub = pd.read_csv(out)
    assert list(sub.columns) == ["id", *s.enc.labels] and sub["id"].tolist() == test_ids
    ref = (_test_probs(s, test_labels, 20) + _test_probs(s, test_labels, 21)) / 2
    np.testing.assert_allclose(sub[list(s.enc.labels)].to_numpy(), ref, atol=1e-7)
    assert pred.scores is not None and 0 <= pred.scores["accuracy"] <= 1
    y = [s.enc.labels.index(lab) for lab in test_labels]
    assert pred.scores["accuracy"] == pytest.approx(np.mean(ref.argmax(axis=1) == y))
    # --label and renamed headers
    lab = predict(
        test_csv,
        run=st.run,
        workspace=s.ws,
        out=tmp_path / "lab.csv",
        label=True,
        id_column="file",
        columns=["class"],
    )
    assert lab.columns == ["file", "class"]
    assert pd.read_csv(tmp_path / "lab.csv")["class"].tolist() == [
        s.enc.labels[i] for i in ref.argmax(axis=1)
    ]
    with pytest.raises(ConfigError, match="4 classes"):
        predict(test_csv, run=st.run, workspace=s.ws, columns=["x", "y"])
    # the default run is the most recent stack
    assert predict(test_csv, workspace=s.ws).run == st.run
    # one PredictConfig, as the CLI builds it, gives the same submission as its fields
    from sslstack.ensemble import PredictConfig
    from sslstack.ensemble.prediction import saved_test_scores

    cfg = PredictConfig(run=st.run, out=tmp_path / "cfg.csv", label=True, id_column="file",
                        columns=["class"])  # fmt: skip
    again = predict(test_csv, cfg, workspace=s.ws)
    assert (tmp_path / "cfg.csv").read_bytes() == (tmp_path / "lab.csv").read_bytes()
    assert again.scores == lab.scores and PredictConfig.from_dict(cfg.to_dict()) == replace(
        cfg, out=str(cfg.out)
    )
    with pytest.raises(ConfigError, match="not both"):
        predict(test_csv, cfg, workspace=s.ws, label=False)
    with pytest.raises(ConfigError, match="unknown setting.*lable; use run, out, label"):
        predict(test_csv, workspace=s.ws, lable=True)
    with pytest.raises(ConfigError, match="--on-error never: choose stop or skip"):
        PredictConfig(on_error="never")
    # the scores predict printed are kept for the report, one file per run and test dataset
    saved = saved_test_scores(s.ws, s.dataset)
    assert [r["run"] for r in saved] == [st.run]
    assert saved[0]["scores"] == pytest.approx(again.scores) and saved[0]["scored"] == 12
    assert saved[0]["test_dataset"] == again.dataset and saved_test_scores(s.ws, "other") == []


def test_misaligned_import_refused(tmp_path: Path) -> None:
    s = make_dataset(tmp_path, "binary", n=60)
    P = probs(s, 1.0, seed=1)
    good = _write_oof(s, P, tmp_path / "good.csv")
    frame = pd.read_csv(good)
    frame.loc[4, "id"] = "nope.wav"
    frame.to_csv(tmp_path / "unknown.csv", index=False)
    with pytest.raises(DataError, match=r"not in the dataset: line 6 \(nope.wav\)"):
        import_run("x", tmp_path / "unknown.csv", workspace=s.ws)
    frame = pd.read_csv(good)
    frame.loc[7, "fold"] = (frame.loc[7, "fold"] + 1) % 5
    frame.to_csv(tmp_path / "folds.csv", index=False)
    with pytest.raises(DataError, match=rf"other folds.*line 9 \({s.ids[7]}\)"):
        import_run("x", tmp_path / "folds.csv", workspace=s.ws)
    frame = pd.read_csv(good).rename(columns={"spoof": "fake"})
    frame.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(DataError, match="missing: spoof; unknown: fake"):
        import_run("x", tmp_path / "labels.csv", workspace=s.ws)
    pd.read_csv(good).iloc[:-3].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(
        DataError, match=rf"3 id\(s\) of the dataset are missing, first: {s.ids[-3]}"
    ):
        import_run("x", tmp_path / "short.csv", workspace=s.ws)
    r = CliRunner().invoke(
        app, ["runs", "import", "cnn", "--oof", str(good), "--workspace", str(s.ws.root), "--json"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["run"].endswith("-cnn")


# -- blend ------------------------------------------------------------------------------------


def test_blend(tmp_path: Path) -> None:
    a = pd.DataFrame({"id": ["p", "q", "r"], "x": [0.2, 0.6, 0.9], "y": [0.8, 0.4, 0.1]})
    b = pd.DataFrame({"id": ["r", "p", "q"], "y": [0.3, 0.6, 0.2], "x": [0.7, 0.4, 0.8]})
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    res = blend([tmp_path / "a.csv", tmp_path / "b.csv"], weights=[3, 1], out=tmp_path / "o.csv")
    out = pd.read_csv(tmp_path / "o.csv")
    assert out["id"].tolist() == ["p", "q", "r"] and res["single_label"]
    np.testing.assert_allclose(
        out["x"], [0.75 * 0.2 + 0.25 * 0.4, 0.75 * 0.6 + 0.25 * 0.8, 0.75 * 0.9 + 0.25 * 0.7]
    )
    ranked = blend([tmp_path / "a.csv", tmp_path / "b.csv"], rank=True)["frame"]
    # ranks of the second column ("y") in rows p, q, r: a -> [3, 2, 1] / 3, b -> [3, 1, 2] / 3
    np.testing.assert_allclose(ranked["y"], [1.0, (2 / 3 + 1 / 3) / 2, (1 / 3 + 2 / 3) / 2])
    np.testing.assert_allclose(ranked["x"] + ranked["y"], 1.0)
    with pytest.raises(ConfigError, match="one per file"):
        blend([tmp_path / "a.csv", tmp_path / "b.csv"], weights=[1.0])
    b.iloc[:2].to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(DataError, match="c.csv: 1 id.*missing, first: q"):
        blend([tmp_path / "a.csv", tmp_path / "c.csv"])
    a.assign(x=[0.2, 1.6, 0.9]).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match=r"d.csv: 1 row.*line 3 \(q\)"):
        blend([tmp_path / "a.csv", tmp_path / "d.csv"])
    r = CliRunner().invoke(
        app,
        [
            "blend",
            str(tmp_path / "a.csv"),
            str(tmp_path / "b.csv"),
            "--weights",
            "0.6,0.4",
            "--rank",
            "--out",
            str(tmp_path / "s.csv"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["weights"] == [0.6, 0.4]


# -- predict with real heads on audio (logmel, extraction through the cache) -------------------


def test_predict_extracts_and_applies_heads(tmp_path: Path) -> None:
    from sslstack.classify import fit_head
    from sslstack.extract import extract

    ws = tmp_path / "ws"
    train = write_dataset(tmp_path / "train", n=30, labels=("a", "b", "c"), seed=0)
    test = write_dataset(tmp_path / "test", n=9, labels=("a", "b", "c"), seed=100)
    extract(train, "logmel", workspace=ws, pools=("mean", "std"))
    for pool in ("mean", "std"):
        fit_head("logreg", "logmel", workspace=ws, pool=pool, trials=0, folds=3)
    st = stack(ws, method="logreg")
    out = tmp_path / "sub.csv"
    first = predict(test, workspace=ws, out=out)
    assert first.run == st.run
    assert first.extracted and first.extracted[0]["computed"] == 9
    sub = pd.read_csv(out)
    assert len(sub) == 9 and list(sub.columns) == ["id", "a", "b", "c"]
    np.testing.assert_allclose(sub[["a", "b", "c"]].sum(axis=1), 1.0, atol=1e-6)
    assert first.scores is not None and "accuracy" in first.scores
    again = predict(test, workspace=ws, out=out)  # the second call finds every embedding cached
    assert again.extracted[0]["computed"] == 0
    pd.testing.assert_frame_equal(pd.read_csv(out), sub)


def test_predict_scores_what_it_can_and_skips_unreadable_files(tmp_path: Path) -> None:
    """Unseen test classes are named and the rest scored; a corrupt file is skipped on request;
    a manifest's own id column is the submission's id."""
    from sslstack.classify import fit_head
    from sslstack.extract import extract

    ws = tmp_path / "ws"
    train = write_dataset(tmp_path / "train", n=30, labels=("a", "b", "c"), seed=0)
    extract(train, "logmel", workspace=ws, pools=("mean",))
    run = fit_head("logreg", "logmel", workspace=ws, trials=0, folds=3).run
    test = write_dataset(tmp_path / "test", n=8, labels=("a", "b", "c", "d"), seed=100)
    frame = pd.read_csv(test)
    frame.insert(0, "id", [f"clip-{i}" for i in range(len(frame))])
    frame.to_csv(test, index=False)
    (tmp_path / "test" / "wav" / "005.wav").write_bytes(b"RIFF not audio")
    with pytest.raises(Exception, match="--on-error skip"):
        predict(test, run=run, workspace=ws, out=tmp_path / "sub.csv")
    res = predict(test, run=run, workspace=ws, out=tmp_path / "sub.csv", on_error="skip")
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert sub["id"].tolist() == [f"clip-{i}" for i in (0, 1, 2, 3, 4, 6, 7)]
    assert [f["id"] for f in res.skipped] == ["clip-5"]
    # labels a b c d a b c d: item 3 and 7 are class d, unseen; item 5 (b) was skipped
    assert res.unseen == {"d": 2} and res.scored == 5
    P = sub[["a", "b", "c"]].to_numpy()
    truth = dict(zip(frame["id"], frame["label"], strict=True))
    rows = [n for n, i in enumerate(sub["id"]) if truth[i] != "d"]
    want = np.mean([P[n].argmax() == "abc".index(truth[sub["id"][n]]) for n in rows])
    assert res.scores is not None and res.scores["accuracy"] == pytest.approx(want)
    assert res.notes == [
        "1 test item(s) could not be embedded and are left out of the submission (first: clip-5)",
        "1 test label(s) were never seen in training: d (2); the scores are over the 5 labeled "
        "item(s) the run can score",
    ]
    r = CliRunner().invoke(
        app,
        ["predict", "--data", str(test), "--run", run, "--out", str(tmp_path / "s2.csv")]
        + ["--on-error", "skip", "--workspace", str(ws)],
    )
    assert r.exit_code == 0, r.output
    assert "warning: 1 test label(s) were never seen in training: d (2)" in r.output


def test_import_accepts_fold_labels_as_the_dataset_writes_them(tmp_path: Path) -> None:
    """A dataset whose manifest numbers its folds 1..5: an import's fold column uses the same
    labels, a 0-based column is refused with the rows named."""
    s = make_dataset(tmp_path, "multiclass", n=60)
    csv = s.root / "audio" / "train.csv"
    frame = pd.read_csv(csv)
    frame["fold"] = frame["fold"] + 1
    frame.to_csv(csv, index=False)
    from sslstack.classify.folds import get_folds
    from sslstack.datasets import register_dataset
    from sslstack.manifest import read_manifest

    manifest = read_manifest(csv)
    folds_dir = s.ws.dataset_dir(register_dataset(s.ws, manifest))
    for name in ("folds.csv", "folds.json"):
        (folds_dir / name).unlink()
    folds = get_folds(s.ws, register_dataset(s.ws, manifest), manifest)
    assert folds.names == ("1", "2", "3", "4", "5")
    P = probs(s, 1.0, seed=1)
    ok = pd.DataFrame({"id": s.ids, "fold": [int(f) + 1 for f in s.fold]})
    for c, lab in enumerate(s.enc.labels):
        ok[lab] = P[:, c]
    ok.to_csv(tmp_path / "ok.csv", index=False)
    res = import_run("cnn", tmp_path / "ok.csv", workspace=s.ws)
    oof = load_run(s.ws, res["run"]).oof()
    assert oof["fold"].tolist() == ok["fold"].tolist()  # as written: 1..5
    ok.assign(fold=ok["fold"] - 1).to_csv(tmp_path / "zero.csv", index=False)
    with pytest.raises(DataError, match=r"other folds than the dataset's folds"):
        import_run("cnn0", tmp_path / "zero.csv", workspace=s.ws)
