"""sslstack: audio classification without fine-tuning.

Frozen self-supervised encoders run once over a dataset; every layer's pooled embedding is cached
in HDF5; Optuna-tuned heads and a stacking ensemble run from the cache in seconds.
"""

__version__ = "0.1.0"

from .cache import export_embeddings, find_store, list_stores, load_embeddings  # noqa: E402
from .errors import SslstackError  # noqa: E402
from .extract import ExtractConfig, ExtractResult, extract  # noqa: E402

__all__ = [
    "ExtractConfig",
    "ExtractResult",
    "SslstackError",
    "__version__",
    "export_embeddings",
    "extract",
    "find_store",
    "list_stores",
    "load_embeddings",
]
