"""Fold assignments: disjoint, stratified, grouped, saved once and reused; clashes refused."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sslstack.classify.folds import fold_digest, get_folds, load_folds
from sslstack.datasets import register_dataset
from sslstack.errors import ConfigError, DataError
from sslstack.manifest import read_manifest
from sslstack.workspace import Workspace


def _dataset(root: Path, labels: list[str], **cols: list) -> tuple[Workspace, str, object]:
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    ids = [f"a{i:04d}.wav" for i in range(len(labels))]
    for i in ids:
        (audio / i).write_bytes(i.encode())  # distinct content: distinct items
    csv = audio / "train.csv"
    pd.DataFrame({"path": ids, "label": labels, **cols}).to_csv(csv, index=False)
    ws = Workspace.at(root / "ws")
    manifest = read_manifest(csv)
    return ws, register_dataset(ws, manifest), manifest


def _labels(n: int, counts: dict[str, int], seed: int = 0) -> list[str]:
    out = [lab for lab, c in counts.items() for _ in range(c)]
    assert len(out) == n
    rng = np.random.default_rng(seed)
    return [out[i] for i in rng.permutation(n)]


def test_stratified_folds_are_disjoint_complete_and_balanced(tmp_path: Path) -> None:
    labels = _labels(100, {"a": 50, "b": 30, "c": 20})
    ws, name, manifest = _dataset(tmp_path, labels)
    folds = get_folds(ws, name, manifest, k=5, seed=0)
    assert folds.method == "stratified" and folds.k == 5
    assert list(folds.ids) == manifest.ids
    seen = np.concatenate([va for _, va in folds.splits()])
    assert sorted(seen) == list(range(100))  # every item validated exactly once
    for tr, va in folds.splits():
        assert not set(tr) & set(va)
        per_fold = pd.Series(np.array(labels)[va]).value_counts()
        assert per_fold.to_dict() == {"a": 10, "b": 6, "c": 4}
    assert folds.digest == fold_digest(folds.ids, folds.fold)


def test_grouped_folds_keep_each_group_in_one_fold(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    speakers = [f"s{g}" for g in rng.integers(0, 12, 150)]
    labels = _labels(150, {"x": 75, "y": 75}, seed=2)
    ws, name, manifest = _dataset(tmp_path, labels, speaker=speakers)
    folds = get_folds(ws, name, manifest, k=4, group_col="speaker")
    assert folds.method == "stratified-group" and folds.group_col == "speaker"
    by_group = pd.DataFrame({"g": speakers, "f": folds.fold}).groupby("g")["f"].nunique()
    assert (by_group == 1).all()
    assert len(np.unique(folds.fold)) == 4


def test_multilabel_folds_use_iterative_stratification(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    names = ["dog", "cat", "bird", "car"]
    y = (rng.random((120, 4)) < 0.3).astype(int)
    y[y.sum(axis=1) == 0, 0] = 1
    y[0] = 1
    labels = [";".join(n for n, v in zip(names, row, strict=True) if v) for row in y]
    ws, name, manifest = _dataset(tmp_path, labels)
    folds = get_folds(ws, name, manifest, k=3)
    assert folds.method == "multilabel-stratified"
    totals = y.sum(axis=0)
    for _, va in folds.splits():
        share = y[va].sum(axis=0) / totals
        assert np.all(np.abs(share - 1 / 3) < 0.1)


def test_multilabel_grouped_folds(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((90, 3)) < 0.4).astype(int)
    y[y.sum(axis=1) == 0, 1] = 1
    y[0] = 1
    labels = [";".join(n for n, v in zip("abc", row, strict=True) if v) for row in y]
    groups = [f"g{i % 15}" for i in range(90)]
    ws, name, manifest = _dataset(tmp_path, labels, rec=groups)
    folds = get_folds(ws, name, manifest, k=3, group_col="rec")
    by_group = pd.DataFrame({"g": groups, "f": folds.fold}).groupby("g")["f"].nunique()
    assert (by_group == 1).all()


def test_manifest_fold_column_wins(tmp_path: Path) -> None:
    fold = [i % 3 for i in range(30)]
    ws, name, manifest = _dataset(tmp_path, _labels(30, {"a": 15, "b": 15}), fold=fold)
    with pytest.raises(ConfigError, match=r"--folds 5: .*'fold' column with 3 folds"):
        get_folds(ws, name, manifest, k=5)  # a flag that would be ignored is refused
    folds = get_folds(ws, name, manifest, k=3)
    assert folds.method == "manifest" and folds.k == 3
    assert folds.fold.tolist() == fold


def test_manifest_folds_are_checked_against_the_group_column(tmp_path: Path) -> None:
    fold = [i % 3 for i in range(30)]
    spk = [f"s{i % 6}" for i in range(30)]  # speaker i%6 always lands in fold (i%6)%3: grouped
    ws, name, manifest = _dataset(tmp_path, _labels(30, {"a": 15, "b": 15}), fold=fold, spk=spk)
    assert get_folds(ws, name, manifest, group_col="spk").fold.tolist() == fold
    leaky = [f"s{i % 4}" for i in range(30)]  # speaker s0 sits in folds 0, 1 and 2
    ws, name, manifest = _dataset(
        tmp_path / "b", _labels(30, {"a": 15, "b": 15}), fold=fold, spk=leaky
    )
    with pytest.raises(DataError, match=r"--group-col spk: .* 4 group\(s\) in more than one fold"):
        get_folds(ws, name, manifest, group_col="spk")


def test_saved_folds_are_reused_and_clashes_refused(tmp_path: Path) -> None:
    ws, name, manifest = _dataset(
        tmp_path, _labels(60, {"a": 30, "b": 30}), spk=[f"s{i % 10}" for i in range(60)]
    )
    first = get_folds(ws, name, manifest, k=3, seed=4)
    again = get_folds(ws, name, manifest)  # None = whatever is saved
    assert again.digest == first.digest and again.k == 3
    assert load_folds(ws, name).digest == first.digest
    with pytest.raises(DataError, match=r"asks for k=5 \(saved: k=3\).*delete"):
        get_folds(ws, name, manifest, k=5)
    with pytest.raises(DataError, match="group_col=spk"):
        get_folds(ws, name, manifest, group_col="spk")
    with pytest.raises(DataError, match="seed=1"):
        get_folds(ws, name, manifest, seed=1)


def test_edited_folds_file_is_detected(tmp_path: Path) -> None:
    ws, name, manifest = _dataset(tmp_path, _labels(20, {"a": 10, "b": 10}))
    get_folds(ws, name, manifest, k=2)
    path = ws.dataset_dir(name) / "folds.csv"
    frame = pd.read_csv(path)
    frame.loc[0, "fold"] = 1 - frame.loc[0, "fold"]
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match="does not match the digest"):
        load_folds(ws, name)


def test_impossible_folds_are_clear_errors(tmp_path: Path) -> None:
    ws, name, manifest = _dataset(tmp_path, _labels(20, {"a": 10, "b": 10}), spk=["s0", "s1"] * 10)
    with pytest.raises(DataError, match="2 distinct groups cannot fill 5 folds"):
        get_folds(ws, name, manifest, group_col="spk")
    with pytest.raises(ConfigError, match="no such manifest column"):
        get_folds(ws, name, manifest, group_col="speaker")
    with pytest.raises(DataError, match="has no folds yet"):
        load_folds(ws, name)


@pytest.mark.parametrize(
    "written",
    [
        [str(1 + i % 5) for i in range(40)],  # ESC-50, UrbanSound8K: folds 1..5
        [f"fold_{'abcd'[i % 4]}" for i in range(40)],  # names
        [str(2 * (i % 3) + 10) for i in range(40)],  # 10, 12, 14: sorted by number
    ],
)
def test_manifest_fold_labels_are_kept_as_written(tmp_path: Path, written: list[str]) -> None:
    ws, name, manifest = _dataset(tmp_path, _labels(40, {"a": 20, "b": 20}), fold=written)
    folds = get_folds(ws, name, manifest)
    order = sorted(set(written), key=lambda v: (len(v), v))
    assert folds.method == "manifest" and folds.k == len(order)
    assert list(folds.names) == order
    assert folds.labels == written  # as written, item by item
    assert [folds.names[f] for f in folds.fold] == written
    saved = pd.read_csv(ws.dataset_dir(name) / "folds.csv", dtype=str)
    assert saved["fold"].tolist() == written
    again = load_folds(ws, name)
    assert again.digest == folds.digest and again.fold.tolist() == folds.fold.tolist()
    assert again.names == folds.names


def test_generated_folds_keep_the_digest_of_numbered_folds(tmp_path: Path) -> None:
    ws, name, manifest = _dataset(tmp_path, _labels(20, {"a": 10, "b": 10}))
    folds = get_folds(ws, name, manifest, k=2)
    assert folds.names == ("0", "1")
    assert folds.digest == fold_digest(folds.ids, folds.fold)  # ints and "0"/"1" digest alike
    assert folds.digest == fold_digest(folds.ids, [str(f) for f in folds.fold])


def test_an_empty_or_single_manifest_fold_is_one_line(tmp_path: Path) -> None:
    written = ["1", "2"] * 10
    written[3] = ""
    ws, name, manifest = _dataset(tmp_path, _labels(20, {"a": 10, "b": 10}), fold=written)
    with pytest.raises(DataError, match=r"1 labeled item\(s\) have an empty 'fold' \(line 5\)"):
        get_folds(ws, name, manifest)
    ws, name, manifest = _dataset(tmp_path / "b", _labels(20, {"a": 10, "b": 10}), fold=["1"] * 20)
    with pytest.raises(DataError, match=r"holds one fold \(1\)"):
        get_folds(ws, name, manifest)


def test_classes_smaller_than_the_folds_are_one_line(tmp_path: Path) -> None:
    # every class below k: scikit-learn refuses; the error names the classes and what to do
    ws, name, manifest = _dataset(tmp_path, ["a"] * 4 + ["b"] * 3)
    with pytest.raises(
        DataError,
        match=r"^2 class\(es\) have fewer items than the 5 folds: b \(3\), a \(4\); use --folds 3 "
        r"or fewer, or merge or drop these classes$",
    ):
        get_folds(ws, name, manifest, k=5)
    assert get_folds(ws, name, manifest, k=3).k == 3


def test_one_small_class_gets_folds_without_sklearn_warnings(tmp_path: Path) -> None:
    ws, name, manifest = _dataset(tmp_path, ["a"] * 20 + ["b"] * 20 + ["c"] * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        folds = get_folds(ws, name, manifest, k=5)
    assert folds.k == 5


# -- duplicates: the same content under two ids is one group in every splitter ----------------


def _dataset_with_copies(
    root: Path, labels: list[str], moved: str | None = None, **cols: list
) -> tuple:
    """Items whose files hold distinct bytes, plus the same file listed a second time under
    another id (``./x.wav`` beside ``x.wav``) and byte copies under new names; the content
    hashes are recorded as ``extract`` records them. The copies take column ``moved`` (a
    group) from another item, as a clip filed under two speakers would."""
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    paths = [f"a{i:04d}.wav" for i in range(n)]
    for i, p in enumerate(paths):
        (audio / p).write_bytes(f"clip {i}".encode())
    # 8 copies under new names and 8 items listed again by another spelling of their path
    copies = [(f"copy{i:04d}.wav", i) for i in range(0, 16, 2)]
    for name, src in copies:
        (audio / name).write_bytes(f"clip {src}".encode())
    again = [(f"./a{i:04d}.wav", i) for i in range(1, 17, 2)]
    extra = copies + again
    rows = paths + [p for p, _ in extra]
    frame = pd.DataFrame(
        {
            "path": rows,
            "label": labels + [labels[s] for _, s in extra],
            **{
                c: v + [v[(s + (c == moved and p.startswith("copy"))) % n] for p, s in extra]
                for c, v in cols.items()
            },
        }
    )
    csv = audio / "train.csv"
    frame.to_csv(csv, index=False)
    ws = Workspace.at(root / "ws")
    manifest = read_manifest(csv)
    name = register_dataset(ws, manifest)  # records every item's content hash
    pairs = [(p, paths[s]) for p, s in extra]
    return ws, name, manifest, pairs


def _assert_one_fold(folds, pairs: list[tuple[str, str]]) -> None:
    where = dict(zip(folds.ids, folds.fold.tolist(), strict=True))
    split = [(a, b) for a, b in pairs if where[a] != where[b]]
    assert split == []


@pytest.mark.parametrize("splitter", ["stratified", "stratified-group", "multilabel-stratified"])
def test_duplicate_content_lands_in_one_fold_in_every_splitter(
    tmp_path: Path, splitter: str
) -> None:
    rng = np.random.default_rng(3)
    n = 80
    cols: dict[str, list] = {}
    group_col = None
    if splitter == "multilabel-stratified":
        y = (rng.random((n, 3)) < 0.4).astype(int)
        y[y.sum(axis=1) == 0, 0] = 1
        labels = [";".join(c for c, v in zip("abc", row, strict=True) if v) for row in y]
    else:
        labels = _labels(n, {"a": 40, "b": 40})
    if splitter == "stratified-group":
        cols["spk"] = [f"s{i % 40}" for i in range(n)]
        group_col = "spk"
    ws, name, manifest, pairs = _dataset_with_copies(tmp_path, labels, moved="spk", **cols)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        folds = get_folds(ws, name, manifest, k=4, group_col=group_col)
    assert folds.method == splitter and len(np.unique(folds.fold)) == 4
    _assert_one_fold(folds, pairs)
    assert [str(w.message) for w in seen] == [
        "16 set(s) of items share their content under other ids; each set is kept in one fold"
    ]
    if group_col:  # the speaker groups still hold
        spk = dict(zip(manifest.ids, manifest.frame["spk"], strict=True))
        per = pd.DataFrame({"g": [spk[i] for i in folds.ids], "f": folds.fold})
        assert (per.groupby("g")["f"].nunique() == 1).all()


def test_a_fold_column_that_splits_duplicates_is_one_warning(tmp_path: Path) -> None:
    labels = _labels(40, {"a": 20, "b": 20})
    fold = [str(i % 4) for i in range(40)]
    ws, name, manifest, pairs = _dataset_with_copies(tmp_path, labels, fold=fold)
    # the copies took their source's fold, except two that are moved to another fold
    frame = pd.read_csv(manifest.source, dtype=str, keep_default_na=False)
    frame.loc[40, "fold"] = str((int(frame.loc[40, "fold"]) + 1) % 4)
    frame.loc[48, "fold"] = str((int(frame.loc[48, "fold"]) + 1) % 4)
    frame.to_csv(manifest.source, index=False)
    manifest = read_manifest(manifest.source)
    with pytest.warns(UserWarning) as seen:
        folds = get_folds(ws, name, manifest)
    lines = [str(w.message) for w in seen if "more than one fold" in str(w.message)]
    assert len(lines) == 1
    assert (
        "'fold' column puts 2 set(s) of items with the same content in more than one" in (lines[0])
    )
    assert folds.method == "manifest"


def test_same_content_with_different_labels_is_one_line(tmp_path: Path) -> None:
    labels = _labels(40, {"a": 20, "b": 20})
    ws, name, manifest, pairs = _dataset_with_copies(tmp_path, labels)
    frame = manifest.frame
    copy_id = pairs[0][0]
    row = frame.index[frame["id"] == copy_id][0]
    other = "b" if frame.loc[row, "label"] == "a" else "a"
    manifest.frame.loc[row, "label"] = other
    with pytest.warns(UserWarning) as seen:
        get_folds(ws, name, manifest, k=4)
    clash = [str(w.message) for w in seen if "different labels" in str(w.message)]
    assert len(clash) == 1 and clash[0].startswith("1 set(s) of items with the same content")
    assert copy_id in clash[0]


def test_nan_and_empty_labels_are_unlabeled_not_a_class(tmp_path: Path) -> None:
    spellings = ["", "NaN", "nan", "NA", "N/A", "null", "None", "<NA>"]
    labels = _labels(40, {"a": 20, "b": 20}) + spellings
    ws, name, manifest = _dataset(tmp_path, labels)
    assert sorted({lab for labs in manifest.label_lists() for lab in labs}) == ["a", "b"]
    assert "40 labeled items, 8 unlabeled (empty or NaN-like" in manifest.describe_labels()
    folds = get_folds(ws, name, manifest, k=4)
    assert len(folds.ids) == 40  # the unlabeled items get no fold
    assert set(folds.ids) == set(manifest.ids[:40])
