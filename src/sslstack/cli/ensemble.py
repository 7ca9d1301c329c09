"""CLI commands of the ensemble stage: ``stack``, ``predict``, ``report``, ``blend`` and
``runs import``.

Each maps flags to one library call, prints a table, and with ``--json`` prints one JSON object
as the last line.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError
from ..parsing import parse_csv_list
from .common import (
    DataOpt,
    JsonOpt,
    MetricOpt,
    WorkspaceOpt,
    choices,
    console,
    emit_json,
    out_console,
)


def _fmt(v: Any) -> str:
    from ..ensemble.report import fmt_score

    return fmt_score(v)


def stack_cmd(
    runs: Annotated[
        str | None, typer.Option(help="Runs to stack, e.g. 3,7,9 \\[default: all].")
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            help="auto (the best honest out-of-fold score; best_single when no stack beats the "
            f"best run) or one of: {choices('sslstack.ensemble.methods:METHODS')}."
        ),
    ] = "auto",
    metric: MetricOpt = None,
    calibrate: Annotated[
        str | None,
        typer.Option(
            help=f"{choices('sslstack.ensemble.calibrate:CALIBRATORS')} (fitted out-of-fold)."
        ),
    ] = None,
    data: DataOpt = None,
    greedy_size: Annotated[int, typer.Option(help="Iterations of greedy selection.")] = 25,
    logreg_c: Annotated[float, typer.Option("--logreg-c", help="Inverse L2 strength.")] = 1.0,
    workspace: WorkspaceOpt = None,
    json: JsonOpt = False,
) -> None:
    """Stack runs on their shared folds; print every method's out-of-fold score; save a run."""
    from ..ensemble.stack import StackConfig, stack

    cfg = StackConfig.from_dict(
        {"runs": parse_csv_list(runs), "method": method, "metric": metric,
         "calibrate": calibrate, "greedy_size": greedy_size, "logreg_c": logreg_c}
    )  # fmt: skip
    res = stack(workspace, cfg, data=data)
    # the title on its own line: as a table title it wraps to the width of a narrow table
    out_console.print(
        f"stack of {len(res.base_runs)} runs: out-of-fold {res.metric}, honest (fitted on the "
        "other folds) and in-sample (fitted on the rows scored)",
        highlight=False,
    )
    table = Table()
    table.add_column("method")
    table.add_column(f"{res.metric} honest", justify="right")
    table.add_column("folds mean", justify="right")
    table.add_column("in-sample", justify="right")
    chosen = res.method + (f"+{res.calibration['method']}" if res.calibration else "")
    for name, row in res.table.items():
        label = f"best single ({row['run']})" if name == "best_single" else name
        mark = " *" if name == chosen else ""
        folds = row["fold_scores"]
        table.add_row(
            escape(label + mark),
            _fmt(row["score"]),
            _fmt(sum(folds) / len(folds)),
            _fmt(row.get("in_sample")),
        )
    out_console.print(table)
    for note in res.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if res.calibration:
        cal = Table(title=f"calibration: {res.calibration['method']} (out-of-fold)")
        for col in ("", "log_loss", "brier", "ece"):
            cal.add_column(col, justify="right" if col else "left")
        for when in ("before", "after"):
            cal.add_row(
                when, *(_fmt(res.calibration[when][k]) for k in ("log_loss", "brier", "ece"))
            )
        out_console.print(cal)
    done = "found (this result was saved before)" if res.reused else "saved"
    what = f"({escape(chosen)}, honest out-of-fold {res.metric} {_fmt(res.score)})"
    console.print(f"[green]{done}[/] {escape(str(res.run))} {what}")
    if json:
        emit_json(res.to_dict())


def predict_cmd(
    data: Annotated[str, typer.Option("--data", "-d", help="Test manifest CSV or audio folder.")],
    out: Annotated[str, typer.Option(help="Submission CSV to write.")],
    run: Annotated[
        str | None, typer.Option(help="Run or stack \\[default: latest stack, else best run].")
    ] = None,
    label: Annotated[bool, typer.Option("--label", help="Write the arg-max class.")] = False,
    id_column: Annotated[str | None, typer.Option(help="Header of the id column.")] = None,
    columns: Annotated[
        str | None, typer.Option(help="Headers of the class columns, comma-separated, in order.")
    ] = None,
    on_error: Annotated[
        str,
        typer.Option(
            help="stop at an unreadable test file, or skip it and predict the rest "
            "(the skipped ids are named)."
        ),
    ] = "stop",
    label_col: Annotated[
        str | None,
        typer.Option(help="Test manifest column of the labels \\[default: label, else labels]."),
    ] = None,
    workspace: WorkspaceOpt = None,
    json: JsonOpt = False,
) -> None:
    """Extract what is missing, apply the run or stack, write a validated submission."""
    from ..ensemble.predict import PredictConfig, predict

    cfg = PredictConfig(run, out, label, id_column, parse_csv_list(columns), on_error, label_col)
    res = predict(data, cfg, workspace=workspace, progress=True)
    console.print(f"[green]wrote[/] {escape(str(res.out))}: {res.items} rows from run {res.run}")
    for note in res.notes:
        console.print("[yellow]warning:[/] ", end="")
        console.print(note, markup=False, soft_wrap=True)
    if res.scores:
        # the title on its own line: as a table title it wraps to the narrow table's width
        leak = f", {res.leaked_scored} of them leaked from training" * bool(res.leaked_scored)
        out_console.print(f"test scores over {res.scored} labeled items{leak}", highlight=False)
        table = Table()
        table.add_column("metric")
        table.add_column("score", justify="right")
        clean = res.unleaked_scores
        if clean is not None:
            table.add_column("without leaked", justify="right")
        for k, v in res.scores.items():
            table.add_row(k, _fmt(v), *([] if clean is None else [_fmt(clean.get(k))]))
        out_console.print(table)
    if json:
        emit_json(res.to_dict())


def report_cmd(
    out: Annotated[str, typer.Option(help="HTML file to write.")] = "report.html",
    run: Annotated[str | None, typer.Option(help="Run shown in detail.")] = None,
    metric: MetricOpt = None,
    data: Annotated[
        str | None, typer.Option(help="The image manifest: show misclassified thumbnails.")
    ] = None,
    workspace: WorkspaceOpt = None,
    json: JsonOpt = False,
) -> None:
    """Write one self-contained HTML report of the workspace's runs."""
    from ..ensemble.report import report

    res = report(workspace, out=out, run=run, metric=metric, data=data)
    console.print(
        f"[green]wrote[/] {escape(str(res['out']))}: {res['runs']} runs, {res['plots']} plots"
    )
    if json:
        emit_json(res)


def blend_cmd(
    files: Annotated[list[str], typer.Argument(help="Submission CSVs to average.")],
    out: Annotated[str, typer.Option(help="CSV to write.")],
    weights: Annotated[str | None, typer.Option(help="One weight per file, e.g. 0.6,0.4.")] = None,
    rank: Annotated[bool, typer.Option("--rank", help="Average per-column ranks.")] = False,
    id_column: Annotated[
        str | None, typer.Option(help="Id column \\[default: id or first].")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Average submission files (no out-of-fold predictions needed), validated like predict."""
    from ..ensemble.blend import blend

    res = blend(files, weights=_floats(weights), rank=rank, out=out, id_column=id_column)
    res.pop("frame")
    console.print(
        f"[green]wrote[/] {escape(str(res['out']))}: {res['items']} rows from {len(files)} files"
    )
    if json:
        emit_json(res)


def _floats(value: str | None) -> list[float] | None:
    items = parse_csv_list(value)
    if items is None:
        return None
    try:
        return [float(v) for v in items]
    except ValueError:
        raise ConfigError(f"--weights {value}: use numbers like 0.6,0.4") from None


def import_cmd(
    name: Annotated[str, typer.Argument(help="Name of the imported run.")],
    oof: Annotated[str, typer.Option(help="CSV: id, [fold,] one probability column per label.")],
    test: Annotated[str | None, typer.Option(help="CSV of test predictions (id, labels).")] = None,
    data: DataOpt = None,
    positive: Annotated[str | None, typer.Option(help="Positive class of a binary task.")] = None,
    metric: MetricOpt = None,
    workspace: WorkspaceOpt = None,
    json: JsonOpt = False,
) -> None:
    """Bring predictions made elsewhere into the workspace as a run that stacks with the rest."""
    from ..ensemble.importing import import_run

    res = import_run(
        name, oof, test=test, workspace=workspace, data=data, positive=positive, metric=metric
    )
    console.print(
        f"[green]imported[/] {escape(res['run'])}: {res['items']} items, out-of-fold "
        f"{res['metric']} {_fmt(res['score'])}"
    )
    if json:
        emit_json(res)
