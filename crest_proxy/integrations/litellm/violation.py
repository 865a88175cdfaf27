"""The exception a blocked prompt raises inside LiteLLM's proxy: the same 400 body as ``crest-proxy serve``.

LiteLLM's proxy writes ``code`` as the HTTP status (``"400"``) for every exception a guardrail raises, so
its clients could not tell a policy block from any other bad request. Clients that go through LiteLLM's
own SDK or Router map an OpenAI-style 400 to ``ContentPolicyViolationError`` (and fire
``content_policy_fallbacks``) when its type is ``invalid_request_error`` and its code
``content_policy_violation`` — what ``serve`` answers. ``PolicyViolation`` is a ``ProxyException`` (the
proxy answers it as it is, with this body) and a FastAPI ``HTTPException`` with status 400 (LiteLLM's
``is_guardrail_intervention`` counts it as a guardrail block, not a guardrail failure).
"""

from __future__ import annotations

import functools
from typing import Any


def policy_violation(message: str, code: str, detection: dict[str, Any]) -> Exception:
    """The 400 for a blocked prompt: ``{"error": {message, type, param, code, provider_specific_fields}}``."""
    return _violation_class()(message, code, detection)


@functools.cache
def _violation_class() -> type[Exception]:
    """Built on first use: importing LiteLLM's proxy types pulls in FastAPI."""
    from fastapi import HTTPException
    from litellm.proxy._types import ProxyException

    class PolicyViolation(ProxyException, HTTPException):  # type: ignore[misc]  # ProxyException first: its handler answers
        """A prompt blocked by the tenant's policy."""

        def __init__(self, message: str, code: str, detection: dict[str, Any]) -> None:
            # Neither base's __init__ is cooperative with the other, so each one's attributes are set here.
            Exception.__init__(self, message)
            fields = {"code": code, "crest": detection}
            self.message, self.type, self.param = message, "invalid_request_error", None
            self.code, self.openai_code, self.provider_specific_fields = "400", code, fields
            self.status_code, self.headers = 400, {}
            self.detail = {"error": message, "code": code, "crest": detection}  # type: ignore[assignment]

        def to_dict(self) -> dict[str, Any]:
            """OpenAI's error object, with the policy's code where LiteLLM would write the status."""
            body: dict[str, Any] = super().to_dict()
            return {**body, "code": self.openai_code}

        def __str__(self) -> str:
            return self.message

    return PolicyViolation
