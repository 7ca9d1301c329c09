"""transformers audio encoders: resolve a hub id or local folder, then pool every layer exactly.

:func:`resolve_hf` reads only the config and feature-extractor files (and fingerprints a local
folder, or pins a hub snapshot's commit), so a rerun with everything cached never loads weights.
:class:`HFEncoder` runs one forward with all hidden states and pools each on the device over the
frames that hold audio; how clips may share a forward is the family's batching policy
(:mod:`sslstack.extract.families`), so padding never changes an embedding.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import EncoderError
from .base import Encoder, EncoderSpec
from .families import FAMILIES, frame_rate, layer_semantics, max_seconds

_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]
_MIB = 1 << 20


# --- resolving (no weights loaded) -----------------------------------------------------------


def resolve_hf(
    model: str,
    revision: str | None = None,
    *,
    trust_remote_code: bool = False,
    allow_unsafe_weights: bool = False,
) -> EncoderSpec:
    """Resolve a transformers encoder without loading its weights.

    Args:
        model: a local folder (``config.json`` + ``preprocessor_config.json`` + weights) or a
            hub id.
        revision: hub branch, tag or commit; None means the default branch. A local folder's
            revision is a fingerprint of its files and cannot be given.
        trust_remote_code: passed to transformers; off by default.
        allow_unsafe_weights: accept PyTorch ``.bin`` weights when no safetensors exist.

    Returns:
        The spec: normalized model id, resolved revision (hub commit or ``local-<sha1>``),
        the feature extractor's sample rate, and the family.

    Raises:
        EncoderError: missing files, unknown family, or only unsafe weights.
    """
    local = Path(model).expanduser()
    if local.is_dir():
        if revision:
            raise EncoderError(f"--revision {revision}: {model} is a local folder, not a hub id")
        folder = local.resolve()
        model_id, rev = str(folder), None
    elif model.startswith((".", "/", "~")) or local.exists():
        raise EncoderError(
            f"--model {model}: no such folder (a local model is a folder with config.json)"
        )
    else:
        folder, rev = _snapshot(model, revision, trust_remote_code, allow_unsafe_weights)
        model_id = model
    cfg = _read_json(folder / "config.json", model)
    family = FAMILIES.get(cfg.get("model_type"))
    fe_cfg = _read_json(folder / "preprocessor_config.json", model)
    if "sampling_rate" not in fe_cfg:
        raise EncoderError(f"{folder / 'preprocessor_config.json'} has no sampling_rate")
    weights = _weight_files(folder, model, allow_unsafe_weights)
    c, f = _AttrDict(cfg), _AttrDict(fe_cfg)
    info = {
        "path": str(folder),
        "model_type": family.model_type,
        "input": family.input,
        "batching": family.batching(c),
        "pre_ln": family.pre_ln(c),
        "layer_semantics": layer_semantics(family.pre_ln(c)),
        "frame_rate": _maybe(frame_rate, family, c, f),
        "max_input_s": _maybe(max_seconds, family, f),
        "weights": [w.name for w in weights],
        "trust_remote_code": trust_remote_code,
        "n_hidden": _n_hidden(cfg, family.encoder_only),
    }
    return EncoderSpec(
        model_id,
        rev or _fingerprint(folder, weights),
        int(fe_cfg["sampling_rate"]),
        family.model_type,
        load_hf,
        info,
    )


def _n_hidden(cfg: dict[str, Any], encoder_only: bool) -> int | None:
    """Hidden states the model gives (transformer layers + the embedding output), from config."""
    n = cfg.get("encoder_layers" if encoder_only else "num_hidden_layers")
    return int(n) + 1 if isinstance(n, int) else None


def _maybe(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except (AttributeError, KeyError, TypeError):
        return None


class _AttrDict(dict):
    """A config.json dict read like a config object (for the family predicates)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e


def _read_json(path: Path, model: str) -> dict[str, Any]:
    if not path.is_file():
        raise EncoderError(f"--model {model}: {path.name} is missing from {path.parent}")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise EncoderError(f"{path}: unreadable JSON ({e})") from e


def _weight_files(folder: Path, model: str, allow_unsafe: bool) -> list[Path]:
    safe = sorted(folder.glob("*.safetensors"))
    if safe:
        return safe
    unsafe = sorted(folder.glob("*.bin")) + sorted(folder.glob("*.pt"))
    if unsafe and allow_unsafe:
        return unsafe
    if unsafe:
        raise EncoderError(
            f"--model {model} has only PyTorch pickle weights ({unsafe[0].name}), which can run "
            "code when loaded; convert them to safetensors, or pass --allow-unsafe-weights to load "
            "them with torch's weights_only loader"
        )
    raise EncoderError(f"--model {model}: no weights (*.safetensors) in {folder}")


def _fingerprint(folder: Path, weights: Sequence[Path]) -> str:
    """A fast content fingerprint of a local model: configs, weight names/sizes, first and
    last MiB of each weight file."""
    h = hashlib.sha1()
    for name in ("config.json", "preprocessor_config.json"):
        p = folder / name
        h.update(name.encode() + b"\0" + (p.read_bytes() if p.is_file() else b""))
    for w in weights:
        size = w.stat().st_size
        h.update(f"{w.name}\0{size}\0".encode())
        with w.open("rb") as f:
            h.update(f.read(_MIB))
            if size > _MIB:
                f.seek(max(size - _MIB, _MIB))
                h.update(f.read(_MIB))
    return "local-" + h.hexdigest()[:16]


def _snapshot(repo_id: str, revision: str | None, trust: bool, unsafe: bool) -> tuple[Path, str]:
    """Download (or find in the local cache, when offline) a hub snapshot; (folder, commit)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    patterns = _PATTERNS + (["*.py"] if trust else [])

    def fetch(pats: list[str]) -> Path:
        kw: dict[str, Any] = dict(repo_id=repo_id, revision=revision, allow_patterns=pats)
        try:
            return Path(snapshot_download(**kw))
        except (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError) as e:
            raise EncoderError(f"--model {repo_id} --revision {revision or 'main'}: {e}") from e
        except Exception as online_error:  # offline, timeout, …: try the local cache
            try:
                return Path(snapshot_download(**kw, local_files_only=True))
            except Exception as e:
                raise EncoderError(
                    f"--model {repo_id}: cannot download it ({online_error}) and it is not in the "
                    f"local Hugging Face cache"
                ) from e

    folder = fetch(patterns)
    if unsafe and not any(folder.glob("*.safetensors")):
        folder = fetch(patterns + ["*.bin"])
    return folder, folder.name  # snapshots/<commit>


# --- loading --------------------------------------------------------------------------------


def load_hf(spec: EncoderSpec, **kwargs: Any) -> Encoder:
    """Load the weights (imports torch and transformers; see :mod:`.hf_model`)."""
    from .hf_model import load_hf as _load

    return _load(spec, **kwargs)
