"""``report``: one self-contained HTML file about a workspace's runs (plots embedded as PNG).

Sections: the leaderboard of runs and stacks; the test scores ``predict`` printed; score against
layer, one figure per dataset with every encoder (probe curves, tuned heads as markers, see
:mod:`.report_layers`); for one run (default: the most recent stack, else the best run) its
stack table, calibration, confusion matrix and per-class scores (single-label), ROC and DET
curves with the EER point (binary), reliability diagram, and per-label scores (multi-label).
Labels any length, in any script (:mod:`.report_text`). Readable offline: no scripts, no
external files.
"""

from __future__ import annotations

import base64
import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError
from ..runs import Run, RunRecord
from ..workspace import Workspace, atomic_write_text
from .base_runs import _sound, encoding_of, join_runs
from .calibrate import confidence_pairs, reliability
from .encoding import Encoding, scorer
from .report_layers import layers_section
from .report_scores import per_class_section, test_scores_section
from .report_text import e, fmt_score, font_families, html_table, safe_text, tick_labels

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left}th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.chosen{background:#eef6ff}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}
figcaption{font-size:.85em;color:#555}img{max-width:100%}.muted{color:#777}
"""


def report(
    workspace: str | os.PathLike[str] | Workspace | None = None,
    *,
    out: str | os.PathLike[str] = "report.html",
    run: str | int | None = None,
    metric: str | None = None,
    data: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Write the HTML report of a workspace.

    Args:
        workspace: the workspace folder.
        out: the HTML file to write.
        run: the run shown in detail (default: the most recent stack, else the best run).
        metric: metric of the leaderboard and layer plots (default: the run's metric).
        data: the run's image manifest: shows thumbnails of misclassified images.

    Returns:
        ``{"out", "run", "runs", "plots"}`` (``plots``: number of embedded images).

    Raises:
        RunError: the workspace has no runs.
    """
    import matplotlib

    matplotlib.use("Agg")
    from ..runs import list_runs
    from .predict import choose_run

    ws = Workspace.at(workspace)
    runs = [r for r in list_runs(ws) if _sound(ws, r)]  # a damaged run: left out, one line
    if not runs:
        raise RunError(f"no runs in {ws.root} to report on; fit a head first")
    focus = choose_run(ws, run)
    rec = focus.record
    enc = encoding_of(rec)
    sc = scorer(metric or rec.metric, enc)
    same = [r for r in runs if r.record.dataset == rec.dataset]
    parts: list[str] = [
        f"<h1>sslstack report</h1><p class=muted>workspace {e(ws.root)} · "
        f"{time.strftime('%Y-%m-%d %H:%M')} · dataset "
        f"{e(rec.dataset)} · {enc.task} · metric {sc.name}</p>"
    ]
    figs: list[str] = []
    parts.append(_leaderboard(same, sc.name, focus.id))
    parts.append(test_scores_section(ws, rec.dataset, focus.id, sc.name))
    others = [r for r in runs if r.record.dataset != rec.dataset]  # their own figure each
    # labels, run names and paths are shown literally: no mathtext ('$x$'), no TeX; fonts
    # with fallbacks, and what none of them can draw never reaches matplotlib (report_text)
    style: dict[str, Any] = {"text.parse_math": False, "text.usetex": False}
    style["font.family"] = list(font_families())
    with matplotlib.rc_context(style):  # type: ignore[arg-type]
        layers = layers_section(
            ws, same + others, sc.name, sc.greater_is_better, figs, _figure, _img
        )
        parts.append(layers)
        parts.append(_focus_section(ws, focus, enc, sc, figs))
        if data is not None:
            from .report_images import misclassified_section

            base = join_runs(ws, [focus])
            parts.append(misclassified_section(data, base.ids, base.y, base.P[0], enc, figs, _img))
    from ..check.summary import check_section  # the dataset's last 'sslstack check'

    parts.append(check_section(ws, rec.dataset))
    body = "\n".join(parts)
    doc = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>sslstack report"
        f"</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n"
    )
    path = Path(out).expanduser()
    atomic_write_text(path, doc)
    return {"out": str(path), "run": focus.id, "runs": len(same), "plots": len(figs)}


# -- html helpers ----------------------------------------------------------------------------


def _figure(fig: Any, caption: str, figs: list[str]) -> str:
    """The matplotlib figure as an embedded PNG (data: URI)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return _img(buf.getvalue(), caption, figs)


def _img(png: bytes, caption: str, figs: list[str]) -> str:
    figs.append(caption)
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{e(caption)}</figcaption></figure>"
    )


# -- sections --------------------------------------------------------------------------------


def _describe(rec: RunRecord) -> str:
    if rec.kind == "stack":
        return f"{rec.method} of {len(rec.base_runs)} runs"
    if rec.kind == "import":
        return "imported predictions"
    return "; ".join(f"layer {f.layer} {f.pool}" for f in rec.features) or "-"


def _leaderboard(runs: list[Any], metric: str, focus: str) -> str:
    def score(r: Any) -> float:
        v = r.record.scores.get(metric)
        return float(v) if v is not None and np.isfinite(float(v)) else float("nan")

    from ..classify.metrics import rank_runs

    order = rank_runs(runs, lambda r: metric, score)
    rows = [
        [
            r.id,
            r.record.kind,
            r.record.head or "-",
            _short(r.record.encoder),
            _describe(r.record),
            fmt_score(score(r)),
        ]
        for r in order
    ]
    classes = ["chosen" if r.id == focus else "" for r in order]
    return (
        f"<h2>Leaderboard</h2><p>Out-of-fold {e(metric)} of every run of the dataset, "
        "best first (all on the same folds).</p>"
        + html_table(["run", "kind", "head", "encoder", "features", metric], rows, classes)
    )


def _short(model: Any) -> str:
    return "-" if not model else str(model).rstrip("/").split("/")[-1]


def _focus_section(ws: Workspace, run: Run, enc: Encoding, sc: Any, figs: list[str]) -> str:
    base = join_runs(ws, [run])
    P, y = base.P[0], base.y
    out = [
        f"<h2>Run {e(run.id)}</h2><p>{e(_describe(run.record))}; out-of-fold "
        f"{e(sc.name)} {fmt_score(sc(y, P))} over {len(y)} items.</p>"
    ]
    table = run.record.table
    if table:
        order = ["best_single", "mean", "rank", "greedy", "logreg"]
        names = [n for n in order if n in table] + [n for n in table if n not in order]
        rows = [[n, table[n].get("run", ""), fmt_score(table[n].get("score"))] for n in names]
        out.append(
            "<h3>Stack on the same folds</h3>" + html_table(["method", "run", sc.name], rows)
        )
    cal = run.record.calibration
    if cal:
        rows = [[k, fmt_score(cal["before"][k]), fmt_score(cal["after"][k])] for k in cal["before"]]
        out.append(
            f"<h3>Calibration ({e(cal['method'])}, out-of-fold)</h3>"
            + html_table(["score", "before", "after"], rows)
        )
    if enc.single_label:
        out.append(_confusion(y, P, enc, figs))
        out.append(per_class_section(y, P, enc))
    if enc.task == "binary":
        out.append(_roc_det(y, P, enc, figs))
    out.append(_reliability(y, P, enc, figs))
    if enc.task == "multilabel":
        out.append(_per_label(y, P, enc, figs))
    return "\n".join(out)


def _confusion(y: np.ndarray, P: np.ndarray, enc: Encoding, figs: list[str]) -> str:
    """Rows normalized (each true class's share of predictions), so a rare class reads as
    well as a common one; counts written in the cells up to 20 classes; the figure grows with
    the classes up to the page's width and the labels shrink down to 6.5 pt, no further."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    C = len(enc.labels)
    cm = confusion_matrix(y, P.argmax(axis=1), labels=np.arange(C))
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ticks, changed = tick_labels([str(v) for v in enc.labels])
    size = min(3.5 + 0.36 * C, 11.0)
    fs = max(6.5, min(10.0, 260 / max(C, 1)))
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="share of the true class")
    ax.set_xticks(range(C), ticks, rotation=90 if C > 6 or changed else 0, fontsize=fs)
    ax.set_yticks(range(C), ticks, fontsize=fs)
    if C <= 20:
        for i, j in np.ndindex(C, C):
            color = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=fs - 1, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix (out-of-fold, {C} classes)")
    note = "; labels shortened or numbered (#), in full in the per-class table" * changed
    return _figure(fig, "confusion matrix" + note, figs)


def _roc_det(y: np.ndarray, P: np.ndarray, enc: Encoding, figs: list[str]) -> str:
    import matplotlib.pyplot as plt
    from scipy.stats import norm
    from sklearn.metrics import det_curve, roc_auc_score, roc_curve

    from ..classify.metrics import eer

    k = enc.positive_index
    truth, score = (y == k).astype(int), P[:, k]
    e = eer(y, P, enc.task, k)
    fpr, tpr, _ = roc_curve(truth, score)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(truth, score):.4f}")
    ax.plot([0, 1], [0, 1], ls=":", c="gray")
    ax.plot([e], [1 - e], "o", c="crimson", label=f"EER {100 * e:.2f}%")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(safe_text(f"ROC (positive: {enc.positive})"))
    ax.legend(loc="lower right")
    roc = _figure(fig, "ROC curve with the EER point", figs)
    dfpr, dfnr, _ = det_curve(truth, score)
    lo = 1e-3
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(norm.ppf(np.clip(dfpr, lo, 1 - lo)), norm.ppf(np.clip(dfnr, lo, 1 - lo)))
    ax.plot(
        [norm.ppf(max(e, lo))],
        [norm.ppf(max(e, lo))],
        "o",
        c="crimson",
        label=f"EER {100 * e:.2f}%",
    )
    ticks = [0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95]
    ax.set_xticks(norm.ppf(ticks), [f"{100 * t:g}%" for t in ticks])
    ax.set_yticks(norm.ppf(ticks), [f"{100 * t:g}%" for t in ticks])
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("false negative rate")
    ax.set_title("DET curve")
    ax.grid(alpha=0.3)
    ax.legend()
    return roc + _figure(fig, "DET curve with the EER point", figs)


def _reliability(y: np.ndarray, P: np.ndarray, enc: Encoding, figs: list[str]) -> str:
    import matplotlib.pyplot as plt

    from .calibrate import ece

    conf, hit = confidence_pairs(y, P, enc)
    rows = reliability(conf, hit)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], ls=":", c="gray")
    ax.plot([r[0] for r in rows], [r[1] for r in rows], marker="o")
    what = {
        "binary": safe_text(f"P({enc.positive})"),
        "multiclass": "top-label confidence",
        "multilabel": "per-label probability",
    }[enc.task]
    ax.set_xlabel(what)
    ax.set_ylabel("observed frequency")
    ax.set_title(f"reliability (ECE {ece(y, P, enc):.4f})")
    ax.grid(alpha=0.3)
    return _figure(fig, "reliability diagram", figs)


def _per_label(y: np.ndarray, P: np.ndarray, enc: Encoding, figs: list[str]) -> str:
    import matplotlib.pyplot as plt
    from sklearn.metrics import average_precision_score, roc_auc_score

    rows, aucs, aps = [], [], []
    for c, lab in enumerate(enc.labels):
        both = 0 < y[:, c].sum() < len(y)
        auc = roc_auc_score(y[:, c], P[:, c]) if both else float("nan")
        ap = average_precision_score(y[:, c], P[:, c]) if y[:, c].any() else float("nan")
        aucs.append(auc)
        aps.append(ap)
        rows.append([lab, str(int(y[:, c].sum())), fmt_score(auc), fmt_score(ap)])
    xs = np.arange(len(enc.labels))
    fig, ax = plt.subplots(figsize=(min(3 + 0.4 * len(xs), 14), 3.5))
    ax.bar(xs - 0.2, aucs, width=0.4, label="ROC-AUC")
    ax.bar(xs + 0.2, aps, width=0.4, label="average precision")
    ticks, _ = tick_labels([str(v) for v in enc.labels])
    ax.set_xticks(xs, ticks, rotation=90 if len(xs) > 8 else 0)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("per-label scores (out-of-fold)")
    return (
        "<h3>Per-label scores</h3>"
        + html_table(["label", "positives", "ROC-AUC", "AP"], rows)
        + _figure(fig, "per-label scores", figs)
    )
