"""``make_policy``: a valid tenant ``Policy`` from the fields a test cares about."""

from __future__ import annotations

from typing import Any

from crest_proxy.policy.model import Policy

BASE: dict[str, Any] = {
    "tenant": "t1",
    "keys": ["sha256:" + "ab" * 32],
    "upstream": {"base_url": "https://api.example.com/v1"},
}


def make_policy(**fields: Any) -> Policy:
    """A policy for tenant ``t1`` (a hashed key, an example upstream) with ``fields`` set at the top level."""
    return Policy.model_validate({**BASE, **fields})
