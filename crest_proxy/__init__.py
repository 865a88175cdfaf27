"""crest-proxy: an OpenAI-compatible guardrail gateway screening traffic with the CREST classifier.

Public names resolve lazily (PEP 562) so that ``import crest_proxy`` and the CLI stay cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "create_app": "crest_proxy.server.app",
    "ServerSettings": "crest_proxy.settings",
    "PolicySet": "crest_proxy.policy.files",
    "load_policies": "crest_proxy.policy.files",
    "load_policy": "crest_proxy.policy.files",
    "Policy": "crest_proxy.policy.model",
    "evaluate": "crest_proxy.policy.model",
    "redact": "crest_proxy.policy.model",
    "Guard": "crest_proxy.screening.guard",
    "Screening": "crest_proxy.screening.guard",
    "Classifier": "crest_proxy.classifier",
    "ClassifierSettings": "crest_proxy.classifier",
    "CrestClassifier": "crest_proxy.classifier",
    "load_classifier": "crest_proxy.classifier",
    "AuditSink": "crest_proxy.audit.sink",
    "JsonlAuditSink": "crest_proxy.audit.sink",
    "MemoryAuditSink": "crest_proxy.audit.sink",
    "Action": "crest_proxy.types",
    "Direction": "crest_proxy.types",
    "Score": "crest_proxy.types",
    "Verdict": "crest_proxy.types",
    "AuditRecord": "crest_proxy.types",
    "segment": "crest_proxy.screening.segment",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'crest_proxy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return __all__
