"""What ``predict`` takes and gives: :class:`PredictConfig` (the run to apply and the
submission's shape), :class:`PredictResult`, and the test scores it saves in the workspace
(``<ws>/predictions/<run>--<test dataset>.json``) for ``sslstack report``."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import pandas as pd

from ..errors import ConfigError
from ..workspace import Workspace, atomic_write_json, read_json

ON_ERROR = ("stop", "skip")
_FOLDER = "predictions"


@dataclass(frozen=True)
class PredictConfig:
    """Which run to apply and how the submission looks.

    Args:
        run: run id, number or prefix (default: the most recent stack, else the best run).
        out: CSV to write (nothing is written when None; the frame is in the result).
        label: write the arg-max class (multi-label: labels with p >= 0.5, joined by ``;``).
        id_column: header of the id column (default ``id``).
        columns: headers of the class columns, in label order (or the one label column).
        on_error: ``stop`` at the first test file that cannot be decoded, or ``skip`` it: the
            submission holds the other items and the result names the skipped ones.
        label_col: the test manifest's label column (default: ``label``, else ``labels``).
    """

    run: str | int | None = None
    out: str | os.PathLike[str] | None = None
    label: bool = False
    id_column: str | None = None
    columns: list[str] | None = None
    on_error: str = "stop"
    label_col: str | None = None

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise ConfigError(f"--on-error {self.on_error}: choose {' or '.join(ON_ERROR)}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = None if self.out is None else str(self.out)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PredictConfig:
        """From :meth:`to_dict`'s form (or keyword settings).

        Raises:
            ConfigError: an unknown field, naming the known ones.
        """
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(
                f"predict: unknown setting(s) {', '.join(unknown)}; use {', '.join(known)}"
            )
        return cls(**d)

    @classmethod
    def of(cls, config: PredictConfig | None, settings: dict[str, Any]) -> PredictConfig:
        """``config``, else one made of ``settings`` (both: ConfigError)."""
        if config is not None and settings:
            raise ConfigError(
                f"predict: pass a PredictConfig or its fields, not both ({', '.join(settings)})"
            )
        return config if config is not None else cls.from_dict(settings)


@dataclass
class PredictResult:
    """What one ``predict`` call did; ``to_dict`` is the ``--json`` line."""

    run: str
    dataset: str
    items: int
    out: str | None
    columns: list[str]
    scores: dict[str, float] | None = None
    extracted: list[dict[str, Any]] = field(default_factory=list)
    frame: pd.DataFrame | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)  # --on-error skip: left out
    unseen: dict[str, int] = field(default_factory=dict)  # test label -> items, run never saw
    scored: int = 0  # labeled test items the scores are over
    leaked: list[dict[str, str]] = field(default_factory=list)  # {id, train_id}: same content
    leaked_scored: int = 0  # of the scored items, how many were leaked
    unleaked_scores: dict[str, float] | None = None  # scores over the scored, unleaked items

    @property
    def notes(self) -> list[str]:
        """What the user must know about this submission and its scores (one line each)."""
        out = []
        if self.skipped:
            shown = ", ".join(f["id"] for f in self.skipped[:5])
            out.append(
                f"{len(self.skipped)} test item(s) could not be embedded and are left out of "
                f"the submission (first: {shown})"
            )
        if self.leaked:
            shown = ", ".join(f"{d['id']} = {d['train_id']}" for d in self.leaked[:3])
            out.append(
                f"{len(self.leaked)} of {self.items} test item(s) have the same content as a "
                f"training item of the run ({shown}); their predictions are in-sample"
            )
        if self.unseen:
            shown = ", ".join(f"{lab} ({n})" for lab, n in list(self.unseen.items())[:10])
            out.append(
                f"{len(self.unseen)} test label(s) were never seen in training: {shown}; "
                f"the scores are over the {self.scored} labeled item(s) the run can score"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "dataset": self.dataset,
            "items": self.items,
            "out": self.out,
            "columns": self.columns,
            "scores": self.scores,
            "scored": self.scored,
            "unseen": self.unseen,
            "leaked": self.leaked,
            "leaked_scored": self.leaked_scored,
            "unleaked_scores": self.unleaked_scores,
            "skipped": self.skipped,
            "notes": self.notes,
            "extracted": self.extracted,
        }


def save_test_scores(ws: Workspace, res: PredictResult, train_dataset: str) -> None:
    """Keep the scores ``predict`` printed for labeled test items, for the report."""
    folder = ws.root / _FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        folder / f"{res.run}--{res.dataset}.json",
        {
            "run": res.run,
            "train_dataset": train_dataset,
            "test_dataset": res.dataset,
            "items": res.items,
            "scored": res.scored,
            "scores": res.scores,
            "unleaked_scores": res.unleaked_scores,
            "leaked_scored": res.leaked_scored,
            "unseen": res.unseen,
            "out": res.out,
            "created": time.time(),
        },
        checksum=True,
    )


def saved_test_scores(ws: Workspace, train_dataset: str | None) -> list[dict[str, Any]]:
    """The test scores saved by ``predict`` for runs of ``train_dataset``, newest first (a
    damaged file is skipped: these are a record, not an input)."""
    from ..errors import DamagedFileError

    folder = ws.root / _FOLDER
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            rec = read_json(path, checksum=True)
        except DamagedFileError:
            continue
        if isinstance(rec, dict) and rec.get("train_dataset") == train_dataset:
            out.append(rec)
    return sorted(out, key=lambda r: -float(r.get("created") or 0))
