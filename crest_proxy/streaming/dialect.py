"""What the relay asks of each wire dialect (chat/completions chunks, Responses API events)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from httpx_sse import ServerSentEvent


@dataclass(frozen=True)
class Step:
    """Frames to send for one upstream event, and whether to stop reading the upstream."""

    frames: tuple[bytes, ...] = ()
    stop: bool = False

    def __add__(self, other: Step) -> Step:
        return Step(self.frames + other.frames, self.stop or other.stop)


class Dialect(Protocol):
    """Rewrites one endpoint's upstream events into screened client frames."""

    outcome: str  # completed | blocked | upstream_error | classifier_unavailable | truncated

    async def feed(self, event: ServerSentEvent) -> Step:
        """The frames for one upstream event (raises ``StreamBroken`` for an event it cannot read)."""
        ...

    async def end(self) -> Step:
        """The upstream body ended without the dialect's terminal event: release what is held, end cleanly."""
        ...

    async def fail(self, message: str, code: str) -> Step:
        """The upstream broke mid-stream: release what is held (screened), then an error frame."""
        ...

    def error(self, message: str, code: str) -> bytes:
        """An error frame in this dialect (nothing held is released)."""
        ...
