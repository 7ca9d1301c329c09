"""The ``sslstack`` command line: a thin typer shell over the Python API.

Each command maps flags to one library call, prints a table, and with ``--json`` prints one JSON
object as its last line. Library errors become one-line messages (``--debug`` for tracebacks).
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.table import Table

from . import __version__
from ._cli_common import (
    DataOpt,
    JsonOpt,
    ModelOpt,
    WorkspaceOpt,
    console,
    emit_json,
    friendly,
    out_console,
    parse_csv_list,
    parse_int_list,
    rel_path,
)
from .workspace import Workspace

_app = typer.Typer(
    name="sslstack",
    help="Audio classification without fine-tuning: extract, fit-head, stack, predict.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cache_app = typer.Typer(help="Inspect, export and remove embedding stores.", no_args_is_help=True)
_app.add_typer(cache_app, name="cache")


def _version(value: bool) -> None:
    if value:
        out_console.print(f"sslstack {__version__}")
        raise typer.Exit()


@_app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    if debug:
        os.environ["SSLSTACK_DEBUG"] = "1"


@_app.command()
@friendly
def extract(
    model: ModelOpt,
    data: Annotated[str, typer.Option("--data", "-d", help="Manifest CSV or audio folder.")],
    pool: Annotated[str, typer.Option(help="Poolings over valid frames: mean,std,max.")] = "mean",
    layers: Annotated[
        str | None,
        typer.Option("--layers", "--layer", help="Hidden states to keep, e.g. 0-12 or 6,12."),
    ] = None,
    window: Annotated[
        float | None, typer.Option(help="Cut files into windows of S seconds.")
    ] = None,
    hop: Annotated[float | None, typer.Option(help="Hop between windows in seconds.")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Crop clips to S seconds.")] = None,
    crop: Annotated[str, typer.Option(help="Where to crop: start or center.")] = "start",
    revision: Annotated[
        str | None, typer.Option(help="Hub revision (branch, tag or commit).")
    ] = None,
    dtype: Annotated[
        str, typer.Option(help="auto (bf16 on GPU, fp32 on CPU), fp32 or bf16.")
    ] = "auto",
    storage: Annotated[str, typer.Option(help="Stored precision: float16 or float32.")] = "float16",
    batch_seconds: Annotated[float, typer.Option(help="Padded audio seconds per batch.")] = 60.0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    workers: Annotated[
        int, typer.Option(help="Decoding threads (0: decode between forwards, in this thread).")
    ] = 2,
    on_error: Annotated[
        str, typer.Option(help="stop (default) or skip unreadable audio.")
    ] = "stop",
    label_col: Annotated[
        str | None,
        typer.Option(help="Manifest column of the labels \\[default: label, else labels]."),
    ] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow the model's own code.")] = False,
    allow_unsafe_weights: Annotated[
        bool, typer.Option(help="Load pickle-based .bin weights when no safetensors exist.")
    ] = False,
    workspace: WorkspaceOpt = None,
    json: JsonOpt = False,
) -> None:
    """Embed every layer of MODEL for the items of --data into the workspace's cache."""
    from .datasets import read_dataset_manifest
    from .extract import extract as extract_fn

    manifest = read_dataset_manifest(Workspace.at(workspace), data, label_col=label_col)
    console.print(manifest.describe_labels(), markup=False)
    res = extract_fn(
        manifest,
        model,
        workspace=workspace,
        progress=True,
        pools=tuple(parse_csv_list(pool) or []),
        layers=tuple(parse_int_list(layers, "--layers") or []) or None,
        window=window,
        hop=hop,
        max_seconds=max_seconds,
        crop=crop,
        revision=revision,
        dtype=dtype,
        storage=storage,
        batch_seconds=batch_seconds,
        device=device,
        workers=workers,
        on_error=on_error,
        trust_remote_code=trust_remote_code,
        allow_unsafe_weights=allow_unsafe_weights,
    )
    msg = (
        f"{res.items} items: {res.computed} computed, {res.cached} cached, {len(res.failed)} failed"
        f" in {res.seconds:.1f} s"
    )
    if res.computed:
        msg += f" ({res.rate:.1f} audio-s/s overall)"
    console.print(f"[green]done[/] {msg}\nstore: {rel_path(res.store_path)}")
    for f in res.failed[:10]:
        console.print(f"[yellow]failed[/] {f['id']}: {f['error']}")
    if json:
        emit_json(res.to_dict())


@cache_app.command("ls")
@friendly
def cache_ls(workspace: WorkspaceOpt = None, json: JsonOpt = False) -> None:
    """List the stores of the workspace."""
    from .cache import list_stores

    infos = [s.info() for s in list_stores(workspace)]
    table = Table("store", "encoder", "items", "failed", "layers", "dim", "pools", "window", "size")
    for i in infos:
        win = f"{i['window']}/{i['hop']} s" if i["window"] else "-"
        table.add_row(
            i["store"],
            i["model"],
            str(i["items"]),
            str(i["failed"]),
            str(i["layers"]),
            str(i["dim"]),
            ",".join(i["pools"]),
            win,
            f"{i['bytes'] / 2**20:.1f} MiB",
        )
    if infos:
        out_console.print(table)
    else:
        console.print(f"no stores in {Workspace.at(workspace).stores}")
    if json:
        emit_json({"stores": infos})


@cache_app.command("export")
@friendly
def cache_export(
    model: ModelOpt,
    layer: Annotated[
        str,
        typer.Option(
            help="Layer (0 = embedding output, 'final'), or a choice as heads see it: "
            "6..12 (mean of a range), 4+8+12 (concatenation)."
        ),
    ],
    out: Annotated[str, typer.Option(help="Output .npz or .parquet file.")],
    pool: Annotated[
        str, typer.Option(help="Pooling, or a concatenation such as mean+std+max.")
    ] = "mean",
    data: DataOpt = None,
    all_items: Annotated[
        bool,
        typer.Option("--all-items", help="Every item of the store instead of one dataset's."),
    ] = False,
    store: Annotated[str | None, typer.Option(help="Store name when several match.")] = None,
    workspace: WorkspaceOpt = None,
    json: JsonOpt = False,
) -> None:
    """Write one feature matrix (ids, labels when known) to .npz or .parquet."""
    from .cache import export_embeddings

    res = export_embeddings(
        model, layer, pool, out, workspace, store=store, data=data, all_items=all_items
    )
    where = f"dataset {res['dataset']}" if res["dataset"] else f"store {res['store']}"
    console.print(
        f"[green]wrote[/] {res['out']}: {res['items']} items of {where} x {res['dim']} dims "
        f"(layer {res['layer']}, {res['pool']})"
    )
    if res["missing"]:
        console.print(
            f"[yellow]warning:[/] {res['missing']} item(s) of the dataset have no embeddings "
            "in the store (failed or not extracted) and are not in the file"
        )
    if json:
        emit_json(res)


@cache_app.command("rm")
@friendly
def cache_rm(
    store: Annotated[str, typer.Argument(help="Store name, as 'sslstack cache ls' shows it.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Remove it even if runs read it.")] = False,
    workspace: WorkspaceOpt = None,
    json: JsonOpt = False,
) -> None:
    """Remove a store the workspace no longer needs."""
    from .cache import remove_store

    res = remove_store(store, workspace, dry_run=dry_run, force=force)
    verb = "would remove" if dry_run else "removed"
    runs = f"; read by run(s) {', '.join(res['runs'])}" if res["runs"] else ""
    console.print(
        f"{verb} {rel_path(res['path'])}: {res['items']} items, "
        f"{res['bytes'] / 2**20:.1f} MiB{runs}",
        markup=False,
    )
    if json:
        emit_json(res)


_FAST_COMMANDS = ("extract", "cache")
_registered = False


def register_stages() -> typer.Typer:
    """Add the heads and ensemble commands (they import scikit-learn, Optuna, … so the
    extraction commands skip them: a fully cached ``extract`` rerun returns in about a second)."""
    global _registered
    if not _registered:
        for mod in ("classify", "ensemble"):
            try:
                module = __import__(f"sslstack.{mod}.commands", fromlist=["register"])
            except ModuleNotFoundError as e:
                if e.name != f"sslstack.{mod}.commands":
                    raise
                continue
            module.register(_app)
        _registered = True
    return _app


def __getattr__(name: str) -> typer.Typer:
    if name == "app":  # the complete app, for tests and embedding (typer.testing.CliRunner)
        return register_stages()
    raise AttributeError(name)


def main() -> None:
    import sys

    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    if not args or args[0] not in _FAST_COMMANDS or "--help" in sys.argv:
        register_stages()
    _app()


if __name__ == "__main__":
    main()
