"""The package version, in a module of its own so the library can name it without importing the
root package (which imports ``extract`` and ``embeddings``)."""

__version__ = "0.1.0"
