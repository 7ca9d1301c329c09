"""Datasets in a workspace: registered once, rewritten only when they change."""

from __future__ import annotations

import os
from pathlib import Path

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


def test_vectors_overwritten_by_another_datasets_audio_are_refused(tmp_path: Path) -> None:
    """train/ and test/ both list wav/000.wav: extracting test replaces train's vectors in the
    shared store; fitting on train then stops with one line instead of using test audio."""
    import pytest

    from sslstack.classify import fit_head
    from sslstack.errors import DataError
    from sslstack.extract import extract
    from tests.audio_fixtures import write_dataset

    ws = tmp_path / "ws"
    train = write_dataset(tmp_path / "train", n=6, labels=("a", "b", "c"), seed=0)
    test = write_dataset(tmp_path / "test", n=6, labels=("a", "b", "c"), seed=100)
    extract(train, "logmel", workspace=ws)
    fit_head("logreg", "logmel", data=train, workspace=ws, trials=0, folds=2)
    extract(test, "logmel", workspace=ws)
    with pytest.raises(
        DataError,
        match=r"6 item\(s\) of manifest-\w+ hold embeddings of other audio in store "
        r"logmel-\w+ \(first: wav/000.wav, wav/001.wav",
    ):
        fit_head("logreg", "logmel", data=train, workspace=ws, trials=0, folds=2)
    extract(train, "logmel", workspace=ws)  # what the message says to do
    fit_head("logreg", "logmel", data=train, workspace=ws, trials=0, folds=2)
