"""Upstream keys never reach a client: any 8+-character piece of the key a request carried is masked in
the answer's headers and error body.

Upstreams quote keys in their errors ("Incorrect API key provided: sk-abc***xyz"); a partial key still
narrows a brute force and tells a tenant which upstream account it shares (issue 14).
"""

from __future__ import annotations

import httpx

KEY_FRAGMENT = 8  # characters of an upstream key that may not reach a client verbatim
# Headers that describe the bytes on the wire, not the decoded body a read copy holds.
_BODY_FRAMING = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def masked(response: httpx.Response, content: bytes) -> httpx.Response:
    """A read copy of ``response`` holding ``content``, with the upstream key masked in headers and errors."""
    secret = sent_key(response.request)
    headers = [
        (name, mask_key_fragments(value, secret))
        for name, value in response.headers.multi_items()
        if name.lower() not in _BODY_FRAMING  # ``content`` is already decoded and whole
    ]
    if response.status_code >= 400 and secret:
        content = mask_key_fragments(content.decode("utf-8", "replace"), secret).encode("utf-8")
    return httpx.Response(response.status_code, headers=headers, content=content, request=response.request)


def sent_key(request: httpx.Request) -> str | None:
    """The upstream key a request carried (``Authorization: Bearer``), or None."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


def mask_key_fragments(text: str, secret: str | None) -> str:
    """``text`` with every run that holds an 8+-character piece of ``secret`` replaced by ``***``.

    Upstreams quote keys in their errors ("Incorrect API key provided: sk-abc***xyz"); a partial key still
    narrows a brute force and tells a tenant which upstream account it shares (issue 14).
    """
    if not secret or len(secret) < KEY_FRAGMENT or len(text) < KEY_FRAGMENT:
        return text
    pieces = {secret[i : i + KEY_FRAGMENT] for i in range(len(secret) - KEY_FRAGMENT + 1)}
    spans = sorted(span for piece in pieces for span in _occurrences(text, piece))
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


def _occurrences(text: str, piece: str) -> list[tuple[int, int]]:
    """Every ``[start, end)`` where ``piece`` occurs in ``text`` (overlaps included); ``str.find`` is fast."""
    found, at = [], text.find(piece)
    while at >= 0:
        found.append((at, at + len(piece)))
        at = text.find(piece, at + 1)
    return found
