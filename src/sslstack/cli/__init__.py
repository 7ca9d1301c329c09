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
from . import check, ensemble, extract, heads
from .common import RegistryHelp, friendly, out_console

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


# --- every command, in pipeline order (RegistryHelp: choices in --help read from the registries)
app.command("extract", cls=RegistryHelp)(extract.extract_cmd)
app.add_typer(cache_app, name="cache")
cache_app.command("ls", cls=RegistryHelp)(extract.cache_ls)
cache_app.command("export", cls=RegistryHelp)(extract.cache_export)
cache_app.command("rm", cls=RegistryHelp)(extract.cache_rm)
app.command("probe", cls=RegistryHelp)(friendly(heads.probe_cmd))
app.command("fit-head", cls=RegistryHelp)(friendly(heads.fit_head_cmd))
app.add_typer(runs_app, name="runs")
runs_app.command("ls", cls=RegistryHelp)(friendly(heads.runs_ls_cmd))
runs_app.command("import", cls=RegistryHelp)(friendly(ensemble.import_cmd))
app.command("stack", cls=RegistryHelp)(friendly(ensemble.stack_cmd))
app.command("predict", cls=RegistryHelp)(friendly(ensemble.predict_cmd))
app.command("report", cls=RegistryHelp)(friendly(ensemble.report_cmd))
app.command("blend", cls=RegistryHelp)(friendly(ensemble.blend_cmd))
app.command("check", cls=RegistryHelp)(friendly(check.check_cmd))


def main() -> None:
    """The ``sslstack`` console script."""
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        # piped or logged --help would be cut at rich's default of 80 columns
        os.environ["COLUMNS"] = "200"
    app()


__all__ = ["app", "main"]
