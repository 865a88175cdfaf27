"""Bounded hold-back for streamed text: nothing is released before it was screened.

Transport-agnostic: the SSE relay (``crest_proxy.streaming``) and the LiteLLM streaming hook both feed
deltas in per *lane* (a choice's content, one tool call's arguments, one Responses output part …) and
send on only what comes back. Each lane holds text until a sentence ends (``segment.complete_prefix``) or
``window_chars`` pile up, then screens that window together with up to ``context_chars`` of the text it
already released (the overlap NeMo-Guardrails' output rails use), and releases it: unchanged, redacted
(the flagged sentences become the placeholder), or not at all (block: the lane is closed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from crest_proxy.policy.model import NO_SCORE, Policy, redact, threshold_for
from crest_proxy.screening.guard import Guard, Screening, TextDecision
from crest_proxy.screening.segment import WORD_REACH, complete_prefix, segment, word_start
from crest_proxy.types import Action, Direction, Span, Verdict


@dataclass(frozen=True)
class Release:
    """What one ``push`` or ``finish`` lets through for one lane."""

    key: Hashable
    text: str
    blocked: bool = False
    redacted: bool = False
    error: str | None = None  # the classifier error, when the policy failed closed on it

    @property
    def failed_closed(self) -> bool:
        """True when the lane was blocked because the classifier failed (not because of the content)."""
        return self.blocked and self.error is not None


@dataclass(frozen=True)
class HoldbackStats:
    """How much the screener held back and how long screening took, over all lanes."""

    windows: int
    max_holdback_chars: int
    max_holdback_ms: float
    screening_ms: float


@dataclass
class _Lane:
    """The mutable state of one lane (private to one ``StreamScreener``)."""

    pending: str = ""
    released: list[str] = field(default_factory=list)
    context: str = ""  # text another lane sent just before this one (``follow``)
    screened: list[str] = field(default_factory=list)
    arrivals: list[tuple[int, float]] = field(default_factory=list)  # (chars received so far, when)
    received: int = 0
    screened_chars: int = 0  # sum of len(screened), kept so each window costs O(1), not O(windows)
    closed: bool = False
    blocked: bool = False
    failed_closed: bool = False
    action: Action = Action.ALLOW
    score: float = NO_SCORE
    rules: set[str] = field(default_factory=set)
    windows: int = 0
    error: str | None = None

    def received_at(self, offset: int) -> float:
        """When the character at ``offset`` (counted from the lane's start) arrived."""
        return next((t for end, t in self.arrivals if end > offset), time.monotonic())


class StreamScreener:
    """Holds streamed text per lane until it is screened; one instance per streamed response."""

    def __init__(
        self,
        guard: Guard,
        policy: Policy,
        *,
        window_chars: int | None = None,
        context_chars: int | None = None,
    ) -> None:
        self._guard = guard
        self._policy = policy
        self.window_chars = window_chars or policy.outbound.stream.window_chars
        self.context_chars = policy.outbound.stream.context_chars if context_chars is None else context_chars
        self._lanes: dict[Hashable, _Lane] = {}
        self._windows = 0
        self._max_chars = 0
        self._max_ms = 0.0
        self._screening_ms = 0.0

    async def push(self, key: Hashable, text: str) -> Release:
        """Add ``text`` to lane ``key``; returns what may be sent now (possibly nothing)."""
        lane = self._lanes.setdefault(key, _Lane())
        if lane.closed:
            return _closed(key, lane)
        if text:
            lane.pending += text
            lane.received += len(text)
            lane.arrivals.append((lane.received, time.monotonic()))
            self._max_chars = max(self._max_chars, len(lane.pending))
        return await self._drain(key, lane, final=False)

    def follow(self, key: Hashable, before: Hashable) -> None:
        """Lane ``key`` continues lane ``before``'s text (the next content block of one message): its
        windows are screened after what ``before`` released, so a word split across blocks is seen whole."""
        self._lanes.setdefault(key, _Lane()).context = self.released(before)

    async def finish(self, key: Hashable) -> Release:
        """The lane has ended: screen and release what it still holds, then close it."""
        lane = self._lanes.setdefault(key, _Lane())
        if lane.closed:
            return _closed(key, lane)
        release = await self._drain(key, lane, final=True)
        lane.closed = True
        return release

    def discard(self, key: Hashable) -> None:
        """Close lane ``key`` without releasing what it holds (its output was cut off by a block)."""
        lane = self._lanes.setdefault(key, _Lane())
        lane.pending, lane.closed = "", True

    async def screen_whole(
        self, key: Hashable, texts: Sequence[str], rebuild: Callable[[Screening], str]
    ) -> Release:
        """Screen a lane its caller held whole as ``texts``, release ``rebuild(screening)``, close it.

        For text that cannot be read in pieces: tool-call arguments are JSON, screened decoded when the call
        is complete (issue 13); the caller turns the (redacted) texts back into the lane's text.
        """
        lane = self._lanes.setdefault(key, _Lane())
        if lane.closed:
            return _closed(key, lane)
        screening = await self._guard.screen(self._policy, Direction.OUTBOUND, list(texts))
        self._account(lane, "\n".join(texts), screening)
        lane.closed = True
        if screening.action is Action.BLOCK:
            lane.blocked = True
            return _closed(key, lane)
        released = rebuild(screening)
        lane.released.append(released)
        return Release(key, released, redacted=screening.action is Action.REDACT)

    async def finish_all(self) -> list[Release]:
        """Finish every open lane (the stream ended), in the order lanes were opened."""
        return [await self.finish(key) for key, lane in list(self._lanes.items()) if not lane.closed]

    def released(self, key: Hashable) -> str:
        """Everything lane ``key`` has released so far."""
        lane = self._lanes.get(key)
        return "".join(lane.released) if lane else ""

    def holds(self, key: Hashable) -> bool:
        """True when lane ``key`` was opened (something was pushed or finished on it)."""
        return key in self._lanes

    def blocked(self, key: Hashable) -> bool:
        """True when lane ``key`` was blocked."""
        lane = self._lanes.get(key)
        return lane is not None and lane.blocked

    def redacted(self, key: Hashable) -> bool:
        """True when anything in lane ``key`` was redacted or blocked."""
        lane = self._lanes.get(key)
        return lane is not None and lane.action.severity >= Action.REDACT.severity

    def stats(self) -> HoldbackStats:
        """Hold-back and screening figures so far."""
        return HoldbackStats(
            self._windows, self._max_chars, round(self._max_ms, 3), round(self._screening_ms, 3)
        )

    def summary(self) -> Screening:
        """All windows of all lanes as one outbound ``Screening`` (strictest action, highest score)."""
        threshold = threshold_for(self._policy, Direction.OUTBOUND, None)
        lanes = [lane for lane in self._lanes.values() if lane.screened]
        decisions = tuple(_decision(lane, threshold) for lane in lanes)
        action = Action.strictest(*(lane.action for lane in lanes))
        error = next((lane.error for lane in lanes if lane.error), None)
        texts = tuple("".join(lane.screened) for lane in lanes)
        return Screening(Direction.OUTBOUND, action, decisions, texts, threshold, self._screening_ms, error)

    async def _drain(self, key: Hashable, lane: _Lane, *, final: bool) -> Release:
        out: list[str] = []
        redacted = False
        pending, start = lane.pending, 0
        while start < len(pending):
            # Look at one window's worth of text ahead, from an offset: scanning and re-slicing all that is
            # left for every window made one 1 MB event quadratic (issue 14: 123 s).
            head = pending[start : start + 2 * self.window_chars]
            cut = _next_window(head, self.window_chars, final=final)
            if cut == 0:
                break
            window = head[:cut]
            released = await self._screen(lane, window)
            start += cut
            if released is None:
                lane.pending, lane.closed, lane.blocked = "", True, True
                return _closed(key, lane, "".join(out), redacted=redacted)
            redacted = redacted or released != window
            out.append(released)
        lane.pending = pending[start:]
        return Release(key, "".join(out), redacted=redacted)

    async def _screen(self, lane: _Lane, window: str) -> str | None:
        """Screen ``window`` after its context; the text to release, or None when it is blocked."""
        context = _tail([lane.context, *lane.released], self.context_chars)
        screening = await self._guard.screen(self._policy, Direction.OUTBOUND, [context + window])
        self._account(lane, window, screening)
        if screening.action is Action.BLOCK:
            return None
        released = window
        if screening.action is Action.REDACT:
            released = _redact_window(screening.decisions[0], len(context), window, self._policy)
        lane.released.append(released)
        return released

    def _account(self, lane: _Lane, window: str, screening: Screening) -> None:
        done = lane.screened_chars
        self._max_ms = max(self._max_ms, (time.monotonic() - lane.received_at(done)) * 1000)
        lane.screened.append(window)
        lane.screened_chars += len(window)
        lane.arrivals = [(end, t) for end, t in lane.arrivals if end > done + len(window)]
        self._windows += 1
        self._screening_ms += screening.latency_ms
        lane.windows += screening.windows
        lane.action = Action.strictest(lane.action, screening.action)
        lane.score = max(lane.score, screening.score if screening.score is not None else NO_SCORE)
        lane.rules.update(screening.rules)
        lane.error = lane.error or screening.error
        lane.failed_closed = lane.failed_closed or screening.failed_closed


def _tail(parts: list[str], chars: int) -> str:
    """About the last ``chars`` characters of ``"".join(parts)``, joining only the parts it needs.

    The cut never falls inside a word (issue 13: a context cut at a character offset turned "skill" into
    "kill" and blocked a safe stream); it moves back to the word's start, so the tail may be a little longer.
    """
    if chars <= 0:
        return ""
    taken: list[str] = []
    size = 0
    for part in reversed(parts):
        taken.append(part)
        size += len(part)
        if size >= chars + WORD_REACH:
            break
    joined = "".join(reversed(taken))
    return joined[word_start(joined, max(0, len(joined) - chars), reach=WORD_REACH) :]


def _closed(key: Hashable, lane: _Lane, text: str = "", *, redacted: bool = False) -> Release:
    """The release of a closed lane: ``text`` (what got through before it closed) and why it closed."""
    error = lane.error if lane.failed_closed else None
    return Release(key, text, blocked=lane.blocked, redacted=redacted, error=error)


def _next_window(pending: str, window_chars: int, *, final: bool) -> int:
    """How many characters of ``pending`` to screen now (0: keep holding)."""
    cut = len(pending) if final else complete_prefix(pending, max_chars=window_chars)
    if cut <= window_chars:
        return cut
    # Several sentences arrived at once: screen them a window at a time, so one unsafe sentence does not
    # take the safe ones before it down with it.
    ends = [s.end for s in segment(pending[:cut], max_chars=window_chars)]
    return max((end for end in ends if end <= window_chars), default=ends[0])


def _redact_window(decision: TextDecision, offset: int, window: str, policy: Policy) -> str:
    """``window`` with the redaction spans of ``context + window`` that fall inside it replaced."""
    spans = [Span(s.start - offset, s.end - offset, s.source) for s in decision.verdict.spans]
    inside = [s for s in spans if s.end > 0 and s.start < len(window)]
    # The context was already released and cannot be taken back; when only the combination is flagged,
    # the new window is what goes.
    return redact(window, inside or [Span(0, len(window), "crest")], policy.redaction.placeholder)


def _decision(lane: _Lane, threshold: float) -> TextDecision:
    verdict = Verdict(lane.action, lane.score, threshold, tuple(sorted(lane.rules)))
    redacted = "".join(lane.released) if lane.action is Action.REDACT else None
    return TextDecision(verdict=verdict, windows=lane.windows, redacted=redacted)
