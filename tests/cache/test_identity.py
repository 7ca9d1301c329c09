"""A vector belongs to its content: the same audio under any name is computed once, changed
content is recomputed even when size and mtime are kept, a local model is its fingerprint, and
a workspace made by the last release before content addressing reads and extends."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sslstack import extract, load_embeddings
from sslstack.cache import Store
from sslstack.content import file_sha1
from sslstack.datasets import item_hashes, resolve_dataset
from sslstack.embeddings import find_store
from sslstack.errors import StoreError
from sslstack.workspace import Workspace
from tests.audio_fixtures import tone, write_dataset

FIXTURE = Path(__file__).parent / "fixtures" / "schema2"


def _vectors(ws: Path, data: Path, **kw: object) -> tuple[list[str], np.ndarray]:
    return load_embeddings("logmel", 0, "mean", workspace=ws, data=data, **kw)  # type: ignore[arg-type]


def test_the_same_audio_under_two_names_is_computed_once(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 5)
    shutil.copy(tmp_path / "d/wav/000.wav", tmp_path / "d/wav/dup.wav")
    man.write_text(man.read_text() + "wav/dup.wav,a\n")
    ws = tmp_path / "ws"
    first = extract(man, "logmel", workspace=ws)
    assert (first.computed, first.reused, first.cached) == (5, 1, 0)
    ids, x = _vectors(ws, man)
    np.testing.assert_array_equal(x[ids.index("wav/dup.wav")], x[ids.index("wav/000.wav")])
    # another dataset holding copies of the same files under other names computes nothing
    (tmp_path / "other").mkdir()
    rows = ["path,label"]
    for i in range(5):
        shutil.copy(tmp_path / f"d/wav/{i:03d}.wav", tmp_path / f"other/clip-{i}.wav")
        rows.append(f"clip-{i}.wav,a")
    (tmp_path / "other/list.csv").write_text("\n".join(rows) + "\n")
    other = extract(tmp_path / "other/list.csv", "logmel", workspace=ws)
    assert (other.computed, other.reused, other.model_loaded) == (0, 5, False)
    assert other.dataset != first.dataset
    got = _vectors(ws, tmp_path / "other/list.csv")[1]
    np.testing.assert_array_equal(got, x[:5])


def test_a_same_size_same_mtime_rewrite_is_recomputed(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 4)
    ws = tmp_path / "ws"
    extract(man, "logmel", workspace=ws)
    path = tmp_path / "d/wav/002.wav"
    before = path.stat()
    n = sf.info(str(path)).frames
    sf.write(path, tone(n / 16000, freq=1234.0, seed=9)[:n], 16000)  # other audio, same length
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # as rsync -a and cp -p do
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    again = extract(man, "logmel", workspace=ws)
    assert (again.computed, again.cached) == (1, 3)
    extract(man, "logmel", workspace=tmp_path / "clean")
    got, ref = _vectors(ws, man), _vectors(tmp_path / "clean", man)
    assert got[0] == ref[0]
    np.testing.assert_array_equal(got[1], ref[1])


def test_a_local_model_folder_copied_elsewhere_reuses_its_store(tiny_model, tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 3, max_s=0.6)
    model = tiny_model("wavlm-layer")
    ws = tmp_path / "ws"
    first = extract(man, str(model), workspace=ws)
    copy = tmp_path / "elsewhere" / "my-model"
    shutil.copytree(model, copy)
    again = extract(man, str(copy), workspace=ws)
    assert again.store == first.store and again.computed == 0 and not again.model_loaded
    assert find_store(str(copy), ws).path.name == first.store
    assert find_store(str(model), ws).path.name == first.store
    # a store an older sslstack keyed by the folder's path is still the one extended
    old_ws = Workspace.at(tmp_path / "old")
    key = Store(Path(first.store_path)).key
    legacy = Store.open_or_create(old_ws.stores, replace(key, model=str(model)))
    res = extract(man, str(model), workspace=old_ws)
    assert res.store == legacy.path.name and res.computed == 3


def _schema2_workspace(root: Path) -> Path:
    """A copy of the fixture workspace made by sslstack 85abd07, its paths pointed at ``root``."""
    shutil.copytree(FIXTURE, root)
    for p in root.rglob("*"):
        if p.is_file() and p.suffix in (".csv", ".json"):
            p.write_text(p.read_text().replace("@ROOT@", str(root)))
    return root


def test_a_schema2_workspace_from_85abd07_reads_and_extends(tmp_path: Path) -> None:
    root = _schema2_workspace(tmp_path / "old")
    ws, train = root / "ws", root / "audio" / "train.csv"
    flat, windowed = "logmel-a59860dfc2", "logmel-ab372f4730"
    wav = sorted((root / "audio/wav").glob("*.wav"))
    # the dataset keeps its old name (and so its folds and runs); its map comes from its memo
    name, _ = resolve_dataset(Workspace.at(ws), train)
    assert name == "train-501e0c98"
    assert list(item_hashes(Workspace.at(ws), name).values()) == [file_sha1(p) for p in wav[:4]]
    # its vectors read by content equal what today's code computes
    extract(train, "logmel", workspace=tmp_path / "new", pools=("mean", "std"))
    for pool in ("mean", "std"):
        got = load_embeddings("logmel", 0, pool, workspace=ws, data=train, store=flat)
        ref = load_embeddings("logmel", 0, pool, workspace=tmp_path / "new", data=train)
        assert got[0] == ref[0]
        np.testing.assert_allclose(got[1], ref[1], atol=2e-3, rtol=2e-3)
    # extending: the same store folders, only the two new files computed
    bigger = root / "audio" / "all.csv"
    bigger.write_text("path,label\n" + "".join(f"wav/{p.name},{p.name[0]}\n" for p in wav))
    for store, kw in ((flat, {}), (windowed, {"window": 0.3})):
        res = extract(bigger, "logmel", workspace=ws, pools=("mean", "std"), **kw)
        assert (res.store, res.computed, res.cached) == (store, 2, 4)
        st = Store(ws / "stores" / store)
        assert len(list((st.path / "parts").glob("*.h5"))) == 1  # old and new parts merged
        records = st.read_items([file_sha1(p) for p in wav])
        assert [r.id for r in records] == [f"wav/{p.name}" for p in wav]
        assert all(r.extent > 0 for r in records)
    extract(bigger, "logmel", workspace=tmp_path / "new", pools=("mean", "std"))
    got = load_embeddings("logmel", 0, "mean", workspace=ws, data=bigger, store=flat)
    ref = load_embeddings("logmel", 0, "mean", workspace=tmp_path / "new", data=bigger)
    np.testing.assert_allclose(got[1], ref[1], atol=2e-3, rtol=2e-3)
    keys, starts, _ = find_store("logmel", ws, store=windowed).read_windows(0, "mean")
    assert set(keys) == {file_sha1(p) for p in wav} and len(starts) > len(wav)


def test_a_store_from_before_streaming_gives_way_to_the_chunked_one(tmp_path: Path) -> None:
    """A transformers store made before long inputs were streamed has no ``chunk`` in its
    key; extracting again makes a chunked store beside it, and finding the model's store then
    answers with the chunked one instead of 'several stores match'."""
    from sslstack.cache import Store, StoreKey
    from sslstack.embeddings import find_store

    ws = tmp_path / "ws"
    old = StoreKey(model="org/enc", revision="r", sample_rate=16000, pools=("mean",))
    new = StoreKey(model="org/enc", revision="r", sample_rate=16000, pools=("mean",), chunk=30.0)
    other = StoreKey(model="org/enc", revision="r", sample_rate=16000, pools=("mean",), window=2.0)
    Store.open_or_create(ws / "stores", old, dict)
    assert find_store("org/enc", ws).key == old
    Store.open_or_create(ws / "stores", new, dict)
    assert find_store("org/enc", ws).key == new
    Store.open_or_create(ws / "stores", other, dict)  # differs in more than chunk: ambiguous
    with pytest.raises(StoreError, match="several stores"):
        find_store("org/enc", ws)
    assert find_store("org/enc", ws, window=2.0).key == other
