"""``run.json`` as a typed record: :class:`RunRecord`, the one shape of a run's metadata.

Every reader and writer of runs goes through it; nothing reads ``run.json`` as a dict. On disk
it is one flat JSON object with a ``schema`` number:

- 1: no ``schema`` field (the first runs);
- 2: the typed record;
- 3: with its own checksum (``_sha256``) and the SHA-256 of every file of the run.

All three read the same way (:meth:`RunRecord.from_dict`); keys this version does not know are
kept in ``extra`` and written back unchanged. ``tests/core/data/old_runs`` holds one run of each.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import RunError
from ..workspace import CHECKSUM_KEY

RUN_KINDS = ("head", "stack", "import")
RUN_SCHEMA = 3
_REQUIRED = ("id", "number", "kind", "dataset", "task", "labels")


@dataclass(frozen=True)
class FeatureRef:
    """One block of features a run read: a store's layer (or layer range) under a pooling."""

    store: str
    model: str | None = None
    layer: str | None = None
    pool: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class FeatureChoiceRef:
    """A head run's feature choice as tuned: the store, the layer choice, the pooling choice."""

    store: str
    layer: str
    pool: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Fields only some kinds have: left out of run.json while unset, as before they were typed.
_OPTIONAL = frozenset(
    {"feature_choice", "trial_score", "study", "storage", "device", "max_rounds", "warnings",
     "models", "method", "weights", "table", "config", "recipe", "oof_rows", "oof_sha256",
     "files"}
)  # fmt: skip


@dataclass
class RunRecord:
    """What ``run.json`` holds, one shape for heads, stacks and imports.

    Every field a reader uses is an attribute; keys this version does not know (and the
    transient ``tag``) are in ``extra``.
    """

    id: str
    number: int
    kind: str
    dataset: str
    task: str
    labels: list[str]
    positive: str | None = None
    folds_digest: str | None = None
    metric: str | None = None
    score: float | None = None
    scores: dict[str, Any] = field(default_factory=dict)  # metric -> score (None: not defined)
    fold_scores: list[Any] = field(default_factory=list)
    head: str | None = None
    encoder: str | None = None
    features: list[FeatureRef] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    trials: int = 0
    time_s: float = 0.0
    base_runs: list[str] = field(default_factory=list)
    calibration: dict[str, Any] | None = None
    created: float = field(default_factory=time.time)
    schema: int = RUN_SCHEMA
    # a head run
    feature_choice: FeatureChoiceRef | None = None
    trial_score: float | None = None
    study: str | None = None
    storage: str | None = None
    device: str | None = None
    max_rounds: int | None = None
    warnings: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    # a stack run
    method: str | None = None
    weights: dict[str, float] | None = None
    table: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    # written when saved: the recipe digest and the checksums of the run's files
    recipe: str | None = None
    oof_rows: int | None = None
    oof_sha256: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in RUN_KINDS:
            raise RunError(
                f"run {self.id}: kind {self.kind!r} is not one of {', '.join(RUN_KINDS)}"
            )
        # a typed field handed over in ``extra`` is moved to its attribute (the same object:
        # a writer may fill a list, such as ``models``, after the record is made)
        for f in fields(self):
            if f.name in self.extra and f.name != "extra":
                setattr(self, f.name, self.extra.pop(f.name))
        if isinstance(self.feature_choice, dict):
            self.feature_choice = _ref(FeatureChoiceRef, self.feature_choice)

    def head_choice(self) -> FeatureChoiceRef:
        """A head run's feature choice.

        Raises:
            RunError: the record has none (not a head run, or an edited record).
        """
        if self.feature_choice is None:
            raise RunError(f"run {self.id}: the record names no feature choice; refit the head")
        return self.feature_choice

    @property
    def layer_choice(self) -> tuple[str | None, str]:
        """``(layer choice, pool choice)`` of a head run (None: it read no features)."""
        if self.feature_choice is not None:
            return self.feature_choice.layer, self.feature_choice.pool
        if not self.features:
            return None, ""
        layers = dict.fromkeys(str(f.layer) for f in self.features)
        pools = dict.fromkeys(str(f.pool) for f in self.features)
        return "+".join(layers), "+".join(pools)

    def to_dict(self) -> dict[str, Any]:
        """The flat JSON object of ``run.json`` (unset kind-specific fields left out)."""
        out: dict[str, Any] = dict(self.extra)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or (f.name in _OPTIONAL and value in (None, [], {})):
                continue
            if f.name == "features":
                value = [feat.to_dict() for feat in value]
            elif isinstance(value, FeatureChoiceRef):
                value = value.to_dict()
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        """Read a ``run.json`` object (any schema); unknown keys land in ``extra``.

        Raises:
            RunError: a required field is missing.
            TypeError, ValueError: a field of the wrong shape (a damaged record).
        """
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise RunError(f"run metadata lacks {', '.join(repr(k) for k in missing)}")
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        known.setdefault("schema", 1)
        known["number"] = int(known["number"])
        known["labels"] = [str(v) for v in known["labels"]]
        known["features"] = [_ref(FeatureRef, f) for f in known.get("features") or []]
        if known.get("feature_choice") is not None:
            known["feature_choice"] = _ref(FeatureChoiceRef, known["feature_choice"])
        for name in ("files", "scores", "params"):
            if not isinstance(known.get(name) or {}, dict):
                raise TypeError(f"{name!r} is not an object")
            known[name] = dict(known.get(name) or {})
        for name in ("models", "warnings", "base_runs", "fold_scores"):
            known[name] = list(known.get(name) or [])
        rest = {k: v for k, v in d.items() if k not in names and k != CHECKSUM_KEY}
        return cls(**known, extra=rest)


def _ref(cls: type[Any], d: Any) -> Any:
    """A :class:`FeatureRef` or :class:`FeatureChoiceRef` from its object in ``run.json``."""
    need = ("store",) if cls is FeatureRef else ("store", "layer", "pool")
    if not isinstance(d, dict) or any(k not in d for k in need):
        raise TypeError(f"{str(d)[:60]!r} is not an object with {', '.join(map(repr, need))}")
    if cls is FeatureChoiceRef:
        return cls(str(d["store"]), str(d["layer"]), str(d["pool"]))
    return cls(**{f.name: d.get(f.name) for f in fields(cls)})
