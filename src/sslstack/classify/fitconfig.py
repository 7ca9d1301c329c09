"""``FitConfig``: what ``fit_head`` is asked to do, in a module of its own so that the search
loop (:mod:`.search`) can take it without importing :mod:`.fit`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class FitConfig:
    """What ``fit_head`` is asked to do: the ``sslstack fit-head`` flags. Frozen, with
    ``to_dict``/``from_dict``, as ``ExtractConfig`` is.

    Attributes:
        head: a name of the ``HEADS`` registry.
        model: encoder whose store to read (hub id, local folder, ``logmel``).
        data: manifest CSV, folder or dataset name (default: the workspace's labeled dataset).
        layer: restrict the layer search (e.g. ``"6-12"`` or ``[6, 7, 8]``); one layer fixes it.
        pool: restrict the pooling search (e.g. ``"mean,std"``); one pooling fixes it.
        trials: finished trials the study should hold (0: fit the default parameters).
        metric: the metric to optimize (default: roc_auc / accuracy / lwlrap by task).
        timeout: wall-clock budget in seconds of the whole call, refit included: tuning leaves
            the estimated refit time, a trial in progress stops at the budget (not counted),
            and without time to refit the run keeps the best trial's fold models (a warning
            says so). No trial finished: RunError saying what to change. It becomes one
            :class:`~.budget.Budget` (see :mod:`.budget` for its way to the boosters).
        task, positive: override the task read from the labels; the binary positive class.
        group_col: manifest column whose groups never straddle folds (first fold creation only).
        folds: number of folds when the dataset has none yet (default 5).
        seed: seed of folds (when new), sampler and models.
        device: ``auto``, ``cpu`` or ``cuda`` (XGBoost, CatBoost, the MLP).
        storage: Optuna storage URL (PostgreSQL) instead of the workspace's journal file.
        pca: ``auto`` (tuned widths for boosted heads on wide features; under ``timeout``
            from 256 columns, with the shrunk LDA projection on 3+ classes), ``off``, ``tune``,
            ``lda`` or a fixed width.
        study: study name (default: derived from head, store, dataset, metric and space).
        store: the store's name when several stores of the model exist.
        max_rounds: cap on boosting rounds (default 1000, with early stopping).
        threads: CPU threads (BLAS, XGBoost, CatBoost); default: all cores, split over folds.
        windows: ``mean`` or ``max``: fit on a windowed store's per-window vectors (each with
            its clip's label, in its clip's fold) and aggregate each clip's window
            probabilities by their mean or max (:mod:`.windows`).
    """

    head: str
    model: str
    data: Any = None
    layer: Sequence[int] | str | int | None = None
    pool: Sequence[str] | str | None = None
    trials: int = 30
    metric: str | None = None
    timeout: float | None = None
    task: str | None = None
    positive: str | None = None
    group_col: str | None = None
    folds: int | None = None
    seed: int = 0
    device: str = "auto"
    storage: str | None = None
    pca: str | int = "auto"
    study: str | None = None
    store: str | None = None
    max_rounds: int | None = None
    threads: int | None = None
    windows: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitConfig:
        return cls(**d)
