"""Label problems ``check`` reports: classes too small for the folds, classes only in test, and
label-noise candidates from the best run's out-of-fold predictions."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from ..workspace import Workspace

NOISE_CONFIDENCE = 0.8  # another class at least this probable, out of fold: a candidate
MAX_LISTED = 20


def class_counts(lists: list[list[str]]) -> Counter[str]:
    return Counter(lab for labs in lists for lab in labs)


def label_problems(
    ws: Workspace,
    dataset: str,
    train_lists: list[list[str]],
    test_lists: list[list[str]] | None,
    folds: int,
) -> dict[str, Any]:
    """``small`` (classes with fewer items than ``folds``), ``test_only`` (test classes with no
    training item), ``noise`` (see :func:`noise_candidates`), each as lists of small dicts."""
    train = class_counts(train_lists)
    small = sorted(((c, n) for c, n in train.items() if n < folds), key=lambda cn: (cn[1], cn[0]))
    test = class_counts(test_lists or [])
    only = sorted((c, n) for c, n in test.items() if c not in train)
    return {
        "folds": folds,
        "small": [{"label": c, "items": n} for c, n in small],
        "test_only": [{"label": c, "items": n} for c, n in only],
        "noise": noise_candidates(ws, dataset),
    }


def noise_candidates(ws: Workspace, dataset: str) -> dict[str, Any] | None:
    """Items whose out-of-fold prediction by the dataset's best run confidently names another
    class than their label (single-label runs), least probable label first; ``None`` when the
    dataset has no single-label run."""
    from ..classify.metrics import rank_runs
    from ..errors import SslstackError
    from ..manifest import split_labels
    from ..runs import list_runs

    runs = [
        r
        for r in list_runs(ws, dataset)
        if r.record.kind in ("head", "stack") and r.record.task != "multilabel"
    ]
    if not runs:
        return None
    best = rank_runs(runs, lambda r: r.record.metric, lambda r: r.record.score)[0]
    try:
        oof = best.oof()
    except SslstackError:
        return None
    from ..datasets import load_dataset

    manifest = load_dataset(ws, dataset)
    label = {i: split_labels(v) for i, v in zip(manifest.ids, manifest.frame["label"], strict=True)}
    labels = best.labels
    P = oof[labels].to_numpy(dtype=np.float64)
    found = []
    for row, item in enumerate(oof["id"]):
        labs = label.get(item) or []
        if len(labs) != 1 or labs[0] not in labels:
            continue
        p = P[row]
        pred = int(p.argmax())
        own = labels.index(labs[0])
        if pred != own and p[pred] >= NOISE_CONFIDENCE:
            found.append(
                {
                    "id": item,
                    "label": labs[0],
                    "predicted": labels[pred],
                    "p_label": float(p[own]),
                    "p_predicted": float(p[pred]),
                }
            )
    found.sort(key=lambda d: (d["p_label"], -d["p_predicted"]))
    return {"run": best.id, "count": len(found), "items": found[:MAX_LISTED]}


__all__ = ["label_problems", "noise_candidates"]
