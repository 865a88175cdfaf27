"""Responses API streams: typed events, one hold-back lane per output item part.

Deltas (``response.output_text.delta``, ``response.function_call_arguments.delta`` …) are held and
re-sent as the screener releases them; every event that repeats the whole text (``*.done``,
``content_part.done``, ``output_item.done``, ``response.completed``) gets the released text instead, and
text that arrives only there is screened there. Events are renumbered (``sequence_number``) because the
proxy drops and adds some. A block ends the response with ``response.incomplete`` (reason
``content_filter``), the way the API itself ends a filtered response.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable
from typing import Any

from httpx_sse import ServerSentEvent

from crest_proxy.policy.model import Policy
from crest_proxy.screening.holdback import Release, StreamScreener
from crest_proxy.streaming.dialect import Step
from crest_proxy.streaming.paths import Path, get_at, set_at
from crest_proxy.streaming.sse import json_frame, json_of

Key = tuple[int, str, int | None]  # (output_index, lane field, content/summary index)

# Event family -> (lane field, index attribute, attribute of the ``.done`` event holding the whole text).
_LANES: dict[str, tuple[str, str | None, str | None]] = {
    "response.output_text": ("text", "content_index", "text"),
    "response.refusal": ("refusal", "content_index", "refusal"),
    "response.reasoning_summary_text": ("summary", "summary_index", "text"),
    "response.reasoning_text": ("reasoning", "content_index", "text"),
    "response.audio.transcript": ("transcript", None, None),
    "response.function_call_arguments": ("arguments", None, "arguments"),
    "response.custom_tool_call_input": ("input", None, "input"),
    "response.mcp_call_arguments": ("arguments", None, "arguments"),
    "response.code_interpreter_call_code": ("code", None, "code"),
}
_TOOL_FIELDS = frozenset({"arguments", "input", "code"})
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_SNAPSHOTS = frozenset({"response.created", "response.in_progress", "response.queued"})
_IDS = ("item_id", "output_index", "content_index", "summary_index")


class ResponseStream:
    """Screens a Responses API event stream."""

    def __init__(self, screener: StreamScreener, policy: Policy) -> None:
        self._screener = screener
        self._block = policy.block
        self._screen_text = "assistant" in policy.outbound.roles
        self._screen_tools = self._screen_text and policy.outbound.tool_calls
        self._seq = 0
        self._response: dict[str, Any] = {}
        self._items: dict[int, dict[str, Any]] = {}
        self._deltas: dict[Hashable, dict[str, Any]] = {}
        self.outcome = "completed"

    async def feed(self, event: ServerSentEvent) -> Step:
        """The frames for one upstream event."""
        data = json_of(event)
        named = data.get("type")
        kind = named if isinstance(named, str) else event.event
        family, _, suffix = kind.rpartition(".")
        if family in _LANES and suffix in ("delta", "done") and self._screens(_LANES[family][0]):
            handler = self._delta if suffix == "delta" else self._done
            return await handler(kind, family, data)
        if kind in _TERMINAL:
            return await self._terminal(data)
        if kind == "error":
            self.outcome = "upstream_error"
            return await self._release_all() + Step((self._frame(data),), stop=True)
        return await self._passing(kind, data)

    async def end(self) -> Step:
        """The body ended before a terminal event: the stream was cut."""
        return await self.fail(
            "The upstream stream ended before the response was complete.", "upstream_truncated"
        )

    async def fail(self, message: str, code: str) -> Step:
        """Release what is held (screened), then an ``error`` event."""
        self.outcome = "upstream_error"
        return await self._release_all() + Step((self.error(message, code),), stop=True)

    # --- events ----------------------------------------------------------------------------------------

    async def _delta(self, kind: str, family: str, data: dict[str, Any]) -> Step:
        key = self._key(family, data)
        self._deltas[key] = data
        delta = data.get("delta")
        release = await self._screener.push(key, delta if isinstance(delta, str) else "")
        step = Step((self._delta_frame(key, release.text),)) if release.text else Step()
        return step + self._blocked(key, release) if release.blocked else step

    async def _done(self, kind: str, family: str, data: dict[str, Any]) -> Step:
        key = self._key(family, data)
        self._deltas.setdefault(key, {**data, "type": f"{family}.delta"})
        whole = _LANES[family][2]
        early = ""
        if not self._screener.holds(key) and whole and isinstance(data.get(whole), str):
            early = (await self._screener.push(key, data[whole])).text  # no delta carried it: screen it now
        release = await self._screener.finish(key)
        text = early + release.text
        step = Step((self._delta_frame(key, text),)) if text else Step()
        if release.blocked:
            return step + self._blocked(key, release)
        done = {**data, whole: self._screener.released(key)} if whole else dict(data)
        if "logprobs" in done and self._screener.redacted(key):
            done["logprobs"] = []
        return step + Step((self._frame(done),))

    async def _passing(self, kind: str, data: dict[str, Any]) -> Step:
        """Events without a delta of their own; those that repeat texts get the released ones."""
        # Text in an "added" event or a snapshot would skip the hold-back: the API sends it empty and
        # streams it as deltas, so any text found there is dropped (the matching .done is screened).
        if kind in _SNAPSHOTS and isinstance(data.get("response"), dict):
            output = data["response"].get("output")
            blank = (
                [self._blank_item(i) for i in output if isinstance(i, dict)]
                if isinstance(output, list)
                else output
            )
            data = {**data, "response": {**data["response"], "output": blank}}
            self._response = data["response"]
        elif kind == "response.output_item.added" and isinstance(data.get("item"), dict):
            data = {**data, "item": self._blank_item(data["item"])}
            self._items[_int(data.get("output_index"))] = copy.deepcopy(data["item"])
        elif kind in ("response.content_part.added", "response.reasoning_summary_part.added"):
            if isinstance(data.get("part"), dict):
                data = {**data, "part": self._blank_part(kind, data["part"])}
            self._add_part(kind, data)
        elif kind in ("response.content_part.done", "response.reasoning_summary_part.done"):
            return await self._settle_part(kind, data)
        elif kind == "response.output_item.done" and isinstance(data.get("item"), dict):
            index = _int(data.get("output_index"))
            item = await self._settle_item(index, data["item"])
            if isinstance(item, Release):
                return self._blocked(item.key, item)
            self._items[index] = item
            data = {**data, "item": item}
        return Step((self._frame(data),))

    async def _terminal(self, data: dict[str, Any]) -> Step:
        step = await self._release_all()
        if step.stop:
            return step
        response = data.get("response")
        if isinstance(response, dict) and isinstance(response.get("output"), list):
            output = []
            for index, item in enumerate(response["output"]):
                settled = await self._settle_item(index, item) if isinstance(item, dict) else item
                if isinstance(settled, Release):
                    return step + self._blocked(settled.key, settled)
                output.append(settled)
            data = {**data, "response": {**response, "output": output}}
        return step + Step((self._frame(data),), stop=True)

    # --- settling whole texts ---------------------------------------------------------------------------

    async def _settled(self, key: Key, text: str) -> str | Release:
        """The released text of lane ``key`` (screening ``text`` now when no delta carried it)."""
        if not self._screens(key[1]):
            return text
        if not self._screener.holds(key) and text:
            await self._screener.push(key, text)
        release = await self._screener.finish(key)
        return release if release.blocked else self._screener.released(key)

    async def _settle_part(self, kind: str, data: dict[str, Any]) -> Step:
        part = data.get("part")
        field = "summary" if "summary" in kind else None
        index = data.get("summary_index" if field else "content_index")
        if isinstance(part, dict):
            part = copy.deepcopy(part)
            for name, path in _part_texts(part, field):
                settled = await self._settled(
                    (_int(data.get("output_index")), name, _int(index)), get_at(part, path)
                )
                if isinstance(settled, Release):
                    return self._blocked(settled.key, settled)
                set_at(part, path, settled)
            data = {**data, "part": part}
        return Step((self._frame(data),))

    async def _settle_item(self, index: int, item: dict[str, Any]) -> dict[str, Any] | Release:
        item = copy.deepcopy(item)
        for (name, sub), path in _item_texts(item):
            settled = await self._settled((index, name, sub), get_at(item, path))
            if isinstance(settled, Release):
                return settled
            set_at(item, path, settled)
        return item

    def _blank_item(self, item: dict[str, Any]) -> dict[str, Any]:
        item = copy.deepcopy(item)
        for (name, _), path in _item_texts(item):
            if self._screens(name):
                set_at(item, path, "")
        return item

    def _blank_part(self, kind: str, part: dict[str, Any]) -> dict[str, Any]:
        part = copy.deepcopy(part)
        for name, path in _part_texts(part, "summary" if "summary" in kind else None):
            if self._screens(name):
                set_at(part, path, "")
        return part

    async def _release_all(self) -> Step:
        step = Step()
        for release in await self._screener.finish_all():
            step += Step((self._delta_frame(release.key, release.text),)) if release.text else Step()
            if release.blocked:
                return step + self._blocked(release.key, release)
        return step

    # --- blocks and frames ------------------------------------------------------------------------------

    def _blocked(self, key: Hashable, release: Release) -> Step:
        """End the response: ``response.incomplete`` (content_filter), or an error when failed closed."""
        if release.failed_closed:
            self.outcome = "classifier_unavailable"
            message = (
                "The content classifier is unavailable and this tenant's policy fails closed; retry later."
            )
            return Step((self.error(message, "classifier_unavailable"),), stop=True)
        self.outcome = "blocked"
        # The refusal text joins an output_text part only: in tool-call arguments it would break the JSON.
        textual = isinstance(key, tuple) and key[1] == "text"
        refusal = self._block.message if self._block.style == "refusal" and textual else ""
        frames = [self._delta_frame(key, refusal)] if refusal and key in self._deltas else []
        response = {
            **self._response,
            "status": "incomplete",
            "incomplete_details": {"reason": "content_filter"},
            "output": self._snapshot(key, refusal),
        }
        frames.append(self._frame({"type": "response.incomplete", "response": response}))
        return Step(tuple(frames), stop=True)

    def _snapshot(self, blocked: Hashable, refusal: str) -> list[dict[str, Any]]:
        """The output items seen so far, holding only released text (and the refusal, if any)."""
        output = []
        for index in sorted(self._items):
            item = copy.deepcopy(self._items[index])
            for (name, sub), path in _item_texts(item):
                key = (index, name, sub)
                set_at(item, path, self._screener.released(key) + (refusal if key == blocked else ""))
            if item.get("status") == "in_progress":
                item["status"] = "incomplete"
            output.append(item)
        return output

    def _add_part(self, kind: str, data: dict[str, Any]) -> None:
        item = self._items.get(_int(data.get("output_index")))
        attr, index = ("summary", "summary_index") if "summary" in kind else ("content", "content_index")
        if item is not None and isinstance(data.get("part"), dict):
            parts = item.setdefault(attr, [])
            if isinstance(parts, list) and _int(data.get(index)) == len(parts):
                parts.append(copy.deepcopy(data["part"]))

    def _delta_frame(self, key: Hashable, text: str) -> bytes:
        template = self._deltas[key]
        data = {k: template[k] for k in ("type", *_IDS) if k in template}
        data["delta"] = text
        if template.get("type") == "response.output_text.delta":
            data["logprobs"] = []  # per-token logprobs would describe held or redacted text
        return self._frame(data)

    def _frame(self, data: dict[str, Any]) -> bytes:
        data = {**data, "sequence_number": self._seq}
        self._seq += 1
        return json_frame(data, data.get("type"))

    def error(self, message: str, code: str) -> bytes:
        return self._frame({"type": "error", "code": code, "message": message, "param": None})

    def _key(self, family: str, data: dict[str, Any]) -> Key:
        field, index, _ = _LANES[family]
        return (_int(data.get("output_index")), field, _int(data.get(index)) if index else None)

    def _screens(self, field: str) -> bool:
        return self._screen_tools if field in _TOOL_FIELDS else self._screen_text


def _item_texts(item: dict[str, Any]) -> list[tuple[tuple[str, int | None], Path]]:
    """The screened strings of an output item: (lane field, sub-index) and their path in the item."""
    kind = item.get("type")
    found: list[tuple[tuple[str, int | None], Path]] = []
    if kind in ("message", "reasoning"):
        for j, part in _parts(item.get("content")):
            found += [((name, j), ("content", j, *path)) for name, path in _part_texts(part, None)]
    if kind == "reasoning":
        for j, part in _parts(item.get("summary")):
            found += [((name, j), ("summary", j, *path)) for name, path in _part_texts(part, "summary")]
    attr = {"function_call": "arguments", "mcp_call": "arguments", "custom_tool_call": "input"}.get(str(kind))
    attr = attr or ("code" if kind == "code_interpreter_call" else None)
    if attr and isinstance(item.get(attr), str):
        found.append(((attr, None), (attr,)))
    return found


def _part_texts(part: dict[str, Any], field: str | None) -> list[tuple[str, Path]]:
    """The screened strings of one content or summary part: lane field and path in the part."""
    kind = part.get("type")
    if field == "summary" or kind == "summary_text":
        return [("summary", ("text",))] if isinstance(part.get("text"), str) else []
    if kind == "refusal" and isinstance(part.get("refusal"), str):
        return [("refusal", ("refusal",))]
    if kind in ("output_text", "reasoning_text") and isinstance(part.get("text"), str):
        return [("text" if kind == "output_text" else "reasoning", ("text",))]
    return []


def _parts(value: Any) -> list[tuple[int, dict[str, Any]]]:
    return [(j, p) for j, p in enumerate(value) if isinstance(p, dict)] if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
