"""Tenant policies. ``model`` is PURE (the policy model, evaluation, redaction); ``files`` (YAML and
secrets), ``reload`` (watching the directory) and ``validation`` (error wording) are its edge.

Importing this package imports no YAML parser, web framework, HTTP client or model runtime.
"""

from __future__ import annotations

from crest_proxy.policy.model import Policy, evaluate, redact, threshold_for

__all__ = ["Policy", "evaluate", "redact", "threshold_for"]
