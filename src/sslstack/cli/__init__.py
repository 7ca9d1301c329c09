"""The ``sslstack`` command line: a thin typer shell over the Python API.

Every command is registered here, in one place. Each maps its flags to one library call, prints a
table, and with ``--json`` prints one JSON object as its last line; library errors become
one-line messages (``--debug`` for tracebacks). The command modules import only typer and rich at
start-up (the libraries they call are imported inside the commands), so ``--help`` and a cached
``extract`` stay fast. The library never imports this package.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from .. import __version__
from . import ensemble, extract, heads
from .common import friendly, out_console

app = typer.Typer(
    name="sslstack",
    help="Audio classification without fine-tuning: extract, fit-head, stack, predict.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cache_app = typer.Typer(help="Inspect, export and remove embedding stores.", no_args_is_help=True)
runs_app = typer.Typer(
    help="List and import runs (fitted heads, stacks, imported predictions).", no_args_is_help=True
)


def _version(value: bool) -> None:
    if value:
        out_console.print(f"sslstack {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    if debug:
        os.environ["SSLSTACK_DEBUG"] = "1"


# --- every command, in pipeline order ---------------------------------------------------------
app.command("extract")(extract.extract_cmd)
app.add_typer(cache_app, name="cache")
cache_app.command("ls")(extract.cache_ls)
cache_app.command("export")(extract.cache_export)
cache_app.command("rm")(extract.cache_rm)
app.command("probe")(friendly(heads.probe_cmd))
app.command("fit-head")(friendly(heads.fit_head_cmd))
app.add_typer(runs_app, name="runs")
runs_app.command("ls")(friendly(heads.runs_ls_cmd))
runs_app.command("import")(friendly(ensemble.import_cmd))
app.command("stack")(friendly(ensemble.stack_cmd))
app.command("predict")(friendly(ensemble.predict_cmd))
app.command("report")(friendly(ensemble.report_cmd))
app.command("blend")(friendly(ensemble.blend_cmd))


def main() -> None:
    """The ``sslstack`` console script."""
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        # piped or logged --help would be cut at rich's default of 80 columns
        os.environ["COLUMNS"] = "200"
    app()


__all__ = ["app", "main"]
