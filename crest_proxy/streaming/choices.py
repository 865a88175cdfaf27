"""Chat-completions and legacy-completions streams: one hold-back lane per choice and text field.

Upstream chunks keep their fields (id, model, created, system_fingerprint, role, usage …); only their text
is swapped for what the screener released, so a chunk may shrink, vanish (everything in it is held) or
be followed by a chunk the proxy writes (a window released at finish, a ``content_filter`` end). Token
logprobs would leak held text, so they are held per choice and sent with the finish chunk — or dropped
when anything in the choice was redacted or blocked; their alternatives (``top_logprobs``) are screened
then, as text the model nearly wrote.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crest_proxy import wire
from crest_proxy.policy.model import Policy
from crest_proxy.screening.decision import FAIL_CLOSED_MESSAGE
from crest_proxy.screening.holdback import Release, StreamScreener
from crest_proxy.streaming.chunks import (
    ChoiceText,
    Key,
    chat_delta,
    choice_index,
    choice_places,
    choice_texts,
    completion_chunk,
    prune,
)
from crest_proxy.streaming.dialect import Step
from crest_proxy.streaming.paths import get_at, set_at
from crest_proxy.streaming.sse import DONE, StreamBroken, json_frame, json_of, raw_frame
from crest_proxy.wire import alternatives
from crest_proxy.wire.bodies import CONTENT_FILTER
from crest_proxy.wire.patterns import Match
from crest_proxy.wire.structured import object_strings, put_value, read_json_text, value_at

if TYPE_CHECKING:
    from httpx_sse import ServerSentEvent

    from crest_proxy.screening.guard import Screening

_CHOICE_FIELDS = ("index", "delta", "text", "logprobs", "finish_reason")


@dataclass(frozen=True)
class _Flush:
    """What finishing a choice's lanes released, and the release that blocked (if one did)."""

    parts: list[tuple[Key, str]]
    blocked: Release | None = None


# Metadata strings of a chunk (ids and names the proxy need not read).
_CHUNK_IDS = frozenset({"id", "object", "model", "system_fingerprint", "service_tier", "obfuscation"})
# Per-token logprob lists of a chat choice and the field whose text their tokens spell.
_TOKEN_LISTS = {"content": "delta.content", "refusal": "delta.refusal"}


class ChoiceStream:
    """Screens ``chat.completion.chunk`` or ``text_completion`` streams (``data: [DONE]`` terminated)."""

    def __init__(self, endpoint: str, screener: StreamScreener, policy: Policy, *, choices: int) -> None:
        self._endpoint = endpoint
        self._chat = endpoint == "chat.completions"
        self._screener = screener
        self._block = policy.block
        # The same slots the non-streaming path screens (``screened_slots``): completions have no role.
        self._screen_text = not self._chat or "assistant" in policy.outbound.roles
        self._screen_tools = self._screen_text and policy.outbound.tool_calls
        self._expected = choices
        self._template: dict[str, Any] = {}
        self._lanes: dict[int, list[Key]] = {}
        self._ended: set[int] = set()
        self._logprobs: dict[int, dict[str, Any]] = {}
        # Tool-call arguments are JSON: held whole until the call ends, then screened decoded (issue 13).
        self._json: dict[Key, list[str]] = {}
        self._others = 0  # chunks without choices screened so far (each its own lane)
        self.outcome = "completed"

    async def feed(self, event: ServerSentEvent) -> Step:
        """The frames for one upstream event."""
        if event.data.strip() == "[DONE]":
            return await self._release_all() + Step((DONE,), stop=True)
        chunk = json_of(event)
        if chunk.get("error") is not None:  # the upstream's own mid-stream error: pass it on, then stop
            self.outcome = "upstream_error"
            return await self._release_all() + Step((raw_frame(event),), stop=True)
        self._template = chunk
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return await self._other_chunk(event, chunk)  # the usage chunk, or a vendor's keep-alive
        return await self._chunk(event, chunk, choices)

    async def end(self) -> Step:
        """The body ended without ``[DONE]``: fine when every choice finished, else the stream was cut."""
        if self._lanes and all(idx in self._ended for idx in self._lanes):
            return await self._release_all() + Step((DONE,), stop=True)
        return await self.fail(
            "The upstream stream ended before the completion was finished.", "upstream_truncated"
        )

    async def fail(self, message: str, code: str) -> Step:
        """Release what is held (screened), then an error event."""
        self.outcome = "upstream_error"
        return await self._release_all() + Step((self.error(message, code),), stop=True)

    def error(self, message: str, code: str, type: str = "api_error") -> bytes:
        """A ``data: {"error": …}`` event: how OpenAI reports mid-stream errors; its SDK raises APIError."""
        return json_frame(wire.error_body(message, type=type, code=code))

    async def _other_chunk(self, event: ServerSentEvent, chunk: dict[str, Any]) -> Step:
        """A chunk without choices, passed on with its strings screened whole (red team: a top-level
        ``delta`` or an Ollama-style ``message`` went out unread); dropped when they are unsafe."""
        paths = [p for p, is_key in object_strings(chunk) if not is_key and p[0] not in _CHUNK_IDS]
        if not paths or not self._screen_text:
            return Step((raw_frame(event),))
        rebuilt = copy.deepcopy(chunk)

        def rebuild(screening: Screening) -> str:
            for path, text in zip(paths, screening.redacted_texts(), strict=True):
                put_value(rebuilt, path, text)
            return ""

        self._others += 1
        texts = [str(value_at(chunk, p)) for p in paths]
        release = await self._screener.screen_whole(("chunk", self._others), texts, rebuild)
        if release.blocked:
            return Step()
        return Step((json_frame(rebuilt, event.event),))

    async def _chunk(self, event: ServerSentEvent, chunk: dict[str, Any], choices: list[Any]) -> Step:
        kept: list[dict[str, Any]] = []
        after = Step()
        for choice in choices:
            if not isinstance(choice, dict):
                raise StreamBroken("the upstream sent a chunk whose choice is not an object")
            part, tail = await self._choice(choice)
            kept += [part] if part is not None else []
            after += tail
        if kept == choices:
            main: tuple[bytes, ...] = (raw_frame(event),)
        elif kept or chunk.get("usage"):
            main = (json_frame({**chunk, "choices": kept}, event.event),)
        else:
            main = ()
        return Step(main) + after

    async def _choice(self, choice: dict[str, Any]) -> tuple[dict[str, Any] | None, Step]:
        """The choice as it may be sent now, and what follows the chunk (finish, block)."""
        idx = choice_index(choice)
        places = choice_places(choice, self._endpoint)  # one walk: checked, then read
        _check_texts(places)
        if idx in self._ended:
            return None, Step()  # blocked before: the upstream's later deltas for it are dropped
        texts = choice_texts(
            places, idx, endpoint=self._endpoint, text=self._screen_text, tools=self._screen_tools
        )
        if not texts and idx not in self._lanes and not (self._screen_text and choice.get("logprobs")):
            return choice, Step()  # nothing screened in this choice (yet)
        part = copy.deepcopy(choice)
        self._hold_logprobs(idx, part)
        finish = part.get("finish_reason")
        part["finish_reason"] = None
        for i, text in enumerate(texts):
            release = await self._push(idx, text, get_at(part, text.path))
            set_at(part, text.path, release.text)
            if release.blocked:
                for later in texts[i + 1 :]:
                    set_at(part, later.path, "")
                return prune(part), self._blocked(idx, [], release)
        tail = await self._finish(idx, finish, choice) if finish is not None else Step()
        return prune(part), tail

    async def _push(self, idx: int, at: ChoiceText, text: str) -> Release:
        key = at.key
        if key not in self._lanes.setdefault(idx, []):
            self._lanes[idx].append(key)
        if at.json:
            self._json.setdefault(key, []).append(text)
            return Release(key, "")
        if at.row.whole:  # a tool name arrives whole in its call's first chunk: screen it at once
            return await self._screener.screen_whole(key, [text], lambda s: s.redacted_texts()[0])
        return await self._screener.push(key, text)

    async def _finish_lane(self, key: Key) -> Release:
        """End one lane: held JSON is screened decoded now, and re-encoded if a redaction changed it."""
        held = self._json.pop(key, None)
        if held is None:
            return await self._screener.finish(key)
        doc = read_json_text("".join(held))
        return await self._screener.screen_whole(key, doc.texts, lambda s: doc.rebuild(s.redacted_texts()))

    async def _finish(self, idx: int, finish: Any, choice: dict[str, Any]) -> Step:
        """Screen what choice ``idx`` still holds, send it, then the upstream's finish."""
        flush = await self._flush(idx)
        if flush.blocked is not None:
            return self._blocked(idx, flush.parts, flush.blocked)
        logprobs = await self._release_logprobs(idx)
        if isinstance(logprobs, Release):
            return self._blocked(idx, flush.parts, logprobs)
        self._ended.add(idx)
        frames = [self._text_chunk(idx, flush.parts)] if flush.parts else []
        extra = {k: v for k, v in choice.items() if k not in _CHOICE_FIELDS}
        frames.append(self._end_chunk(idx, finish, logprobs, extra))
        return Step(tuple(frames))

    async def _flush(self, idx: int) -> _Flush:
        """Finish every lane of choice ``idx``, stopping at the first that blocks."""
        parts: list[tuple[Key, str]] = []
        for key in self._lanes.get(idx, []):
            release = await self._finish_lane(key)
            parts += [(key, release.text)] if release.text else []
            if release.blocked:
                return _Flush(parts, release)
        return _Flush(parts)

    async def _release_all(self) -> Step:
        """The stream is over: release what every unfinished choice still holds."""
        step = Step()
        for idx in [i for i in self._lanes if i not in self._ended]:
            flush = await self._flush(idx)
            if flush.blocked is not None:
                step += self._blocked(idx, flush.parts, flush.blocked)
            elif flush.parts:
                step += Step((self._text_chunk(idx, flush.parts),))
            self._ended.add(idx)
        return step

    def _blocked(self, idx: int, parts: list[tuple[Key, str]], release: Release) -> Step:
        """End choice ``idx`` after a block; the whole stream when every choice has ended."""
        self._ended.add(idx)
        self._logprobs.pop(idx, None)
        for key in self._lanes.get(idx, []):
            self._screener.discard(key)
            self._json.pop(key, None)
        frames = [self._text_chunk(idx, parts)] if parts else []
        if release.failed_closed:
            self.outcome = "classifier_unavailable"
            error = self.error(FAIL_CLOSED_MESSAGE, "classifier_unavailable", "server_error")
            return Step((*frames, error), stop=True)
        self.outcome = "blocked"
        content = self._block.message if self._block.style == "refusal" else None
        frames.append(self._end_chunk(idx, CONTENT_FILTER, None, {}, content))
        if len(self._ended) < self._expected:
            return Step(tuple(frames))
        return Step((*frames, DONE), stop=True)  # nothing left to read: close the upstream now

    def _hold_logprobs(self, idx: int, part: dict[str, Any]) -> None:
        logprobs = part.get("logprobs")
        if isinstance(logprobs, dict):
            held = self._logprobs.setdefault(idx, {})
            for name, values in logprobs.items():
                if isinstance(values, list):
                    so_far = held.get(name)
                    held[name] = (so_far if isinstance(so_far, list) else []) + values
                else:
                    held.setdefault(name, values)  # e.g. "refusal": null, which the schema requires
        part["logprobs"] = None

    async def _release_logprobs(self, idx: int) -> dict[str, Any] | Release | None:
        """Choice ``idx``'s held logprobs, if they may go out: not when its text was redacted or they
        spell another text, and their alternatives (``top_logprobs``) screened like text (a block ends
        the choice; a redaction drops them)."""
        held = self._logprobs.pop(idx, None)
        changed = any(self._screener.redacted(key) for key in self._lanes.get(idx, []))
        if changed or held is None or not self._spelled(idx, held):
            return None
        released = {self._screener.released((idx, inside, None)) for inside in self._token_lists().values()}
        lists = [held.get(name) for name in _TOKEN_LISTS] if self._chat else [held]
        texts = [text for values in lists for text in alternatives.readings(values) if text not in released]
        if not texts:
            return held
        release = await self._screener.screen_whole((idx, "logprobs", None), texts, lambda _: "")
        if release.blocked:
            return release
        return None if release.redacted else held

    def _token_lists(self) -> dict[str, str]:
        """The per-token logprob lists of a choice and the field whose text their tokens spell."""
        return _TOKEN_LISTS if self._chat else {"tokens": "text"}

    def _spelled(self, idx: int, held: dict[str, Any]) -> bool:
        """Whether the chosen tokens spell exactly the text released: tokens are text too (red team), and
        only tokens of screened text may go out."""
        for name, inside in self._token_lists().items():
            tokens = held.get(name)
            if tokens is None:
                continue
            words = alternatives.chosen_tokens(tokens)
            if words is None or "".join(words) != self._screener.released((idx, inside, None)):
                return False
        return True

    def _text_chunk(self, idx: int, parts: list[tuple[Key, str]]) -> bytes:
        if not self._chat:
            return json_frame(
                completion_chunk(self._template, idx, "".join(text for _, text in parts), None, None)
            )
        chunk = wire.chat_chunk(self._template, idx)
        chunk["choices"][0]["delta"] = chat_delta(parts)
        return json_frame(chunk)

    def _end_chunk(
        self, idx: int, finish: Any, logprobs: Any, extra: dict[str, Any], content: str | None = None
    ) -> bytes:
        if not self._chat:
            chunk = completion_chunk(self._template, idx, content or "", finish, logprobs)
        else:
            chunk = wire.chat_chunk(self._template, idx, content=content, finish_reason=finish)
            chunk["choices"][0]["logprobs"] = logprobs
        chunk["choices"][0].update(extra)
        return json_frame(chunk)


def choice_count(endpoint: str, body: dict[str, Any]) -> int:
    """How many choices a request asks for: ``n``, times the number of prompts for legacy completions."""
    n = body.get("n")
    n = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    prompt = body.get("prompt")
    if endpoint != "completions" or not isinstance(prompt, list) or not prompt:
        return n
    # A list of strings or of token arrays is several prompts; a flat list of token ids is one.
    return n * len(prompt) if all(isinstance(p, (str, list)) for p in prompt) else n


def _check_texts(places: dict[str, list[Match]]) -> None:
    """Every text place of a streamed choice (its ``choice_places``) holds a string: content parts or tool
    arguments as an object there would pass unread (red team)."""
    for matches in places.values():
        for match in matches:
            if match.value is not None and type(match.value) is not str:
                raise StreamBroken("the upstream sent a chunk whose text is not a string")
