"""``probe``: a scaled logistic regression on every layer x pooling, under the shared folds.

The first thing to run on a new encoder: which layers carry the task? The table is saved as a
PNG plot of score against layer (one line per pooling) in ``<ws>/probes/``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..workspace import Workspace, atomic_write_json
from .cv import Targets, cross_validate
from .features import FeatureChoice, layer_choices, pool_choices
from .heads import FitContext, get_head
from .metrics import Metric, get_metric
from .problem import Problem, cores, int_list, prepare_problem, str_list


@dataclass
class ProbeResult:
    """Scores of the probe. ``table`` has one row per layer and one column per pooling;
    ``full`` adds the layer and pooling choices a head can pick beyond those (layer ranges
    ``6..12``, concatenations ``4+8+12``, ``mean+std``), so it holds every cell of ``table``."""

    table: pd.DataFrame
    metric: str
    greater_is_better: bool
    png: Path
    dataset: str
    store: str
    time_s: float
    full: pd.DataFrame | None = None

    def best(self) -> tuple[str, str, float]:
        """``(layer, pool, score)`` of the best single layer and pooling."""
        return _best(self.table, self.greater_is_better)

    def best_any(self) -> tuple[str, str, float]:
        """``(layer, pool, score)`` of the best choice a head can pick (concatenations too)."""
        return _best(self.table if self.full is None else self.full, self.greater_is_better)

    def to_dict(self) -> dict[str, Any]:
        layer, pool, score = self.best()
        la_any, po_any, sc_any = self.best_any()
        full = self.table if self.full is None else self.full
        return {
            "metric": self.metric,
            "dataset": self.dataset,
            "store": self.store,
            "png": str(self.png),
            "best": {"layer": layer, "pool": pool, "score": score},
            "best_any": {"layer": la_any, "pool": po_any, "score": sc_any},
            "scores": {
                str(la): {p: _f(v) for p, v in row.items()} for la, row in self.table.iterrows()
            },
            "all_scores": {
                str(la): {p: _f(v) for p, v in row.items()} for la, row in full.iterrows()
            },
            "time_s": round(self.time_s, 2),
        }


def _best(table: pd.DataFrame, greater_is_better: bool) -> tuple[str, str, float]:
    stacked = table.stack()
    idx = stacked.idxmax() if greater_is_better else stacked.idxmin()
    return str(idx[0]), str(idx[1]), float(stacked[idx])


def _f(v: Any) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


@dataclass(frozen=True)
class ProbeConfig:
    """What ``probe`` is asked to do: the ``sslstack probe`` flags (see :func:`probe`)."""

    model: str
    data: Any = None
    layer: Sequence[int] | str | int | None = None
    pool: Sequence[str] | str | None = None
    metric: str | None = None
    task: str | None = None
    positive: str | None = None
    group_col: str | None = None
    folds: int | None = None
    seed: int = 0
    C: float = 1.0
    store: str | None = None
    png: str | os.PathLike[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProbeConfig:
        return cls(**d)


def probe(model: str | ProbeConfig, *, workspace: Any = None, **settings: Any) -> ProbeResult:
    """Score a standardized logistic regression on every layer x pooling of ``model``'s store.

    Takes a :class:`ProbeConfig` or its fields as arguments (``probe("logmel", pool="mean")``).

    Args:
        model: encoder whose store to read.
        data: manifest, folder or dataset name (default: the workspace's labeled dataset).
        layer, pool: restrict the layers (``"6-12"``) and poolings (``"mean,std"``).
        metric: default roc_auc / accuracy / lwlrap by task.
        C: inverse regularization strength of the logistic regression.
        png: where to save the plot (default ``<ws>/probes/<store>-<dataset>-<metric>.png``).

    Returns:
        ProbeResult with the table (rows: layers, columns: poolings) and the PNG path.
    """
    cfg = model if isinstance(model, ProbeConfig) else ProbeConfig(str(model), **settings)
    t0 = time.time()
    ws = Workspace.at(workspace)
    prob = prepare_problem(ws, cfg)
    met = get_metric(cfg.metric, prob.enc.task)
    full = _score_grid(prob, met, cfg)
    table = full.loc[_asked(cfg, prob)].copy()
    path = (
        Path(cfg.png)
        if cfg.png
        else ws.root / "probes" / f"{prob.store.path.name}-{prob.dataset}-{met.name}.png"
    )
    _plot(full, met.name, prob.store.key.model, path)
    res = ProbeResult(
        table,
        met.name,
        met.greater_is_better,
        path,
        prob.dataset,
        prob.store.path.name,
        time.time() - t0,
        full,
    )
    _record(ws, res, prob.store.key.model)
    return res


def _asked(cfg: ProbeConfig, prob: Problem) -> tuple[list[str], list[str]]:
    """The single layers and poolings asked for (default: every layer, the clip poolings)."""
    wanted = int_list(cfg.layer)
    layers = [
        la
        for la in prob.store.layer_names
        if wanted is None or (la.isdigit() and int(la) in wanted)
    ]
    return layers, str_list(cfg.pool) or prob.store.clip_pools()


def _score_grid(prob: Problem, met: Metric, cfg: ProbeConfig) -> pd.DataFrame:
    """The probe's score on every layer x pooling, then on the layer ranges, concatenations and
    concatenated poolings fit-head searches."""
    layers, pools = _asked(cfg, prob)
    wanted = int_list(cfg.layer)
    all_layers = layers + [c for c in layer_choices(prob.store, wanted) if c not in layers]
    all_pools = pools + [c for c in pool_choices(prob.store, pools) if c not in pools]
    head = get_head("logreg")
    ctx = FitContext(prob.enc.task, prob.enc.n_classes, cfg.seed, "cpu", cores())
    params = {"C": cfg.C, "class_weight": "none", "standardize": True}
    targets = Targets(prob.y, prob.enc, prob.splits, prob.groups)
    full = pd.DataFrame(index=pd.Index(all_layers, name="layer"), columns=all_pools, dtype=float)
    for la in all_layers:
        for po in all_pools:
            x = prob.reader.matrix(FeatureChoice(la, po))
            out = cross_validate(head, x, targets, met, params, ctx)
            full.loc[la, po] = met(prob.y, out.oof, prob.enc.task, prob.enc.positive_index)
        prob.reader._cache.clear()  # one row at a time keeps memory flat on big encoders
    return full


def probe_record(ws: Workspace, store: str, dataset: str, metric: str) -> Path:
    """Where ``probe`` records its scores of ``store`` on ``dataset`` with ``metric``."""
    return ws.root / "probes" / f"{store}-{dataset}-{metric}.json"


def _record(ws: Workspace, res: ProbeResult, model: str) -> None:
    """``<ws>/probes/<store>-<dataset>-<metric>.json``: what ``report`` plots, wherever the
    PNG went."""
    d = res.to_dict()
    atomic_write_json(
        probe_record(ws, res.store, res.dataset, res.metric),
        {
            "store": res.store,
            "model": model,
            "dataset": res.dataset,
            "metric": res.metric,
            "greater_is_better": res.greater_is_better,
            "png": str(res.png),
            "png_name": res.png.name,
            "scores": d["all_scores"],
            "best": d["best"],
            "best_any": d["best_any"],
            "created": time.time(),
        },
    )


def _plot(table: pd.DataFrame, metric: str, model: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    # a model path with '$' in it is shown literally (no mathtext, no TeX)
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
        xs = np.arange(len(table.index))
        for pool in table.columns:
            ax.plot(xs, table[pool].to_numpy(dtype=float), marker="o", label=pool)
        ax.set_xticks(xs, [str(v) for v in table.index], rotation=45 if len(xs) > 12 else 0)
        singles = [n for n, la in enumerate(table.index) if ".." not in la and "+" not in la]
        if singles and singles[-1] + 1 < len(xs):  # ranges and concatenations after the layers
            ax.axvline(singles[-1] + 0.5, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("layer (then ranges a..b and concatenations a+b)")
        ax.set_ylabel(f"out-of-fold {metric}")
        ax.set_title(f"logistic probe: {model}")
        ax.grid(alpha=0.3)
        ax.legend(title="pooling")
        fig.tight_layout()
        tmp = path.with_name(f".{path.stem}.tmp.png")
        fig.savefig(tmp)
        plt.close(fig)
    os.replace(tmp, path)
