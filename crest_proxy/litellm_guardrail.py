"""Compatibility shim: LiteLLM configs name ``crest_proxy.litellm_guardrail.CrestGuardrail``.

The guardrail lives in ``crest_proxy.integrations.litellm``; this module keeps existing configs working.
"""

from __future__ import annotations

from crest_proxy.integrations.litellm.guardrail import CrestGuardrail, GuardrailRuntime

__all__ = ["CrestGuardrail", "GuardrailRuntime"]
