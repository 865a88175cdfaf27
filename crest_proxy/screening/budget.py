"""The screening budget: how many tokens one request (or answer) may send to the classifier (issue 14).

A 300 KB prompt kept the classifier busy for tens of seconds; under ``on_error: allow`` a tenant could pad
its own prompt past the timeout to skip screening. The budget refuses such texts before any model call,
whatever ``on_error`` says: ``on_error`` is for classifier faults, never for a request's own size.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from crest_proxy.classifier.protocol import TokenCounter
from crest_proxy.types import Direction

CODE = "screening_budget_exceeded"
# Tokenizing costs ~1 ms per 10,000 characters (Rust); more than this goes to a thread (it drops the GIL).
_INLINE_CHARS = 20_000
# No vocabulary piece is longer than this (XLM-R's longest is 16 characters): a text with more than
# limit x this many characters is over budget without being tokenized.
_MAX_PIECE_CHARS = 64


def token_counter(classifier: object) -> TokenCounter | None:
    """``classifier`` where it can count tokens, else None: decided once, when the guard is built.

    ``isinstance`` against a runtime-checkable Protocol walks its members on every call (tens of
    microseconds in 3.11); a classifier does not gain or lose ``count_tokens`` while it serves.
    """
    return classifier if isinstance(classifier, TokenCounter) else None


async def count_tokens(counter: TokenCounter | None, texts: Sequence[str], limit: int) -> int:
    """Tokens in ``texts`` (exact where ``counter`` is given; else characters, an over-estimate)."""
    chars = sum(len(t) for t in texts)
    if counter is None:
        return chars  # a remote or fake classifier: a token holds at least one character
    if chars > limit * _MAX_PIECE_CHARS:
        return -(-chars // _MAX_PIECE_CHARS)  # a lower bound, already over the limit: skip the tokenizer
    if chars <= _INLINE_CHARS:
        return counter.count_tokens(texts)
    return await asyncio.to_thread(counter.count_tokens, texts)


def refusal_message(direction: Direction, tokens: int, limit: int) -> str:
    """What the client is told: the size, the limit, and how to get under it (or raise it)."""
    raise_it = (
        "or ask the operator to raise max_screen_tokens in this tenant's policy "
        "(server default: --max-screen-tokens)"
    )
    if direction is Direction.INBOUND:
        return (
            f"This request holds about {tokens} tokens of text to screen, over this tenant's screening "
            f"budget of {limit} tokens ({CODE}). Send less text per request, {raise_it}."
        )
    return (
        f"The upstream answer holds about {tokens} tokens, over this tenant's screening budget of {limit} "
        f"tokens ({CODE}); it was not forwarded unscreened. Ask for a shorter answer (max_tokens) or "
        f"fewer top_logprobs (each rank is read as a text), stream it (streamed answers are screened "
        f"window by window), {raise_it}."
    )
