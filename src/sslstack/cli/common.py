"""What every CLI command shares: the aliases of common options, output helpers, error table.

Commands live beside the library code they call (``extract``/``cache`` in cli.py, heads in
``classify/commands.py``, stacking in ``ensemble/commands.py``), each mapping flags to one call.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import SslstackError, SslstackWarning

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
        help="Hub id, local model folder, model file (.onnx/.tflite/.pt with a sidecar "
        "<file>.json), or a built-in: logmel, speech-embedding, birdnet, ge2e.",
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
