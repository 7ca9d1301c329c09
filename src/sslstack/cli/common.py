"""What every CLI command shares: the aliases of common options, choices taken from the
registries, output helpers, the table of one-line errors.

The commands live in ``cli/extract.py`` (``extract``, ``cache``), ``cli/heads.py`` (``probe``,
``fit-head``, ``runs ls``), ``cli/ensemble.py`` (``stack``, ``predict``, ``report``, ``blend``,
``runs import``) and ``cli/check.py`` (``check``), all registered in ``cli/__init__.py``; each
maps its flags to one library call.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand

from ..errors import SslstackError, SslstackWarning
from ..registry import Registry

_CHOICES = re.compile(r"\{(sslstack(?:\.\w+)+):(\w+)\}")


def choices(where: str) -> str:
    """Help text that lists a registry's names, read when ``--help`` is shown (a registry entry
    added shows up without editing the CLI; its module is imported only then, so start-up stays
    light). ``where`` is ``"module:NAME"`` of a :class:`~sslstack.registry.Registry`, or of a
    function that returns names::

        help=f"Stack method: auto or {choices('sslstack.ensemble.methods:METHODS')}."
    """
    text = "{" + where + "}"
    if not _CHOICES.fullmatch(text):
        raise ValueError(f"choices({where!r}): expected 'sslstack.module:NAME'")
    return text


def fill_choices(text: str) -> str:
    """``text`` with every :func:`choices` placeholder replaced by the names it stands for."""

    def names(m: re.Match[str]) -> str:
        obj = getattr(importlib.import_module(m.group(1)), m.group(2))
        return escape(obj.choices() if isinstance(obj, Registry) else ", ".join(obj()))

    return _CHOICES.sub(names, text)


class RegistryHelp(TyperCommand):
    """A command whose ``--help`` fills :func:`choices` placeholders from the registries now."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        params: list[Any] = [p for p in self.params if getattr(p, "help", None)]
        saved = [(p, p.help) for p in params]  # restored: the next --help reads the registry anew
        try:
            for p, text in saved:
                p.help = fill_choices(text)
            super().format_help(ctx, formatter)
        finally:
            for p, text in saved:
                p.help = text


WorkspaceOpt = Annotated[
    str | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace folder \\[default: $SSLSTACK_WORKSPACE or ./.sslstack]",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one machine-readable JSON object as the last line.")
]
DataOpt = Annotated[
    str | None,
    typer.Option("--data", "-d", help="Manifest CSV or audio folder (or a dataset name)."),
]
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Hub id, local model folder, model file "
        f"({choices('sslstack.extract.runtimes:suffixes')}, with a sidecar <file>.json), "
        f"or a built-in: {choices('sslstack.extract.base:BUILTINS')}.",
    ),
]
MetricOpt = Annotated[
    str | None,
    typer.Option(
        help=f"Metric to optimize and report: {choices('sslstack.classify.metrics:METRICS')} "
        "\\[default: roc_auc, accuracy or lwlrap by task]."
    ),
]


def _flags_without_type() -> None:
    """On/off flags (``--json``, ``--label``, ``--help``) show no ``<bool>`` type in ``--help``:
    they take no value, so a type next to them reads as if they did."""
    from typer.core import TyperOption

    original = TyperOption.display_type_rich
    if getattr(original, "_sslstack", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else original(self, ctx)

    display_type_rich._sslstack = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_without_type()


def _width() -> int | None:
    """Terminal width; 200 columns when output is not a terminal (logs, CI, pipes), so
    tables are not cut at rich's default of 80."""
    import shutil

    if sys.stdout.isatty() or "COLUMNS" in os.environ:
        return None
    return shutil.get_terminal_size((200, 40)).columns


console = Console(stderr=True, highlight=False, width=_width())
out_console = Console(highlight=False, width=_width())

F = TypeVar("F", bound=Callable[..., Any])


def debug_enabled() -> bool:
    return os.environ.get("SSLSTACK_DEBUG", "") not in ("", "0")


def _show_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """sslstack's own warnings as one line each; every other warning as Python shows it."""
    if issubclass(category, SslstackWarning):
        console.print(f"[yellow]warning:[/] {escape(str(message))}", soft_wrap=True)
    else:
        _python_showwarning(message, category, *args, **kwargs)


_python_showwarning = warnings.showwarning


def friendly(fn: F) -> F:
    """Turn library errors into one line on stderr and an exit code (traceback with --debug).

    OS errors a user can act on (disk full, quota, read-only, permission) are one line too;
    sslstack's warnings (a quarantined part, a skipped compaction) are one line each.
    """

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        warnings.showwarning = _show_warning
        try:
            return fn(*args, **kwargs)
        except SslstackError as e:
            if debug_enabled():
                raise
            console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except OSError as e:  # read-only workspace, permissions, full disk: the path, one line
            if debug_enabled() or e.errno is None:
                raise
            from ..errors import describe_os_error

            console.print("[bold red]error:[/] ", end="")
            console.print(describe_os_error(e), markup=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: everything written so far is kept")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _strict(obj: Any) -> Any:
    """NaN and infinities become null, so the line is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        try:
            return _strict(obj.item())
        except (TypeError, ValueError):
            return str(obj)
    return obj


def emit_json(obj: Any) -> None:
    """The last line of a command run with --json (strict JSON: NaN becomes null)."""
    line = json.dumps(_strict(obj), default=str, sort_keys=True, allow_nan=False)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def rel_path(path: object) -> str:
    """``path`` relative to the working directory when it lies under it (shorter, copyable)."""
    p = Path(str(path))
    if p.is_absolute() and p.is_relative_to(Path.cwd()):
        return str(p.relative_to(Path.cwd()))
    return str(path)
