"""``check`` on examples/fsdd-mini with logmel: planted exact and near duplicates are found,
adversarial validation gives about 0.5 for a random split and about 1.0 for a planted shift,
label problems are named; the CLI table, ``--json`` and the HTML report section."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from sslstack.check import check, nearest
from sslstack.cli import app

MINI = Path(__file__).resolve().parents[2] / "examples" / "fsdd-mini"


def _write(root: Path, name: str, rows: list[tuple[str, str]]) -> Path:
    """A manifest of (path relative to root, label)."""
    csv = root / name
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(csv, index=False)
    return csv


def _copy(root: Path, src: str, dst: str, change: str | None = None) -> None:
    (root / dst).parent.mkdir(parents=True, exist_ok=True)
    if change is None:
        shutil.copy(MINI / src, root / dst)
        return
    x, sr = sf.read(MINI / src, dtype="float32")
    if change == "gain":  # +1 dB
        y = np.clip(x * 10 ** (1 / 20), -1, 1)
    elif change == "shift":  # 20 ms later
        y = np.r_[np.zeros(int(0.02 * sr), dtype=np.float32), x]
    else:  # resampled through 4 kHz (FSDD is recorded at 8 kHz: through 8 kHz changes nothing)
        from scipy.signal import resample_poly

        y = resample_poly(resample_poly(x, 1, 2), 2, 1)[: len(x)]
    sf.write(root / dst, y, sr, subtype="PCM_16")


def _extract(ws: Path, *csvs: Path) -> None:
    from sslstack.extract import extract

    for csv in csvs:
        extract(csv, "logmel", workspace=ws, pools=("mean", "std"))


def _mini() -> pd.DataFrame:
    return pd.read_csv(MINI / "train.csv", dtype=str)


def test_check_finds_planted_exact_and_near_duplicates(tmp_path: Path) -> None:
    mini = _mini()
    train_rows = [(p, lab) for p, lab in zip(mini["path"][::3], mini["label"][::3], strict=True)]
    for p, _ in train_rows:
        _copy(tmp_path, p, p)
    _copy(tmp_path, train_rows[0][0], "wav/train_copy.wav")  # a duplicate within train
    train_rows.append(("wav/train_copy.wav", train_rows[0][1]))
    test_rows = []
    for p, lab in zip(mini["path"][1::12], mini["label"][1::12], strict=True):
        _copy(tmp_path, p, "test/" + Path(p).name)
        test_rows.append(("test/" + Path(p).name, lab))
    planted = {}  # test id -> training id
    for n, change in enumerate([None, None, "gain", "gain", "shift", "shift"]):
        src, lab = train_rows[10 + 7 * n]
        dst = f"test/planted_{n}_{change}.wav"
        _copy(tmp_path, src, dst, change)
        test_rows.append((dst, lab))
        planted[dst] = src
    train = _write(tmp_path, "train.csv", train_rows)
    test = _write(tmp_path, "test.csv", test_rows)
    ws = tmp_path / "ws"
    _extract(ws, train, test)
    res = check(train, test, workspace=ws)
    exact = {d["id"]: d["train_id"] for d in res.exact["across"]["examples"]}
    assert exact == {k: v for k, v in planted.items() if k.endswith("None.wav")}
    assert res.exact["within_train"]["sets"] == 1
    assert res.exact["within_train"]["examples"] == [[train_rows[0][0], "wav/train_copy.wav"]]
    assert res.exact["within_test"]["sets"] == 0
    (near,) = res.near
    found = {d["id"]: d["train_id"] for d in near["examples"]}
    want = {k: v for k, v in planted.items() if not k.endswith("None.wav")}
    assert found == want  # the 1 dB and 20 ms copies, and nothing else above 0.95
    assert all(d["cosine"] >= 0.95 for d in near["examples"])
    # the same search, by hand: the planted items' nearest training items
    assert res.items == {"train": len(train_rows), "test": len(test_rows)}


def _split_dataset(tmp_path: Path, shifted: bool) -> tuple[Path, Path]:
    mini = _mini()
    order = np.random.default_rng(0).permutation(len(mini))
    rows = [(mini["path"][i], mini["label"][i]) for i in order]
    train_rows, test_rows = rows[:250], []
    for p, _ in train_rows:
        _copy(tmp_path, p, p)
    for p, lab in rows[250:]:
        dst = "test/" + Path(p).name
        _copy(tmp_path, p, dst, "4k" if shifted else None)
        test_rows.append((dst, lab))
    return _write(tmp_path, "train.csv", train_rows), _write(tmp_path, "test.csv", test_rows)


@pytest.mark.parametrize("shifted", [False, True])
def test_adversarial_auc_is_half_for_a_random_split_and_one_for_a_shift(
    tmp_path: Path, shifted: bool
) -> None:
    train, test = _split_dataset(tmp_path, shifted)
    ws = tmp_path / "ws"
    _extract(ws, train, test)
    (shift,) = check(train, test, workspace=ws).shift
    if shifted:
        assert shift["auc"] > 0.95
        assert shift["verdict"] == "strong shift: test differs from training"
        # the lost band: the top mel bins (64 bins up to 8 kHz; 2-4 kHz was removed)
        assert all(int(f["feature"].split("[")[1][:-1]) >= 32 for f in shift["features"][:3])
    else:
        assert abs(shift["auc"] - 0.5) < 0.06
        assert shift["verdict"] == "no detectable shift"
    assert len(shift["least_like_train"]) == 10


def test_nearest_is_the_exact_top1_cosine() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 16)).astype(np.float32)
    b = rng.normal(size=(130, 16)).astype(np.float32)
    got = nearest(a, b, block=64)  # several blocks each way
    both = np.vstack([a, b]).astype(np.float64)
    mu = both.mean(axis=0)
    w, V = np.linalg.eigh(np.cov(both, rowvar=False, bias=True))
    W = V / np.sqrt(w + 1e-3 * w.max())
    za, zb = (a - mu) @ W, (b - mu) @ W
    za /= np.linalg.norm(za, axis=1, keepdims=True)
    zb /= np.linalg.norm(zb, axis=1, keepdims=True)
    sims = zb @ za.T
    np.testing.assert_array_equal(got.index, sims.argmax(axis=1))
    np.testing.assert_allclose(got.cosine, sims.max(axis=1), atol=1e-5)


def test_label_problems_cli_json_and_report_section(tmp_path: Path) -> None:
    from sslstack.classify import fit_head
    from sslstack.ensemble import report

    mini = _mini()
    rows = [(p, lab) for p, lab in zip(mini["path"][::2], mini["label"][::2], strict=True)]
    rows += [("wav/rare.wav", "rare")]  # a class of one item: fewer than the folds
    for p, _ in rows[:-1]:
        _copy(tmp_path, p, p)
    _copy(tmp_path, mini["path"][1], "wav/rare.wav")
    flipped = {rows[n][0]: str((int(rows[n][1]) + 5) % 10) for n in (3, 40, 77)}
    rows = [(p, flipped.get(p, lab)) for p, lab in rows]
    train = _write(tmp_path, "train.csv", rows)
    test = _write(tmp_path, "test.csv", [("wav/rare.wav", "unseen"), (rows[5][0], rows[5][1])])
    ws = tmp_path / "ws"
    _extract(ws, train)
    no_rare = _write(tmp_path, "fit.csv", rows[:-1])
    _extract(ws, no_rare)
    fit_head("logreg", "logmel", data=no_rare, workspace=ws, trials=0, folds=5)
    r = CliRunner().invoke(
        app,
        ["check", "--train", str(no_rare), "--test", str(test), "-w", str(ws), "--json"],
    )
    assert r.exit_code == 0, r.output
    found = json.loads(r.stdout.strip().splitlines()[-1])
    assert found["labels"]["test_only"] == [{"label": "unseen", "items": 1}]
    noise = found["labels"]["noise"]
    assert noise["count"] >= 1 and all(
        d["label"] != d["predicted"] and d["p_predicted"] >= 0.8 for d in noise["items"]
    )
    assert (
        "label-noise candidates" in r.stdout and "test items equal to a training item" in r.stdout
    )
    # 2 test items: the store-based checks need 10 of each set, and say why they are missing
    assert found["near"] == [] and "no embedding store holds both sets" in r.output
    small = check(train, workspace=ws, folds=5).labels["small"]
    assert small == [{"label": "rare", "items": 1}]
    out = report(ws, out=tmp_path / "report.html")
    text = Path(out["out"]).read_text()
    assert "Leakage, shift and labels" in text and "label-noise candidates" in text


def test_a_bad_threshold_is_one_line(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["check", "--threshold", "1.5", "-w", str(tmp_path / "ws")])
    assert r.exit_code != 0
    assert r.output.strip() == "error: --threshold 1.5: use a cosine similarity in (0, 1]"
