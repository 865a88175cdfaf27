"""PURE: compile policy regex rules so that matching runs in time linear in the text.

Issue 14: a backtracking rule such as ``(a+)+$`` held the event loop 9.8 s on a 26-character prompt, and
a shipped e-mail rule was quadratic (20,000 letters: 3.9 s). Rules therefore run on RE2 (``google-re2``),
whose automaton never backtracks. RE2 lacks lookaround and backreferences; a pattern that needs them runs
on Python's ``re`` only if its backtracking is bounded by a small constant per start position
(``backtracking_bound``), and is otherwise refused at load time with the fix.

Python's ``\\w``, ``\\d`` and ``\\s`` are Unicode-aware while RE2's are ASCII; they are rewritten to the
Unicode classes (``\\p{L}`` …) so a rule matches the same text on either engine. ``\\b`` stays RE2's (ASCII).
"""

from __future__ import annotations

import functools
import re
import re._constants as sre  # the parser's opcode names; stable across 3.11+
import re._parser as sre_parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

# Most backtracking paths a Python-``re`` rule may try from one start position (a bounded constant keeps
# matching linear in the text; Python's ``re`` holds the GIL, so the constant must stay small). 256 admits
# lookaround around fixed or short bounded repeats ({1,64}), refuses nested repeats.
MAX_PATHS = 256
_UNBOUNDED: int = int(sre.MAXREPEAT)
# Python's Unicode classes in RE2 syntax (inside a character class, without the brackets).
_UNICODE = {"w": r"\p{L}\p{N}\p{Mn}\p{Pc}", "d": r"\p{Nd}", "s": r"\s\p{Z}\x{1c}-\x{1f}\x{85}"}


class RuleError(ValueError):
    """A rule pattern that is invalid or could backtrack catastrophically; the message says the fix."""


@dataclass(frozen=True)
class RuleMatcher:
    """A compiled rule: which engine runs it, the compiled pattern, and what every match contains."""

    engine: Literal["re2", "re"]
    compiled: Any
    # Substrings every match contains (``required_literals``): a text without one of them is not searched.
    required: tuple[str, ...] = ()

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        """``(start, end)`` of every non-overlapping match, in order (character offsets)."""
        # RE2 compiles bounded repeats of Unicode classes into large automata (the e-mail rule as shipped
        # before: 83 MiB): searching them on every text costs memory traffic that slowed the whole request.
        # A text without the rule's "@" cannot match it, and ``in`` never touches the automaton.
        if any(literal not in text for literal in self.required):
            return
        for match in self.compiled.finditer(text):
            yield match.start(), match.end()


@functools.lru_cache(maxsize=256)
def compile_rule(pattern: str, *, ignore_case: bool = False) -> RuleMatcher:
    """RE2 where the pattern allows it; else Python ``re`` if its backtracking is bounded; else RuleError.

    Cached: a bounded repeat of a Unicode class compiles into a large RE2 program (the e-mail rule as
    shipped before: 83 MiB, benchmarks/rules.py), so every tenant, every reload and the load-time
    validation share one compilation of the same pattern instead of holding their own. Matching a
    compiled RE2 or ``re`` pattern is thread-safe.
    """
    try:
        parsed = sre_parse.parse(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise RuleError(f"invalid regular expression ({exc}); fix the pattern") from None
    required = required_literals(parsed)
    compiled = _re2(pattern, ignore_case)
    if compiled is not None:
        return RuleMatcher("re2", compiled, required)
    paths = backtracking_bound(parsed)
    if paths > MAX_PATHS:
        raise RuleError(
            "RE2 cannot run this pattern (lookaround, a backreference, or \\W \\D \\S inside [...]) and on "
            "Python re it can backtrack catastrophically "
            f"(up to {_shown(paths)} paths per position; at most {MAX_PATHS}); "
            "drop the lookaround/backreference so RE2 runs it in linear time, or bound every repeat "
            "(e.g. {1,64} instead of + or *) and avoid nesting repeats"
        )
    return RuleMatcher("re", re.compile(pattern, re.IGNORECASE if ignore_case else 0), required)


def required_literals(parsed: Any) -> tuple[str, ...]:
    """Runs of literal characters that every match of the parsed pattern contains (none when unsure).

    Only what a match cannot avoid counts: literals of the pattern's own sequence, of plain groups, and
    of repeats taken at least once; alternatives, optional parts and anything case-insensitive do not.
    """
    if parsed.state.flags & re.IGNORECASE:
        return ()
    return tuple(run for run in _literal_runs(parsed) if run)


def _literal_runs(items: Any) -> Iterator[str]:
    run: list[str] = []
    for op, arg in items:
        if op is sre.LITERAL:
            run.append(chr(arg))
            continue
        yield "".join(run)
        run = []
        if op is sre.SUBPATTERN and not arg[1] & re.IGNORECASE:  # (group, add flags, del flags, items)
            yield from _literal_runs(arg[3])
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT) and arg[0] >= 1:
            yield from _literal_runs(arg[2])
    yield "".join(run)


def _re2(pattern: str, ignore_case: bool) -> Any | None:
    """The RE2 compilation of ``pattern`` (Unicode classes as in Python), or None where RE2 cannot run it."""
    import re2  # google-re2

    translated = unicode_classes(pattern)
    if translated is None:
        return None
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.log_errors = False  # an unsupported feature is expected here; the fallback handles it
    # RE2 falls back to a ~1,000x slower (still linear) matcher when its DFA outgrows max_mem: measured,
    # a bounded e-mail rule (repeats of Unicode classes, as shipped before) took 2 s per 200 KB at 64 MiB
    # and 1 ms at 256 MiB. The DFA cache grows on demand; this is a ceiling, not an allocation.
    options.max_mem = 256 << 20
    try:
        return re2.compile(translated, options)
    except re2.error:
        return None


def unicode_classes(pattern: str) -> str | None:
    """``pattern`` with ``\\w \\d \\s`` (and negations) as Unicode classes; None where RE2 cannot say it."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            piece = _escape(pattern[i + 1], in_class)
            if piece is None:
                return None
            out.append(piece)
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            out.append(char)
            # A ']' right after '[' or '[^' is a literal member, not the end of the class.
            for lead in ("^", "]"):
                if pattern.startswith(lead, i + 1):
                    out.append(lead)
                    i += 1
        elif char == "]" and in_class:
            in_class = False
            out.append(char)
        else:
            out.append(char)
        i += 1
    return "".join(out)


def _escape(letter: str, in_class: bool) -> str | None:
    lower = letter.lower()
    if lower not in _UNICODE:
        return "\\" + letter
    members = _UNICODE[lower]
    if letter == lower:
        return members if in_class else f"[{members}]"
    return None if in_class else f"[^{members}]"  # a negated class inside a class: RE2 cannot say it


def backtracking_bound(parsed: Any) -> int:
    """An upper bound on the paths Python's matcher may try from one start position (capped)."""
    total = 1
    for op, arg in parsed:
        total = _cap(total * _node_paths(op, arg))
    return total


def _node_paths(op: Any, arg: Any) -> int:
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", None)):
        low, high, body = arg
        if high == _UNBOUNDED:
            # Even `a+` alone tries every length from every start position: quadratic over a text.
            return _UNBOUNDED
        return _repeat_paths(backtracking_bound(body), low, high)
    if op == sre.SUBPATTERN:
        return backtracking_bound(arg[-1])
    if op == sre.BRANCH:
        return _cap(sum(backtracking_bound(branch) for branch in arg[1]))
    if op in (sre.ASSERT, sre.ASSERT_NOT):
        return backtracking_bound(arg[1])
    if op == getattr(sre, "ATOMIC_GROUP", None):
        return backtracking_bound(arg)
    if op == sre.GROUPREF_EXISTS:
        return _cap(backtracking_bound(arg[1]) + (backtracking_bound(arg[2]) if arg[2] else 1))
    return 1


def _repeat_paths(inner: int, low: int, high: int) -> int:
    """Paths of ``body{low,high}`` when ``body`` has ``inner`` paths: the sum of inner**k (capped)."""
    if inner == 1:
        return high - low + 1
    total = 0
    for k in range(low, high + 1):
        total = _cap(total + _cap(inner**k) if k < 64 else _UNBOUNDED)
        if total >= _UNBOUNDED:
            break
    return total


def _cap(value: int) -> int:
    return min(int(value), _UNBOUNDED)


def _shown(paths: int) -> str:
    return "unbounded" if paths >= _UNBOUNDED else str(paths)
