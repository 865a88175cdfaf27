"""The one decision path: a screening becomes its audit record, its metrics and what the client gets.

Every caller goes through ``decide``: the proxy's non-streamed endpoints, its stream relay and the LiteLLM
guardrail. Before this module each wrote its own record and counted (or forgot to count) its own metrics,
and the copies drifted: streamed decisions never reached Prometheus, the fail-closed message had two
wordings (issue 12). Metrics arrive through ``DecisionObserver``, a protocol the server's Prometheus
``Metrics`` implements, so this module imports no metrics library; ``NO_OBSERVER`` counts nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from crest_proxy.audit.sink import AuditSink, audit_problem, write_confirmed
from crest_proxy.policy.model import Policy
from crest_proxy.screening import budget
from crest_proxy.screening.guard import RequestContext, Screening, audit_record
from crest_proxy.screening.holdback import HoldbackStats
from crest_proxy.types import Action, AuditRecord, Direction

FAIL_CLOSED_MESSAGE = (
    "The content classifier is unavailable and this tenant's policy fails closed; retry later."
)


class DecisionObserver(Protocol):
    """Where decisions are counted (the server's Prometheus metrics; nothing for the LiteLLM plugin)."""

    def observe_screening(self, tenant: str, screening: Screening) -> None:
        """One screening decision."""

    def observe_upstream(self, tenant: str, endpoint: str, status: int | None, seconds: float) -> None:
        """One upstream exchange until its headers arrived (``status`` None: it failed)."""

    def observe_holdback(self, tenant: str, seconds: float) -> None:
        """The longest a stream's text was held back before release."""

    def observe_added_ttft(self, tenant: str, seconds: float) -> None:
        """The time to first token the proxy added to a stream."""


class _NoObserver:
    """Counts nothing (callers without metrics)."""

    def observe_screening(self, tenant: str, screening: Screening) -> None:
        """Nothing."""

    def observe_upstream(self, tenant: str, endpoint: str, status: int | None, seconds: float) -> None:
        """Nothing."""

    def observe_holdback(self, tenant: str, seconds: float) -> None:
        """Nothing."""

    def observe_added_ttft(self, tenant: str, seconds: float) -> None:
        """Nothing."""


NO_OBSERVER: DecisionObserver = _NoObserver()


@dataclass(frozen=True)
class Recorders:
    """Where decisions go: the audit sink, and the observer that counts them."""

    audit: AuditSink
    observer: DecisionObserver = NO_OBSERVER


@dataclass(frozen=True)
class Exchange:
    """The upstream exchange a decision belongs to: its status (None: failed), time, and error code.

    ``seconds`` is set where the exchange was timed; the inbound decision that follows it reports it.
    """

    status: int | None
    seconds: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class StreamEnd:
    """How a screened stream ended: what its audit record and the streaming metrics carry."""

    outcome: str
    holdback: HoldbackStats
    added_ttft_s: float | None = None
    client_disconnected: bool = False
    upstream_error: str | None = None

    def audit_extra(self) -> dict[str, object]:
        """The streaming fields of the audit record."""
        extra: dict[str, object] = {
            "stream": True,
            "outcome": self.outcome,
            "stream_windows": self.holdback.windows,
            "max_holdback_chars": self.holdback.max_holdback_chars,
            "max_holdback_ms": self.holdback.max_holdback_ms,
        }
        if self.client_disconnected:
            extra["client_disconnected"] = True
        if self.upstream_error:
            extra["upstream_error"] = self.upstream_error
        return extra


class Answer(Enum):
    """What the client gets for a decision."""

    PROCEED = "proceed"  # allowed or redacted: the (redacted) traffic goes on
    REFUSE = "refuse"  # blocked: a normal answer whose text is the policy's message
    REJECT = "reject"  # blocked: HTTP 400 content_policy_violation
    UNAVAILABLE = "unavailable"  # the classifier failed and the policy fails closed: 503 (429 overloaded)


@dataclass(frozen=True)
class Outcome:
    """The client outcome of one decision: the answer, and the HTTP status, code and message it carries."""

    answer: Answer
    status: int = 200
    code: str | None = None
    message: str = ""


PROCEED = Outcome(Answer.PROCEED)
AUDIT_UNAVAILABLE = Outcome(
    Answer.UNAVAILABLE,
    503,
    "audit_unavailable",
    "Audit records cannot be written and this tenant's policy fails closed (audit.on_failure); retry later.",
)


def audit_refusal(policy: Policy, sink: AuditSink) -> Outcome | None:
    """503 for a fail-closed tenant while the sink says records cannot be written, else None."""
    if policy.audit.on_failure == "fail_closed" and audit_problem(sink) is not None:
        return AUDIT_UNAVAILABLE
    return None


async def _recorded(sink: AuditSink, record: AuditRecord, policy: Policy, stream: bool) -> bool:
    """Write ``record``; False only when a fail-closed tenant's record could not be written.

    A stream's record, and every record of a fail-closed tenant, is confirmed before the caller goes on:
    a client that got ``[DONE]`` (or an answer under ``audit.on_failure: fail_closed``) is on record.
    """
    fail_closed = policy.audit.on_failure == "fail_closed"
    if not (stream or fail_closed):
        await sink.write(record)
        return True
    return await write_confirmed(sink, record) or not fail_closed


def outcome_of(screening: Screening, policy: Policy, endpoint: str) -> Outcome:
    """What the client gets for ``screening``: go on, a refusal text, a 400, or a 503/429 (failed closed)."""
    if screening.action is not Action.BLOCK:
        return PROCEED
    if screening.over_budget:  # too big to screen: 413 for a request, 502 for an answer (never forwarded)
        status = 413 if screening.direction is Direction.INBOUND else 502
        return Outcome(Answer.REJECT, status, budget.CODE, screening.error or "")
    if screening.failed_closed:
        if screening.overloaded:
            return Outcome(Answer.UNAVAILABLE, 429, "classifier_overloaded", FAIL_CLOSED_MESSAGE)
        return Outcome(Answer.UNAVAILABLE, 503, "classifier_unavailable", FAIL_CLOSED_MESSAGE)
    message = policy.block.message
    # An answer that was already produced is replaced by the message whatever the style (the client asked
    # for it and got a 200 from upstream); a request is refused in the style the policy chose.
    refusal = screening.direction is Direction.OUTBOUND or policy.block.style == "refusal"
    if refusal and endpoint != "embeddings":
        return Outcome(Answer.REFUSE, 200, "content_filter", message)
    return Outcome(Answer.REJECT, 400, "content_policy_violation", message)


async def decide(
    screening: Screening,
    ctx: RequestContext,
    policy: Policy,
    recorders: Recorders,
    *,
    upstream: Exchange | None = None,
    stream: StreamEnd | None = None,
    extra: Mapping[str, object] | None = None,
) -> Outcome:
    """Count ``screening``, write its audit record, and say what the client gets (the one decision path)."""
    observer = recorders.observer
    observer.observe_screening(ctx.tenant, screening)
    if upstream is not None and upstream.seconds is not None and screening.direction is Direction.INBOUND:
        observer.observe_upstream(ctx.tenant, ctx.endpoint, upstream.status, upstream.seconds)
    fields: dict[str, object] = dict(extra or {})
    if upstream is not None and upstream.error is not None:
        fields["upstream_error"] = upstream.error
    if stream is not None:
        _observe_stream(observer, ctx.tenant, stream)
        fields.update(stream.audit_extra())
    status = None if upstream is None else upstream.status
    record = audit_record(screening, ctx, upstream_status=status, extra=fields)
    if not await _recorded(recorders.audit, record, policy, stream is not None):
        return AUDIT_UNAVAILABLE
    return outcome_of(screening, policy, ctx.endpoint)


def _observe_stream(observer: DecisionObserver, tenant: str, stream: StreamEnd) -> None:
    if stream.holdback.windows:
        observer.observe_holdback(tenant, stream.holdback.max_holdback_ms / 1000)
    if stream.added_ttft_s is not None:
        observer.observe_added_ttft(tenant, stream.added_ttft_s)
