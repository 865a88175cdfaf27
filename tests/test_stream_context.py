"""Stream context is cut at a word boundary, never mid-word (issue 13, item 7).

Each streamed window is screened after the tail of what was already released. Cut at a character
offset, that tail can start inside a word: "skill" becomes "kill", and here "xkaboom" (safe: the trigger
model flags the whole word "kaboom" only) becomes "kaboom", so a safe stream was blocked.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from crest_proxy.classifier import CrestClassifier
from crest_proxy.policy.model import Policy
from crest_proxy.screening.guard import Guard
from crest_proxy.screening.holdback import StreamScreener
from crest_proxy.screening.segment import word_start
from crest_proxy.types import Direction
from tests.support.harness import Harness

FIRST = "The word xkaboom is safe. "
SECOND = "Next one is fine too."
# A context of this many characters, cut at a character offset, starts right after the "x".
CONTEXT = len(FIRST) - len("The word x")


def make_policy() -> Policy:
    data: dict[str, Any] = {
        "tenant": "t1",
        "keys": ["sha256:" + "ab" * 32],
        "upstream": {"base_url": "https://api.example.com/v1"},
        "outbound": {"action": "block"},
    }
    return Policy.model_validate(data)


def test_the_cut_that_the_old_context_made_is_unsafe(classifier: CrestClassifier) -> None:
    # Proves the case: read from a character offset, the context alone would be flagged.
    old_context = FIRST[-CONTEXT:]
    assert old_context.startswith("kaboom")
    scores = asyncio.run(classifier.classify([old_context + SECOND, FIRST + SECOND]))
    assert scores[0].score > 0.99 and scores[1].score < 0.01


def test_a_safe_stream_is_not_blocked_by_a_context_cut_mid_word(classifier: CrestClassifier) -> None:
    async def run() -> tuple[str, bool]:
        screener = StreamScreener(Guard(classifier), make_policy(), context_chars=CONTEXT)
        released = [(await screener.push("k", piece)).text for piece in (FIRST, SECOND)]
        released.append((await screener.finish("k")).text)
        return "".join(released), screener.blocked("k")

    text, blocked = asyncio.run(run())
    assert not blocked
    assert text == FIRST + SECOND


def test_an_unsafe_word_split_across_windows_is_still_caught(classifier: CrestClassifier) -> None:
    async def run() -> bool:
        screener = StreamScreener(Guard(classifier), make_policy(), window_chars=20, context_chars=40)
        # No space for 20 characters: the window is cut hard, between "ka" and "boom".
        for piece in ("------------------kab", "oom and more words follow here."):
            await screener.push("k", piece)
        await screener.finish("k")
        return screener.blocked("k")

    assert asyncio.run(run())


@pytest.mark.parametrize(
    ("text", "offset", "expected"),
    [
        ("the skill of war", 5, 4),  # inside "skill": back to its start
        ("the skill of war", 4, 4),  # already at a word start
        ("the skill of war", 9, 9),  # at a space
        ("abc", 0, 0),
        ("日本語のテキスト", 3, 3),  # between two CJK characters any cut is a word boundary
        ("e\u0301te\u0301", 1, 0),  # never between a letter and its combining mark
        ("x" * 100 + "yz", 99, 102),  # a word longer than the reach: no context rather than half of it
    ],
)
def test_word_start(text: str, offset: int, expected: int) -> None:
    assert word_start(text, offset) == expected


def test_the_proxy_stream_keeps_a_safe_word_whole_in_its_context(harness: Harness) -> None:
    # With the default context (200 characters), the first window's tail would start right after "x".
    first = "w " * 50 + "x" + "kaboom" + " z" * 96 + ". "
    assert first[-200:].startswith("kaboom") and len(first) < 400
    text = first + "More safe text."
    harness.upstream.stream_pieces = [text[i : i + 5] for i in range(0, len(text), 5)]
    try:
        with harness.client("blocker") as client:
            chunks = list(
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
                )
            )
    finally:
        harness.upstream.stream_pieces = None
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]


def test_guard_reads_context_and_window_as_one_text(classifier: CrestClassifier) -> None:
    screening = asyncio.run(Guard(classifier).screen(make_policy(), Direction.OUTBOUND, ["kab" + "oom"]))
    assert screening.action.value == "block"
