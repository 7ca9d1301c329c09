"""The report's "score against layer" section: head runs and probes, per encoder.

Every head run of the dataset is a point at its layer choice (one layer, a range ``6..12`` or a
concatenation ``4+8+12``), one line per head and pooling choice (``mean+std`` included). The
x axis lists the layer choices in order (numbered layers first), so an encoder with one layer
(``logmel``) still gets a readable plot. Probes are drawn from the record ``probe`` saves in
``<ws>/probes/`` (wherever its PNG went); PNGs there without a record are embedded as they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..workspace import Workspace

Figure = Callable[[Any, str, list[str]], str]
Image = Callable[[bytes, str, list[str]], str]


def layer_order(names: set[str] | list[str]) -> list[str]:
    """Layer choices in axis order: numbered layers by number, then the others as text."""
    nums = sorted((n for n in names if n.lstrip("-").isdigit()), key=int)
    return nums + sorted(n for n in names if not n.lstrip("-").isdigit())


def head_points(runs: list[Any], metric: str, sign: float) -> dict[tuple[str, str, str], dict]:
    """``(encoder, head, pool choice) -> {layer choice: best score}`` over the head runs."""
    lines: dict[tuple[str, str, str], dict[str, float]] = {}
    for r in runs:
        v = r.record.scores.get(metric)
        if r.record.kind != "head" or v is None or v != v:
            continue
        layer, pool = r.record.layer_choice
        if layer is None:
            continue
        key = (_short(r.record.encoder), str(r.record.head), pool)
        pts = lines.setdefault(key, {})
        if layer not in pts or sign * float(v) > sign * pts[layer]:
            pts[layer] = float(v)
    return lines


def _short(model: Any) -> str:
    return "-" if not model else str(model).rstrip("/").split("/")[-1]


def probe_records(ws: Workspace, dataset: str | None) -> list[dict[str, Any]]:
    """The probe records of ``dataset`` saved in ``<ws>/probes/``, oldest first."""
    folder = ws.root / "probes"
    out = []
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("dataset") == dataset and rec.get("scores"):
            out.append(rec)
    return out


def _axes(title: str, metric: str) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.set_ylabel(f"out-of-fold {metric}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig, ax


def _draw(ax: Any, series: dict[str, dict[str, float]], order: list[str]) -> None:
    """One line per series over the categorical layer axis ``order``."""
    pos = {la: n for n, la in enumerate(order)}
    for label, pts in series.items():
        xs = sorted((pos[la] for la in pts), key=int)
        ax.plot(xs, [pts[order[x]] for x in xs], marker="o", label=label)
    ax.set_xticks(range(len(order)), order, rotation=45 if len(order) > 10 else 0)
    ax.set_xlim(-0.5, len(order) - 0.5)
    ax.set_xlabel("layer")
    ax.legend(fontsize=8)


def layers_section(
    ws: Workspace,
    runs: list[Any],
    metric: str,
    greater_is_better: bool,
    figs: list[str],
    figure: Figure,
    image: Image,
) -> str:
    """The HTML of the section: one plot of head runs per encoder, one per probe record."""
    sign = 1.0 if greater_is_better else -1.0
    lines = head_points(runs, metric, sign)
    out = ["<h2>Score against layer</h2>"]
    for enc in sorted({k[0] for k in lines}):
        series = {f"{h} / {p}": pts for (e, h, p), pts in sorted(lines.items()) if e == enc}
        order = layer_order({la for pts in series.values() for la in pts})
        fig, ax = _axes(f"head runs of {enc}", metric)
        _draw(ax, series, order)
        out.append(figure(fig, f"{enc}: {metric} of head runs by layer choice", figs))
    dataset = runs[0].record.dataset if runs else None
    recorded = set()
    for rec in probe_records(ws, dataset):
        recorded.add(str(rec.get("png_name", "")))
        scores: dict[str, dict[str, float]] = rec["scores"]
        pools = list(dict.fromkeys(p for row in scores.values() for p in row))
        series = {
            p: {la: v for la, row in scores.items() if (v := row.get(p)) is not None} for p in pools
        }
        fig, ax = _axes(f"logistic probe: {_short(rec.get('model'))}", str(rec.get("metric")))
        _draw(ax, series, list(scores))
        out.append(figure(fig, f"probe of {rec.get('store')} ({rec.get('metric')})", figs))
    folder = ws.root / "probes"
    for png in sorted(folder.glob("*.png")) if folder.exists() else []:
        if png.name not in recorded and not png.with_suffix(".json").exists():
            out.append(image(png.read_bytes(), f"probe: {png.stem}", figs))
    if len(out) == 1:
        out.append(
            "<p class=muted>No head runs or probe results yet "
            "('sslstack probe', 'sslstack fit-head').</p>"
        )
    return "\n".join(out)
