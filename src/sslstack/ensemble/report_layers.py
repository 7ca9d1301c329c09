"""The report's "score against layer" section: one figure per dataset, every encoder in it.

Each encoder is one line over its layers (x: relative depth, 0 = its first layer, 1 = its
last, so encoders of 5 and 25 layers share one axis): the probe's score at each layer (the best
pooling there), from the record ``probe`` saves in ``<ws>/probes/``. Every tuned head run is a
marker in its encoder's colour at its layer choice (a range ``2..4`` or a concatenation
``0+2+4`` at the mean depth of its layers), shaped by head and labelled with its run number;
the best stack is a dashed line across. An encoder without a probe gets its line from its head
runs. Encoders are told apart by store (a local model and its probe name it differently). A
table under the figure names each encoder's best layer, as probed and as tuned. PNGs in
``probes/`` without a record are embedded as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..runs import Run
from ..workspace import Workspace
from .report_text import fmt_score, html_table, safe_text

Figure = Callable[[Any, str, list[str]], str]
Image = Callable[[bytes, str, list[str]], str]
_MARKERS = {"logreg": "o", "xgb": "s", "catboost": "D", "lgbm": "^", "mlp": "v"}


@dataclass
class Encoder:
    """What the section knows of one encoder (one store) of a dataset."""

    name: str
    probe: dict[str, float] = field(default_factory=dict)  # single layer -> best score
    probe_best: tuple[str, str, float] | None = None  # (layer choice, pool, score)
    heads: list[tuple[Run, str, str, float]] = field(default_factory=list)  # run, layer, pool

    def layers(self) -> list[str]:
        """Its single layers in depth order (from the probe, else from the head runs)."""
        known = set(self.probe) | {la for _, c, _, _ in self.heads for la in _parts(c)}
        return layer_order(known)


def layer_order(names: set[str] | list[str]) -> list[str]:
    """Layers in depth order: numbered layers by number, then the others in natural order
    (``conv2`` before ``conv12``; ``final`` after the numbers)."""
    nums = sorted((n for n in names if n.lstrip("-").isdigit()), key=int)
    rest = (n for n in names if not n.lstrip("-").isdigit())
    return nums + sorted(
        rest, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)]
    )


def _parts(choice: str) -> list[str]:
    """The single layers of a layer choice: ``2..4`` -> 2, 3, 4; ``0+2+4`` -> 0, 2, 4."""
    if ".." in choice:
        a, _, b = choice.partition("..")
        if a.lstrip("-").isdigit() and b.lstrip("-").isdigit():
            return [str(i) for i in range(int(a), int(b) + 1)]
    return choice.split("+")


def depth(choice: str, layers: list[str]) -> float | None:
    """Relative depth of a layer choice among ``layers`` (mean over its layers; None: none
    of them is known). One layer only: 1.0."""
    pos = {la: n for n, la in enumerate(layers)}
    hits = [pos[p] for p in _parts(choice) if p in pos]
    if not hits:
        return None
    return 1.0 if len(layers) == 1 else sum(hits) / len(hits) / (len(layers) - 1)


def encoders(ws: Workspace, runs: list[Run], dataset: str, metric: str, sign: float) -> dict:
    """``store -> Encoder`` of ``dataset``: its probe (scored with ``metric``) and head runs."""
    found: dict[str, Encoder] = {}
    for r in runs:
        rec, v = r.record, r.record.scores.get(metric)
        if rec.kind != "head" or rec.dataset != dataset or v is None or v != v or not rec.features:
            continue
        layer, pool = rec.layer_choice
        enc = found.setdefault(rec.features[0].store, Encoder(_short(rec.encoder)))
        enc.heads.append((r, str(layer), pool, float(v)))
    for prec in probe_records(ws, dataset):
        if prec.get("metric") != metric:
            continue
        enc = found.setdefault(str(prec.get("store")), Encoder(_short(prec.get("model"))))
        for layer, row in prec["scores"].items():
            vals = {p: float(s) for p, s in row.items() if s is not None}
            if not vals:
                continue
            pool = max(vals, key=lambda p: sign * vals[p])
            if enc.probe_best is None or sign * vals[pool] > sign * enc.probe_best[2]:
                enc.probe_best = (layer, pool, vals[pool])
            if len(_parts(layer)) == 1:
                enc.probe[layer] = vals[pool]
    return found


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


def plot_layers(found: dict[str, Encoder], metric: str, stack: Run | None) -> Any:
    """The figure: one line per encoder, head runs as markers, the best stack as a line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    seen: dict[float, int] = {}  # head runs drawn at each depth
    for n, enc in enumerate(found.values()):
        c, layers = colors[n % len(colors)], enc.layers()
        line = enc.probe or _best_heads(enc)
        xs = [(depth(la, layers), v) for la, v in line.items()]
        pts = sorted((x, v) for x, v in xs if x is not None)
        style = "-" if enc.probe else "--"
        what = "probe" if enc.probe else "head runs"
        ax.plot([x for x, _ in pts], [v for _, v in pts], style, marker="o", ms=3.5, color=c,
                label=safe_text(f"{enc.name} ({what})"))  # fmt: skip
        for run, choice, _pool, v in enc.heads:
            x = depth(choice, layers)
            if x is None:
                continue
            k = seen[round(x, 3)] = seen.get(round(x, 3), -1) + 1
            head = str(run.record.head)
            ax.scatter([x], [v], marker=_MARKERS.get(head, "P"), s=64, color=c, edgecolors="k",
                       zorder=3)  # fmt: skip
            # alternate sides, so the numbers of runs at one depth do not overlap
            ax.annotate(f"r{run.number}", (x, v), xytext=(-18 if k % 2 else 6, 4),
                        textcoords="offset points", fontsize=7)  # fmt: skip
    _decorate(ax, found, metric, stack)
    return fig


def _best_heads(enc: Encoder) -> dict[str, float]:
    best: dict[str, float] = {}
    for _, choice, _, v in enc.heads:
        if len(_parts(choice)) == 1 and (choice not in best or v > best[choice]):
            best[choice] = v
    return best


def _decorate(ax: Any, found: dict[str, Encoder], metric: str, stack: Run | None) -> None:
    from matplotlib.lines import Line2D

    if stack is not None and stack.record.score is not None:
        ax.axhline(float(stack.record.score), ls=":", color="0.3", lw=1.2,
                   label=f"stack r{stack.number} ({stack.record.method})")  # fmt: skip
    heads = sorted({str(r.record.head) for e in found.values() for r, *_ in e.heads})
    handles, labels = ax.get_legend_handles_labels()
    for h in heads:
        handles.append(Line2D([], [], ls="", marker=_MARKERS.get(h, "P"), color="0.6", mec="k"))
        labels.append(f"{h} head run")
    ax.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1], ["first", "", "middle", "", "last"])
    ax.set_xlim(-0.05, 1.08)
    ax.set_xlabel("layer (relative depth in its encoder)")
    ax.set_ylabel(f"out-of-fold {metric}")
    ax.grid(alpha=0.3)


def _best_table(found: dict[str, Encoder], sign: float) -> str:
    rows = []
    for enc in found.values():
        pb = enc.probe_best
        best = max(enc.heads, key=lambda h: sign * h[3], default=None)
        rows.append([
            enc.name,
            str(len(enc.layers())),
            f"{pb[0]} / {pb[1]}" if pb else "-",
            fmt_score(pb[2]) if pb else "-",
            f"{best[0].id} ({best[0].record.head}, {best[1]} / {best[2]})" if best else "-",
            fmt_score(best[3]) if best else "-",
        ])  # fmt: skip
    header = ["encoder", "layers", "probe: best layer / pool", "probe", "best head run", "head"]
    return html_table(header, rows)


def layers_section(
    ws: Workspace,
    runs: list[Run],
    metric: str,
    greater_is_better: bool,
    figs: list[str],
    figure: Figure,
    image: Image,
) -> str:
    """The HTML of the section: one figure per dataset of ``runs`` (the first run's first)."""
    sign = 1.0 if greater_is_better else -1.0
    out = ["<h2>Score against layer</h2>"]
    datasets = list(dict.fromkeys(r.record.dataset for r in runs))
    for dataset in datasets:
        found = encoders(ws, runs, dataset, metric, sign)
        if not found:
            continue
        stacks = [r for r in runs if r.record.kind == "stack" and r.record.dataset == dataset]
        stack = max(stacks, key=lambda r: (r.record.created, r.number), default=None)
        fig = plot_layers(found, metric, stack)
        fig.axes[0].set_title(safe_text(f"{dataset}: {metric} by layer, every encoder"))
        out.append(figure(fig, f"{dataset}: {metric} against layer", figs))
        out.append(_best_table(found, sign))
    folder = ws.root / "probes"
    recorded = {str(p.get("png_name", "")) for d in datasets for p in probe_records(ws, d)}
    for png in sorted(folder.glob("*.png")) if folder.exists() else []:
        if png.name not in recorded and not png.with_suffix(".json").exists():
            out.append(image(png.read_bytes(), f"probe: {png.stem}", figs))
    if len(out) == 1:
        out.append(
            "<p class=muted>No head runs or probe results yet "
            "('sslstack probe', 'sslstack fit-head').</p>"
        )
    return "\n".join(out)
