"""The embedding cache: HDF5 stores keyed by every setting that changes values."""

from .api import (
    export_embeddings,
    find_store,
    list_stores,
    load_embeddings,
    normalize_model,
    remove_store,
)
from .features import FeatureChoice, FeatureReader
from .key import SCHEMA_VERSION, StoreKey
from .store import ItemResult, Store
from .writer import StoreWriter

__all__ = [
    "SCHEMA_VERSION",
    "FeatureChoice",
    "FeatureReader",
    "ItemResult",
    "Store",
    "StoreKey",
    "StoreWriter",
    "export_embeddings",
    "find_store",
    "list_stores",
    "load_embeddings",
    "normalize_model",
    "remove_store",
]
