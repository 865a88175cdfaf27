"""What LiteLLM's logging is told about each CREST decision: its standard guardrail information fields.

LiteLLM builds ``StandardLoggingGuardrailInformation`` from these (status, mode, duration, masked entity
count, tracing detail) and carries it into spend logs, every callback's standard logging payload, OTEL
spans and the Guardrails Monitor (docs.litellm.ai/docs/proxy/guardrails/custom_guardrail). Without them a
CREST block is invisible there: the request just fails. Labels, scores and counts only: no text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from crest_proxy.screening.decision import Answer, Outcome
from crest_proxy.screening.guard import Screening
from crest_proxy.types import Action, Direction

PROVIDER = "crest"


@dataclass(frozen=True)
class GuardrailReport:
    """What ``add_standard_logging_guardrail_information_to_request_data`` is given for one decision."""

    status: str
    response: dict[str, Any]
    duration_s: float
    masked_entity_count: dict[str, int] | None
    tracing_detail: dict[str, Any] = field(default_factory=dict)


def report(screening: Screening, outcome: Outcome, *, stream: bool = False) -> GuardrailReport:
    """The standard logging fields of one decision (``outcome``: what the client got)."""
    score = screening.score
    masked = masked_counts(screening)
    response: dict[str, Any] = {
        "action": screening.action.value,
        "direction": screening.direction.value,
        "score": score,
        "threshold": screening.threshold,
        "rules": list(screening.rules),
        "answer": outcome.answer.value,
    }
    if stream:
        response["stream"] = True
    if screening.error is not None:
        response["error"] = screening.error
    tracing = {
        "detection_method": "crest-classifier+rules",
        "confidence_score": score,
        "risk_score": score,
        "violation_categories": list(screening.rules) + (["unsafe"] if _flagged_by_model(screening) else []),
        "guardrail_action": _action(screening, outcome),
    }
    duration = screening.latency_ms / 1000
    return GuardrailReport(status_of(screening, outcome), response, duration, masked, tracing)


def status_of(screening: Screening, outcome: Outcome) -> str:
    """LiteLLM's ``GuardrailStatus``: success, flagged (logged only), intervened, or failed to respond."""
    if screening.error is not None and outcome.answer is Answer.UNAVAILABLE:
        return "guardrail_failed_to_respond"
    if screening.action in (Action.BLOCK, Action.REDACT):
        return "guardrail_intervened"  # "blocked or modified content" (LiteLLM's definition)
    if screening.action is Action.LOG:
        return "guardrail_flagged"
    return "success"


def masked_counts(screening: Screening) -> dict[str, int] | None:
    """How many spans were redacted, by what flagged them (a rule's name, or ``crest``)."""
    if screening.action is not Action.REDACT:
        return None
    counts: Counter[str] = Counter()
    for decision in screening.decisions:
        if decision.redacted is not None:
            counts.update(span.source for span in decision.verdict.spans)
    if not counts:  # a stream's summary keeps the rules, not the spans
        counts.update(screening.rules or ("crest",))
    return dict(counts)


def event_of(direction: Direction) -> str:
    """The guardrail event a direction is screened in."""
    return "pre_call" if direction is Direction.INBOUND else "post_call"


def _action(screening: Screening, outcome: Outcome) -> str:
    if outcome.answer is Answer.UNAVAILABLE:
        return "fail_closed"
    return "mask" if screening.action is Action.REDACT else screening.action.value


def _flagged_by_model(screening: Screening) -> bool:
    score = screening.score
    return score is not None and score >= screening.threshold
