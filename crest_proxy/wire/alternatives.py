"""The texts that per-token logprobs spell, so they can be screened like any text the model wrote.

With ``logprobs`` a client gets every chosen token, and with ``top_logprobs`` the *k* most likely tokens at
every position: text the model nearly wrote. A screened answer whose alternatives go out unread is a
walk-around (red team: "Hi" answered, ``kaboom`` second at the first position). Their readings are:

- the chosen tokens joined (they should spell the answer's text; an upstream may send others);
- per rank *k*, the *k*-th alternative at every position, the chosen token where a position has fewer:
  an alternative word is read with the words around it, as in the answer.

A word split over two ranks at two positions (``ka`` second, ``boom`` third next to it) is in no reading:
the combinations grow as ranks to the power of positions (docs/red-team.md). Shapes: chat and Responses
(a list of ``{"token", "top_logprobs": [{"token"}]}``), legacy completions (``{"tokens": [...],
"top_logprobs": [{token: logprob}]}``). Pure functions of parsed JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, AnyStr


def chosen_tokens(logprobs: Any) -> list[str] | None:
    """The chosen tokens of a logprobs list (chat and Responses: objects with ``token``; legacy completions:
    the ``tokens`` strings); None when one of them is not a string."""
    if not isinstance(logprobs, list):
        return None
    words = [t.get("token") if isinstance(t, Mapping) else t for t in logprobs]
    strings = [w for w in words if isinstance(w, str)]
    return strings if len(strings) == len(words) else None


def readings(logprobs: Any) -> list[str]:
    """The distinct texts ``logprobs`` spells (chosen tokens, then one per rank), empty ones left out.

    Tokens carry their UTF-8 ``bytes`` too, which a client may decode instead: where those spell something
    else than the token strings, their readings are added (decoded whole: one character's bytes may be
    split across tokens).
    """
    chosen, columns = _positions(logprobs)
    texts = _ranks(chosen, columns, "")
    raw = _raw_positions(logprobs, chosen, columns)
    if raw is not None:
        texts += [text.decode("utf-8", "replace") for text in _ranks(*raw, b"")]
    return [text for text in dict.fromkeys(texts) if text]


def _ranks(chosen: list[AnyStr], columns: list[list[AnyStr]], empty: AnyStr) -> list[AnyStr]:
    """The chosen tokens joined, then per rank the rank's alternative at every position (else the chosen)."""
    texts = [empty.join(chosen)]
    for rank in range(max((len(column) for column in columns), default=0)):
        picks = (c[rank] if rank < len(c) else w for w, c in zip(chosen, columns, strict=True))
        texts.append(empty.join(picks))
    return texts


def _raw_positions(
    logprobs: Any, chosen: list[str], columns: list[list[str]]
) -> tuple[list[bytes], list[list[bytes]]] | None:
    """``_positions`` in bytes, each token's ``bytes`` where given; None when none disagrees with its
    token (the usual case: nothing more to read)."""
    if not isinstance(logprobs, list):
        return None
    entries = [e if isinstance(e, Mapping) else {} for e in logprobs]
    raw_chosen = [_bytes(e.get("bytes"), token) for e, token in zip(entries, chosen, strict=False)]
    raw_columns = [
        [_bytes(a.get("bytes"), t) for a, t in zip(_with_tokens(e.get("top_logprobs")), column, strict=True)]
        for e, column in zip(entries, columns, strict=False)
    ]
    same = [t.encode("utf-8", "surrogatepass") for t in chosen[: len(raw_chosen)]] == raw_chosen and all(
        [t.encode("utf-8", "surrogatepass") for t in column] == raw
        for column, raw in zip(columns, raw_columns, strict=False)
    )
    return None if same else (raw_chosen, raw_columns)


def _bytes(value: Any, token: str) -> bytes:
    """A token's ``bytes`` (a list of byte values), or its string's UTF-8 where they are not given."""
    if isinstance(value, list) and all(type(b) is int and 0 <= b < 256 for b in value):
        return bytes(value)
    return token.encode("utf-8", "surrogatepass")


def _positions(logprobs: Any) -> tuple[list[str], list[list[str]]]:
    """Per position: the chosen token ("" when unreadable) and the alternative tokens, most likely first."""
    if isinstance(logprobs, Mapping):  # legacy completions: parallel lists
        tokens = logprobs.get("tokens")
        tops = logprobs.get("top_logprobs")
        chosen = [_string(t) for t in tokens] if isinstance(tokens, list) else []
        columns = [
            [t for t in top if isinstance(t, str)] if isinstance(top, Mapping) else []
            for top in (tops if isinstance(tops, list) else [])
        ]
    elif isinstance(logprobs, list):
        entries = [e if isinstance(e, Mapping) else {} for e in logprobs]
        chosen = [_string(e.get("token")) for e in entries]
        columns = [_tokens(e.get("top_logprobs")) for e in entries]
    else:
        return [], []
    width = max(len(chosen), len(columns))  # a ragged answer: the shorter list is padded, nothing dropped
    return chosen + [""] * (width - len(chosen)), columns + [[]] * (width - len(columns))


def _tokens(alternatives: Any) -> list[str]:
    return [a["token"] for a in _with_tokens(alternatives)]


def _with_tokens(alternatives: Any) -> list[Mapping[str, Any]]:
    """The alternatives that have a token string (the others are not read)."""
    if not isinstance(alternatives, list):
        return []
    return [a for a in alternatives if isinstance(a, Mapping) and isinstance(a.get("token"), str)]


def _string(token: Any) -> str:
    return token if isinstance(token, str) else ""
