"""The console's login: one admin key, compared in constant time, and a signed session cookie.

The cookie holds ``<expiry>.<random id>.<HMAC-SHA256>`` signed with a secret drawn at start-up, so a
session cannot be forged or extended, and every session ends when the process restarts. It is HttpOnly
(scripts cannot read it), ``SameSite=Strict`` (no other site's page can make the browser send it, which is
the CSRF defence: every state change is a POST, and the only one is logging in or out) and ``Secure``
when the console is reached over https.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

COOKIE = "crest_console"
SESSION_S = 8 * 3600


@dataclass(frozen=True)
class Sessions:
    """Checks the admin key and mints and verifies session tokens."""

    admin_key: str
    secret: bytes
    lifetime_s: int = SESSION_S

    @classmethod
    def for_key(cls, admin_key: str) -> Sessions:
        """Sessions for ``admin_key`` with a fresh random signing secret; an empty key is refused."""
        if not admin_key:
            raise ValueError("the console needs a non-empty admin key")
        return cls(admin_key, secrets.token_bytes(32))

    def key_matches(self, presented: str) -> bool:
        """Whether ``presented`` is the admin key (constant time over the key's digest)."""
        given = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        wanted = hashlib.sha256(self.admin_key.encode("utf-8", "surrogatepass")).digest()
        return hmac.compare_digest(given, wanted)

    def mint(self, now: float | None = None) -> str:
        """A new session token valid for ``lifetime_s``."""
        expiry = int((time.time() if now is None else now) + self.lifetime_s)
        body = f"{expiry}.{secrets.token_urlsafe(18)}"
        return f"{body}.{self._sign(body)}"

    def valid(self, token: str | None, now: float | None = None) -> bool:
        """Whether ``token`` was minted here and has not expired."""
        if not token or token.count(".") != 2:
            return False
        body, _, signature = token.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return False
        expiry = body.split(".", 1)[0]
        return expiry.isdigit() and int(expiry) > (time.time() if now is None else now)

    def _sign(self, body: str) -> str:
        return hmac.new(self.secret, body.encode("ascii", "replace"), hashlib.sha256).hexdigest()


class Throttle:
    """Failed sign-ins per client address: past ``limit`` within ``window_s``, sign-in is refused.

    Bounds guessing at the admin key (the address table is trimmed, so it cannot grow without bound).
    """

    def __init__(self, limit: int = 10, window_s: float = 300.0, max_clients: int = 10_000) -> None:
        self._limit, self._window_s, self._max_clients = limit, window_s, max_clients
        self._failures: dict[str, list[float]] = {}

    def blocked(self, client: str, now: float | None = None) -> bool:
        """Whether ``client`` has used up its failed attempts."""
        return len(self._recent(client, time.monotonic() if now is None else now)) >= self._limit

    def failed(self, client: str, now: float | None = None) -> None:
        """Count one failed sign-in of ``client``."""
        when = time.monotonic() if now is None else now
        if len(self._failures) >= self._max_clients:
            self._failures.clear()  # crude, but keeps memory bounded under a spray of addresses
        self._recent(client, when).append(when)

    def _recent(self, client: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(client, ()) if now - t < self._window_s]
        self._failures[client] = kept
        return kept


def cookie_header(token: str, *, secure: bool, max_age: int = SESSION_S) -> str:
    """The ``Set-Cookie`` value for a session (``max_age`` 0 clears it)."""
    parts = [f"{COOKIE}={token}", "Path=/console", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)
