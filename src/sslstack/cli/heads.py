"""CLI commands of the classify stage: ``fit-head``, ``probe`` and ``runs ls``.

Each maps flags to one library call, prints a table, and with ``--json`` prints one JSON object
as the last line (registered in :mod:`sslstack.cli`).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from .common import (
    DataOpt,
    JsonOpt,
    ModelOpt,
    WorkspaceOpt,
    choices,
    console,
    emit_json,
    out_console,
    rel_path,
)

LayerOpt = Annotated[
    str | None,
    typer.Option(
        "--layers", "--layer", help="Layers to search, e.g. 12, 6-12 or 4,8,12 (as extract's)."
    ),
]
PoolOpt = Annotated[str | None, typer.Option(help="Poolings to search, e.g. mean or mean,std.")]
TaskOpt = Annotated[
    str | None, typer.Option(help="binary, multiclass or multilabel \\[default: from labels].")
]
PositiveOpt = Annotated[
    str | None, typer.Option(help="Positive class of a binary task, e.g. fake.")
]
GroupOpt = Annotated[
    str | None,
    typer.Option(
        "--group-col", help="Manifest column whose groups stay in one fold (e.g. speaker)."
    ),
]
FoldsOpt = Annotated[
    int | None,
    typer.Option("--folds", help="Number of folds when the dataset has none yet \\[default: 5]."),
]
SeedOpt = Annotated[int, typer.Option(help="Seed of new folds, sampler and models.")]
MetricOpt = Annotated[
    str | None,
    typer.Option(help="Metric to optimize \\[default: roc_auc, accuracy or lwlrap by task]."),
]
StoreOpt = Annotated[
    str | None, typer.Option("--store", help="Store name when several stores of the model exist.")
]
# the names come from the HEADS registry when --help is shown (cli.common.RegistryHelp): a head
# registered shows up here, and start-up does not import the heads
HeadArg = Annotated[
    str, typer.Argument(help=f"The head to tune: {choices('sslstack.classify.heads:HEADS')}.")
]
TrialsOpt = Annotated[
    int, typer.Option(help="Finished trials the study should hold (0: default parameters).")
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(help="Wall-clock budget of the whole command in seconds, refit included."),
]
DeviceOpt = Annotated[
    str, typer.Option(help="auto, cpu or cuda (a head without a GPU path runs on the CPU).")
]
StorageOpt = Annotated[
    str | None, typer.Option(help="Optuna storage URL, e.g. postgresql://user@host/db.")
]
PcaOpt = Annotated[
    str, typer.Option(help="auto, off, tune, lda (a shrunk LDA projection), or a width like 64.")
]
StudyOpt = Annotated[
    str | None, typer.Option(help="Study name \\[default: derived from the setup].")
]
MaxRoundsOpt = Annotated[
    int | None, typer.Option(help="Cap on boosting rounds \\[default: 1000, early-stopped].")
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(help="CPU threads of the fits \\[default: all cores, split over folds]."),
]
WindowsOpt = Annotated[
    str | None,
    typer.Option(
        help="mean or max: fit on a windowed store's windows (extract --window), each with "
        "its clip's label, and aggregate each clip's window probabilities."
    ),
]


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _clock(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "?"
    m, sec = divmod(int(round(s)), 60)
    return f"{m}:{sec:02d}"


def progress_line(ev: Any) -> str:
    """One line of ``fit-head`` progress for a :class:`~sslstack.classify.budget.FitProgress`."""
    if ev.stage == "note":
        return str(ev.message)
    clock = f"{_clock(ev.elapsed_s)} elapsed, ETA {_clock(ev.eta_s)}"
    if ev.budget_s is not None:
        clock += f" (budget {_clock(ev.budget_s)})"
    if ev.stage == "refit":
        return f"refit of the best trial on each fold's whole training part; {clock}"
    best = f"best {_fmt(ev.best)}"
    if ev.stage == "fold":
        return (
            f"trial {ev.trial} fold {ev.fold + 1}/{ev.folds}: {_fmt(ev.score)} so far "
            f"({best}); {clock}"
        )
    what = {"complete": _fmt(ev.score), "stopped": "stopped at the budget (not counted)"}.get(
        ev.state, f"{ev.state} (running mean {_fmt(ev.score)} below earlier trials at that fold)"
    )
    return f"trial {ev.trial}: {what} ({best}); {clock}"


class _ProgressPrinter:
    """Prints every trial, refit and note line; a fold line only when the last line printed is
    ``FOLD_EVERY_S`` old, so a slow trial shows its folds and a fast study stays short."""

    FOLD_EVERY_S = 5.0

    def __init__(self) -> None:
        self.last = -math.inf

    def __call__(self, ev: Any) -> None:
        now = float(ev.elapsed_s or 0.0) if ev.stage != "note" else self.last
        if ev.stage == "fold" and now - self.last < self.FOLD_EVERY_S:
            return
        self.last = now
        console.print(progress_line(ev), highlight=False)


def fit_head_cmd(
    head: HeadArg,
    model: ModelOpt,
    data: DataOpt = None,
    layer: LayerOpt = None,
    pool: PoolOpt = None,
    trials: TrialsOpt = 30,
    metric: MetricOpt = None,
    timeout: TimeoutOpt = None,
    task: TaskOpt = None,
    positive: PositiveOpt = None,
    group_col: GroupOpt = None,
    folds: FoldsOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    storage: StorageOpt = None,
    pca: PcaOpt = "auto",
    study: StudyOpt = None,
    store: StoreOpt = None,
    max_rounds: MaxRoundsOpt = None,
    threads: ThreadsOpt = None,
    windows: WindowsOpt = None,
    workspace: WorkspaceOpt = None,
    json: JsonOpt = False,
) -> None:
    """Tune a head (Optuna) under the dataset's shared folds and save it as a run."""
    from ..classify.fit import FitConfig, fit_head

    cfg = FitConfig(
        head, model, data=data, layer=layer, pool=pool, trials=trials, metric=metric,
        timeout=timeout, task=task, positive=positive, group_col=group_col, folds=folds,
        seed=seed, device=device, storage=storage, pca=pca, study=study, store=store,
        max_rounds=max_rounds, threads=threads, windows=windows,
    )  # fmt: skip
    res = fit_head(cfg, workspace=workspace, progress=_ProgressPrinter())
    _print_fit(res)
    if json:
        emit_json(res.to_dict())


def _print_fit(res: Any) -> None:
    """The warnings, the run's line, its score table and the per-fold line of a ``FitResult``."""
    for note in res.warnings:
        console.print(f"[yellow]warning:[/] {escape(note)}")
    # one line of its own: as a table title it wrapped mid-phrase ("logreg on / logmel")
    out_console.print(
        escape(f"run {res.run}: {res.head} on {rel_path(res.encoder)}"), soft_wrap=True
    )
    table = Table()
    table.add_column("metric")
    table.add_column("out-of-fold", justify="right")
    for name, value in res.scores.items():
        mark = " *" if name == res.metric else ""
        table.add_row(name + mark, _fmt(value))
    out_console.print(table)
    fs = [v for v in res.fold_scores if v is not None and math.isfinite(v)]
    console.print(
        escape(
            f"{res.metric} per fold: {', '.join(_fmt(v) for v in res.fold_scores)} "
            f"(mean {_fmt(sum(fs) / len(fs) if fs else None)}); trials {res.trials}; "
            f"best {res.best_params}; {res.time_s:.1f} s; oof: {rel_path(res.oof_path)}"
        )
    )
    if res.trial_score is not None and res.refit:
        # without a refit a warning above says the run keeps the best trial's own fold models
        console.print(
            f"the best trial scored {_fmt(res.trial_score)} with models early-stopped on 85 % of "
            "each training part; the run refit it on each fold's whole training part and scores "
            f"{_fmt(res.score)} (a fresh estimate: the best of many trials is optimistic)",
            highlight=False,
        )


def probe_cmd(
    model: ModelOpt,
    data: DataOpt = None,
    layer: LayerOpt = None,
    pool: PoolOpt = None,
    metric: MetricOpt = None,
    task: TaskOpt = None,
    positive: PositiveOpt = None,
    group_col: GroupOpt = None,
    folds: FoldsOpt = None,
    seed: SeedOpt = 0,
    c: Annotated[float, typer.Option("--C", help="Inverse regularization of the probe.")] = 1.0,
    store: StoreOpt = None,
    png: Annotated[str | None, typer.Option(help="Where to save the plot.")] = None,
    workspace: WorkspaceOpt = None,
    json: JsonOpt = False,
) -> None:
    """Score a scaled logistic probe on every layer x pooling (table + PNG plot)."""
    from ..classify.probing import ProbeConfig, probe

    cfg = ProbeConfig(
        model,
        data=data,
        layer=layer,
        pool=pool,
        metric=metric,
        task=task,
        positive=positive,
        group_col=group_col,
        folds=folds,
        seed=seed,
        C=c,
        store=store,
        png=png,
    )
    res = probe(cfg, workspace=workspace)
    # one best: the best choice a head can pick (concatenations too), bold in the table and
    # where fit-head's first trial starts
    best = res.best_any()
    full = res.table if res.full is None else res.full
    # the title on its own line: as a table title it wraps to the width of a narrow table
    out_console.print(escape(f"probe of {res.store}: out-of-fold {res.metric}"), highlight=False)
    table = Table()
    table.add_column("layer")
    for p in full.columns:
        table.add_column(str(p), justify="right")
    for la, row in full.iterrows():
        cells = []
        for p, v in row.items():
            cell = _fmt(float(v))
            cells.append(f"[bold]{cell}[/]" if (str(la), str(p)) == best[:2] else cell)
        table.add_row(escape(str(la)), *cells)
    out_console.print(table)
    console.print(
        f"best: layer {best[0]}, {best[1]} ({_fmt(best[2])}); plot: {rel_path(res.png)}; "
        f"{res.time_s:.1f} s",
        markup=False,
    )
    if json:
        emit_json(res.to_dict())


def _short_path(enc: str) -> str:
    """A local encoder folder relative to the working directory when under it; long ones cut."""
    enc = rel_path(enc)
    return enc if len(enc) < 32 else "…" + enc[-30:]


def runs_ls_cmd(
    dataset: Annotated[str | None, typer.Option(help="Only runs of this dataset.")] = None,
    workspace: WorkspaceOpt = None,
    json: JsonOpt = False,
) -> None:
    """Leaderboard of the workspace's runs, best first per dataset and metric."""
    from ..classify.leaderboard import leaderboard

    rows = leaderboard(workspace, dataset)
    table = Table(title="runs (best first per dataset and metric)", box=box.SIMPLE_HEAD)
    for col in (
        "run",
        "dataset",
        "encoder",
        "layer",
        "pool",
        "head",
        "metric",
        "oof",
        "folds mean ± std",
        "trials",
        "time",
    ):
        right = col in ("oof", "folds mean ± std", "trials", "time")
        table.add_column(
            col,
            justify="right" if right else "left",
            no_wrap=True,
            min_width=8 if col == "encoder" else None,
        )
    for r in rows:
        spread = (
            "-"
            if r["fold_mean"] is None
            else (
                f"{r['fold_mean']:.4f} ± {r['fold_std']:.4f}"
                if r["fold_std"] is not None
                else f"{r['fold_mean']:.4f}"
            )
        )
        enc = str(r["encoder"] or "-")
        head = str(r["head"] or "-") if r["kind"] == "head" else f"{r['kind']}:{r['head'] or '-'}"
        table.add_row(
            escape(r["run"]),
            escape(str(r["dataset"] or "-")),
            escape(_short_path(enc)),
            escape(str(r["layer"] or "-")),
            escape(str(r["pool"] or "-")),
            escape(head),
            escape(str(r["metric"] or "-")),
            _fmt(r["score"]),
            spread,
            str(r["trials"] if r["trials"] is not None else "-"),
            "-" if r["time_s"] is None else f"{r['time_s']:.0f}s",
        )
    out_console.print(table)
    from ..runs import damaged_runs
    from ..workspace import Workspace

    damaged = damaged_runs(Workspace.at(workspace))
    for d in damaged:  # quarantined: listed, never used
        out_console.print(f"damaged: {d['run']} ({rel_path(d['dir'])}): {d['why']}", markup=False)
    if json:
        emit_json({"runs": rows, "damaged": damaged})
