"""``stack``: combine base runs' out-of-fold predictions and save the chosen stack as a run.

Every call scores, on the same folds, each registered method (best_single, mean, rank, greedy,
logreg) honestly: whatever a method learns from the rows is fitted on the other folds for each
fold's rows (:mod:`.methods`), so the table shows what stacking bought without flattering it.
Beside it, the score of the saved parameters on the rows they were fitted on ("in-sample",
optimistic for best_single, greedy and logreg). By default (``auto``) the method with the best
honest score is saved; when that is ``best_single`` no stack beats the best run honestly, the
result says so, and the saved run is that one base run alone (so ``predict`` uses it). The
chosen method (optionally calibrated out-of-fold) is saved as a run of kind ``stack`` that
``predict`` and ``report`` use like any other run.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from ..classify.metrics import Metric, score_all
from ..errors import ConfigError, DataError
from ..runs import RunRecord
from ..workspace import Workspace
from . import methods as _methods
from .base_runs import BaseSet, join_runs, load_runs
from .calibrate import calibrate_oof
from .encoding import scorer

AUTO = "auto"  # the method with the best honest (out-of-fold) score


@dataclass(frozen=True)
class StackConfig:
    """What to stack and how. ``runs=None`` means every run of the dataset."""

    runs: tuple[str, ...] | None = None
    method: str = AUTO
    metric: str | None = None
    calibrate: str | None = None
    greedy_size: int = 25
    logreg_c: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["runs"] = None if self.runs is None else list(self.runs)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StackConfig:
        kw = dict(d)
        if kw.get("runs") is not None:
            kw["runs"] = tuple(str(r) for r in kw["runs"])
        return cls(**kw)


@dataclass
class StackResult:
    """What one ``stack`` call did; ``to_dict`` is the ``--json`` line."""

    run: str | None
    method: str
    metric: str
    score: float
    table: dict[str, dict[str, Any]]
    oof: pd.DataFrame
    base_runs: list[str]
    calibration: dict[str, Any] | None = None
    scores: dict[str, float] = field(default_factory=dict)
    run_dir: str | None = None
    notes: list[str] = field(default_factory=list)
    reused: bool = False  # a saved stack held this very result: it was not saved again

    @property
    def oof_path(self) -> str | None:
        return None if self.run_dir is None else os.path.join(self.run_dir, "oof.csv")

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object; ``oof`` is the saved oof.csv's path, as fit-head's (the
        predictions themselves, column by column, when the stack was not saved)."""
        return {
            "run": self.run,
            "method": self.method,
            "metric": self.metric,
            "score": self.score,
            "table": self.table,
            "oof": self.oof_path if self.oof_path else self.oof.to_dict(orient="list"),
            "base_runs": self.base_runs,
            "calibration": self.calibration,
            "scores": self.scores,
            "run_dir": self.run_dir,
            "notes": self.notes,
            "reused": self.reused,
        }


def stack(
    workspace: str | os.PathLike[str] | Workspace | None = None,
    config: StackConfig | None = None,
    *,
    data: str | None = None,
    save: bool = True,
    **settings: Any,
) -> StackResult:
    """Stack base runs on their shared folds and save the chosen stack as a run.

    Takes a :class:`StackConfig` (``stack(ws, StackConfig(method="greedy"))``, as the CLI
    builds it) or its fields as arguments (``stack(ws, method="greedy")``).

    Args:
        workspace: the workspace folder (default ``$SSLSTACK_WORKSPACE`` or ``./.sslstack``).
        config: what to stack and how; its fields:
            ``runs``: run ids, numbers or unique prefixes (default: every run of the dataset);
            ``method``: ``auto`` (default: the method with the best honest score,
            ``best_single`` when no stack beats the best run) or one of
            :data:`sslstack.ensemble.methods.METHODS` (best_single, mean, rank, greedy, logreg);
            ``metric``: metric optimized by ``greedy`` and reported (default: the task's);
            ``calibrate``: ``temperature``, ``platt`` or ``isotonic``, fitted out-of-fold;
            ``greedy_size``: iterations of ensemble selection;
            ``logreg_c``: inverse L2 strength of the logistic-regression meta-learner.
        data: the dataset (name or manifest) whose runs to stack when the workspace has several.
        save: save the stack as a run (kind ``stack``).
        **settings: the fields of :class:`StackConfig`, instead of ``config``.

    Returns:
        A :class:`StackResult`: the saved run id, the chosen method's out-of-fold score, the
        table of every method's score and the best single run's, the out-of-fold predictions.

    Raises:
        DataError: the runs do not share folds or label encoding (the runs are named).
        ConfigError: unknown method, metric or calibrator; a config and settings together.
    """
    return run_stack(Workspace.at(workspace), _config(config, settings), data=data, save=save)


def _config(config: StackConfig | None, settings: dict[str, Any]) -> StackConfig:
    if config is not None and settings:
        raise ConfigError(
            f"stack: pass a StackConfig or its fields, not both ({', '.join(settings)})"
        )
    if config is not None:
        return config
    unknown = sorted(set(settings) - {f.name for f in fields(StackConfig)})
    if unknown:
        known = ", ".join(f.name for f in fields(StackConfig))
        raise ConfigError(f"stack: unknown setting(s) {', '.join(unknown)}; use {known}")
    return StackConfig.from_dict(settings)


def run_stack(
    ws: Workspace, cfg: StackConfig, *, data: str | None = None, save: bool = True
) -> StackResult:
    """:func:`stack` with a :class:`StackConfig`."""
    t0 = time.time()
    if cfg.method != AUTO:
        _methods.METHODS.get(cfg.method)
    if cfg.calibrate is not None:
        from .calibrate import CALIBRATORS

        CALIBRATORS.get(cfg.calibrate)
    base = join_runs(ws, load_runs(ws, cfg.runs, _dataset_name(ws, data)))
    if len(np.unique(base.folds)) < 2:
        raise DataError("the runs' out-of-fold predictions hold fewer than two folds")
    sc = scorer(cfg.metric, base.encoding)
    table, fitted = _table(base, sc, cfg)
    name, notes = _choose(table, sc, cfg.method)
    oof, params = fitted[name]
    calibration = None
    if cfg.calibrate:
        oof, calibration = calibrate_oof(oof, base.y, base.folds, base.encoding, cfg.calibrate)
        table[_chosen_key(name, cfg)] = _row(sc, base, oof)
    frame = _oof_frame(base, oof)
    scores = score_all(base.y, oof, base.encoding.task, base.encoding.positive_index)
    result = StackResult(
        run=None,
        method=name,
        metric=sc.name,
        score=sc(base.y, oof),
        table=table,
        oof=frame,
        base_runs=base.run_ids,
        calibration=calibration,
        scores=scores,
        notes=notes,
    )
    if save:
        record = _stack_record(base, cfg, result, params, sc, time.time() - t0)
        result.run, result.run_dir, result.reused = _save(ws, record, frame)
    return result


def _choose(table: dict[str, dict[str, Any]], sc: Metric, method: str) -> tuple[str, list[str]]:
    """The method to save (its table key) and notes: ``auto`` takes the best honest score,
    ``best_single`` unless a stack beats it strictly."""
    if method != AUTO:
        return _canonical(method), []
    best = "best_single"
    for name, row in table.items():
        if sc.better(row["score"], table[best]["score"]):
            best = name
    if best != "best_single":
        return best, []
    runner = max(
        (n for n in table if n != "best_single"),
        key=lambda n: table[n]["score"] if sc.greater_is_better else -table[n]["score"],
    )
    return best, [
        f"no stack beats the best single run honestly (out-of-fold {sc.name}: best single "
        f"{table[best]['score']:.4f}, best stack {runner} {table[runner]['score']:.4f}); the "
        f"saved run keeps {table[best]['run']} alone as the submission's source"
    ]


def _canonical(method: str) -> str:
    """A method's table key: aliases (``greedy_nested``) are scored under their first name."""
    fit = _methods.METHODS[method].fit
    return next(n for n, m in _methods.METHODS.items() if m.fit is fit)


def _dataset_name(ws: Workspace, data: str | None) -> str | None:
    if data is None:
        return None
    from ..datasets import resolve_dataset

    return resolve_dataset(ws, data)[0]


def _row(sc: Metric, base: BaseSet, oof: np.ndarray, **extra: Any) -> dict[str, Any]:
    folds = [sc(base.y[base.folds == f], oof[base.folds == f]) for f in np.unique(base.folds)]
    return {"score": sc(base.y, oof), "fold_scores": folds, **extra}


def _table(base: BaseSet, sc: Metric, cfg: StackConfig):
    """Every method on the same rows, best_single first: its honest out-of-fold score (the
    ``score``) and its saved parameters' score on the rows they were fitted on
    (``in_sample``); returns (table, fitted methods)."""
    table: dict[str, dict[str, Any]] = {}
    fitted = {}
    names = ["best_single", *(n for n in _methods.METHODS if n != "best_single")]
    for name in names:
        if _canonical(name) != name:
            continue  # an alias: scored under its first name
        m = _methods.METHODS[name]
        oof, params = m.fit(
            base.P, base.y, base.folds, sc, greedy_size=cfg.greedy_size, logreg_c=cfg.logreg_c
        )
        fitted[name] = (oof, params)
        in_sample = sc(base.y, m.apply(base.P, params, base.encoding))
        table[name] = _row(sc, base, oof, in_sample=in_sample)
        if name == "best_single":
            table[name]["run"] = base.run_ids[int(np.argmax(params["weights"]))]
    return table, fitted


def _chosen_key(name: str, cfg: StackConfig) -> str:
    return name + (f"+{cfg.calibrate}" if cfg.calibrate else "")


def _oof_frame(base: BaseSet, oof: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"id": base.ids, "fold": base.fold_labels})
    for c, lab in enumerate(base.encoding.labels):
        frame[lab] = oof[:, c]
    return frame


def _stack_record(
    base: BaseSet,
    cfg: StackConfig,
    res: StackResult,
    params: dict[str, Any],
    sc: Metric,
    seconds: float,
) -> RunRecord:
    weights = params.get("weights")
    runs = base.run_ids
    if res.method == "best_single":  # the best run alone: predict applies only that run
        runs = [res.table["best_single"]["run"]]
        params, weights = {"weights": [1.0]}, [1.0]
    return RunRecord(
        id="",  # reserved by save_once when the run is saved
        number=0,
        kind="stack",
        dataset=base.dataset,
        folds_digest=base.folds_digest,
        task=base.encoding.task,
        labels=list(base.encoding.labels),
        positive=base.encoding.positive,
        features=list(dict.fromkeys(f for r in base.runs for f in r.record.features)),
        params=params,
        metric=sc.name,
        score=res.score,
        scores=res.scores,
        fold_scores=res.table[_chosen_key(res.method, cfg)]["fold_scores"],
        time_s=round(seconds, 3),
        base_runs=runs,
        method=res.method,
        weights=None if weights is None else dict(zip(runs, weights, strict=True)),
        calibration=res.calibration,
        table=res.table,
        config=cfg.to_dict(),
        extra={"tag": res.method + (f"-{cfg.calibrate}" if cfg.calibrate else "")},
    )


def _save(ws: Workspace, record: RunRecord, frame: pd.DataFrame) -> tuple[str, str, bool]:
    """Save the stack as a run, unless a saved stack holds the same result (same base runs,
    method, parameters and out-of-fold predictions): then that run is returned."""
    from ..runs import recipe_digest, save_once

    recipe = recipe_digest(
        {
            "kind": "stack",
            "base_runs": record.base_runs,
            "method": record.method,
            "params": record.params,
            "calibration": record.calibration,
            "oof": frame.to_csv(index=False, float_format="%.9g"),
        }
    )
    saved, new = save_once(ws, record, frame, recipe)
    return saved.id, str(saved.dir), not new
