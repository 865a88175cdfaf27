"""Screening: classify texts, apply the tenant's policy, redact, and describe the decision for the audit.

The guard is transport-agnostic: the proxy, the streaming screener and the LiteLLM plugin all call
``Guard.screen`` with plain texts and get a ``Screening`` back, so every entry point makes the same
decision for the same text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from crest_proxy.audit.sink import content_for_audit
from crest_proxy.classifier.protocol import Classifier
from crest_proxy.errors import ClassifierError, ClassifierOverloadedError
from crest_proxy.policy.model import Policy, evaluate, redact, threshold_for
from crest_proxy.screening.segment import segment
from crest_proxy.types import Action, AuditRecord, Direction, Score, Span, Verdict

log = logging.getLogger("crest_proxy.screening.guard")

# Sentences are what redaction replaces; CREST reads 512 tokens, so a sentence longer than this is cut
# into pieces that the classifier scores one by one.
_SENTENCE_MAX_CHARS = 400
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
        return self.error is not None and self.action is Action.BLOCK

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


class Guard:
    """Runs the classifier and the policy over texts; never raises for classifier failures."""

    def __init__(
        self,
        classifier: Classifier,
        *,
        timeout_s: float = 10.0,
        language_of: Callable[[str], str | None] | None = None,
    ) -> None:
        self._classifier = classifier
        self._timeout_s = timeout_s
        self._language_of = language_of

    @property
    def classifier(self) -> Classifier:
        """The classifier this guard runs (readiness checks and metrics read it)."""
        return self._classifier

    async def screen(self, policy: Policy, direction: Direction, texts: Sequence[str]) -> Screening:
        """Classify ``texts`` and decide what ``policy`` does with them in ``direction``."""
        started = time.perf_counter()
        texts = tuple(texts)
        threshold = threshold_for(policy, direction, None)
        if not texts:
            return Screening(direction, Action.ALLOW, (), texts, threshold, 0.0)
        try:
            scores: list[Score] | None = await self._classify(texts)
            error, overloaded = None, False
        except ClassifierError as exc:
            scores, error, overloaded = (
                None,
                f"{type(exc).__name__}: {exc}",
                isinstance(exc, ClassifierOverloadedError),
            )
            log.warning("classifier failed (%s); applying on_error=%s", error, policy.on_error)
        decisions = await self._decide(policy, direction, texts, scores)
        action = Action.strictest(*(d.verdict.action for d in decisions))
        if error is not None and policy.on_error == "block":
            action = Action.BLOCK
        elapsed = (time.perf_counter() - started) * 1000
        threshold = decisive_threshold(decisions, threshold)
        return Screening(direction, action, decisions, texts, threshold, elapsed, error, overloaded)

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
        self, policy: Policy, direction: Direction, texts: tuple[str, ...], scores: list[Score] | None
    ) -> tuple[TextDecision, ...]:
        languages = await self._languages(texts)
        values: list[float | None] = [s.score for s in scores] if scores else [None] * len(texts)
        verdicts = [
            evaluate(policy, direction, text, value, language=lang)
            for text, value, lang in zip(texts, values, languages, strict=True)
        ]
        verdicts = await self._locate_unsafe_sentences(policy, direction, texts, verdicts, languages)
        placeholder = policy.redaction.placeholder
        return tuple(
            TextDecision(
                verdict=v,
                windows=scores[i].windows if scores else 0,
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
        verdicts: list[Verdict],
        languages: list[str | None],
    ) -> list[Verdict]:
        """For texts that will be redacted because CREST flagged them, find which sentences to replace.

        Only the sentences the classifier flags on their own are replaced; when none is unsafe alone (the
        harm is in the combination), ``evaluate`` falls back to replacing the whole text.
        """
        todo = [
            i
            for i, v in enumerate(verdicts)
            if v.action is Action.REDACT and v.score >= threshold_for(policy, direction, languages[i])
        ]
        if not todo:
            return verdicts
        pieces = [(i, s.start, s.end) for i in todo for s in segment(texts[i], max_chars=_SENTENCE_MAX_CHARS)]
        try:
            scores = await self._classify([texts[i][a:b] for i, a, b in pieces])
        except ClassifierError:
            scores = None  # cannot localise: redact the whole text rather than leak it
        flagged = [
            (i, a, b)
            for (i, a, b), s in zip(pieces, scores or [], strict=scores is not None)
            if s.score >= threshold_for(policy, direction, languages[i])
        ]
        out = list(verdicts)
        for i in todo:
            spans = [Span(a, b, "crest") for j, a, b in flagged if j == i]
            out[i] = evaluate(
                policy, direction, texts[i], verdicts[i].score, unsafe_spans=spans, language=languages[i]
            )
        return out


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
    )
