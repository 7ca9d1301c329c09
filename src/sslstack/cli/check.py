"""``sslstack check``: leakage, shift and label problems between a training and a test set."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..parsing import parse_csv_list
from .common import JsonOpt, WorkspaceOpt, console, emit_json, out_console


def check_cmd(
    train: Annotated[
        str | None,
        typer.Option(
            "--train", help="Training manifest CSV, folder or dataset \\[default: the workspace's]."
        ),
    ] = None,
    test: Annotated[
        str | None,
        typer.Option(
            "--test", help="Test manifest CSV, folder or dataset \\[default: the latest test set]."
        ),
    ] = None,
    threshold: Annotated[
        float, typer.Option(help="Cosine similarity from which a pair is a near duplicate.")
    ] = 0.95,
    layer: Annotated[
        str | None, typer.Option(help="Layer compared for near duplicates \\[default: first].")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Encoders to use, comma-separated \\[default: every store].")
    ] = None,
    folds: Annotated[
        int | None, typer.Option(help="Folds classes must fill \\[default: saved, else 5].")
    ] = None,
    workspace: WorkspaceOpt = None,
    json: JsonOpt = False,
) -> None:
    """Exact and near duplicates, train/test shift and label problems, without training."""
    from ..check import check, summary_rows

    res = check(
        train,
        test,
        workspace=workspace,
        threshold=threshold,
        layer=layer,
        models=parse_csv_list(model),
        folds=folds,
    )
    table = Table(title=f"check: train {res.train}, test {res.test or 'none'}")
    for col in ("check", "finding", "details"):
        table.add_column(col, overflow="fold")
    for row in summary_rows(res.to_dict()):
        table.add_row(*row)
    out_console.print(table)
    for note in res.notes:
        console.print("[yellow]note:[/] ", end="")
        console.print(note, markup=False, soft_wrap=True)
    if json:
        emit_json(res.to_dict())
