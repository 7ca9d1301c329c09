"""Which embeddings a head sees: a layer choice and a pooling choice, read from a store by id.

A layer choice is written as text so it can be an Optuna category:

- ``"12"``: one layer;
- ``"6..12"``: the mean of layers 6 to 12 (a range);
- ``"4+8+12"``: the concatenation of a few layers.

A pooling choice is one pooling (``"mean"``) or a concatenation (``"mean+std"``). The search
space is built from what the store holds, restricted by ``--layer`` and ``--pool``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..cache import Store
from ..cache.features import FeatureChoice, FeatureReader, read_features
from ..cache.key import is_window_pool
from ..errors import ConfigError

__all__ = [
    "FeatureChoice",
    "FeatureReader",
    "default_choice",
    "layer_choices",
    "pool_choices",
    "read_features",
]

MAX_CONCAT = 3


def _numeric(names: Sequence[str]) -> list[int]:
    return sorted(int(n) for n in names if n.lstrip("-").isdigit())


def layer_choices(store: Store, layers: Sequence[int] | None = None) -> list[str]:
    """Candidate layer choices: each layer, the mean over the range, and a few concatenations.

    Raises:
        ConfigError: requested layers that the store does not hold.
    """
    names = store.layer_names
    if layers is not None:
        missing = [la for la in layers if str(la) not in names]
        if missing:
            raise ConfigError(
                f"--layers {','.join(map(str, layers))}: the store {store.path.name} has no "
                f"layer(s) {', '.join(map(str, missing))} (it holds {', '.join(names)})"
            )
        avail = sorted(set(layers))
        out = [str(la) for la in avail]
    else:
        avail = _numeric(names)
        out = list(names)
    if len(avail) >= 3:
        out.append(f"{avail[0]}..{avail[-1]}")
        if avail == list(range(avail[0], avail[-1] + 1)):
            mid = avail[len(avail) // 2]
            out.append(f"{mid}..{avail[-1]}")
        picks = [avail[round(i * (len(avail) - 1) / (MAX_CONCAT - 1))] for i in range(MAX_CONCAT)]
        out.append("+".join(str(p) for p in dict.fromkeys(picks)))
    if len(avail) == 2:
        out.append(f"{avail[0]}+{avail[1]}")
    return list(dict.fromkeys(out))


def pool_choices(store: Store, pools: Sequence[str] | None = None) -> list[str]:
    """Candidate pooling choices: each pooling and (several) their concatenation. A requested
    concatenation (``mean+std``) is a choice of its own.

    Raises:
        ConfigError: requested poolings that the store does not hold.
    """
    have = store.clip_pools()
    if pools is not None:
        missing = [p for p in pools if any(part not in have for part in p.split("+"))]
        if missing:
            raise ConfigError(
                f"--pool {','.join(pools)}: the store {store.path.name} has no pooling "
                f"{', '.join(missing)} (it holds {', '.join(have)})"
            )
        have = list(dict.fromkeys(pools))
    out = list(have)
    base = [p for p in have if not is_window_pool(p) and "+" not in p]
    if len(base) > 1:
        out.append("+".join(base))
    return out


def default_choice(layers: Sequence[str], pools: Sequence[str]) -> FeatureChoice:
    """What an untuned head uses: the last single layer, the first pooling."""
    singles = [la for la in layers if ".." not in la and "+" not in la]
    numeric = [la for la in singles if la.lstrip("-").isdigit()]
    layer = (numeric or singles or list(layers))[-1]
    return FeatureChoice(layer, pools[0])
