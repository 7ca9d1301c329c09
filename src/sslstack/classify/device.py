"""Where a head's fits run: ``--device auto|cpu|cuda`` resolved against the head's GPU support."""

from __future__ import annotations

from ..errors import ConfigError
from .heads import get_head

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str, head: str, task: str = "multiclass") -> tuple[str, str]:
    """The device of ``head``'s fits and why, e.g. ``("cpu", "cpu (no GPU seen)")``.

    ``auto`` picks ``cuda`` when torch sees a GPU and the head supports it for ``task`` (an
    XGBoost built with CUDA; CatBoost seeing a GPU, single-label tasks), else ``cpu``.
    ``cuda`` asked for explicitly is used as asked (the library then says what is missing).

    Raises:
        ConfigError: unknown device.
    """
    if device not in DEVICES:
        raise ConfigError(f"--device {device!r}: choose from {', '.join(DEVICES)}")
    hd = get_head(head)
    if device == "cuda":
        return "cuda", f"cuda for {head} (--device cuda)"
    if device == "cpu" or not hd.gpu_capable:
        return "cpu", f"cpu for {head}" + (" (--device cpu)" if device == "cpu" else "")
    if not _torch_sees_gpu():
        return "cpu", f"cpu for {head} (no GPU seen)"
    ok, why = hd.gpu_support(task)
    if not ok:
        return "cpu", f"cpu for {head} (a GPU is present, but {why})"
    return "cuda", f"cuda for {head} (a GPU is present)"


def _torch_sees_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
