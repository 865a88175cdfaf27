"""Which text slots of a body a tenant's policy screens, and the body fields a redaction rewrites."""

from __future__ import annotations

from collections.abc import Sequence

from crest_proxy.policy.model import Policy
from crest_proxy.screening.guard import Screening
from crest_proxy.types import Direction
from crest_proxy.wire.slots import TextSlot


def screened_slots(policy: Policy, direction: Direction, slots: Sequence[TextSlot]) -> list[TextSlot]:
    """The slots the policy asks to screen (roles and tool-call arguments are configurable)."""
    side = policy.side(direction)
    roles = set(side.roles)
    return [
        s
        for s in slots
        if (s.role is None or s.role in roles) and (side.tool_calls or s.kind != "tool_arguments")
    ]


def replacements(slots: Sequence[TextSlot], screening: Screening) -> dict[TextSlot, str]:
    """The new text of every screened slot a redaction changed, by slot (``wire.replace_texts`` keys).

    Keyed by slot, not path: the strings inside one JSON-encoded field share its path (issue 13).
    """
    return {
        s: new
        for s, new, old in zip(slots, screening.redacted_texts(), screening.texts, strict=True)
        if new != old
    }
