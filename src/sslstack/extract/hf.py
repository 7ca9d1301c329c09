"""transformers audio encoders: resolve a hub id or local folder, then pool every layer exactly.

:func:`resolve_hf` reads only the config and feature-extractor files (and fingerprints a local
folder, or pins a hub snapshot's commit), so a rerun with everything cached never loads weights.
:class:`HFEncoder` runs one forward with all hidden states and pools each on the device over the
frames that hold audio; how clips may share a forward is the family's batching policy
(:mod:`sslstack.extract.families`), so padding never changes an embedding.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Sequence
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import EncoderError
from .base import Encoder, EncoderSpec, select_layers
from .families import (
    Family,
    chunk_spans,
    frame_rate,
    get_family,
    max_seconds,
    spectrogram_mask,
)
from .pooling import Stats, finalize, masked_stats

_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]
_MIB = 1 << 20
_PAD_WASTE = 1.25  # a pad group's padded samples stay within this factor of its real samples
_MAX_BUCKET = 64  # clips per forward in a bucket of identical lengths


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
    family = get_family(cfg.get("model_type"))
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
        "layer_semantics": _semantics(family.pre_ln(c)),
        "frame_rate": _maybe(frame_rate, family, c, f),
        "max_input_s": _maybe(max_seconds, family, f),
        "weights": [w.name for w in weights],
        "trust_remote_code": trust_remote_code,
    }
    return EncoderSpec(
        model_id,
        rev or _fingerprint(folder, weights),
        int(fe_cfg["sampling_rate"]),
        family.model_type,
        load_hf,
        info,
    )


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


def load_hf(
    spec: EncoderSpec,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    layers: Sequence[int] | None = None,
) -> HFEncoder:
    """Load the weights of a resolved spec (the ``EncoderSpec.load`` of transformers encoders)."""
    import transformers

    if dtype not in ("fp32", "bf16"):
        raise EncoderError(f"--dtype {dtype}: choose fp32 or bf16")
    folder, family = spec.info["path"], get_family(spec.family)
    safe = any(Path(folder).glob("*.safetensors"))
    kw: dict[str, Any] = dict(
        trust_remote_code=spec.info.get("trust_remote_code", False),
        use_safetensors=safe,
        dtype=torch.float32,
        output_loading_info=True,
    )
    try:
        with _quiet(transformers):
            model, loading = transformers.AutoModel.from_pretrained(folder, **kw)
            fe = transformers.AutoFeatureExtractor.from_pretrained(
                folder, trust_remote_code=kw["trust_remote_code"]
            )
    except (OSError, ValueError) as e:
        raise EncoderError(f"--model {spec.model}: transformers cannot load it: {e}") from e
    module = model.get_encoder() if family.encoder_only else model
    _check_loaded(spec.model, module, loading, "encoder." if family.encoder_only else "")
    return HFEncoder(module, fe, family, spec, device=device, dtype=dtype, layers=layers)


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    log = transformers.utils.logging
    level, bars = log.get_verbosity(), log.is_progress_bar_enabled()
    log.set_verbosity_error()
    log.disable_progress_bar()  # the runner draws its own progress
    try:
        yield
    finally:
        log.set_verbosity(level)
        if bars:
            log.enable_progress_bar()


def _check_loaded(
    model: str, module: torch.nn.Module, loading: dict[str, Any], prefix: str
) -> None:
    """Refuse a model whose weights did not load (transformers only warns)."""
    params = dict(module.named_parameters())
    missing = [
        k[len(prefix) :]
        for k in loading.get("missing_keys", ())
        if k.startswith(prefix) and "masked_spec_embed" not in k
    ]
    n_missing = sum(params[k].numel() for k in missing if k in params)
    if n_missing > 0.01 * sum(p.numel() for p in params.values()):
        raise EncoderError(
            f"--model {model}: {len(missing)} weight tensors were not in the checkpoint "
            f"({', '.join(missing[:4])}, ...); the encoder would be random"
        )


class HFEncoder(Encoder):
    """A transformers encoder that pools every kept hidden state over valid frames.

    Layer ``"i"`` is ``hidden_states[i]``: 0 is the input of the first transformer layer (the
    embedding output), i the output of layer i. Pre-LayerNorm families also give ``"final"``,
    the model's ``last_hidden_state`` after its final LayerNorm (only when the last layer runs).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        fe: Any,
        family: Family,
        spec: EncoderSpec,
        *,
        device: str = "cpu",
        dtype: str = "fp32",
        layers: Sequence[int] | None = None,
    ) -> None:
        self.family, self.fe = family, fe
        self.cfg: Any = getattr(model, "config")  # noqa: B009  (typed as Any, not Module)
        self.sample_rate = int(fe.sampling_rate)
        self.device, self.dtype = device, dtype
        blocks = _get_attr(model, family.layers_path)
        self.keep = select_layers(len(blocks) + 1, layers)
        top = max(self.keep)
        if top < len(blocks):  # layers above the highest requested are never computed
            _set_attr(model, family.layers_path, type(blocks)(list(blocks)[:top]))
        self.final = family.pre_ln(self.cfg) and top == len(blocks)
        # Whisper ties hidden_states[-1] to the normalized output; untie it like the others
        self.cfg.tie_last_hidden_states = False
        self.layer_names = [str(i) for i in self.keep] + (["final"] if self.final else [])
        if family.prepare is not None:
            family.prepare(model)
        self.model: Any = model.eval().to(device)
        self.batching = family.batching(self.cfg)
        self.min_samples = self._min_samples() if family.input == "waveform" else 400
        self.info = {
            **spec.info,
            "layers": self.layer_names,
            "n_layers": len(blocks),
            "frame_rate": frame_rate(family, self.cfg, fe),
            "max_input_s": max_seconds(family, fe),
            "layer_semantics": _semantics(self.final),
        }

    def _min_samples(self) -> int:
        """Shortest input giving one frame in every hidden state; shorter clips get zero-padded."""
        need = self.family.squeeze(self.cfg)
        lo, hi = 1, 1 << 16
        while lo < hi:
            mid = (lo + hi) // 2
            if int(self.model._get_feat_extract_output_lengths(torch.tensor(mid))) >= need:
                hi = mid
            else:
                lo = mid + 1
        return lo

    # --- encode ---------------------------------------------------------------------------

    def encode(
        self, waves: Sequence[np.ndarray], pools: Sequence[str]
    ) -> list[dict[str, np.ndarray]]:
        """Pool every kept hidden state of each wave over its valid frames.

        Returns:
            Per wave, ``{pool: (L, D) float32}`` with L = ``len(self.layer_names)``.
        """
        if not waves:
            return []
        pieces: list[tuple[int, np.ndarray]] = []
        for i, w in enumerate(waves):
            pieces += [(i, c) for c in self._chunks(np.asarray(w, dtype=np.float32).reshape(-1))]
        stats: dict[int, Stats] = {}
        for group in self._groups([len(p[1]) for p in pieces]):
            stats.update(zip(group, self._run([pieces[j][1] for j in group]), strict=True))
        per_item: list[list[Stats]] = [[] for _ in waves]
        for j, (i, _) in enumerate(pieces):  # chunks in clip order
            per_item[i].append(stats[j])
        return finalize(_cat([reduce(Stats.merge, chunks) for chunks in per_item]), pools)

    def _chunks(self, w: np.ndarray) -> list[np.ndarray]:
        """The model inputs of one clip: itself (zero-padded to the shortest input the model
        takes) or, for fixed-size models, consecutive full-size chunks."""
        if len(w) < self.min_samples:
            w = np.pad(w, (0, self.min_samples - len(w)))
        return [w[a:b] for a, b in chunk_spans(self.family, self.fe, len(w))]

    def _groups(self, lengths: list[int]) -> list[list[int]]:
        """Indices of pieces that may share one forward, per the family's batching policy."""
        order = sorted(range(len(lengths)), key=lambda j: lengths[j])
        if self.batching == "fixed":
            return [order]
        groups: list[list[int]] = []
        for j in order:
            if groups and self._joins(groups[-1], j, lengths):
                groups[-1].append(j)
            else:
                groups.append([j])
        return groups

    def _joins(self, group: list[int], j: int, lengths: list[int]) -> bool:
        if self.batching == "bucket":  # identical lengths only: no padding at all
            return lengths[group[0]] == lengths[j] and len(group) < _MAX_BUCKET
        real = sum(lengths[k] for k in group) + lengths[j]  # pad: bound the padding waste
        return lengths[j] * (len(group) + 1) <= _PAD_WASTE * real

    def _run(self, waves: list[np.ndarray]) -> list[Stats]:
        """Forward a group, halving it on CUDA out-of-memory."""
        try:
            return _split(self._forward(waves))
        except torch.cuda.OutOfMemoryError:
            if len(waves) == 1:
                raise
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
            half = len(waves) // 2
            return self._run(waves[:half]) + self._run(waves[half:])

    @torch.inference_mode()
    def _forward(self, waves: list[np.ndarray]) -> Stats:
        n = torch.tensor([len(w) for w in waves])
        if self.family.input == "waveform":
            x, mask = self._waveform_inputs(waves)
            kw = {"attention_mask": mask} if mask is not None else {}
        else:
            x, kw = self._spectrogram_inputs(waves), {}
        with self._autocast():
            out = self.model(x, output_hidden_states=True, **kw)
        hidden = [out.hidden_states[i] for i in self.keep]
        if self.final:
            hidden.append(out.last_hidden_state)
        n = n.to(self.device)
        if self.family.input == "waveform":
            masks = self._frame_masks(n, x.shape[1], hidden)
        else:
            masks = [
                spectrogram_mask(self.family, self.cfg, self.fe, n, h.shape[1]) for h in hidden
            ]
        return masked_stats(hidden, masks)

    def _waveform_inputs(self, waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor | None]:
        # normalize each clip alone (as the feature extractor would), then pad
        norm = [
            self.fe(w, sampling_rate=self.sample_rate, return_tensors="np")["input_values"][0]
            for w in waves
        ]
        lens = [len(v) for v in norm]
        x = torch.full((len(norm), max(lens)), float(self.fe.padding_value))
        for b, v in enumerate(norm):
            x[b, : len(v)] = torch.from_numpy(np.asarray(v, dtype=np.float32))
        mask = None
        if min(lens) != max(lens):
            mask = (torch.arange(max(lens))[None, :] < torch.tensor(lens)[:, None]).long()
            mask = self._to_device(mask)
        return self._to_device(x), mask

    def _spectrogram_inputs(self, waves: list[np.ndarray]) -> torch.Tensor:
        feats = self.fe(waves, sampling_rate=self.sample_rate, return_tensors="pt")
        key = "input_features" if "input_features" in feats else "input_values"
        return self._to_device(feats[key].float())

    def _frame_masks(
        self, n: torch.Tensor, padded: int, hidden: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Each hidden state's valid frames, following its own length (SEW: half rate inside)."""
        lengths = self.model._get_feat_extract_output_lengths
        frames, full = lengths(n).long(), int(lengths(torch.tensor(padded)))
        squeeze = self.family.squeeze(self.cfg)
        masks = []
        for h in hidden:
            if h.shape[1] == full:
                valid = frames
            elif h.shape[1] == full // squeeze:
                valid = torch.div(frames, squeeze, rounding_mode="floor")
            else:
                raise EncoderError(
                    f"{self.family.model_type}: a hidden state has {h.shape[1]} frames, expected "
                    f"{full} or {full // squeeze}"
                )
            masks.append(torch.arange(h.shape[1], device=n.device)[None, :] < valid[:, None])
        return masks

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        if self.device.startswith("cuda"):
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)


def _semantics(final: bool) -> str:
    s = "layer i = hidden_states[i] (0: embedding output, i: output of transformer layer i)"
    if final:
        s += (
            ", taken before the final LayerNorm; 'final' = last_hidden_state, after it "
            "(stored when the last layer runs)"
        )
    return s


def _split(s: Stats) -> list[Stats]:
    return [
        Stats(s.count[b : b + 1], s.mean[b : b + 1], s.m2[b : b + 1], s.max[b : b + 1])
        for b in range(s.mean.shape[0])
    ]


def _cat(items: list[Stats]) -> Stats:
    return Stats(
        *(torch.cat([getattr(s, f) for s in items]) for f in ("count", "mean", "m2", "max"))
    )


def _get_attr(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _set_attr(obj: Any, path: str, value: Any) -> None:
    *head, last = path.split(".")
    setattr(_get_attr(obj, ".".join(head)) if head else obj, last, value)
