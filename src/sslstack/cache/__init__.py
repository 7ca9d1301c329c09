"""The embedding store: HDF5 folders keyed by every setting that changes values, whose rows
belong to content hashes. Nothing here knows datasets, runs or encoders (those helpers are
:mod:`sslstack.embeddings`)."""

from .committer import StoreWriter, commit
from .features import FeatureChoice, FeatureReader
from .item import ItemResult
from .key import SCHEMA_VERSION, StoreKey
from .store import Store
from .writer import PartWriter

__all__ = [
    "SCHEMA_VERSION",
    "FeatureChoice",
    "FeatureReader",
    "ItemResult",
    "PartWriter",
    "Store",
    "StoreKey",
    "StoreWriter",
    "commit",
]
