"""Registers an entry when imported: what ``Registry(load=...)`` imports on first read."""

from tests.core.test_registry import LOADED

LOADED.register("loaded", 7)
