"""Anthropic Messages streams: named events, one hold-back lane per content block.

``content_block_delta`` text (``text_delta``), tool input (``input_json_delta``) and thinking
(``thinking_delta``) are held and re-sent as the screener releases them; ``content_block_stop`` first
releases what its block still holds. A block ends the message the way the API ends a refusal: open
blocks are stopped, then ``message_delta`` with ``stop_reason: "refusal"`` and ``message_stop``.
Event types this module does not know are dropped: a new one could carry text past the hold-back.
Facts from https://docs.anthropic.com/en/api/messages-streaming.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from httpx_sse import ServerSentEvent

from crest_proxy.policy.model import Policy
from crest_proxy.screening.decision import FAIL_CLOSED_MESSAGE
from crest_proxy.screening.holdback import Release, StreamScreener
from crest_proxy.streaming.dialect import Step
from crest_proxy.streaming.sse import json_frame, json_of
from crest_proxy.wire.anthropic import REFUSAL
from crest_proxy.wire.structured import object_strings, put_value, read_json_text, value_at

if TYPE_CHECKING:
    from crest_proxy.screening.guard import Screening

Key = tuple[int, str]  # (content block index, lane field)

# Delta type -> (lane field, the delta's text attribute).
_DELTAS = {
    "text_delta": ("text", "text"),
    "thinking_delta": ("thinking", "thinking"),
    "input_json_delta": ("input", "partial_json"),
}
_FIELD_DELTAS = {field: (kind, attr) for kind, (field, attr) in _DELTAS.items()}
# Content block type -> its lane field.
_BLOCKS = {"text": "text", "thinking": "thinking", "tool_use": "input", "server_tool_use": "input"}
_PASSING = frozenset({"ping", "message_delta"})
# Block fields that are ids, signatures or the streamed input itself, not text sent whole at the start.
_BLOCK_IDS = frozenset({"type", "id", "input", "signature", "tool_use_id", "data", "encrypted_content"})


class MessageStream:
    """Screens an Anthropic Messages event stream (``message_start`` … ``message_stop``)."""

    def __init__(self, screener: StreamScreener, policy: Policy) -> None:
        self._screener = screener
        self._block = policy.block
        self._screen_text = "assistant" in policy.outbound.roles
        self._screen_tools = self._screen_text and policy.outbound.tool_calls
        self._lanes: dict[int, str] = {}  # open content blocks -> lane field
        # Tool input is JSON: held whole until its block stops, then screened decoded, so an escape
        # (``\\u006b``, ``\\n``) cannot hide a word from the classifier (red team, as issue 13 for OpenAI).
        self._json: dict[int, list[str]] = {}
        self._output_tokens = 0
        self._wholes = 0
        self._last_text: Key | None = None
        self.outcome = "completed"

    async def feed(self, event: ServerSentEvent) -> Step:
        """The frames for one upstream event."""
        data = json_of(event)
        kind = data.get("type") if isinstance(data.get("type"), str) else event.event
        if kind == "content_block_delta":
            return await self._delta(data)
        if kind == "content_block_start":
            return await self._start(data)
        if kind == "content_block_stop":
            return await self._stop(data)
        if kind == "message_start":
            return Step((_frame(_blank_message(data)),))
        if kind == "message_stop":
            return await self._release_all() + Step((_frame(data),), stop=True)
        if kind == "error":
            self.outcome = "upstream_error"
            return await self._release_all() + Step((_frame(data),), stop=True)
        if kind in _PASSING:
            self._count(data)
            return await self._release_all() + Step((_frame(data),))
        return Step()

    async def end(self) -> Step:
        """The body ended before ``message_stop``: the stream was cut."""
        return await self.fail(
            "The upstream stream ended before the message was complete.", "upstream_truncated"
        )

    async def fail(self, message: str, code: str) -> Step:
        """Release what is held (screened), then an ``error`` event."""
        self.outcome = "upstream_error"
        return await self._release_all() + Step((self.error(message, code),), stop=True)

    def error(self, message: str, code: str) -> bytes:
        """An ``error`` event in Anthropic's shape (its SDK raises it as an API error)."""
        kind = "overloaded_error" if code == "classifier_overloaded" else "api_error"
        return _frame({"type": "error", "error": {"type": kind, "message": message}})

    # --- events -----------------------------------------------------------------------------------------

    async def _start(self, data: dict[str, Any]) -> Step:
        index, block = _index(data), data.get("content_block")
        if not isinstance(block, dict):
            return Step((_frame(data),))
        field = _BLOCKS.get(str(block.get("type")))
        if self._screens(field or "text") and field in (None, "input"):
            checked = await self._whole_strings(index, block)
            if isinstance(checked, Release):
                return self._blocked(checked.key, checked)
            data = {**data, "content_block": (block := checked)}
        if field is None or not self._screens(field):
            return Step((_frame(data),))
        self._lanes[index] = field
        if field == "text":  # text blocks are read one after another (red team: a word split across two)
            if self._last_text is not None:
                self._screener.follow((index, field), self._last_text)
            self._last_text = (index, field)
        early = _early_text(block, field)  # text sent whole in the start event skips no hold-back
        blank = {**block, field: {} if field == "input" else ""}
        step = Step((_frame({**data, "content_block": blank}),))
        if not early:
            return step
        if field == "input":
            self._json.setdefault(index, []).append(early)
            return step
        release = await self._screener.push((index, field), early)
        return step + self._released(index, field, release)

    async def _whole_strings(self, index: int, block: dict[str, Any]) -> dict[str, Any] | Release:
        """A block's strings that arrive whole in its start event (a tool's name, any string of a block type
        this module does not stream), screened now: passed on as they were, they went out unread (red team).
        """
        paths = [p for p, is_key in object_strings(block) if not is_key and p[0] not in _BLOCK_IDS]
        if not paths:
            return block
        out = copy.deepcopy(block)

        def rebuild(screening: Screening) -> str:
            for path, text in zip(paths, screening.redacted_texts(), strict=True):
                put_value(out, path, text)
            return ""

        texts = [str(value_at(block, p)) for p in paths]
        self._wholes += 1  # each whole text is a lane of its own (a closed lane cannot be screened again)
        release = await self._screener.screen_whole((index, f"whole{self._wholes}"), texts, rebuild)
        return release if release.blocked else out

    async def _delta(self, data: dict[str, Any]) -> Step:
        index, delta = _index(data), data.get("delta")
        kind = delta.get("type") if isinstance(delta, dict) else None
        if kind == "citations_delta" and isinstance(delta, dict) and self._screen_text:
            checked = await self._whole_strings(index, delta)  # a citation quotes text (red team)
            if isinstance(checked, Release):
                return self._blocked(checked.key, checked)
            return Step((_frame({**data, "delta": checked}),))
        if kind not in _DELTAS or not self._screens(_DELTAS[str(kind)][0]):
            return Step((_frame(data),))  # signature deltas, unscreened lanes
        # A text delta is screened whatever block it claims to be in (one of unknown type, none, another
        # kind's): a client that prints deltas would show it (red team).
        field = self._lanes.setdefault(index, _DELTAS[str(kind)][0])
        if _DELTAS[str(kind)][0] != field:
            return Step()  # a delta of another kind than its block: no API sends it, no client reads it
        text = delta.get(_DELTAS[str(kind)][1]) if isinstance(delta, dict) else None
        text = text if isinstance(text, str) else ""
        if field == "input":
            self._json.setdefault(index, []).append(text)
            return Step()
        return self._released(index, field, await self._screener.push((index, field), text))

    async def _stop(self, data: dict[str, Any]) -> Step:
        index = _index(data)
        field = self._lanes.get(index)
        if field is None:
            return Step((_frame(data),))
        step = self._released(index, field, await self._finish_lane(index, field))
        if step.stop:
            return step  # blocked: ``_blocked`` stopped every open block
        del self._lanes[index]
        return step + Step((_frame(data),))

    async def _release_all(self) -> Step:
        step = Step()
        for index, field in list(self._lanes.items()):
            step += self._released(index, field, await self._finish_lane(index, field))
            if step.stop:
                return step
        return step

    async def _finish_lane(self, index: int, field: str) -> Release:
        """End one lane: held tool input is screened decoded now (re-encoded only if redaction changed it)."""
        held = self._json.pop(index, None)
        if held is None:
            return await self._screener.finish((index, field))
        doc = read_json_text("".join(held))
        return await self._screener.screen_whole(
            (index, field), doc.texts, lambda screening: doc.rebuild(screening.redacted_texts())
        )

    # --- frames -----------------------------------------------------------------------------------------

    def _released(self, index: int, field: str, release: Release) -> Step:
        step = Step((self._delta_frame(index, field, release.text),)) if release.text else Step()
        return step + self._blocked((index, field), release) if release.blocked else step

    def _blocked(self, key: Hashable, release: Release) -> Step:
        """End the message as a refusal (an error event when the policy failed closed)."""
        for index, field in self._lanes.items():
            self._screener.discard((index, field))
        self._json.clear()
        if release.failed_closed:
            self.outcome = "classifier_unavailable"
            return Step((self.error(FAIL_CLOSED_MESSAGE, "classifier_unavailable"),), stop=True)
        self.outcome = "blocked"
        frames = []
        if self._block.style == "refusal" and isinstance(key, tuple) and key[1] == "text":
            frames.append(self._delta_frame(key[0], "text", self._block.message))
        frames += [_frame({"type": "content_block_stop", "index": i}) for i in sorted(self._lanes)]
        self._lanes.clear()
        delta = {"stop_reason": REFUSAL, "stop_sequence": None}
        usage = {"output_tokens": self._output_tokens}
        frames.append(_frame({"type": "message_delta", "delta": delta, "usage": usage}))
        frames.append(_frame({"type": "message_stop"}))
        return Step(tuple(frames), stop=True)

    def _delta_frame(self, index: int, field: str, text: str) -> bytes:
        kind, attr = _FIELD_DELTAS[field]
        return _frame({"type": "content_block_delta", "index": index, "delta": {"type": kind, attr: text}})

    def _count(self, data: dict[str, Any]) -> None:
        usage = data.get("usage")
        tokens = usage.get("output_tokens") if isinstance(usage, dict) else None
        if isinstance(tokens, int):
            self._output_tokens = tokens

    def _screens(self, field: str) -> bool:
        return self._screen_tools if field == "input" else self._screen_text


def _blank_message(data: dict[str, Any]) -> dict[str, Any]:
    """``message_start`` without content: the API sends it empty; text there would skip the hold-back."""
    message = data.get("message")
    if isinstance(message, dict) and message.get("content"):
        return {**data, "message": {**message, "content": []}}
    return data


def _early_text(block: dict[str, Any], field: str) -> str:
    value = block.get(field)
    if field == "input":
        return json.dumps(value, ensure_ascii=False) if isinstance(value, dict) and value else ""
    return value if isinstance(value, str) else ""


def _index(data: dict[str, Any]) -> int:
    value = data.get("index")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _frame(data: dict[str, Any]) -> bytes:
    """An Anthropic event: the SSE event name is the payload's ``type``."""
    kind = data.get("type")
    return json_frame(data, kind if isinstance(kind, str) else None)
