"""Screening: classify texts, apply the tenant's policy, redact, and describe the decision for the audit.

The guard is transport-agnostic: the proxy, the streaming screener and the LiteLLM plugin all call
``Guard.screen`` with plain texts and get a ``Screening`` back, so every entry point makes the same
decision for the same text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TypeVar

from crest_proxy.audit.sink import content_for_audit
from crest_proxy.classifier.protocol import WORK_KEY, Classifier, WorkKey
from crest_proxy.errors import ClassifierError, ClassifierOverloadedError
from crest_proxy.policy.model import NO_SCORE, Policy, evaluate, redact, threshold_for
from crest_proxy.screening import budget
from crest_proxy.screening.locate import Finding, blame_scores, findings, reading_threshold, with_view_rules
from crest_proxy.screening.looks import Plan, looks_for, plan
from crest_proxy.screening.segment import segment
from crest_proxy.types import Action, AuditRecord, Direction, Score, Verdict

log = logging.getLogger("crest_proxy.screening.guard")

# Sentences are what redaction replaces; CREST reads 512 tokens, so a sentence longer than this is cut
# into pieces that the classifier scores one by one.
_SENTENCE_MAX_CHARS = 400
# Up to this many characters (~75 ms of normalizing at worst) are planned on the event loop.
_PLAN_INLINE_CHARS = 50_000
_T = TypeVar("_T")
# Language identifiers look at the first 1,000 characters of a text (screening.language.MAX_CHARS).
_LANGUAGE_INLINE_CHARS = 1000


@dataclass(frozen=True)
class TextDecision:
    """The verdict for one screened text and, when redacted, its new value."""

    verdict: Verdict
    windows: int
    redacted: str | None = None


@dataclass(frozen=True)
class Screening:
    """The decision for all texts of one direction of one request."""

    direction: Direction
    action: Action
    decisions: tuple[TextDecision, ...]
    texts: tuple[str, ...]
    threshold: float
    latency_ms: float
    error: str | None = None
    overloaded: bool = False
    over_budget: bool = False  # refused unscored: more tokens than the tenant's screening budget

    @property
    def score(self) -> float | None:
        """Highest P(unsafe) over the texts (None when nothing was scored)."""
        scores = [d.verdict.score for d in self.decisions if d.verdict.score >= 0]
        return max(scores) if scores else None

    @property
    def rules(self) -> tuple[str, ...]:
        """Names of every rule that matched any text."""
        return tuple(sorted({r for d in self.decisions for r in d.verdict.rules}))

    @property
    def windows(self) -> int:
        """Classifier windows spent on these texts."""
        return sum(d.windows for d in self.decisions)

    @property
    def failed_closed(self) -> bool:
        """True when the classifier failed and the tenant's ``on_error`` blocked the traffic."""
        return self.error is not None and self.action is Action.BLOCK and not self.over_budget

    def redacted_texts(self) -> list[str]:
        """The texts as they leave the guard (redacted where the verdict says so)."""
        return [
            d.redacted if d.redacted is not None else t
            for d, t in zip(self.decisions, self.texts, strict=True)
        ]


@dataclass(frozen=True)
class RequestContext:
    """Who and what a screening belongs to: enough to write its audit record."""

    request_id: str
    tenant: str
    endpoint: str
    model: str | None
    audit_mode: str = "hash"
    extra: dict[str, object] = field(default_factory=dict)
    client_request_id: str | None = None  # the client's x-request-id (never used as the record's id)


class Guard:
    """Runs the classifier and the policy over texts; never raises for classifier failures."""

    def __init__(
        self,
        classifier: Classifier,
        *,
        timeout_s: float = 10.0,
        language_of: Callable[[str], str | None] | None = None,
        max_screen_tokens: int = 64 * 512,
    ) -> None:
        self._classifier = classifier
        self._token_counter = budget.token_counter(classifier)  # a Protocol check per request is slow
        self._timeout_s = timeout_s
        self._max_screen_tokens = max_screen_tokens
        self._language_of = language_of

    @property
    def classifier(self) -> Classifier:
        """The classifier this guard runs (readiness checks and metrics read it)."""
        return self._classifier

    async def screen(
        self,
        policy: Policy,
        direction: Direction,
        texts: Sequence[str],
        *,
        groups: Sequence[Hashable] | None = None,
    ) -> Screening:
        """Classify ``texts`` and decide what ``policy`` does with them in ``direction``.

        ``groups`` names each text's message (the parts of one message share a key; None: a message of
        its own): every junction between consecutive texts is read too, so that a word or sentence split
        across parts or messages is seen whole (``readings``). Each reading is also read normalized.
        """
        started = time.perf_counter()
        texts = tuple(texts)
        threshold = threshold_for(policy, direction, None)
        if not texts:
            return Screening(direction, Action.ALLOW, (), texts, threshold, 0.0)
        refusal = await self._over_budget(policy, direction, texts, threshold, started)
        if refusal is not None:
            return refusal
        # The fair scheduler's key: this tenant, this request (each request runs in its own task).
        WORK_KEY.set(WorkKey(policy.tenant, f"task-{id(asyncio.current_task())}"))
        the_plan = await _off_loop_if_large(sum(map(len, texts)), lambda: plan(texts, groups))
        try:
            scores: list[Score] | None = await self._classify(the_plan.looks.strings)
            error, overloaded = None, False
        except ClassifierError as exc:
            scores, error, overloaded = (
                None,
                f"{type(exc).__name__}: {exc}",
                isinstance(exc, ClassifierOverloadedError),
            )
            log.warning("classifier failed (%s); applying on_error=%s", error, policy.on_error)
        decisions = await self._decide(policy, direction, texts, the_plan, scores)
        action = Action.strictest(*(d.verdict.action for d in decisions))
        if error is not None and policy.on_error == "block":
            action = Action.BLOCK
        elapsed = (time.perf_counter() - started) * 1000
        threshold = decisive_threshold(decisions, threshold)
        return Screening(direction, action, decisions, texts, threshold, elapsed, error, overloaded)

    async def _over_budget(
        self, policy: Policy, direction: Direction, texts: tuple[str, ...], threshold: float, started: float
    ) -> Screening | None:
        """The refusal when ``texts`` exceed the screening budget (counted before any model call)."""
        limit = policy.max_screen_tokens or self._max_screen_tokens
        tokens = await budget.count_tokens(self._token_counter, texts, limit)
        if tokens <= limit:
            return None
        verdict = Verdict(Action.BLOCK, NO_SCORE, threshold, (), (), None)
        decisions = tuple(TextDecision(verdict, 0) for _ in texts)
        message = budget.refusal_message(direction, tokens, limit)
        elapsed = (time.perf_counter() - started) * 1000
        return Screening(
            direction, Action.BLOCK, decisions, texts, threshold, elapsed, message, over_budget=True
        )

    async def _classify(self, texts: Sequence[str]) -> list[Score]:
        try:
            return await asyncio.wait_for(self._classifier.classify(list(texts)), self._timeout_s)
        except ClassifierError:
            raise
        except asyncio.TimeoutError as exc:
            raise ClassifierError(f"classifier timed out after {self._timeout_s:g}s") from exc
        except Exception as exc:  # a broken backend must not become a 500: on_error decides
            raise ClassifierError(str(exc) or type(exc).__name__) from exc

    async def _decide(
        self,
        policy: Policy,
        direction: Direction,
        texts: tuple[str, ...],
        the_plan: Plan,
        scores: list[Score] | None,
    ) -> tuple[TextDecision, ...]:
        languages = await self._languages(texts)
        count = len(texts)
        reading_scores = the_plan.looks.item_scores(scores) if scores else None
        values: list[float | None] = [None] * count
        windows = [0] * count
        if scores and reading_scores:
            values = list(blame_scores(the_plan.readings, reading_scores, count))
            for reading, spent in zip(the_plan.readings, the_plan.looks.item_windows(scores), strict=True):
                windows[reading.blame[0]] += spent
        # Rules are linear (RE2) but thousands of matches in a budget-sized text cost ~0.3 s: off the loop.
        chars = sum(len(t) for t in texts)
        verdicts = await _off_loop_if_large(
            chars,
            lambda: [
                evaluate(policy, direction, text, value, language=lang)
                for text, value, lang in zip(texts, values, languages, strict=True)
            ],
        )
        if reading_scores is not None:
            verdicts = await self._locate_unsafe_sentences(
                policy, direction, texts, the_plan, reading_scores, verdicts, languages
            )
        located = verdicts
        verdicts = await _off_loop_if_large(
            chars,
            lambda: [
                with_view_rules(policy, direction, texts[i], the_plan.views[i], v)
                for i, v in enumerate(located)
            ],
        )
        placeholder = policy.redaction.placeholder
        return tuple(
            TextDecision(
                verdict=v,
                windows=windows[i],
                redacted=redact(texts[i], v.spans, placeholder) if v.action is Action.REDACT else None,
            )
            for i, v in enumerate(verdicts)
        )

    async def _languages(self, texts: tuple[str, ...]) -> list[str | None]:
        """The language of each text; many long texts are identified in a thread, off the event loop."""
        identify = self._language_of
        if identify is None:
            return [None] * len(texts)
        # ~0.6 ms per 1,000 characters (benchmarks/language_id.py): up to ~5 ms inline, a thread beyond.
        if sum(min(len(t), _LANGUAGE_INLINE_CHARS) for t in texts) <= _LANGUAGE_INLINE_CHARS * 8:
            return [identify(t) for t in texts]
        return await asyncio.to_thread(lambda: [identify(t) for t in texts])

    async def _locate_unsafe_sentences(
        self,
        policy: Policy,
        direction: Direction,
        texts: tuple[str, ...],
        the_plan: Plan,
        reading_scores: list[float],
        verdicts: list[Verdict],
        languages: list[str | None],
    ) -> list[Verdict]:
        """For texts that will be redacted because CREST flagged them, find which sentences to replace.

        Only the sentences the classifier flags on their own are replaced (in whichever texts they span);
        when none is unsafe alone (the harm is in the combination), the whole text goes (``locate``).
        """
        thresholds = [threshold_for(policy, direction, lang) for lang in languages]
        todo = {i for i, v in enumerate(verdicts) if v.action is Action.REDACT and v.score >= thresholds[i]}
        if not todo:
            return verdicts
        flagged = [
            r
            for r, reading in enumerate(the_plan.readings)
            if reading_scores[r] >= reading_threshold(reading, thresholds)
            and any(p.index in todo for p in reading.pieces)
        ]
        sentences = [
            (r, s) for r in flagged for s in segment(the_plan.readings[r].text, max_chars=_SENTENCE_MAX_CHARS)
        ]
        pieces = [the_plan.readings[r].text[s.start : s.end] for r, s in sentences]
        looks = await _off_loop_if_large(sum(map(len, pieces)), lambda: looks_for(pieces))
        try:
            sentence_scores = looks.item_scores(await self._classify(looks.strings))
        except ClassifierError:
            return verdicts  # cannot localise: redact the whole texts rather than leak them
        scored = [(r, s, score) for (r, s), score in zip(sentences, sentence_scores, strict=True)]
        found = findings(texts, the_plan.readings, reading_scores, flagged, scored, thresholds)
        out = list(verdicts)
        for i in todo | set(found):
            finding = found.get(i, Finding(reading_scores[i], ()))
            out[i] = evaluate(
                policy, direction, texts[i], finding.score, unsafe_spans=finding.spans, language=languages[i]
            )
        return out


async def _off_loop_if_large(chars: int, work: Callable[[], _T]) -> _T:
    """``work()``, in a thread when it reads many characters: normalizing costs up to ~1.5 µs a character
    (benchmarks/normalize.py), and a megabyte of crafted text must not stall every other request."""
    if chars <= _PLAN_INLINE_CHARS:
        return work()
    return await asyncio.to_thread(work)


def decisive_threshold(decisions: Sequence[TextDecision], default: float) -> float:
    """The threshold that went with the highest score (texts' languages may each have their own)."""
    if not decisions:
        return default
    return max(decisions, key=lambda d: d.verdict.score).verdict.threshold


def audit_record(
    screening: Screening,
    ctx: RequestContext,
    *,
    upstream_status: int | None,
    extra: dict[str, object] | None = None,
) -> AuditRecord:
    """The audit record for one screening decision; content is kept only as the policy's audit mode allows."""
    joined = "\n".join(screening.texts)
    redacted = "\n".join(screening.redacted_texts()) if screening.action is Action.REDACT else None
    audit = content_for_audit(ctx.audit_mode, joined, redacted)
    languages = {d.verdict.language for d in screening.decisions if d.verdict.language}
    return AuditRecord(
        ts=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        request_id=ctx.request_id,
        tenant=ctx.tenant,
        direction=screening.direction.value,
        endpoint=ctx.endpoint,
        model=ctx.model,
        action=screening.action.value,
        score=None if screening.score is None else round(screening.score, 6),
        threshold=screening.threshold,
        rules=screening.rules,
        latency_ms=round(screening.latency_ms, 3),
        upstream_status=upstream_status,
        text_sha256=audit.sha256,
        texts=len(screening.texts),
        windows=screening.windows,
        language=",".join(sorted(languages)) or None,
        error=screening.error,
        content=audit.content,
        extra={**ctx.extra, **(extra or {})},
        client_request_id=ctx.client_request_id,
    )
