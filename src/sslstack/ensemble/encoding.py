"""Label encodings of ensemble inputs, and the metric that scores them (bound to the encoding)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..classify.labels import LabelEncoding
from ..classify.metrics import Metric, get_metric
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


def scorer(name: str | None, enc: Encoding) -> Metric:
    """The metric ``name`` (None: the task's default) bound to ``enc``: ``scorer(y, proba)``.

    Raises:
        ConfigError: unknown metric, or one that does not apply to this task (names listed).
    """
    return get_metric(name, enc.task).bound(enc)
