"""``runs import``: out-of-fold (and test) predictions made elsewhere, brought in as a run.

The file must hold every labeled item of the dataset exactly once (column ``id``), one
probability column per label, and optionally a ``fold`` column that must agree with the
dataset's folds. A file that does not line up is refused with its first offending rows named.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..classify.metrics import Metric, score_all
from ..errors import ConfigError, DataError
from ..runs import RunRecord
from ..workspace import Workspace
from .base_runs import encoding_of
from .encoding import Encoding, scorer
from .submission import check_ids, check_probabilities, row_lines


def import_run(
    name: str,
    oof: str | os.PathLike[str],
    *,
    test: str | os.PathLike[str] | None = None,
    workspace: str | os.PathLike[str] | Workspace | None = None,
    data: str | None = None,
    positive: str | None = None,
    metric: str | None = None,
) -> dict[str, Any]:
    """Import out-of-fold predictions (and test predictions) as a run of kind ``import``.

    Args:
        name: a tag for the run (its id becomes ``r<number>-<name>``).
        oof: CSV with ``id``, optional ``fold``, and one probability column per label.
        test: CSV with ``id`` and the same label columns, for the test items.
        workspace: the workspace folder.
        data: the dataset (when the workspace has several).
        positive: the positive label of a binary task (default: the other runs' or inferred).
        metric: metric of the run's ``score`` (default: the task's default).

    Returns:
        ``{"run", "score", "metric", "scores", "items", "test_items"}``.

    Raises:
        DataError: unknown, missing or repeated ids, folds that differ from the dataset's,
            label columns that differ from the dataset's labels, or invalid probabilities.
    """
    from ..datasets import resolve_dataset
    from ..folds import load_folds

    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ConfigError(f"run name {name!r}: use letters, digits, '.', '_' and '-'")
    ws = Workspace.at(workspace)
    dataset, manifest = resolve_dataset(ws, data)
    folds = load_folds(ws, dataset)
    lists = dict(zip(manifest.ids, manifest.label_lists(), strict=True))
    ids = list(folds.ids)
    enc = _encoding(ws, dataset, [lists[i] for i in ids], positive)
    src = str(oof)
    frame = _read(oof, enc, allow_fold=True)
    check_ids(frame, "id", ids, src)
    fold = _check_folds(frame, folds, src)
    P = check_probabilities(frame, enc.labels, single_label=enc.single_label, source=src)
    order = frame["id"].tolist()
    y = enc.targets([lists[i] for i in order], order)
    record = _record(name, dataset, folds.digest, enc, scorer(metric, enc), y, P, fold)
    oof_df = pd.DataFrame({"id": order, "fold": fold})
    for c, lab in enumerate(enc.labels):
        oof_df[lab] = P[:, c]
    test_df = _read_test(test, enc) if test is not None else None
    tests = None if test_df is None else {_test_name(ws, test_df, Path(str(test))): test_df}
    run_id, run_dir = _save(ws, record, oof_df, tests)
    return {
        "run": run_id,
        "run_dir": run_dir,
        "metric": record.metric,
        "score": record.score,
        "scores": record.scores,
        "items": len(oof_df),
        "test_items": None if test_df is None else len(test_df),
    }


def _encoding(
    ws: Workspace, dataset: str, lists: list[list[str]], positive: str | None
) -> Encoding:
    """The encoding of the dataset's other runs, else the one classify would infer."""
    from ..classify.labels import infer_encoding
    from ..runs import list_runs

    encs = {encoding_of(r.record) for r in list_runs(ws, dataset=dataset)}
    if len(encs) == 1:
        enc = encs.pop()
        if positive is not None and enc.positive != positive:
            raise ConfigError(f"--positive {positive}: the dataset's runs use {enc.positive}")
        return enc
    return Encoding.of(infer_encoding(lists, positive=positive))


def _read(path: str | os.PathLike[str], enc: Encoding, *, allow_fold: bool) -> pd.DataFrame:
    src = Path(path).expanduser()
    if not src.is_file():
        raise DataError(f"{src}: no such file")
    try:
        frame = pd.read_csv(src, dtype={"id": str, "fold": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{src}: not a readable CSV ({e})") from e
    frame.columns = [str(c).strip() for c in frame.columns]
    allowed = {"id", *enc.labels} | ({"fold"} if allow_fold else set())
    extra = [c for c in frame.columns if c not in allowed]
    missing = [c for c in ("id", *enc.labels) if c not in frame.columns]
    if extra or missing:
        raise DataError(
            f"{src}: columns must be id{', fold' if allow_fold else ''} and the labels "
            f"{', '.join(enc.labels)}; missing: {', '.join(missing) or '-'}; unknown: "
            f"{', '.join(extra) or '-'}"
        )
    frame["id"] = frame["id"].astype(str)
    return frame


def _check_folds(frame: pd.DataFrame, folds: Any, src: str) -> np.ndarray:
    want = np.array(folds.label_of(frame["id"].tolist()), dtype=object)
    if "fold" not in frame.columns:
        return want
    got = np.array([str(v).strip() for v in frame["fold"]], dtype=object)
    bad = np.flatnonzero(got != want)
    if len(bad):
        shown = row_lines(frame, bad)
        raise DataError(
            f"{src}: {len(bad)} row(s) put items in other folds than the dataset's folds "
            f"(digest {folds.digest}): {shown} (file fold {got[bad[0]]}, dataset fold "
            f"{want[bad[0]]}); predict each item with a model that did not see its fold, using "
            "the folds in datasets/<name>/folds.csv"
        )
    return want


def _read_test(test: str | os.PathLike[str], enc: Encoding) -> pd.DataFrame:
    frame = _read(test, enc, allow_fold=False)
    check_ids(frame, "id", None, str(test))
    P = check_probabilities(frame, enc.labels, single_label=enc.single_label, source=str(test))
    out = pd.DataFrame({"id": frame["id"].tolist()})
    for c, lab in enumerate(enc.labels):
        out[lab] = P[:, c]
    return out


def _test_name(ws: Workspace, frame: pd.DataFrame, path: Path) -> str:
    """The registered dataset holding exactly these ids, else the file's stem."""
    from ..datasets import list_datasets, load_dataset

    ids = set(frame["id"])
    for meta in list_datasets(ws):
        if meta.get("items") == len(ids) and set(load_dataset(ws, meta["name"]).ids) == ids:
            return str(meta["name"])
    return re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem) or "test"


def _record(
    name: str,
    dataset: str,
    digest: str,
    enc: Encoding,
    sc: Metric,
    y: np.ndarray,
    P: np.ndarray,
    fold: np.ndarray,
) -> RunRecord:
    """The imported run's record: its scores over all items and per fold."""
    from ..folds import fold_order

    return RunRecord(
        id="",  # reserved by save_once when the run is saved
        number=0,
        kind="import",
        dataset=dataset,
        folds_digest=digest,
        task=enc.task,
        labels=list(enc.labels),
        positive=enc.positive,
        metric=sc.name,
        score=sc(y, P),
        scores=dict(score_all(y, P, enc.task, enc.positive_index)),
        fold_scores=[sc(y[fold == f], P[fold == f]) for f in fold_order(list(fold))],
        params={"name": name},
        extra={"tag": name},
    )


def _save(
    ws: Workspace,
    record: RunRecord,
    oof_df: pd.DataFrame,
    tests: dict[str, pd.DataFrame] | None,
) -> tuple[str, str]:
    """Save the run; the same predictions imported again under the same name are the run
    saved before."""
    from ..runs import recipe_digest, save_once

    name = record.params["name"]
    blob = {"kind": "import", "name": name, "dataset": record.dataset, "oof": oof_df.to_csv()}
    blob["test"] = {k: v.to_csv() for k, v in (tests or {}).items()}
    saved, _new = save_once(ws, record, oof_df, recipe_digest(blob), test=tests)
    return saved.id, str(saved.dir)
