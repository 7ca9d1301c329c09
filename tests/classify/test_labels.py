"""Task inference, label encoding and the positive-class rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sslstack.classify.labels import LabelEncoding, check_label_counts, infer_encoding
from sslstack.errors import ConfigError, DataError


def test_task_inference() -> None:
    assert infer_encoding([["b"], ["a"], ["c"]]).to_dict() == {
        "task": "multiclass",
        "labels": ["a", "b", "c"],
        "positive": None,
    }
    enc = infer_encoding([["dog", "cat"], ["bird"]])
    assert enc.task == "multilabel" and enc.labels == ("bird", "cat", "dog")
    assert infer_encoding([["a"], ["b"]], task="multiclass").task == "multiclass"
    assert infer_encoding([["a"], ["b"]], task="multilabel").task == "multilabel"


@pytest.mark.parametrize(
    ("labels", "positive"),
    [
        (["bonafide", "spoof"], "spoof"),
        (["fake", "real"], "fake"),
        (["0", "1"], "1"),
        (["True", "False"], "True"),
        (["no", "yes"], "yes"),
    ],
)
def test_obvious_positive_classes(labels: list[str], positive: str) -> None:
    enc = infer_encoding([[lab] for lab in labels])
    assert enc.positive == positive
    assert enc.labels[1] == positive and enc.positive_index == 1


def test_binary_needs_an_explicit_positive_otherwise() -> None:
    with pytest.raises(ConfigError, match="name the positive class, e.g. --positive"):
        infer_encoding([["cat"], ["dog"]])
    enc = infer_encoding([["cat"], ["dog"]], positive="cat")
    assert enc.labels == ("dog", "cat")
    assert enc.encode([["cat"], ["dog"]]).tolist() == [1, 0]
    with pytest.raises(ConfigError, match="not one of the labels"):
        infer_encoding([["cat"], ["dog"]], positive="cow")
    with pytest.raises(ConfigError, match="only binary tasks"):
        infer_encoding([["a"], ["b"], ["c"]], positive="a")


def test_bad_label_sets() -> None:
    with pytest.raises(DataError, match="at least two"):
        infer_encoding([["a"], ["a"]])
    with pytest.raises(DataError, match="use --task multilabel"):
        infer_encoding([["a", "b"], ["c"]], task="multiclass")
    with pytest.raises(DataError, match="3 classes"):
        infer_encoding([["a"], ["b"], ["c"]], task="binary")
    with pytest.raises(ConfigError, match="choose from binary"):
        infer_encoding([["a"], ["b"]], task="regression")


def test_encoding_round_trip_and_counts() -> None:
    enc = LabelEncoding("multilabel", ("a", "b", "c"))
    y = enc.encode([["a", "c"], ["b"]])
    assert y.tolist() == [[1, 0, 1], [0, 1, 0]]
    assert LabelEncoding.from_dict(enc.to_dict()) == enc
    with pytest.raises(DataError, match="not in this run's labels"):
        enc.encode([["z"]])
    single = LabelEncoding("multiclass", ("a", "b", "c"))
    with pytest.raises(DataError, match=r"fewer than 2 items: c \(1\)"):
        check_label_counts(single, np.array([0, 0, 1, 1, 2]))


def test_nan_like_label_cells_are_unlabeled_in_every_task(tmp_path: Path) -> None:
    """Empty and NaN-like cells are no class: such items are left out of the folds, the labels
    and the out-of-fold file, and counted in one line."""
    import pandas as pd

    from sslstack.classify import fit_head
    from sslstack.manifest import read_manifest
    from sslstack.runs import load_run
    from tests.classify_synth import make_synth

    for task in ("binary", "multiclass", "multilabel"):
        s = make_synth(tmp_path / task, task=task, n=60, layers=2)
        frame = pd.read_csv(s.csv, dtype=str, keep_default_na=False)
        spellings = ["", "NaN", "nan", "NA", "null", "None", "N/A", "<NA>"]
        frame.loc[: len(spellings) - 1, "label"] = spellings
        frame.to_csv(s.csv, index=False)
        manifest = read_manifest(s.csv)
        assert "52 labeled items, 8 unlabeled (empty or NaN-like" in manifest.describe_labels()
        res = fit_head("logreg", "fake", data=s.csv, workspace=s.ws, trials=0, pool="mean")
        run = load_run(s.ws, res.run)
        assert not {"NaN", "nan", "NA", "None", "null"} & set(run.labels), task
        oof = pd.read_csv(run.oof_path, dtype={"id": str})
        assert len(oof) == 52 and not set(s.ids[:8]) & set(oof["id"])
