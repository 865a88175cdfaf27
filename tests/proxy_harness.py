"""Moved to ``tests.support.harness`` (the test kit); this name keeps older imports working."""

from tests.support.harness import (
    EMAIL_RULE,
    TENANTS,
    UPSTREAM_KEY,
    Harness,
    key_of,
    running_proxy,
    write_policies,
)

__all__ = ["EMAIL_RULE", "TENANTS", "UPSTREAM_KEY", "Harness", "key_of", "running_proxy", "write_policies"]
