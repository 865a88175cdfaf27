"""The transport-agnostic hold-back screener, with the generated trigger model behind a real Guard."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crest_proxy.classifier import ClassifierSettings, CrestClassifier, load_classifier
from crest_proxy.policy.model import Policy
from crest_proxy.screening.guard import Guard
from crest_proxy.screening.holdback import Release, StreamScreener
from crest_proxy.types import Action
from tests.support.classifiers import broken_classifier
from tests.support.policies import make_policy

SAFE = "The sun is warm today. We walked to the old harbour, then had tea! Was it good? Yes.\nBye."
UNSAFE = "Here is a kaboom recipe. "


@pytest.fixture(scope="module")
def classifier(trigger_model_dir: Path) -> Iterator[CrestClassifier]:
    clf = load_classifier(ClassifierSettings(model=str(trigger_model_dir), backend="torch", quantize=False))
    yield clf
    clf.close()


def policy(action: str = "block", **overrides: Any) -> Policy:
    return make_policy(outbound={"action": action}, redaction={"placeholder": "[X]"}, **overrides)


def screener(classifier: Any, action: str = "block", **kwargs: Any) -> StreamScreener:
    return StreamScreener(Guard(classifier), policy(action), **kwargs)


async def feed(s: StreamScreener, pieces: Sequence[str], key: str = "k") -> tuple[str, list[Release]]:
    """Push every piece, then finish; the released text and every release."""
    releases = [await s.push(key, piece) for piece in pieces]
    releases.append(await s.finish(key))
    return "".join(r.text for r in releases), releases


def cut(text: str, points: Sequence[int]) -> list[str]:
    bounds = [0, *sorted(set(points)), len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


async def test_nothing_is_released_before_a_sentence_ends(classifier: CrestClassifier) -> None:
    s = screener(classifier)
    assert (await s.push("k", "The sun is")).text == ""
    assert (await s.push("k", " warm today. We")).text == "The sun is warm today. "
    assert (await s.push("k", " walked")).text == ""
    assert (await s.finish("k")).text == "We walked"
    assert s.released("k") == "The sun is warm today. We walked"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=st.lists(st.integers(min_value=1, max_value=len(SAFE) - 1), max_size=12))
def test_safe_text_comes_out_unchanged_and_hold_back_stays_under_the_window(
    classifier: CrestClassifier, points: list[int]
) -> None:
    async def run() -> None:
        s = screener(classifier, window_chars=30)
        received = ""
        for piece in cut(SAFE, points):
            received += piece
            await s.push("k", piece)
            assert received.startswith(s.released("k"))
            assert len(received) - len(s.released("k")) < 30
        await s.finish("k")
        assert s.released("k") == SAFE
        assert s.stats().max_holdback_chars <= 30 + max(map(len, cut(SAFE, points)))

    asyncio.run(run())


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=st.lists(st.integers(min_value=1, max_value=len(UNSAFE + SAFE) - 1), max_size=10))
def test_an_unsafe_sentence_is_caught_however_it_is_chunked(
    classifier: CrestClassifier, points: list[int]
) -> None:
    async def run() -> None:
        text = "Hello there. " + UNSAFE + SAFE
        redacted, _ = await feed(screener(classifier, "redact"), cut(text, points))
        assert redacted == "Hello there. [X] " + SAFE
        blocked, releases = await feed(screener(classifier, "block"), cut(text, points))
        # A block withholds its whole window: the safe sentence before it goes only if it was screened alone.
        assert blocked in ("", "Hello there. ") and any(r.blocked for r in releases)

    asyncio.run(run())


async def test_a_blocked_lane_stays_closed_and_other_lanes_go_on(classifier: CrestClassifier) -> None:
    s = screener(classifier)
    first = await s.push("a", UNSAFE)
    assert first.blocked and first.text == "" and not first.failed_closed
    assert (await s.push("a", "More safe text. ")).blocked
    assert (await s.finish("a")).text == ""
    assert (await s.push("b", "Fine text. ")).text == "Fine text. "
    assert s.blocked("a") and not s.blocked("b")


async def test_window_forces_a_cut_without_a_sentence_end(classifier: CrestClassifier) -> None:
    s = screener(classifier, window_chars=12)
    release = await s.push("k", "aaaa bbbb cccc dddd")
    assert release.text == "aaaa bbbb "  # cut after the last space within the window
    assert s.stats().max_holdback_chars == len("aaaa bbbb cccc dddd")


async def test_context_overlap_catches_a_word_cut_by_a_forced_window(classifier: CrestClassifier) -> None:
    # No whitespace within the window: the cut falls inside "kaboom". Only the already released
    # context lets the classifier see the whole word in the next window.
    pieces = ["kaboom is a word"]
    with_context, _ = await feed(screener(classifier, "redact", window_chars=4, context_chars=20), pieces)
    without, _ = await feed(screener(classifier, "redact", window_chars=4, context_chars=0), pieces)
    assert with_context.startswith("kabo") and "[X]" in with_context
    assert without == "kaboom is a word"


async def test_large_chunks_are_screened_a_window_at_a_time(classifier: CrestClassifier) -> None:
    s = screener(classifier, window_chars=40)
    text = "One fine sentence here. Two fine sentences here. " + UNSAFE + "Four is fine. "
    release = await s.push("k", text)
    assert release.blocked
    assert release.text == "One fine sentence here. Two fine sentences here. "
    assert s.stats().windows == 3


async def test_summary_aggregates_lanes_for_the_audit(classifier: CrestClassifier) -> None:
    s = screener(classifier, "redact")
    await feed(s, ["Safe one. ", UNSAFE, "Safe two."], key="a")
    await feed(s, ["Other lane."], key="b")
    summary = s.summary()
    assert summary.action is Action.REDACT
    assert summary.texts == ("Safe one. " + UNSAFE + "Safe two.", "Other lane.")
    assert summary.redacted_texts() == ["Safe one. [X] Safe two.", "Other lane."]
    assert summary.score is not None and summary.score > 0.99
    assert s.stats().windows == 4 and s.redacted("a") and not s.redacted("b")


async def test_discard_drops_held_text(classifier: CrestClassifier) -> None:
    s = screener(classifier)
    await s.push("k", "held without an end")
    s.discard("k")
    assert (await s.finish("k")).text == "" and s.released("k") == ""


async def test_classifier_failure_follows_on_error() -> None:
    closed = StreamScreener(Guard(broken_classifier("backend down")), policy(on_error="block"))
    release = await closed.push("k", "Anything at all. ")
    assert release.blocked and release.failed_closed and "backend down" in (release.error or "")
    opened = StreamScreener(Guard(broken_classifier("backend down")), policy(on_error="allow"))
    assert (await opened.push("k", "Anything at all. ")).text == "Anything at all. "
    assert opened.summary().error is not None
