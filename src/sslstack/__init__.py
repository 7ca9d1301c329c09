"""sslstack: audio classification without fine-tuning.

Frozen self-supervised encoders run once over a dataset; every layer's pooled embedding is cached
in HDF5; Optuna-tuned heads and a stacking ensemble run from the cache in seconds.
"""

from typing import TYPE_CHECKING, Any

from ._lazy import lazy_exports
from ._version import __version__

if TYPE_CHECKING:
    from .embeddings import export_embeddings, find_store, list_stores, load_embeddings
    from .errors import SslstackError
    from .extract import ExtractConfig, ExtractResult, extract

# Names are imported on first use, so `sslstack --help` and `--version` do not pay for
# scikit-learn, Optuna, pandas or torch (see docs/benchmarks.md, "CLI start-up").
_LAZY = {
    "export_embeddings": ".embeddings",
    "find_store": ".embeddings",
    "list_stores": ".embeddings",
    "load_embeddings": ".embeddings",
    "SslstackError": ".errors",
    "ExtractConfig": ".extract",
    "ExtractResult": ".extract",
}

# The subpackage first, so that the name ``extract`` below stays the function: importing a
# subpackage binds its name in the parent, and ``sslstack.extract`` is both.
from . import extract as _extract_package  # noqa: E402, F401

if not TYPE_CHECKING:

    def extract(data: Any, model: str, **kwargs: Any) -> Any:
        """Extract every layer's pooled embeddings of ``model`` for the items of ``data``
        (:func:`sslstack.extract.runner.extract`, imported on first call)."""
        from .extract.runner import extract as run

        return run(data, model, **kwargs)


__getattr__ = lazy_exports(__name__, globals(), _LAZY)


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
