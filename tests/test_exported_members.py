"""The public surface is small and explicit: every name in ``__all__`` resolves, and nothing heavy loads."""

from __future__ import annotations

import subprocess
import sys

import crest_proxy

PUBLIC = {
    "Action", "AuditRecord", "AuditSink", "Classifier", "ClassifierSettings", "CrestClassifier",
    "Direction", "Guard", "JsonlAuditSink", "MemoryAuditSink", "Policy", "PolicySet", "Score", "Screening",
    "ServerSettings", "Verdict", "__version__", "create_app", "evaluate", "load_classifier", "load_policies",
    "load_policy", "redact", "segment",
}  # fmt: skip


def test_all_is_pinned_and_every_name_resolves() -> None:
    assert set(crest_proxy.__all__) == PUBLIC
    for name in crest_proxy.__all__:
        assert getattr(crest_proxy, name) is not None


def test_importing_the_package_loads_no_model_or_server_libraries() -> None:
    code = (
        "import sys, crest_proxy; from crest_proxy import Policy, create_app; "
        "print(','.join(m for m in ('torch', 'transformers', 'optimum', 'onnxruntime', 'litellm') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
