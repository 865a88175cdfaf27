"""crest-proxy inside the LiteLLM proxy: a ``CustomGuardrail`` screening with the proxy's guard and policy.

LiteLLM's ``config.yaml`` names ``crest_proxy.litellm_guardrail.CrestGuardrail`` with ``mode: [pre_call,
post_call]`` and ``policy: <crest-proxy policy file>`` (see ``examples/litellm/config.yaml``). Decisions
come from the same ``Guard.screen``, policy, hold-back screener and audit records as the proxy's; only
the rendering is LiteLLM's (an inbound block is an HTTP 400 it counts as a guardrail intervention). This
is LiteLLM's plugin and imports litellm; nothing else in crest-proxy imports this module.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import logging
import os
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

# Set before litellm is first imported, or it downloads its model cost map (LiteLLM's proxy has already
# imported it; this matters when the plugin is imported on its own).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from litellm.integrations.custom_guardrail import CustomGuardrail  # noqa: E402
from litellm.types.guardrails import GuardrailEventHooks  # noqa: E402

from crest_proxy import endpoints, wire  # noqa: E402
from crest_proxy.audit.sink import AuditSink, JsonlAuditSink, MemoryAuditSink  # noqa: E402
from crest_proxy.errors import ConfigError  # noqa: E402
from crest_proxy.integrations.litellm.report import PROVIDER, event_of, report  # noqa: E402
from crest_proxy.integrations.litellm.stream import ScreenedStream, StreamStopped  # noqa: E402
from crest_proxy.integrations.litellm.violation import policy_violation  # noqa: E402
from crest_proxy.policy.files import read_policy  # noqa: E402
from crest_proxy.policy.model import Policy  # noqa: E402
from crest_proxy.screening import unread  # noqa: E402
from crest_proxy.screening.decision import (  # noqa: E402
    Answer,
    Exchange,
    Outcome,
    Recorders,
    StreamEnd,
    decide,
)
from crest_proxy.screening.guard import Guard, RequestContext, Screening  # noqa: E402
from crest_proxy.screening.holdback import StreamScreener  # noqa: E402
from crest_proxy.screening.slots import replacements, screened_slots  # noqa: E402
from crest_proxy.types import Action, Direction  # noqa: E402

log = logging.getLogger("crest_proxy.litellm")

# LiteLLM call types -> the wire endpoint whose request texts they carry.
_CALL_TYPES = {
    "completion": "chat.completions",
    "acompletion": "chat.completions",
    "text_completion": "completions",
    "atext_completion": "completions",
    "embedding": "embeddings",
    "embeddings": "embeddings",
    "aembedding": "embeddings",
    "responses": "responses",
    "aresponses": "responses",
}


@dataclass(frozen=True)
class GuardrailSettings:
    """The guardrail's own parameters from LiteLLM's ``litellm_params``."""

    policy: Path
    model: str | None = None
    backend: str | None = None
    audit_log: Path | None = None
    detect_language: bool = True
    classify_timeout_s: float = 10.0


@dataclass(frozen=True)
class GuardrailRuntime:
    """What screening needs, loaded once on first use: the guard (classifier inside) and the audit sink."""

    guard: Guard
    audit: AuditSink


async def load_runtime(settings: GuardrailSettings) -> GuardrailRuntime:
    """Load the classifier (and language identifier) off the event loop and open the audit sink."""
    from crest_proxy.classifier import ClassifierSettings, load_classifier

    defaults = ClassifierSettings()
    chosen = ClassifierSettings(
        model=settings.model or defaults.model, backend=settings.backend or defaults.backend
    )
    classifier = await asyncio.to_thread(
        load_classifier, chosen, progress=lambda m: log.info("classifier: %s", m)
    )
    language_of = None
    if settings.detect_language:
        from crest_proxy.screening.language import load_language_identifier

        language_of = await asyncio.to_thread(load_language_identifier)
    sink: AuditSink
    if settings.audit_log is None:
        sink = MemoryAuditSink()
    else:
        sink = JsonlAuditSink(settings.audit_log)
        await sink.start()
        atexit.register(sink.flush_sync)  # LiteLLM gives guardrails no shutdown hook; its writer is a daemon
    guard = Guard(classifier, timeout_s=settings.classify_timeout_s, language_of=language_of)
    return GuardrailRuntime(guard, sink)


class CrestGuardrail(CustomGuardrail):
    """Screens LiteLLM proxy traffic with CREST and a crest-proxy policy (pre_call and post_call)."""

    def __init__(
        self,
        policy: str | None = None,
        model: str | None = None,
        backend: str | None = None,
        audit_log: str | None = None,
        detect_language: bool = True,
        classify_timeout_s: float = 10.0,
        runtime: GuardrailRuntime | None = None,
        **kwargs: Any,
    ) -> None:
        if not policy:
            raise ConfigError(
                "CrestGuardrail: litellm_params.policy is missing; set it to a policy file path"
            )
        self.settings = GuardrailSettings(
            Path(policy), model, backend, Path(audit_log) if audit_log else None, detect_language,
            classify_timeout_s,
        )  # fmt: skip
        self.policy: Policy = read_policy(self.settings.policy)  # cheap, and errors belong to start-up
        # LiteLLM never passes ``runtime``; embedders and tests hand in a guard and sink of their own.
        self._runtime: GuardrailRuntime | None = runtime
        self._loading = asyncio.Lock()
        kwargs.setdefault(
            "supported_event_hooks", [GuardrailEventHooks.pre_call, GuardrailEventHooks.post_call]
        )
        super().__init__(**kwargs)

    async def runtime(self) -> GuardrailRuntime:
        """The classifier and audit sink, loaded on first use (once, however many requests race for it)."""
        if self._runtime is None:
            async with self._loading:
                if self._runtime is None:
                    self._runtime = await load_runtime(self.settings)
        return self._runtime

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: str
    ) -> dict[str, Any] | None:
        """Screen the request: block (HTTP 400), redact (the texts LiteLLM sends on), or let it pass."""
        endpoint = _CALL_TYPES.get(str(getattr(call_type, "value", call_type)))
        if endpoint is None:
            return data
        if endpoint == "responses" and data.get("stream") is True:
            _refuse_responses_stream()
        reading = wire.read_body(endpoint, data)
        slots = screened_slots(self.policy, Direction.INBOUND, reading.texts)
        screening = await self._screen(Direction.INBOUND, slots)
        tokens = [wire.path_param(path) for path in reading.tokens]
        media = [wire.path_param(path) for path in reading.media]
        unreadable = unread.refusal(self.policy.inbound, tokens, media)
        if unreadable is not None:  # token ids or media this policy will not pass unread: a block, recorded
            screening = dataclasses.replace(screening, action=Action.BLOCK)
        outcome = await self._decide(screening, data, endpoint, extra=unread.notes(tokens, media))
        if outcome.answer is not Answer.PROCEED:
            self._refuse(outcome, screening, data, unreadable)
        if screening.action is Action.REDACT:
            data.update(_replaced(data, slots, screening))
        return data

    async def async_post_call_success_hook(
        self, data: dict[str, Any], user_api_key_dict: Any, response: Any
    ) -> Any:
        """Screen a whole (non-streaming) answer: replace blocked choices, redact, or pass it on."""
        found = endpoints.by_object(getattr(response, "object", None))  # whose texts the answer carries
        endpoint = found.name if found is not None else None
        if endpoint is None or not hasattr(response, "model_dump"):
            return response
        payload = response.model_dump()
        slots = screened_slots(self.policy, Direction.OUTBOUND, wire.response_texts(endpoint, payload))
        screening = await self._screen(Direction.OUTBOUND, slots)
        outcome = await self._decide(screening, data, endpoint, upstream=Exchange(200))
        if outcome.answer is Answer.UNAVAILABLE:
            raise _unavailable(outcome)
        if outcome.answer is not Answer.PROCEED:
            # As the proxy answers: the choices become the policy's message, finish_reason content_filter.
            return _rebuilt(response, wire.block_response(endpoint, payload, outcome.message))
        if screening.action is Action.REDACT:
            return _rebuilt(response, {**payload, **_replaced(payload, slots, screening)})
        return response

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        """Relay a streamed answer through the proxy's hold-back screener: nothing unscreened gets out."""
        runtime = await self.runtime()
        stream = ScreenedStream(StreamScreener(runtime.guard, self.policy), self.policy, request_data)
        try:
            async for chunk in stream.relay(response):
                yield chunk
        except StreamStopped as stopped:
            from fastapi import HTTPException

            raise HTTPException(status_code=stopped.status, detail=stopped.error) from None
        finally:
            await _close(response)
            await self._decide(
                stream.summary(), request_data, stream.endpoint, upstream=Exchange(200), stream=stream.end()
            )

    async def _screen(self, direction: Direction, slots: Sequence[wire.TextSlot]) -> Screening:
        runtime = await self.runtime()
        texts, groups = [s.text for s in slots], [s.group for s in slots]
        return await runtime.guard.screen(self.policy, direction, texts, groups=groups)

    async def _decide(
        self,
        screening: Screening,
        data: Mapping[str, Any],
        endpoint: str,
        *,
        upstream: Exchange | None = None,
        stream: StreamEnd | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> Outcome:
        """The one decision path (audit record, client outcome); LiteLLM keeps its own metrics."""
        runtime = await self.runtime()
        ctx = self._context(data, endpoint, extra or {})
        outcome = await decide(
            screening, ctx, self.policy, Recorders(runtime.audit), upstream=upstream, stream=stream
        )
        self._report(screening, outcome, data, stream=stream is not None)
        return outcome

    def _report(self, screening: Screening, outcome: Outcome, data: Any, *, stream: bool) -> None:
        """Fill LiteLLM's standard guardrail logging fields (spend logs, callbacks, Guardrails Monitor)."""
        if not isinstance(data, dict):
            return
        fields = report(screening, outcome, stream=stream)
        kwargs: dict[str, Any] = {
            "guardrail_json_response": fields.response,
            "request_data": data,
            "guardrail_status": fields.status,
            "duration": fields.duration_s,
            "masked_entity_count": fields.masked_entity_count,
            "guardrail_provider": PROVIDER,
            "event_type": GuardrailEventHooks(event_of(screening.direction)),
        }
        add = self.add_standard_logging_guardrail_information_to_request_data
        try:
            try:
                add(**kwargs, tracing_detail=fields.tracing_detail)  # type: ignore[arg-type]
            except TypeError:  # releases before tracing_detail existed
                add(**kwargs)
        except Exception:  # LiteLLM's logging must never turn a decision into a failed request
            log.warning("LiteLLM guardrail logging failed", exc_info=True)

    def _context(self, data: Mapping[str, Any], endpoint: str, extra: Mapping[str, object]) -> RequestContext:
        model = data.get("model")
        return RequestContext(
            request_id=call_id(data),
            tenant=self.policy.tenant,
            endpoint=endpoint,
            model=model if isinstance(model, str) else None,
            audit_mode=self.policy.audit.content,
            extra={"via": "litellm", "guardrail": self.guardrail_name, **extra},
        )

    def _refuse(
        self, outcome: Outcome, screening: Screening, data: dict[str, Any], unreadable: str | None = None
    ) -> NoReturn:
        """Raise what LiteLLM turns into a refusal: a 400 it counts as an intervention, or a refusal text
        (``unreadable``: the message for token ids or media the policy refuses, always a 400)."""
        if outcome.answer is Answer.UNAVAILABLE:
            raise _unavailable(outcome)
        detection = {"score": screening.score, "rules": list(screening.rules), "request_id": call_id(data)}
        if unreadable is not None:
            raise policy_violation(unreadable, str(outcome.code), detection)
        if outcome.answer is Answer.REFUSE:
            self.raise_passthrough_exception(outcome.message, data, detection_info=detection)
        raise policy_violation(outcome.message, str(outcome.code), detection)


def call_id(data: Mapping[str, Any]) -> str:
    """LiteLLM's id of this call (the ``x-litellm-call-id`` its proxy answers with), or a fresh id."""
    value = data.get("litellm_call_id")
    return value if isinstance(value, str) and value else f"req_{uuid.uuid4().hex}"


def _replaced(
    body: Mapping[str, Any], slots: Sequence[wire.TextSlot], screening: Screening
) -> dict[str, Any]:
    """The top-level fields of ``body`` holding redacted texts, rewritten (only those are copied)."""
    changed = replacements(slots, screening)
    # Copy only the fields that change: LiteLLM's request dict also holds loggers and raw requests.
    fields = {str(slot.path[0]) for slot in changed}
    return wire.replace_texts({k: body[k] for k in fields}, changed)


def _rebuilt(response: Any, payload: dict[str, Any]) -> Any:
    """A response of the same litellm type from ``payload``, keeping what LiteLLM tracks beside it."""
    rebuilt = type(response)(**payload)
    for private in ("_hidden_params", "_response_headers"):
        if hasattr(response, private):
            setattr(rebuilt, private, getattr(response, private))
    return rebuilt


def _refuse_responses_stream() -> NoReturn:
    """Responses API streams are refused up front: their events cannot go through the hold-back here."""
    from fastapi import HTTPException

    message = "Streamed /v1/responses answers cannot be screened by CrestGuardrail; send stream: false."
    raise HTTPException(status_code=400, detail={"error": message, "code": "unsupported_stream"})


def _unavailable(outcome: Outcome) -> Exception:
    """The 503 (429 when overloaded) for a classifier failure under ``on_error: block``."""
    from fastapi import HTTPException

    return HTTPException(status_code=outcome.status, detail={"error": outcome.message, "code": outcome.code})


async def _close(response: Any) -> None:
    """Close LiteLLM's upstream stream (a blocked answer is not read any further)."""
    close = getattr(response, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # closing is best effort: the audit record must still be written
            log.debug("closing the upstream stream failed", exc_info=True)
