"""Reading and validating what the user points ``--data`` at: a manifest CSV or a folder.

A manifest CSV has a ``path`` column (relative to the CSV's folder, or absolute), and optional
``id``, ``label`` (or ``labels``; multi-label: labels joined by ``;``), ``group`` and ``fold``
columns; other columns are kept. The item id is the ``id`` column when there is one (it is also
the submission's id), else the ``path`` as written. ``label_col`` names another label column. A
folder is either ``root/<label>/<file>`` (class subfolders) or a flat folder of unlabeled files.

Everything here runs before any model loads, so bad input fails fast with every problem named.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import ManifestError
from .sources import AUDIO_EXTENSIONS as AUDIO_EXTENSIONS  # re-exported: older imports
from .sources import DEFAULT_KIND, SOURCES, all_extensions, kind_of, scan

LABEL_SEP = ";"
LABEL_COLUMNS = ("label", "labels")  # read in this order when no label column is named
_MAX_LISTED = 50


@dataclass
class Manifest:
    """A validated list of items. ``frame`` has columns id, path (absolute), label, group, fold.

    ``label`` holds the label as written (multi-label: ``a;b``), "" when an item has none;
    ``group`` and ``fold`` are absent when the source has none. Other columns are kept.
    """

    frame: pd.DataFrame
    source: Path
    name: str
    label_col: str | None = None  # the source column the labels came from
    id_col: str | None = None  # "id" when the ids came from the manifest's own id column
    kind: str = DEFAULT_KIND  # the item source (sslstack.sources) every item is read by

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def ids(self) -> list[str]:
        return self.frame["id"].tolist()

    @property
    def paths(self) -> list[Path]:
        return [Path(p) for p in self.frame["path"]]

    @property
    def has_labels(self) -> bool:
        return "label" in self.frame and bool((self.frame["label"] != "").any())

    @property
    def multilabel(self) -> bool:
        return self.has_labels and bool(
            self.frame["label"].str.contains(LABEL_SEP, regex=False).any()
        )

    def label_lists(self) -> list[list[str]]:
        """Each item's labels as a list (empty when it has none)."""
        if "label" not in self.frame:
            return [[] for _ in range(len(self.frame))]
        return [
            [p.strip() for p in str(v).split(LABEL_SEP) if p.strip()] for v in self.frame["label"]
        ]

    def describe_labels(self) -> str:
        """One line for the user: which column the labels come from, and what they hold."""
        if not self.has_labels:
            cols = [c for c in self.frame.columns if c not in ("id", "path", "_line")]
            return (
                "labels: none (no 'label' or 'labels' column; columns: "
                f"{', '.join(cols) or 'none'}); name one with --label-col"
            )
        lists = self.label_lists()
        classes = len({lab for labs in lists for lab in labs})
        kind = "multi-label" if self.multilabel else "single-label"
        where = f"column '{self.label_col}'" if self.label_col else "class subfolders"
        labeled = sum(bool(labs) for labs in lists)
        ids = f"; ids: column '{self.id_col}'" if self.id_col else ""
        return f"labels: {where} ({kind}, {classes} classes, {labeled} labeled items){ids}"

    def line_of(self, item_id: str) -> int | None:
        """The CSV line (1-based, header = line 1) of an item, when it came from a CSV."""
        if "_line" not in self.frame:
            return None
        hits = self.frame.index[self.frame["id"] == item_id]
        return int(self.frame.loc[hits[0], "_line"]) if len(hits) else None


def read_manifest(
    data: str | os.PathLike[str], *, check_files: bool = True, label_col: str | None = None
) -> Manifest:
    """Read a manifest CSV or a folder of items (audio files) and validate it.

    Args:
        data: path of a ``.csv`` manifest or of a folder of audio files.
        check_files: verify that every referenced file exists.
        label_col: the column holding the labels (default: ``label``, else ``labels``).

    Raises:
        ManifestError: the manifest is empty, lacks a ``path`` column, has duplicate ids or
            references missing files (all of them are listed with their lines).
    """
    src = Path(data).expanduser()
    if not src.exists():
        raise ManifestError(f"--data {src}: no such file or folder")
    if src.is_dir():
        if label_col is not None:
            raise ManifestError(
                f"--label-col {label_col}: {src} is a folder, whose labels are its subfolders"
            )
        frame, kind = _read_folder(src)
        frame["path"] = frame["id"]
        base, used, id_col = src, ("label" if "label" in frame else None), None
    else:
        frame, used, id_col = _read_csv(src, label_col)
        base = src.parent
        kind = kind_of(frame["path"].tolist(), src)
    written = frame["path"].tolist()
    frame["path"] = [
        str(Path(p) if Path(p).is_absolute() else (base / p).resolve()) for p in frame["path"]
    ]
    _check_duplicates(frame, src, id_col)
    if check_files:
        _check_exists(frame, src, written)
    name = src.stem if src.is_file() else src.resolve().name
    return Manifest(
        frame=frame.reset_index(drop=True),
        source=src.resolve(),
        name=name,
        label_col=used,
        id_col=id_col,
        kind=kind,
    )


def _read_csv(src: Path, label_col: str | None) -> tuple[pd.DataFrame, str | None, str | None]:
    """The frame (id, path as written, label, ...), the label column used, the id column."""
    try:
        frame = pd.read_csv(src, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise ManifestError(f"{src}: the manifest is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ManifestError(f"{src}: not a readable CSV ({e})") from e
    frame.columns = [c.strip() for c in frame.columns]
    if "path" not in frame.columns:
        raise ManifestError(
            f"{src}: no 'path' column (columns found: "
            f"{', '.join(map(str, frame.columns)) or 'none'})"
            "; the manifest needs a 'path' column of audio files relative to the CSV's folder"
        )
    if frame.empty:
        raise ManifestError(f"{src}: the manifest has a header but no rows")
    frame["_line"] = range(2, len(frame) + 2)
    frame["path"] = frame["path"].str.strip()
    _refuse_empty(frame, src, "path")
    id_col = "id" if "id" in frame.columns else None
    if id_col:
        _refuse_empty(frame, src, "id")
        frame.insert(0, "id", frame.pop("id").str.strip())
    else:
        frame.insert(0, "id", frame["path"])
    used = _label_column(frame, src, label_col)
    if used is not None:
        if used != "label":
            if "label" in frame:  # a named column wins over a 'label' column, kept aside
                frame = frame.rename(columns={"label": "label_column"})
            frame = frame.rename(columns={used: "label"})
        frame["label"] = frame["label"].str.strip()
    if "fold" in frame:  # any labels (1..5, 0..4, names): kept as written, see classify.folds
        frame["fold"] = frame["fold"].str.strip()
    return frame, used, id_col


def _refuse_empty(frame: pd.DataFrame, src: Path, col: str) -> None:
    empty = frame.index[frame[col].str.strip() == ""]
    if len(empty):
        lines = ", ".join(str(frame.loc[i, "_line"]) for i in empty[:_MAX_LISTED])
        raise ManifestError(f"{src}: empty '{col}' on line(s) {lines}")


def _label_column(frame: pd.DataFrame, src: Path, label_col: str | None) -> str | None:
    if label_col is None:
        return next((c for c in LABEL_COLUMNS if c in frame.columns), None)
    if label_col in ("id", "path", "_line") or label_col not in frame.columns:
        cols = [c for c in frame.columns if c not in ("id", "path", "_line")]
        raise ManifestError(
            f"--label-col {label_col}: {src} has no such column (columns: "
            f"{', '.join(cols) or 'none'})"
        )
    return label_col


def _read_folder(src: Path) -> tuple[pd.DataFrame, str]:
    files, source = scan(src)
    if not files or source is None:
        raise ManifestError(
            f"{src}: no {' or '.join(SOURCES)} files ({', '.join(all_extensions())}) in this "
            "folder or below"
        )
    rel = [p.relative_to(src) for p in files]
    nested = [r for r in rel if len(r.parts) > 1]
    rows: dict[str, list[str]] = {"id": [r.as_posix() for r in rel]}
    if nested and len(nested) == len(rel):
        rows["label"] = [r.parts[0] for r in rel]
    elif nested:
        flat = [r.as_posix() for r in rel if len(r.parts) == 1][:5]
        raise ManifestError(
            f"{src}: mixes files in class subfolders with files at the top ({', '.join(flat)}); "
            "use root/<label>/<file> for labeled data or a flat folder for unlabeled data"
        )
    return pd.DataFrame(rows), source.kind


def _check_duplicates(frame: pd.DataFrame, src: Path, id_col: str | None = None) -> None:
    dup = frame[frame["id"].duplicated(keep=False)]
    if dup.empty:
        return
    parts = []
    for item_id, rows in dup.groupby("id", sort=False):
        lines = ", ".join(str(v) for v in rows.get("_line", rows.index))
        parts.append(f"{item_id} (lines {lines})")
    what = f"'{id_col}' value(s)" if id_col else "path(s)"
    raise ManifestError(
        f"{src}: {dup['id'].nunique()} duplicate {what}; each item must appear once: "
        + "; ".join(parts[:_MAX_LISTED])
        + (f"; and {len(parts) - _MAX_LISTED} more" if len(parts) > _MAX_LISTED else "")
    )


def _check_exists(frame: pd.DataFrame, src: Path, written: list[str]) -> None:
    missing = [i for i, p in enumerate(frame["path"]) if not os.path.isfile(p)]
    if not missing:
        return
    where = []
    for i in missing:
        line = frame["_line"].iloc[i] if "_line" in frame else None
        where.append(f"line {line}: {written[i]}" if line else written[i])
    raise ManifestError(
        f"{src}: {len(missing)} of {len(frame)} file(s) not found (paths are relative to "
        f"{src.parent if src.is_file() else src}):\n  " + "\n  ".join(where)
    )
