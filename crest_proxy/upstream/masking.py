"""Upstream keys never reach a client: any 8+-character piece of the key a request carried is masked in
the answer's headers and error body.

Upstreams quote keys in their errors ("Incorrect API key provided: sk-abc***xyz"); a partial key still
narrows a brute force and tells a tenant which upstream account it shares (issue 14).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import httpx

KEY_FRAGMENT = 8  # characters of an upstream key that may not reach a client verbatim


@dataclass(frozen=True)
class UpstreamAnswer:
    """An upstream answer read whole, with the key masked: the three things callers read of an
    ``httpx.Response``, without building a second one (that cost more than the masking itself)."""

    status_code: int
    headers: httpx.Headers  # as the upstream sent them, framing (content-length …) included
    content: bytes  # decoded (content-encoding undone) and whole


def masked(response: httpx.Response, content: bytes) -> UpstreamAnswer:
    """``response`` read whole into ``content``, with the upstream key masked in headers and errors."""
    secret = sent_key(response.request)
    headers = response.headers
    # One search over all the values (a header value holds no NUL) before masking each: most answers
    # quote no piece of the key, and masking every header costs a search per piece per header.
    if _holds_fragment("\0".join(headers.values()), secret):
        pairs = headers.multi_items()
        headers = httpx.Headers([(name, mask_key_fragments(value, secret)) for name, value in pairs])
    if response.status_code >= 400 and secret:
        content = mask_key_fragments(content.decode("utf-8", "replace"), secret).encode("utf-8")
    return UpstreamAnswer(response.status_code, headers, content)


def sent_key(request: httpx.Request) -> str | None:
    """The upstream key a request carried (``Authorization: Bearer``), or None."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


def mask_key_fragments(text: str, secret: str | None) -> str:
    """``text`` with every run that holds an 8+-character piece of ``secret`` replaced by ``***``.

    Upstreams quote keys in their errors ("Incorrect API key provided: sk-abc***xyz"); a partial key still
    narrows a brute force and tells a tenant which upstream account it shares (issue 14).
    """
    if not _holds_fragment(text, secret):
        return text
    spans = sorted(span for piece in _fragments(secret or "") for span in _occurrences(text, piece))
    if not spans:
        return text
    out: list[str] = []
    done = 0
    for start, end in spans:  # merged as they go: overlapping pieces become one "***"
        if start > done:
            out.extend((text[done:start], "***"))
        elif not out:
            out.append("***")
        done = max(done, end)
    out.append(text[done:])
    return "".join(out)


def _holds_fragment(text: str, secret: str | None) -> bool:
    """True when ``text`` holds any 8-character piece of ``secret``."""
    if not secret or len(secret) < KEY_FRAGMENT or len(text) < KEY_FRAGMENT:
        return False
    return any(piece in text for piece in _fragments(secret))


@functools.lru_cache(maxsize=256)
def _fragments(secret: str) -> frozenset[str]:
    """Every 8-character piece of ``secret``: a tenant's key is the same on each of its requests."""
    return frozenset(secret[i : i + KEY_FRAGMENT] for i in range(len(secret) - KEY_FRAGMENT + 1))


def _occurrences(text: str, piece: str) -> list[tuple[int, int]]:
    """Every ``[start, end)`` where ``piece`` occurs in ``text`` (overlaps included); ``str.find`` is fast."""
    found, at = [], text.find(piece)
    while at >= 0:
        found.append((at, at + len(piece)))
        at = text.find(piece, at + 1)
    return found
