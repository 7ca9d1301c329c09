"""One run folder: :class:`Run`, its record and its files, each checked against the checksum
saved with the run before it is read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DamagedFileError, RunError
from ..workspace import confined, file_sha256, read_csv
from .record import RunRecord

ADVICE = "restore the file, or refit the run (a damaged run is set aside in runs/.quarantine)"


@dataclass(frozen=True)
class Run:
    """One run folder and its ``run.json`` (:class:`RunRecord`)."""

    dir: Path
    record: RunRecord

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def number(self) -> int:
        return self.record.number

    @property
    def labels(self) -> list[str]:
        return list(self.record.labels)

    @property
    def oof_path(self) -> Path:
        return self.dir / "oof.csv"

    def oof(self) -> pd.DataFrame:
        """The out-of-fold predictions: id, fold, one probability column per label.

        Raises:
            DataError: ``oof.csv`` is missing, or differs from what was saved (its checksum
                and row count are in ``run.json``; runs saved before that are not checked).
        """
        if not self.oof_path.exists():
            raise DamagedFileError(self.oof_path, f"run {self.id}: the file is missing", ADVICE)
        want = self.record.oof_sha256
        if want and file_sha256(self.oof_path) != want:
            try:
                have = f"{len(read_pred(self.oof_path))} rows"
            except DamagedFileError:
                have = "unreadable"
            raise DamagedFileError(
                self.oof_path,
                f"run {self.id}: oof.csv differs from the file saved with the run ({have}, "
                f"{self.record.oof_rows} saved; checksum mismatch): it was truncated or edited",
                ADVICE,
            )
        return read_pred(self.oof_path)

    def test(self, dataset: str) -> pd.DataFrame:
        """Saved test predictions for ``dataset`` (id, one column per label)."""
        path = confined(self.dir, f"test/{dataset}.csv")
        if not path.exists():
            raise RunError(f"run {self.id} has no test predictions for {dataset} ({path})")
        self.check_file(f"test/{dataset}.csv")
        return read_pred(path)

    def check_file(self, name: str) -> Path:
        """The run's file ``name`` (relative to its folder), confined to the folder and checked
        against the checksum saved with the run (runs saved before checksums: not checked).

        Raises:
            DamagedFileError: a path leaving the folder, a missing file, a checksum mismatch.
        """
        path = confined(self.dir, name)
        want = self.record.files.get(name)
        if want is None:
            return path
        if not path.is_file():
            raise DamagedFileError(path, f"run {self.id}: the file is missing", ADVICE)
        if file_sha256(path) != want:
            raise DamagedFileError(
                path,
                f"run {self.id}: the file differs from its checksum (damaged or edited)",
                ADVICE,
            )
        return path

    def verify(self) -> None:
        """Check every file saved with the run against its checksum.

        Raises:
            DamagedFileError: the first file that is missing or differs.
        """
        for name in self.record.files:
            self.check_file(name)
        if "oof.csv" not in self.record.files and self.record.oof_sha256:
            self.oof()


def read_pred(path: Path) -> pd.DataFrame:
    """A predictions file (``oof.csv``, ``test/*.csv``): ids and folds as text, fold numbers
    as numbers."""
    frame = read_csv(path, dtype={"id": str, "fold": str}, keep_default_na=False)
    frame.columns = [str(c) for c in frame.columns]
    if "fold" in frame and all(re.fullmatch(r"-?[1-9]\d*|0", str(v)) for v in frame["fold"]):
        frame["fold"] = frame["fold"].astype(np.int64)  # numbers stay numbers; "01" stays text
    return frame
