"""CLI commands of the extraction stage: ``extract`` and the ``cache`` group (``ls``, ``export``,
``rm``). Each maps flags to one library call (registered in :mod:`sslstack.cli`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..parsing import parse_csv_list, parse_int_list
from ..workspace import Workspace
from .common import (
    DataOpt,
    JsonOpt,
    ModelOpt,
    WorkspaceOpt,
    choices,
    console,
    emit_json,
    friendly,
    out_console,
    rel_path,
)

if TYPE_CHECKING:
    from ..extract.config import ExtractResult


PoolsOpt = Annotated[
    str | None,
    typer.Option(
        help="Poolings over valid frames, comma-separated, from "
        f"{choices('sslstack.extract.pooling:POOLINGS')} \\[default: the encoder's: logmel and "
        "ge2e mean,std,max; the others mean]."
    ),
]
LayersOpt = Annotated[
    str | None,
    typer.Option("--layers", "--layer", help="Hidden states to keep, e.g. 0-12 or 6,12."),
]
DtypeOpt = Annotated[str, typer.Option(help="auto (bf16 on GPU, fp32 on CPU), fp32 or bf16.")]
BatchOpt = Annotated[
    str,
    typer.Option(
        help="Padded audio seconds per batch, or auto (GPU: the largest that fits; CPU: 60)."
    ),
]
WorkersOpt = Annotated[
    int, typer.Option(help="Decoding threads (0: decode between forwards, in this thread).")
]
LabelColOpt = Annotated[
    str | None,
    typer.Option(help="Manifest column of the labels \\[default: label, else labels]."),
]
UnsafeOpt = Annotated[
    bool, typer.Option(help="Load pickle-based .bin weights when no safetensors exist.")
]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        help=f"What runs the encoding: {choices('sslstack.extract.executors:EXECUTORS')} (local: "
        "this process; ray: a Ray cluster, pip install 'sslstack\\[ray]', docs/scaling.md)."
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        help="--executor ray: the cluster to join \\[default: $RAY_ADDRESS, else a local one]",
        show_default=False,
    ),
]
RayWorkersOpt = Annotated[
    int | None,
    typer.Option(
        help="--executor ray: encoder actors (one model each) \\[default: a GPU each; CPU: 1]",
        show_default=False,
    ),
]
GpusOpt = Annotated[
    float | None,
    typer.Option(
        help="--executor ray: GPUs per encoder actor \\[default: 1 with CUDA, else 0]",
        show_default=False,
    ),
]
CpusOpt = Annotated[
    float, typer.Option(help="--executor ray: CPUs per encoder actor (its torch threads).")
]


@friendly
def extract_cmd(
    model: ModelOpt,
    data: Annotated[str, typer.Option("--data", "-d", help="Manifest CSV or audio folder.")],
    pool: PoolsOpt = None,
    layers: LayersOpt = None,
    window: Annotated[
        float | None, typer.Option(help="Cut files into windows of S seconds.")
    ] = None,
    hop: Annotated[float | None, typer.Option(help="Hop between windows in seconds.")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Crop clips to S seconds.")] = None,
    crop: Annotated[str, typer.Option(help="Where to crop: start or center.")] = "start",
    tta: Annotated[
        str, typer.Option(help="Image views: none, flip, five-crop or ten-crop (mean, max).")
    ] = "none",
    revision: Annotated[
        str | None, typer.Option(help="Hub revision (branch, tag or commit).")
    ] = None,
    dtype: DtypeOpt = "auto",
    storage: Annotated[str, typer.Option(help="Stored precision: float16 or float32.")] = "float16",
    batch_seconds: BatchOpt = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    workers: WorkersOpt = 2,
    on_error: Annotated[
        str, typer.Option(help="stop (default) or skip unreadable audio.")
    ] = "stop",
    label_col: LabelColOpt = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow the model's own code.")] = False,
    allow_unsafe_weights: UnsafeOpt = False,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    ray_workers: RayWorkersOpt = None,
    gpus_per_worker: GpusOpt = None,
    cpus_per_worker: CpusOpt = 1.0,
    workspace: WorkspaceOpt = None,
    json: JsonOpt = False,
) -> None:
    """Embed every layer of MODEL for the items of --data into the workspace's cache."""
    from ..datasets import read_dataset_manifest
    from ..extract import ExtractConfig
    from ..extract import extract as extract_fn

    config = ExtractConfig(
        model=model, revision=revision, pools=tuple(parse_csv_list(pool) or []),
        layers=tuple(parse_int_list(layers, "--layers") or []) or None, window=window, hop=hop,
        max_seconds=max_seconds, crop=crop, tta=tta, dtype=dtype, storage=storage,
        batch_seconds=batch_seconds, device=device, workers=workers, on_error=on_error,
        executor=executor, trust_remote_code=trust_remote_code,
        allow_unsafe_weights=allow_unsafe_weights,
    )  # fmt: skip
    options = _executor_options(executor, address, ray_workers, gpus_per_worker, cpus_per_worker)
    manifest = read_dataset_manifest(Workspace.at(workspace), data, label_col=label_col)
    console.print(manifest.describe_labels(), markup=False)
    res = extract_fn(
        manifest, config, workspace=workspace, progress=console, executor_options=options
    )
    _print_extracted(res, manifest.kind)
    if json:
        emit_json(res.to_dict())


def _print_extracted(res: ExtractResult, kind: str) -> None:
    msg = (
        f"{res.items} items: {res.computed} computed, {res.cached} cached, {len(res.failed)} failed"
        f" in {res.seconds:.1f} s"
    )
    if res.reused:
        msg = msg.replace(" cached,", f" cached, {res.reused} reused (same audio, other id),")
    if res.computed:
        unit = "views/s" if kind == "image" else "audio-s/s"
        msg += f" ({res.rate:.1f} {unit} overall)"
    console.print(f"[green]done[/] {msg}\nstore: {escape(rel_path(res.store_path))}")
    for f in res.failed[:10]:
        console.print(f"[yellow]failed[/] {escape(f['id'])}: {escape(f['error'])}")


def _executor_options(
    executor: str,
    address: str | None,
    workers: int | None,
    gpus: float | None,
    cpus: float,
) -> dict | None:
    """The Ray flags as the executor's options; refused in one line with another executor."""
    from ..errors import ConfigError

    if executor == "ray":
        return {
            "address": address,
            "workers": workers,
            "gpus_per_worker": gpus,
            "cpus_per_worker": cpus,
        }
    given = [
        f
        for f, v in (
            ("--address", address),
            ("--ray-workers", workers),
            ("--gpus-per-worker", gpus),
        )
        if v is not None
    ]
    if given:
        raise ConfigError(f"{given[0]} needs --executor ray")
    return None


@friendly
def cache_ls(workspace: WorkspaceOpt = None, json: JsonOpt = False) -> None:
    """List the stores of the workspace."""
    from ..embeddings import list_stores

    infos = [s.info() for s in list_stores(workspace)]
    table = Table("store", "encoder", "items", "failed", "layers", "dim", "pools", "window", "size")
    for i in infos:
        win = f"{i['window']}/{i['hop']} s" if i["window"] else "-"
        table.add_row(
            *(
                escape(str(v))
                for v in (
                    i["store"],
                    i["model"],
                    i["items"],
                    i["failed"],
                    i["layers"],
                    i["dim"],
                    ",".join(i["pools"]),
                    win,
                    f"{i['bytes'] / 2**20:.1f} MiB",
                )
            )
        )
    if infos:
        out_console.print(table)
        for i in infos:
            if i["wasted_bytes"]:
                out_console.print(escape(_wasted_line(i)), soft_wrap=True)
    else:
        console.print(f"no stores in {escape(str(Workspace.at(workspace).stores))}")
    if json:
        emit_json({"stores": infos})


def _wasted_line(info: dict) -> str:
    left = info["leftovers"]
    what = ", ".join(
        f"{left[k]} {k}" for k in ("temporary", "superseded", "quarantined") if left[k]
    )
    line = f"wasted: {info['store']}: {info['wasted_bytes'] / 2**20:.2f} MiB in {what} file(s)"
    if left["removable_bytes"]:
        line += (
            "; the next 'sslstack extract' of this store removes the temporary and superseded ones"
        )
    if left["quarantined"]:
        line += f"; damaged parts are kept in {info['path']}/quarantine (delete it once inspected)"
    return line


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
    from ..embeddings import export_embeddings

    res = export_embeddings(
        model, layer, pool, out, workspace, store=store, data=data, all_items=all_items
    )
    where = f"dataset {res['dataset']}" if res["dataset"] else f"store {res['store']}"
    console.print(
        f"[green]wrote[/] {escape(res['out'])}: {res['items']} items of {escape(where)} "
        f"x {res['dim']} dims "
        f"(layer {res['layer']}, {res['pool']})"
    )
    if res["missing"]:
        console.print(
            f"[yellow]warning:[/] {res['missing']} item(s) of the dataset have no embeddings "
            "in the store (failed or not extracted) and are not in the file"
        )
    if json:
        emit_json(res)


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
    from ..embeddings import remove_store

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
