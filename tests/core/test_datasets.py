"""Datasets in a workspace: registered once, rewritten only when they change."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sslstack.datasets import read_dataset_manifest, register_dataset, resolve_dataset
from sslstack.manifest import read_manifest
from sslstack.workspace import Workspace


def _csv(root: Path, text: str) -> Path:
    for name in ("a.wav", "b.wav", "c.wav"):
        (root / name).touch()
    csv = root / "m.csv"
    csv.write_text(text)
    return csv


def _stamps(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_registering_again_writes_nothing(tmp_path: Path) -> None:
    csv = _csv(tmp_path, "path,label\na.wav,x\nb.wav,y\n")
    ws = Workspace.at(tmp_path / "ws")
    name = register_dataset(ws, read_manifest(csv))
    before = _stamps(ws.dataset_dir(name))
    assert register_dataset(ws, read_manifest(csv)) == name
    assert _stamps(ws.dataset_dir(name)) == before  # same inode, same mtime: not rewritten
    csv.write_text("path,label\na.wav,x\nb.wav,z\n")  # a changed label is written
    register_dataset(ws, read_manifest(csv))
    after = _stamps(ws.dataset_dir(name))
    assert after["manifest.csv"] != before["manifest.csv"]
    assert "z" in (ws.dataset_dir(name) / "manifest.csv").read_text()


def test_a_read_only_dataset_folder_is_fine_when_nothing_changed(tmp_path: Path) -> None:
    csv = _csv(tmp_path, "path,label\na.wav,x\nb.wav,y\n")
    ws = Workspace.at(tmp_path / "ws")
    name = register_dataset(ws, read_manifest(csv))
    folder = ws.dataset_dir(name)
    import sslstack.datasets as ds

    def refuse(*_: object) -> None:
        raise OSError(30, "Read-only file system", str(folder / "x.tmp"))

    orig = (ds.atomic_write_text, ds.atomic_write_json)
    ds.atomic_write_text = refuse  # type: ignore[assignment]
    ds.atomic_write_json = refuse  # type: ignore[assignment]
    try:
        os.utime(folder / "dataset.json", (0, 0))
        assert register_dataset(ws, read_manifest(csv)) == name
    finally:
        ds.atomic_write_text, ds.atomic_write_json = orig


def test_a_label_column_chosen_once_is_kept(tmp_path: Path) -> None:
    csv = _csv(tmp_path, "path,category\na.wav,x\nb.wav,y\nc.wav,x\n")
    ws = Workspace.at(tmp_path / "ws")
    register_dataset(ws, read_dataset_manifest(ws, csv, label_col="category"))
    again = read_dataset_manifest(ws, csv)  # no --label-col: the saved choice
    assert again.label_col == "category" and again.label_lists() == [["x"], ["y"], ["x"]]
    name, m = resolve_dataset(ws, csv)
    assert m.has_labels and m.label_col == "category"
    _, stored = resolve_dataset(ws, name)
    assert stored.label_lists() == [["x"], ["y"], ["x"]]


def test_two_datasets_with_the_same_ids_and_other_audio_keep_their_own_vectors(
    tmp_path: Path,
) -> None:
    """train/ and test/ both list wav/000.wav … with other audio. Each keeps its own dataset
    and its own vectors (equal to extracting it alone), and a head fitted on train after test
    was extracted scores what it scores alone (today: one dataset id, overwritten vectors)."""
    from sslstack import load_embeddings
    from sslstack.classify import fit_head
    from sslstack.extract import extract
    from tests.audio_fixtures import write_dataset

    ws = tmp_path / "ws"
    train = write_dataset(tmp_path / "train", n=6, labels=("a", "b", "c"), seed=0)
    test = write_dataset(tmp_path / "test", n=6, labels=("a", "b", "c"), seed=100)
    a = extract(train, "logmel", workspace=ws)
    b = extract(test, "logmel", workspace=ws)
    assert a.dataset != b.dataset and b.computed == 6 and a.store == b.store
    ids = [f"wav/{i:03d}.wav" for i in range(6)]
    renamed = tmp_path / "train" / "renamed.csv"  # a copy of train's manifest: train's vectors
    renamed.write_text(train.read_text())
    for data, alone in ((train, "alone-train"), (test, "alone-test"), (renamed, "alone-train")):
        extract(data, "logmel", workspace=tmp_path / alone)
        got = load_embeddings("logmel", 0, "mean", workspace=ws, data=data)
        ref = load_embeddings("logmel", 0, "mean", workspace=tmp_path / alone, data=data)
        assert got[0] == ref[0] == ids
        np.testing.assert_array_equal(got[1], ref[1])
    x_train = load_embeddings("logmel", 0, "mean", workspace=ws, data=train)[1]
    x_test = load_embeddings("logmel", 0, "mean", workspace=ws, data=test)[1]
    assert np.abs(x_train - x_test).max() > 0.1  # other audio, other vectors
    fit = {"trials": 0, "folds": 2, "seed": 0}
    shared = fit_head("logreg", "logmel", data=train, workspace=ws, **fit)
    alone = fit_head("logreg", "logmel", data=train, workspace=tmp_path / "alone-train", **fit)
    assert shared.score == alone.score
