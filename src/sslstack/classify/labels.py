"""The task and the label encoding: which column of a probability matrix means which label.

Binary tasks order their two labels ``[negative, positive]`` so the positive class is always
column 1. The positive class is ``--positive`` when given; otherwise it is inferred only when
the answer is obvious — labels ``0/1``, ``false/true``, ``no/yes``, or exactly one label among
``fake, spoof, positive, pos, anomaly, anomalous, abnormal, attack, 1, true, yes`` — and anything
else is an error asking for ``--positive``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .metrics import TASKS

_POSITIVE_WORDS = {
    "fake",
    "spoof",
    "spoofed",
    "positive",
    "pos",
    "anomaly",
    "anomalous",
    "abnormal",
    "attack",
    "1",
    "true",
    "yes",
}


@dataclass(frozen=True)
class LabelEncoding:
    """The task, the ordered labels and (binary) the positive label."""

    task: str
    labels: tuple[str, ...]
    positive: str | None = None

    @property
    def positive_index(self) -> int:
        return self.labels.index(self.positive) if self.positive is not None else 1

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    def encode(self, label_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """Class indices (binary, multiclass) or a 0/1 matrix (multilabel)."""
        index = {lab: i for i, lab in enumerate(self.labels)}
        unknown = sorted({lab for labs in label_lists for lab in labs if lab not in index})
        if unknown:
            raise DataError(
                f"label(s) {', '.join(unknown[:10])} are not in this run's labels "
                f"({', '.join(self.labels)})"
            )
        if self.task == "multilabel":
            y = np.zeros((len(label_lists), len(self.labels)), dtype=np.int8)
            for r, labs in enumerate(label_lists):
                y[r, [index[lab] for lab in labs]] = 1
            return y
        return np.array([index[labs[0]] for labs in label_lists], dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "labels": list(self.labels), "positive": self.positive}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelEncoding:
        return cls(d["task"], tuple(d["labels"]), d.get("positive"))


def infer_encoding(
    label_lists: Sequence[Sequence[str]], task: str | None = None, positive: str | None = None
) -> LabelEncoding:
    """Read the task and the label order from the labels (``task`` and ``positive`` override).

    Raises:
        ConfigError: an unknown task, or a binary task whose positive class is not obvious.
        DataError: fewer than two labels, or labels that do not fit the requested task.
    """
    if task is not None and task not in TASKS:
        raise ConfigError(f"--task {task!r}: choose from {', '.join(TASKS)}")
    counts = Counter(lab for labs in label_lists for lab in labs)
    labels = sorted(counts)
    multi = any(len(labs) > 1 for labs in label_lists)
    if len(labels) < 2:
        raise DataError(
            f"the labels hold {len(labels)} class(es) ({', '.join(labels) or 'none'}); "
            "a classifier needs at least two"
        )
    if task is None:
        task = "multilabel" if multi else ("binary" if len(labels) == 2 else "multiclass")
    if multi and task != "multilabel":
        raise DataError(
            f"--task {task}: some items hold several labels ('a;b'); use --task multilabel"
        )
    if task == "binary" and len(labels) != 2:
        raise DataError(
            f"--task binary: the labels hold {len(labels)} classes ({', '.join(labels[:10])})"
        )
    if positive is not None and task != "binary":
        raise ConfigError(f"--positive {positive}: only binary tasks have a positive class")
    if task != "binary":
        return LabelEncoding(task, tuple(labels))
    pos = _positive(labels, positive)
    neg = labels[0] if labels[1] == pos else labels[1]
    return LabelEncoding("binary", (neg, pos), pos)


def _positive(labels: list[str], positive: str | None) -> str:
    if positive is not None:
        if positive not in labels:
            raise ConfigError(
                f"--positive {positive!r}: not one of the labels ({', '.join(labels)})"
            )
        return positive
    low = [lab.lower() for lab in labels]
    for neg, pos in (("0", "1"), ("false", "true"), ("no", "yes")):
        if sorted(low) == [neg, pos]:
            return labels[low.index(pos)]
    hits = [lab for lab, lo in zip(labels, low, strict=True) if lo in _POSITIVE_WORDS]
    if len(hits) == 1:
        return hits[0]
    raise ConfigError(
        f"binary labels {labels[0]!r} and {labels[1]!r}: name the positive class, "
        f"e.g. --positive {labels[1]} (EER, ROC-AUC and calibration depend on it)"
    )


def check_label_counts(enc: LabelEncoding, y: np.ndarray) -> None:
    """Refuse classes with a single member: no fold could train on them.

    Raises:
        DataError: naming the classes and their counts.
    """
    counts = y.sum(axis=0) if enc.task == "multilabel" else np.bincount(y, minlength=enc.n_classes)
    rare = [f"{enc.labels[i]} ({int(c)})" for i, c in enumerate(counts) if c < 2]
    if rare:
        raise DataError(
            f"{len(rare)} class(es) have fewer than 2 items: {', '.join(rare[:20])}; "
            "every class needs items in at least two folds — drop or merge these classes"
        )
