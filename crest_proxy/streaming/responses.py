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
from typing import TYPE_CHECKING, Any

from crest_proxy.policy.model import Policy
from crest_proxy.screening.decision import FAIL_CLOSED_MESSAGE
from crest_proxy.screening.holdback import Release, StreamScreener
from crest_proxy.streaming.dialect import Step
from crest_proxy.streaming.paths import get_at
from crest_proxy.streaming.response_texts import (
    ItemText,
    item_texts,
    lanes,
    part_texts,
    put_at,
    screens,
    text_at,
)
from crest_proxy.streaming.sse import json_frame, json_of
from crest_proxy.wire import alternatives
from crest_proxy.wire.structured import object_strings, put_value, read_json_text, value_at

if TYPE_CHECKING:
    from httpx_sse import ServerSentEvent

    from crest_proxy.screening.guard import Screening

Key = tuple[int, str, int | None]  # (output_index, lane field, content/summary index)

_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_SNAPSHOTS = frozenset({"response.created", "response.in_progress", "response.queued"})
_IDS = ("item_id", "output_index", "content_index", "summary_index")
_EVENT_FIELDS = frozenset({"type", "sequence_number", *_IDS})


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
        self._held: dict[Key, list[str]] = {}  # JSON lanes (arguments), held whole until their .done
        self._last_text: Key | None = None
        # Logprob alternatives screened so far (their readings -> may go out): events repeat them.
        self._alternatives: dict[tuple[str, ...], bool] = {}
        self.outcome = "completed"

    async def feed(self, event: ServerSentEvent) -> Step:
        """The frames for one upstream event."""
        data = json_of(event)
        named = data.get("type")
        kind = named if isinstance(named, str) else event.event
        family, _, suffix = kind.rpartition(".")
        lane = lanes().get(family)
        if lane is not None and suffix in ("delta", "done") and self._screens(lane.label):
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
        if lanes()[family].kind == "json":
            self._held.setdefault(key, []).append(delta if isinstance(delta, str) else "")
            return Step()
        if key[1] == "text" and not self._screener.holds(key):  # output texts are read one after another
            if self._last_text is not None:
                self._screener.follow(key, self._last_text)  # red team: a word split across two parts
            self._last_text = key
        release = await self._screener.push(key, delta if isinstance(delta, str) else "")
        step = Step((self._delta_frame(key, release.text),)) if release.text else Step()
        return step + self._blocked(key, release) if release.blocked else step

    async def _done(self, kind: str, family: str, data: dict[str, Any]) -> Step:
        key = self._key(family, data)
        self._deltas.setdefault(key, {**data, "type": f"{family}.delta"})
        whole = lanes()[family].whole
        value = data.get(whole) if whole else None
        given = value if isinstance(value, str) else ""
        if lanes()[family].kind == "json":
            release = await self._whole(key, given)
            text = release.text
        else:
            early = ""
            if not self._screener.holds(key) and given:
                early = (await self._screener.push(key, given)).text  # no delta carried it: screen it now
            release = await self._screener.finish(key)
            text = early + release.text
        step = Step((self._delta_frame(key, text),)) if text else Step()
        if release.blocked:
            return step + self._blocked(key, release)
        done = {**data, whole: self._screener.released(key)} if whole else dict(data)
        if (stopped := await self._token_details(key, done)) is not None:
            return step + self._blocked(stopped.key, stopped)
        return step + Step((self._frame(done),))

    async def _passing(self, kind: str, data: dict[str, Any]) -> Step:
        """Events without a delta of their own; those that repeat texts get the released ones."""
        # Text in an "added" event or a snapshot would skip the hold-back: the API sends it empty and
        # streams it as deltas, so any text found there is dropped (the matching .done is screened).
        if kind in _SNAPSHOTS and isinstance(data.get("response"), dict):
            output = data["response"].get("output")
            blank: Any = output
            if isinstance(output, list):
                items = [item for item in output if isinstance(item, dict)]
                blank = [await self._opened(i, item) for i, item in enumerate(items)]
                if (stopped := next((b for b in blank if isinstance(b, Release)), None)) is not None:
                    return self._blocked(stopped.key, stopped)
            data = {**data, "response": {**data["response"], "output": blank}}
            self._response = data["response"]
        elif kind == "response.output_item.added" and isinstance(data.get("item"), dict):
            opened = await self._opened(_int(data.get("output_index")), data["item"])
            if isinstance(opened, Release):
                return self._blocked(opened.key, opened)
            data = {**data, "item": opened}
            self._items[_int(data.get("output_index"))] = copy.deepcopy(opened)
        elif kind in ("response.content_part.added", "response.reasoning_summary_part.added"):
            if isinstance(data.get("part"), dict):
                data = {**data, "part": self._blank_part(kind, data)}
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
        elif lanes().get(kind.rpartition(".")[0]) is None:
            return await self._screened_event(data)
        return Step((self._frame(data),))

    async def _screened_event(self, data: dict[str, Any]) -> Step:
        """An event of no lane (annotations, a vendor's or a newer API's delta): its strings screened whole.

        Passed on as it was, a ``response.output_text.annotation.added`` title or an unknown ``*.delta``
        reached the client unread (red team).
        """
        paths = [p for p, is_key in object_strings(data) if not is_key and p[0] not in _EVENT_FIELDS]
        if not paths:
            return Step((self._frame(data),))
        event = copy.deepcopy(data)

        def rebuild(screening: Screening) -> str:
            for path, text in zip(paths, screening.redacted_texts(), strict=True):
                put_value(event, path, text)
            return ""

        key = ("event", self._seq)
        release = await self._screener.screen_whole(key, [value_at(data, p) for p in paths], rebuild)
        return self._blocked(key, release) if release.blocked else Step((self._frame(event),))

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

    async def _settled(self, key: Key, text: str, at: ItemText) -> str | Release:
        """The released text of lane ``key`` (screening ``text`` now when no delta carried it)."""
        if not self._screens(at.row.label):
            return text
        if at.json:
            release = await self._whole(key, text)
            return release if release.blocked else self._screener.released(key)
        if not self._screener.holds(key) and text:
            await self._screener.push(key, text)
        release = await self._screener.finish(key)
        return release if release.blocked else self._screener.released(key)

    async def _whole(self, key: Key, text: str) -> Release:
        """Screen a JSON lane decoded, once whole (its held deltas, else ``text``); re-encoded if redacted."""
        held = self._held.pop(key, None)
        if held is None and self._screener.holds(key):
            return await self._screener.finish(key)  # settled before: the lane is closed
        doc = read_json_text("".join(held) if held is not None else text)
        return await self._screener.screen_whole(key, doc.texts, lambda s: doc.rebuild(s.redacted_texts()))

    async def _settle_part(self, kind: str, data: dict[str, Any]) -> Step:
        part = data.get("part")
        attr = "summary" if "summary" in kind else "content"
        index = data.get("summary_index" if attr == "summary" else "content_index")
        if isinstance(part, dict):
            part = copy.deepcopy(part)
            for at in part_texts(self._item_type(data, part), attr, part):
                key = (_int(data.get("output_index")), at.lane, _int(index))
                settled = await self._settled(key, text_at(part, at), at)
                if isinstance(settled, Release):
                    return self._blocked(settled.key, settled)
                put_at(part, at, settled)
                if (stopped := await self._token_details(key, part, at)) is not None:
                    return self._blocked(stopped.key, stopped)
            data = {**data, "part": part}
        return Step((self._frame(data),))

    async def _settle_item(self, index: int, item: dict[str, Any]) -> dict[str, Any] | Release:
        item = copy.deepcopy(item)
        for at in item_texts(item):
            key = (index, at.lane, at.sub)
            settled = await self._settled(key, text_at(item, at), at)
            if isinstance(settled, Release):
                return settled
            put_at(item, at, settled)
            if (stopped := await self._token_details(key, item, at)) is not None:
                return stopped
        return item

    async def _token_details(
        self, key: Key, holder: dict[str, Any], at: ItemText | None = None
    ) -> Release | None:
        """Put back the per-token logprobs beside lane ``key``'s text (in ``holder``: a ``.done`` event, a
        part or an item) as they may go out: ``[]`` when the text was redacted or the chosen tokens spell
        another text (they would tell what was replaced, or carry text never screened), their alternatives
        (``top_logprobs``) screened as text. The release that blocked, if they block."""
        parent = holder if at is None else get_at(holder, at.path[:-1])
        if at is not None and (at.key or not self._screens(at.row.label)):
            return None
        logprobs = parent.get("logprobs") if isinstance(parent, dict) else None
        if not logprobs:
            return None
        released = self._screener.released(key)
        chosen = alternatives.chosen_tokens(logprobs)  # None for anything but a list of tokens
        if self._screener.redacted(key) or chosen is None or "".join(chosen) != released:
            parent["logprobs"] = []
            return None
        texts = tuple(text for text in alternatives.readings(logprobs) if text != released)
        if texts and texts not in self._alternatives:  # the same logprobs come in up to four events
            lane = (key[0], "logprobs", len(self._alternatives))
            release = await self._screener.screen_whole(lane, texts, lambda _: "")
            if release.blocked:
                return release
            self._alternatives[texts] = not release.redacted
        if texts and not self._alternatives[texts]:
            parent["logprobs"] = []
        return None

    async def _opened(self, index: int, item: dict[str, Any]) -> dict[str, Any] | Release:
        """An item as first announced: streamed texts blanked (their deltas follow), the rest screened now."""
        item = copy.deepcopy(item)
        for at in item_texts(item):
            if at.streamed and self._screens(at.row.label):
                put_at(item, at, "")
                _drop_logprobs(item, at)
            elif at.streamed or not text_at(item, at):
                continue  # not screened by this policy, or empty (its whole text comes with .done)
            else:  # arrives whole here (a tool name, an MCP output): screen it before it goes out
                settled = await self._settled((index, at.lane, at.sub), text_at(item, at), at)
                if isinstance(settled, Release):
                    return settled
                put_at(item, at, settled)
        return item

    def _blank_part(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        part: dict[str, Any] = copy.deepcopy(data["part"])
        attr = "summary" if "summary" in kind else "content"
        for at in part_texts(self._item_type(data, part), attr, part):
            if self._screens(at.row.label):
                put_at(part, at, "")
                _drop_logprobs(part, at)
        return part

    def _item_type(self, data: dict[str, Any], part: dict[str, Any]) -> str:
        """The type of the item a part belongs to (as announced; guessed from the part when unknown)."""
        item = self._items.get(_int(data.get("output_index")))
        known = item.get("type") if item is not None else None
        if isinstance(known, str):
            return known
        return "reasoning" if part.get("type") in ("reasoning_text", "summary_text") else "message"

    async def _release_all(self) -> Step:
        step = Step()
        for key in list(self._held):
            release = await self._whole(key, "")
            step += Step((self._delta_frame(key, release.text),)) if release.text else Step()
            if release.blocked:
                return step + self._blocked(key, release)
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
            return Step((self.error(FAIL_CLOSED_MESSAGE, "classifier_unavailable"),), stop=True)
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
            for at in item_texts(item):
                key = (index, at.lane, at.sub)
                put_at(item, at, self._screener.released(key) + (refusal if key == blocked else ""))
                _drop_logprobs(item, at)
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
        lane = lanes()[family]
        index = lane.index
        return (_int(data.get("output_index")), lane.lane, _int(data.get(index)) if index else None)

    def _screens(self, label: str) -> bool:
        return screens(label, text=self._screen_text, tools=self._screen_tools)


def _drop_logprobs(holder: dict[str, Any], at: ItemText) -> None:
    """Empty the per-token logprobs beside ``at``'s text: the text there is blank or cut short."""
    parent = get_at(holder, at.path[:-1])
    if isinstance(parent, dict) and parent.get("logprobs"):
        parent["logprobs"] = []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
