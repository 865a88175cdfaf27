"""Moved to ``tests.support.servers`` (the test kit); this name keeps older imports working."""

from tests.support.servers import serve

__all__ = ["serve"]
