"""Moved to ``tests.support.upstream`` (the test kit); this name keeps older imports working."""

from tests.support.upstream import FakeUpstream, Received

__all__ = ["FakeUpstream", "Received"]
