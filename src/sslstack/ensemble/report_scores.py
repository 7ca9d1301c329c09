"""The report's score tables: per-class metrics of the run shown, and the test scores
``predict`` printed (kept in ``<ws>/predictions/``)."""

from __future__ import annotations

import numpy as np

from ..workspace import Workspace
from .encoding import Encoding
from .prediction import saved_test_scores
from .report_text import e, fmt_score, html_table


def per_class_section(y: np.ndarray, P: np.ndarray, enc: Encoding) -> str:
    """Precision, recall, F1 and support of each class (single-label), worst F1 first; the
    ``#`` column is the class number the confusion matrix's axes use for a shortened label."""
    from sklearn.metrics import precision_recall_fscore_support

    C = len(enc.labels)
    pred = P.argmax(axis=1)
    prec, rec, f1, support = precision_recall_fscore_support(
        y, pred, labels=np.arange(C), zero_division=0
    )
    predicted = np.bincount(pred, minlength=C)
    order = sorted(range(C), key=lambda c: (f1[c], c))
    rows = [
        [str(c), str(enc.labels[c]), str(int(support[c])), str(int(predicted[c])),
         fmt_score(prec[c]), fmt_score(rec[c]), fmt_score(f1[c])]
        for c in order
    ]  # fmt: skip
    header = ["#", "class", "items", "predicted", "precision", "recall", "F1"]
    return (
        "<h3>Per-class scores (out-of-fold)</h3><p class=muted>Worst F1 first; "
        f"macro F1 {fmt_score(float(np.mean(f1)))} over {C} classes.</p>" + html_table(header, rows)
    )


def test_scores_section(ws: Workspace, dataset: str, focus: str, metric: str) -> str:
    """The scores ``predict`` printed for labeled test data, per run and test dataset (the
    newest first); "" when ``predict`` never scored test data of this dataset's runs."""
    saved = saved_test_scores(ws, dataset)
    if not saved:
        return ""
    names = list(dict.fromkeys(k for s in saved for k in (s.get("scores") or {})))
    names = [metric, *[n for n in names if n != metric]] if metric in names else names
    rows, classes = [], []
    for s in saved:
        scores = s.get("scores") or {}
        leaked = int(s.get("leaked_scored") or 0)
        rows.append(
            [str(s.get("run")), str(s.get("test_dataset")), str(s.get("scored"))]
            + [fmt_score(scores.get(n)) for n in names]
            + [str(leaked)]
        )
        classes.append("chosen" if s.get("run") == focus else "")
    return (
        "<h2>Test scores</h2><p>Scores <code>sslstack predict</code> printed on labeled test "
        f"data ({e(metric)} first), newest first; <i>leaked</i>: scored test items whose "
        "content is also a training item (their predictions are in-sample).</p>"
        + html_table(["run", "test data", "items scored", *names, "leaked"], rows, classes)
    )
