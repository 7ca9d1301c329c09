"""Content hashes and their memo: a file is read again exactly when its content may have
changed; the memo is derived data, so a damaged one is rebuilt."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import sslstack.content as content
from sslstack.content import MEMO_NAME, content_hashes
from sslstack.datasets import hashes_of_ids, register_dataset
from sslstack.errors import DataError
from sslstack.manifest import read_manifest
from sslstack.workspace import Workspace


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    read: list[str] = []
    real = content.file_sha1

    def counted(path: str) -> str:
        read.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(content, "file_sha1", counted)
    return read


def test_the_memo_reads_a_file_again_only_when_it_may_have_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [tmp_path / f"{n}.wav" for n in "abc"]
    for i, f in enumerate(files):
        f.write_bytes(bytes([i]) * 100)
    ws = Workspace.at(tmp_path / "ws")
    read = _counting(monkeypatch)
    content_hashes(ws, files)
    content_hashes(ws, files)  # written just now: within a clock tick of a rewrite, not memoized
    assert read == ["a.wav", "b.wav", "c.wav"] * 2
    read.clear()
    monkeypatch.setattr(content, "RACY_NS", -(10**12))  # as if the files were older
    first = content_hashes(ws, files)
    assert first == [hashlib.sha1(f.read_bytes()).hexdigest() for f in files]
    assert content_hashes(ws, files) == first and read == ["a.wav", "b.wav", "c.wav"]
    read.clear()
    st = files[0].stat()  # a: rewritten in place, size and mtime kept (ctime moves)
    files[0].write_bytes(b"\x09" * 100)
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    st = files[1].stat()  # b: replaced by another file (new inode), size and mtime kept
    other = tmp_path / "other.wav"
    other.write_bytes(b"\x08" * 100)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, files[1])
    again = content_hashes(ws, files)
    assert read == ["a.wav", "b.wav"] and again[2] == first[2]
    assert again[:2] == [hashlib.sha1(f.read_bytes()).hexdigest() for f in files[:2]]
    read.clear()
    (ws.root / MEMO_NAME).write_bytes(b"\xff\xfe garbage")  # a damaged memo: rebuilt
    assert content_hashes(ws, files) == again and len(read) == 3


def test_ids_two_datasets_map_to_other_content_need_a_dataset(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    names = {}
    for d, byte in (("one", b"\x01"), ("two", b"\x02")):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.wav").write_bytes(byte * 10)
        (tmp_path / d / "m.csv").write_text("path\nx.wav\n")
        names[d] = register_dataset(ws, read_manifest(tmp_path / d / "m.csv"))
    assert names["one"] != names["two"]
    assert hashes_of_ids(ws, ["x.wav"], names["two"]) == [hashlib.sha1(b"\x02" * 10).hexdigest()]
    with pytest.raises(DataError, match=r"id 'x.wav' names different files in datasets m-"):
        hashes_of_ids(ws, ["x.wav"])
    with pytest.raises(DataError, match=r"id 'y.wav' is not in any dataset"):
        hashes_of_ids(ws, ["y.wav"])


def test_a_dataset_whose_files_were_deleted_after_hashing_keeps_its_name_and_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Vectors stay usable after the audio is gone: ``fit-head --data m.csv`` reads the
    manifest without its files and gets the same dataset."""
    from sslstack.datasets import item_hashes, resolve_dataset

    monkeypatch.setattr(content, "RACY_NS", -(10**12))  # as if the files were older
    for n in "ab":
        (tmp_path / f"{n}.wav").write_bytes(n.encode() * 10)
    (tmp_path / "m.csv").write_text("path\na.wav\nb.wav\n")
    ws = Workspace.at(tmp_path / "ws")
    name = register_dataset(ws, read_manifest(tmp_path / "m.csv"))
    (tmp_path / "a.wav").unlink()
    assert resolve_dataset(ws, tmp_path / "m.csv", labeled=False)[0] == name
    assert item_hashes(ws, name)["a.wav"] == hashlib.sha1(b"a" * 10).hexdigest()
