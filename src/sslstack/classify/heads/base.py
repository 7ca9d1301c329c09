"""The head contract: :class:`Head`, the :class:`FitContext` a fit runs under, and the ``HEADS``
registry every head module registers itself in.

A head knows its Optuna search space, its default parameters, how to fit on one fold's training
part (with an early-stopping set carved out of that training part, never the validation part),
how to predict probabilities, and how to save and load a fitted model in a safe native format
(never a pickle).

Labels reach a head already remapped to the classes present in the training part: class indices
``0..n_out-1`` (single-label) or a 0/1 matrix without constant columns (multilabel).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...registry import Registry
from ..budget import UNBOUNDED, Budget, BudgetExceeded

DEFAULT_MAX_ROUNDS = 1000
EARLY_STOPPING = 30


@dataclass(frozen=True)
class FitContext:
    """What every head's ``fit`` needs besides data and parameters."""

    task: str  # binary | multiclass | multilabel
    n_out: int  # number of classes (single-label) or label columns (multilabel)
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    max_rounds: int = DEFAULT_MAX_ROUNDS
    # the command's wall-clock budget as this fit sees it: past ``budget.end`` the fit fails
    # (BudgetExceeded); past ``budget.rounds_end`` a boosted fit adds no more rounds and keeps
    # what it has (this fold's share of a --timeout)
    budget: Budget = UNBOUNDED
    stop: threading.Event | None = None  # set: fits stop at their next round (a pruned trial)

    def expired(self) -> bool:
        """Past the budget's end, or told to stop (boosting rounds check this)."""
        return self.budget.expired() or (self.stop is not None and self.stop.is_set())

    def stop_boosting(self) -> bool:
        """Whether a boosted fit should stop at this round: expired (the fit then fails, see
        :func:`raise_if_expired`), or past the budget's end of rounds (it keeps the rounds so
        far)."""
        return self.expired() or self.budget.rounds_over()


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-row weights ``n / (k * count(class))`` (scikit-learn's ``class_weight='balanced'``)."""
    _, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
    return (len(y) / (len(counts) * counts))[inv].astype(np.float64)


def raise_if_expired(ctx: FitContext) -> None:
    """After a boosted fit: fail it when its context expired (a deadline stays passed and a stop
    stays set, so this sees whatever stopped the rounds)."""
    if ctx.expired():
        raise BudgetExceeded("the time budget ran out during a fit")


class Head(ABC):
    """One family of classifiers."""

    name: str = ""
    needs_es = False  # wants an early-stopping set (boosting rounds, an MLP's epochs)
    trees = False  # splits on columns: `--pca auto` offers it PCA widths on very wide inputs
    standardizes = False  # the 'standardize' parameter belongs to the preprocessing
    scales_rounds = True  # the refit on the whole part scales the early-stopped rounds by 1/0.85
    es_by_group = False  # under grouped folds, the early-stopping split holds out whole groups
    # tuning trials refit the early-stopped rounds on each whole training part, so a trial's
    # score is the score of the models it would save (the best trial's models are the run's)
    refit_in_trials = False

    @property
    def trials_final(self) -> bool:
        """A trial's fold models are the ones a run saves: fitted on each whole training part
        (no early stopping), or refit within the trial (``refit_in_trials``)."""
        return not self.needs_es or self.refit_in_trials

    @abstractmethod
    def space(self, trial: Any) -> dict[str, Any]:
        """Parameters suggested by an Optuna trial."""

    @abstractmethod
    def defaults(self) -> dict[str, Any]:
        """The untuned parameters."""

    @abstractmethod
    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        params: dict[str, Any],
        ctx: FitContext,
        es: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Any:
        """A fitted model."""

    def rounds_used(self, model: Any) -> int | None:
        """Boosting rounds kept by early stopping (None for heads that do not stop early)."""
        return None

    def warm_start(self) -> dict[str, Any]:
        """A configuration known to work well, tried first by a new study (inside ``space``)."""
        return {}

    def fast_start(self) -> dict[str, Any]:
        """What changes in the first trial under ``--timeout``: fewer, larger steps, so that it
        converges in its share of the budget and leaves time for more trials."""
        return {}

    def gpu_support(self, task: str) -> tuple[bool, str]:
        """Whether this head can fit ``task`` on a GPU here, and if not, why."""
        return False, f"the {self.name} head runs on the CPU"

    @property
    def gpu_capable(self) -> bool:
        """A head with a GPU path of its own (its device choice is printed)."""
        return type(self).gpu_support is not Head.gpu_support

    @abstractmethod
    def predict(self, model: Any, x: np.ndarray, ctx: FitContext) -> np.ndarray:
        """Probabilities (n, n_out)."""

    @abstractmethod
    def save(self, model: Any, folder: Path, stem: str) -> str:
        """Write the model, return its file name."""

    @abstractmethod
    def load(self, folder: Path, name: str) -> Any:
        """Read a model written by :meth:`save`."""


def class_weights(y: np.ndarray, params: dict[str, Any], ctx: FitContext) -> np.ndarray | None:
    """Per-row weights for ``class_weight='balanced'`` (single-label tasks), else ``None``."""
    if params.get("class_weight", "none") != "balanced" or ctx.task == "multilabel":
        return None
    return balanced_weights(y)


HEADS: Registry[Head] = Registry("head", flag="HEAD")


def get_head(name: str) -> Head:
    """The head called ``name`` (the registry's lookup, with its one unknown-name message).

    Raises:
        ConfigError: unknown head (the known ones are listed).
    """
    return HEADS[name]
