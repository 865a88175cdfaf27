"""What the model reads but the classifier cannot: token ids, images, audio and files.

The registry names their places (``tokens`` and ``media`` rows); the tenant's policy says whether they may
pass unscreened (``inbound.token_inputs``, default ``block``; ``inbound.media_inputs``, default ``allow``),
and every audit record of the call lists them either way, so nothing reaches the model unread in silence.
Shared by the proxy's OpenAI and Anthropic endpoints and the LiteLLM guardrail. Pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence

from crest_proxy.policy.model import InboundPolicy

_WHAT = {"token_inputs": "Prompts given as token ids", "media_inputs": "Images, audio and files"}


def notes(token_inputs: Sequence[str], media_inputs: Sequence[str]) -> dict[str, object]:
    """The audit record's ``extra`` entries naming the unread places (none when there are none)."""
    found = {"token_inputs": token_inputs, "media_inputs": media_inputs}
    return {key: list(places) for key, places in found.items() if places}


def refusal(policy: InboundPolicy, token_inputs: Sequence[str], media_inputs: Sequence[str]) -> str | None:
    """The client's message when the policy refuses what the request carries unread, else None."""
    settings = {"token_inputs": policy.token_inputs, "media_inputs": policy.media_inputs}
    for key, places in (("token_inputs", token_inputs), ("media_inputs", media_inputs)):
        if places and settings[key] == "block":
            return (
                f"{_WHAT[key]} cannot be screened and this tenant's policy refuses them "
                f"(inbound.{key}: block); send text instead ({', '.join(places)})."
            )
    return None
