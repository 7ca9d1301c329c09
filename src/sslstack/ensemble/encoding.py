"""Label encodings of ensemble inputs, and scoring them with the metric registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..classify.labels import LabelEncoding
from ..errors import DataError

TASKS = ("binary", "multiclass", "multilabel")
_LISTED = 5


@dataclass(frozen=True)
class Encoding(LabelEncoding):
    """classify's label encoding (binary: ``[negative, positive]``) with the helpers stacking
    needs."""

    @property
    def single_label(self) -> bool:
        return self.task != "multilabel"

    @classmethod
    def of_meta(cls, meta: dict[str, Any]) -> Encoding:
        return cls(str(meta["task"]), tuple(meta["labels"]), meta.get("positive"))

    @classmethod
    def of(cls, enc: LabelEncoding) -> Encoding:
        return cls(enc.task, tuple(enc.labels), enc.positive)

    def to_meta(self) -> dict[str, Any]:
        return {"task": self.task, "labels": list(self.labels), "positive": self.positive}

    def targets(self, label_lists: Sequence[Sequence[str]], ids: Sequence[str]) -> np.ndarray:
        """Class index per item (single-label) or a 0/1 matrix (multilabel).

        Raises:
            DataError: an item has no label, or one outside this encoding (first items named).
        """
        index = {lab: i for i, lab in enumerate(self.labels)}
        bad = [
            (i, labs)
            for i, labs in zip(ids, label_lists, strict=True)
            if not labs
            or any(lab not in index for lab in labs)
            or (self.single_label and len(labs) != 1)
        ]
        if bad:
            shown = "; ".join(f"{i}: {';'.join(labs) or '(none)'}" for i, labs in bad[:_LISTED])
            raise DataError(
                f"{len(bad)} item(s) have labels outside the runs' classes "
                f"({', '.join(self.labels)}): {shown}"
            )
        y = self.encode(label_lists)
        return y.astype(np.int64)


# -- metrics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scorer:
    """One metric bound to an encoding: ``scorer(y, proba) -> float``."""

    name: str
    fn: Callable[..., float]
    greater_is_better: bool
    encoding: Encoding

    def __call__(self, y: np.ndarray, proba: np.ndarray) -> float:
        return float(self.fn(y, proba, self.encoding.task, self.encoding.positive_index))

    def better(self, a: float, b: float) -> bool:
        """Is score ``a`` strictly better than ``b``?"""
        return a > b if self.greater_is_better else a < b


def scorer(name: str | None, enc: Encoding) -> Scorer:
    """The metric ``name`` (default: the task's default metric) from the classify registry.

    Raises:
        ConfigError: unknown metric, or one that does not apply to this task (names listed).
    """
    from ..classify import metrics as m

    metric = m.get_metric(name or m.DEFAULT_METRIC[enc.task], enc.task)
    return Scorer(metric.name, metric.fn, metric.greater_is_better, enc)


def score_all(enc: Encoding, y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Every metric of the task (classify's ``score_all``), as plain floats."""
    from ..classify.metrics import score_all as _score_all

    return _score_all(y, proba, enc.task, enc.positive_index)
