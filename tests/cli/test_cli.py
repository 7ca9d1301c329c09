"""The command line a user meets first: fast start, readable --help, one-line OS errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sslstack.cli import app
from tests.audio_fixtures import write_dataset
from tests.classify_synth import make_synth

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("sklearn", "optuna", "pandas", "torch", "h5py", "scipy", "xgboost", "transformers")


def _imported(*args: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "COLUMNS": "200"}
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sslstack", *args],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    mods = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    return {m.split(".")[0] for m in mods}


@pytest.mark.parametrize(
    "args",
    [
        ("--version",),
        ("--help",),
        ("fit-head", "--help"),
        ("cache", "--help"),
        ("extract", "--help"),
        ("stack", "--help"),
    ],
)
def test_version_and_help_import_no_heavy_library(args: tuple[str, ...]) -> None:
    assert not _imported(*args) & set(HEAVY)


def _help(*cmd: str) -> str:
    r = CliRunner().invoke(app, [*cmd, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    return r.output


def test_help_shows_defaults_flags_without_types_and_one_layers_name() -> None:
    fit = _help("fit-head")
    for text in (
        "Metric to optimize [default: roc_auc, accuracy or lwlrap by task]",
        "Number of folds when the dataset has none yet [default: 5]",
        "Workspace folder [default: $SSLSTACK_WORKSPACE or ./.sslstack]",
        "--layers,--layer",
    ):
        assert text in fit, text
    assert "<bool>" not in fit
    assert "--layers,--layer" in _help("extract") and "--layers,--layer" in _help("probe")
    stack = _help("stack")
    assert "Runs to stack, e.g. 3,7,9 [default: all]" in stack and "<bool>" not in stack


def test_layer_and_layers_are_one_option(tmp_path: Path) -> None:
    s = make_synth(tmp_path, n=30, layers=3)
    for flag in ("--layer", "--layers"):
        r = CliRunner().invoke(
            app,
            ["fit-head", "logreg", "--model", "fake", "--data", str(s.csv), flag, "1"]
            + ["--trials", "0", "--folds", "3", "-w", str(s.ws.root), "--json"],
        )
        assert r.exit_code == 0, r.output
        assert '"layer": "1"' in r.stdout.splitlines()[-1]


def test_an_os_error_is_one_line_naming_the_path(tmp_path: Path, monkeypatch) -> None:
    import sslstack.datasets as ds

    man = write_dataset(tmp_path / "d", 2)
    target = tmp_path / "ws" / "datasets"

    def read_only(path: Path, *_: object) -> None:
        raise OSError(30, "Read-only file system", str(path))

    monkeypatch.setattr(ds, "atomic_write_text", read_only)
    r = CliRunner().invoke(
        app, ["extract", "--model", "logmel", "--data", str(man), "-w", str(tmp_path / "ws")]
    )
    assert r.exit_code == 1
    err = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "Traceback" not in r.output
    assert err[0].startswith(f"error: {target}/manifest-")
    assert err[0].endswith(
        "manifest.csv: Read-only file system — the file system is read-only; use a writable "
        "--workspace (or $SSLSTACK_WORKSPACE)"
    )


def test_extract_says_which_label_column_it_uses(tmp_path: Path) -> None:
    man = write_dataset(tmp_path / "d", 4, labels=("a", "b"))
    text = man.read_text().replace("path,label", "path,category", 1)
    man.write_text(text)
    ws = str(tmp_path / "ws")
    r = CliRunner().invoke(app, ["extract", "--model", "logmel", "--data", str(man), "-w", ws])
    assert r.exit_code == 0, r.output
    assert "labels: none (no 'label' or 'labels' column; columns: category); name one with " in (
        r.output
    )
    r = CliRunner().invoke(
        app,
        ["extract", "--model", "logmel", "--data", str(man), "-w", ws, "--label-col", "category"],
    )
    assert r.exit_code == 0, r.output
    assert "labels: column 'category' (single-label, 2 classes, 4 labeled items)" in r.output
    assert "0 computed, 4 cached" in r.output
    # later commands keep the chosen column without the flag
    r = CliRunner().invoke(app, ["extract", "--model", "logmel", "--data", str(man), "-w", ws])
    assert "labels: column 'category'" in r.output


def test_the_demo_pins_the_thread_count_before_any_step() -> None:
    """The demo's numbers moved with the machine's core count (the encoders' fp16-stored
    embeddings differ by one step between 1 and 2 threads: stack 0.5450 against 0.5425), so
    the script fixes the thread count before its first command."""
    lines = (REPO / "examples" / "demo.sh").read_text().splitlines()
    first_step = next(n for n, line in enumerate(lines) if line.startswith("step "))
    pins = [n for n, line in enumerate(lines) if line.startswith("export OMP_NUM_THREADS=")]
    assert pins and pins[0] < first_step
    assert 'OMP_NUM_THREADS="${DEMO_THREADS:-2}"' in lines[pins[0]]


def test_help_names_every_registered_head_and_stack_method() -> None:
    """Every head and stack method is in --help (the heads' list is still written out in
    cli/heads.py; the stack methods come from the registry, see the test below)."""
    from sslstack.classify.heads import HEADS
    from sslstack.ensemble.methods import METHODS

    heads = CliRunner().invoke(app, ["fit-head", "--help"], env={"COLUMNS": "200"}).output
    assert all(h in heads for h in HEADS.names()), heads
    stack = CliRunner().invoke(app, ["stack", "--help"], env={"COLUMNS": "200"}).output
    assert all(m in stack for m in METHODS.names()), stack


def _registry_placeholders() -> list[tuple[str, str]]:
    """(command, 'module:NAME') of every choices(...) placeholder in the CLI's help texts."""
    import typer.main

    from sslstack.cli.common import _CHOICES

    found: list[tuple[str, str]] = []

    def walk(cmd, path: str) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())
        for p in getattr(cmd, "params", []):
            for module, attr in _CHOICES.findall(getattr(p, "help", None) or ""):
                found.append((path, f"{module}:{attr}"))

    walk(typer.main.get_command(app), "")
    return sorted(set(found))


PLACEHOLDERS = _registry_placeholders()


def test_the_help_of_every_registry_flag_comes_from_its_registry() -> None:
    where = {w for _, w in PLACEHOLDERS}
    assert {
        "sslstack.extract.pooling:POOLINGS", "sslstack.extract.executors:EXECUTORS",
        "sslstack.extract.base:BUILTINS", "sslstack.extract.runtimes:suffixes",
        "sslstack.classify.metrics:METRICS", "sslstack.ensemble.methods:METHODS",
        "sslstack.ensemble.calibrate:CALIBRATORS",
    } <= where, where  # fmt: skip


@pytest.mark.parametrize(("command", "where"), PLACEHOLDERS)
def test_a_registry_entry_added_shows_up_in_help_without_editing_the_cli(
    command: str, where: str
) -> None:
    import importlib

    from sslstack.extract.runtimes import RUNTIMES, Runtime
    from sslstack.registry import Registry

    module, attr = where.split(":")
    obj = getattr(importlib.import_module(module), attr)
    reg, name, entry = (
        (obj, "zzentry", next(iter(obj.values())))
        if isinstance(obj, Registry)
        else (RUNTIMES, "zzruntime", Runtime("zzruntime", (".zzfile",), lambda *a: None))
    )
    shown = "zzentry" if isinstance(obj, Registry) else ".zzfile"
    assert shown not in _help(*command.split())
    reg.register(name, entry)
    try:
        assert shown in _help(*command.split())
    finally:
        del reg[name]
    assert shown not in _help(*command.split())
