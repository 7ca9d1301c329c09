from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sslstack.errors import ManifestError
from sslstack.manifest import read_manifest
from tests.audio_fixtures import tone, write_dataset


def test_csv_relative_paths_labels_and_extra_columns(tmp_path: Path) -> None:
    man = write_dataset(tmp_path, 4)
    text = man.read_text().splitlines()
    text[0] += ",speaker"
    text[1:] = [t + f",s{i}" for i, t in enumerate(text[1:])]
    man.write_text("\n".join(text) + "\n")
    m = read_manifest(man)
    assert m.ids == ["wav/000.wav", "wav/001.wav", "wav/002.wav", "wav/003.wav"]
    assert m.paths[0] == (tmp_path / "wav/000.wav").resolve()
    assert m.frame["speaker"].tolist() == ["s0", "s1", "s2", "s3"]
    assert m.has_labels and not m.multilabel
    assert m.line_of("wav/002.wav") == 4


def test_multilabel_detected(tmp_path: Path) -> None:
    sf.write(tmp_path / "x.wav", tone(0.2), 16000)
    (tmp_path / "m.csv").write_text("path,label\nx.wav,bird;frog\n")
    m = read_manifest(tmp_path / "m.csv")
    assert m.multilabel and m.label_lists() == [["bird", "frog"]]


def test_missing_files_all_listed_with_lines(tmp_path: Path) -> None:
    man = write_dataset(tmp_path, 5)
    (tmp_path / "wav/001.wav").unlink()
    (tmp_path / "wav/003.wav").unlink()
    with pytest.raises(ManifestError) as e:
        read_manifest(man)
    msg = str(e.value)
    assert "2 of 5" in msg and "line 3: wav/001.wav" in msg and "line 5: wav/003.wav" in msg


def test_missing_path_column_empty_and_duplicates(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("file,label\nx.wav,1\n")
    with pytest.raises(ManifestError, match="no 'path' column"):
        read_manifest(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("path,label\n")
    with pytest.raises(ManifestError, match="no rows"):
        read_manifest(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("")
    with pytest.raises(ManifestError, match="empty"):
        read_manifest(tmp_path / "c.csv")
    sf.write(tmp_path / "x.wav", tone(0.2), 16000)
    (tmp_path / "d.csv").write_text("path,label\nx.wav,1\ny.wav,2\nx.wav,3\n")
    with pytest.raises(ManifestError, match=r"x.wav \(lines 2, 4\)"):
        read_manifest(tmp_path / "d.csv")


def test_folder_layouts(tmp_path: Path) -> None:
    for lab in ("cat", "dog"):
        (tmp_path / "lab" / lab).mkdir(parents=True)
        sf.write(tmp_path / "lab" / lab / "1.wav", tone(0.2), 16000)
    m = read_manifest(tmp_path / "lab")
    assert m.ids == ["cat/1.wav", "dog/1.wav"] and m.frame["label"].tolist() == ["cat", "dog"]
    (tmp_path / "flat").mkdir()
    sf.write(tmp_path / "flat" / "z.flac", tone(0.2), 16000)
    m = read_manifest(tmp_path / "flat")
    assert m.ids == ["z.flac"] and not m.has_labels
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no audio or image files"):
        read_manifest(tmp_path / "empty")


def test_audio_decoding_resample_and_windows(tmp_path: Path) -> None:
    from sslstack.audio import iter_windows, load_audio, window_starts
    from sslstack.errors import AudioError

    x = np.stack([tone(2.0, 8000), tone(2.0, 8000, seed=1)], axis=1)
    sf.write(tmp_path / "st.wav", x, 8000)
    y = load_audio(tmp_path / "st.wav", 16000)
    assert y.dtype == np.float32 and abs(len(y) - 32000) <= 1
    assert len(load_audio(tmp_path / "st.wav", 16000, max_seconds=0.5, crop="center")) == 8000
    wins = list(iter_windows(tmp_path / "st.wav", 16000, 0.75, 0.5))
    assert [s for s, _ in wins] == window_starts(2.0, 0.75, 0.5) == [0.0, 0.5, 1.0, 1.5]
    whole = load_audio(tmp_path / "st.wav", 16000)
    # streamed windows equal slices of the whole decode (up to resampler edge effects)
    np.testing.assert_allclose(wins[1][1], whole[8000:20000], atol=2e-3)
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(AudioError, match="bad.wav"):
        load_audio(tmp_path / "bad.wav", 16000)
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(tmp_path / "empty.wav", 16000)


def _csv(tmp_path: Path, text: str) -> Path:
    for name in ("a.wav", "b.wav", "c.wav", "d.wav"):
        (tmp_path / name).touch()
    csv = tmp_path / "m.csv"
    csv.write_text(text)
    return csv


def test_a_labels_column_is_read_and_said(tmp_path: Path) -> None:
    csv = _csv(tmp_path, "path,labels\na.wav,dog;cat\nb.wav,cat\nc.wav,bird\n")
    m = read_manifest(csv)
    assert m.label_col == "labels" and m.multilabel
    assert m.label_lists() == [["dog", "cat"], ["cat"], ["bird"]]
    assert m.describe_labels() == (
        "labels: column 'labels' (multi-label, 3 classes, 3 labeled items)"
    )


def test_label_col_names_any_column(tmp_path: Path) -> None:
    csv = _csv(tmp_path, "path,category,label\na.wav,x,old\nb.wav,y,old\n")
    m = read_manifest(csv, label_col="category")
    assert m.label_lists() == [["x"], ["y"]] and m.label_col == "category"
    assert m.frame["label_column"].tolist() == ["old", "old"]  # the other one is kept aside
    with pytest.raises(ManifestError, match=r"--label-col kind: .* has no such column"):
        read_manifest(csv, label_col="kind")
    bare = _csv(tmp_path, "path,category\na.wav,x\n")
    assert read_manifest(bare).describe_labels() == (
        "labels: none (no 'label' or 'labels' column; columns: category); name one with --label-col"
    )


def test_a_manifest_id_column_is_the_item_id(tmp_path: Path) -> None:
    csv = _csv(tmp_path, "id,path,label\n17,a.wav,x\n 4 ,b.wav,y\n")
    m = read_manifest(csv)
    assert m.ids == ["17", "4"] and m.id_col == "id"
    assert [p.name for p in m.paths] == ["a.wav", "b.wav"]
    assert "id_column" not in m.frame
    dup = _csv(tmp_path, "id,path\n1,a.wav\n1,b.wav\n")
    with pytest.raises(ManifestError, match=r"1 duplicate 'id' value\(s\).*1 \(lines 2, 3\)"):
        read_manifest(dup)
    empty = _csv(tmp_path, "id,path\n1,a.wav\n,b.wav\n")
    with pytest.raises(ManifestError, match=r"empty 'id' on line\(s\) 3"):
        read_manifest(empty)


def test_fold_column_is_text_as_written(tmp_path: Path) -> None:
    csv = _csv(tmp_path, "path,label,fold\na.wav,x,1\nb.wav,y,fold2\n")
    assert read_manifest(csv).frame["fold"].tolist() == ["1", "fold2"]


def test_symlinked_class_folders_and_files_are_followed(tmp_path: Path) -> None:
    # data kept elsewhere, linked into the dataset folder: the usual way to reuse a corpus
    for lab in ("cat", "dog"):
        (tmp_path / "store" / lab).mkdir(parents=True)
        sf.write(tmp_path / "store" / lab / "1.wav", tone(0.2), 16000)
    root = tmp_path / "data"
    (root / "cat").mkdir(parents=True)
    sf.write(root / "cat" / "0.wav", tone(0.2), 16000)
    (root / "cat" / "2.wav").symlink_to(tmp_path / "store" / "cat" / "1.wav")
    (root / "dog").symlink_to(tmp_path / "store" / "dog", target_is_directory=True)
    m = read_manifest(root)
    assert m.ids == ["cat/0.wav", "cat/2.wav", "dog/1.wav"]  # the linked class is not dropped
    assert m.frame["label"].tolist() == ["cat", "cat", "dog"]
    assert m.paths[2] == (tmp_path / "store" / "dog" / "1.wav").resolve()


def test_symlink_loops_and_broken_links_are_refused_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "cat").mkdir(parents=True)
    sf.write(root / "cat" / "0.wav", tone(0.2), 16000)
    (root / "cat" / "again").symlink_to(root, target_is_directory=True)
    with pytest.raises(ManifestError, match=r"cat/again: a symbolic link to .*data.*a loop") as e:
        read_manifest(root)
    assert "\n" not in str(e.value)
    (root / "cat" / "again").unlink()
    (root / "cat" / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    with pytest.raises(ManifestError, match=r"cat/gone.wav: a broken symbolic link"):
        read_manifest(root)
