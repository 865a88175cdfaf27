"""A LiteLLM stream screened like the proxy's own: chunks through ``ChoiceStream`` and the hold-back screener.

Each chunk is handed over as the SSE event the proxy would have read from an upstream, and what comes back
is turned into chunks of the same type again, so hold-back windows, redaction and ``content_filter``
endings are the proxy's. Nothing here imports litellm: chunks only need ``model_dump`` and a constructor
taking its output.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from httpx_sse import ServerSentEvent

from crest_proxy import endpoints
from crest_proxy.policy.model import Policy
from crest_proxy.screening.decision import StreamEnd
from crest_proxy.screening.guard import Screening
from crest_proxy.screening.holdback import StreamScreener
from crest_proxy.streaming.choices import ChoiceStream, choice_count
from crest_proxy.streaming.dialect import Step


class StreamStopped(Exception):
    """The stream had to stop: the classifier failed (policy fails closed), or its chunks cannot be screened.

    ``error`` is OpenAI's error object for the client, ``status`` the HTTP status it stands for.
    """

    def __init__(self, error: Mapping[str, Any], status: int = 503) -> None:
        super().__init__(str(error.get("message", "stream stopped")))
        self.error, self.status = dict(error), status


class ScreenedStream:
    """One streamed answer, relayed chunk by chunk through the proxy's stream dialect and hold-back."""

    def __init__(self, screener: StreamScreener, policy: Policy, request: Mapping[str, Any]) -> None:
        self._screener, self._policy, self._request = screener, policy, request
        self._dialect: ChoiceStream | None = None
        self.endpoint = "chat.completions"

    async def relay(self, response: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """The screened chunks of ``response``; stops reading it when the answer is blocked."""
        kind: type | None = None
        async for chunk in response:
            kind = kind or type(chunk)
            step = await self._feed(chunk)
            # litellm's text-completion chunks always carry a usage object, so a chunk whose text is all
            # held would go out with empty ``choices``; only the upstream's own usage chunk may (issue 16).
            for out in _chunks(step, kind, empty_choices=not getattr(chunk, "choices", None)):
                yield out
            if step.stop:
                return
        if self._dialect is not None and kind is not None:
            for out in _chunks(await self._dialect.feed(ServerSentEvent(data="[DONE]")), kind):
                yield out

    async def _feed(self, chunk: Any) -> Step:
        data = chunk.model_dump(mode="json", exclude_none=True)
        if self._dialect is None:
            found = endpoints.by_object(data.get("object"), chunk=True)  # the stream dialect it speaks
            endpoint = found.name if found is not None and found.stream == "choices" else None
            if endpoint is None:  # never relay what cannot be screened (e.g. Responses API events)
                message = f"Streams of {data.get('object') or data.get('type')!r} cannot be screened."
                raise StreamStopped({"message": message, "type": "server_error", "code": "unscreenable"}, 500)
            self.endpoint = endpoint
            n = choice_count(self.endpoint, dict(self._request))
            self._dialect = ChoiceStream(self.endpoint, self._screener, self._policy, choices=n)
        return await self._dialect.feed(ServerSentEvent(data=json.dumps(data)))

    def summary(self) -> Screening:
        """Every window screened, as one outbound screening (for the audit record)."""
        return self._screener.summary()

    def end(self) -> StreamEnd:
        """How the stream ended: the figures the proxy's own stream records carry."""
        outcome = self._dialect.outcome if self._dialect is not None else "completed"
        return StreamEnd(outcome=outcome, holdback=self._screener.stats())


def _chunks(step: Step, kind: type, *, empty_choices: bool = True) -> Iterator[Any]:
    """The litellm chunks for the frames of one step; an error frame (fail closed) raises.

    ``empty_choices``: whether a chunk without choices may be sent (the upstream sent one itself).
    """
    for frame in step.frames:
        data = "\n".join(
            line.removeprefix("data: ") for line in frame.decode().splitlines() if line.startswith("data: ")
        )
        if data == "[DONE]":
            continue  # LiteLLM writes its own
        value = json.loads(data)
        if isinstance(value.get("error"), dict):
            raise StreamStopped(value["error"])
        if value.get("choices") == [] and not empty_choices:
            continue
        yield kind(**value)
