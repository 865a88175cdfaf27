"""Obfuscated unsafe words are blocked (issue 13, item 4): inbound and outbound, streamed and not.

Every row writes the trigger word "kaboom" so that a reader (or the model) still reads it, but the
characters differ. Each goes through the real OpenAI SDK against the running proxy.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.harness import Harness

WORD = "kaboom"


def _math(word: str, lower_a: int) -> str:
    """``word`` in a mathematical alphabet whose small ``a`` is ``lower_a``."""
    return "".join(chr(lower_a + ord(ch) - ord("a")) for ch in word)


def _between(word: str, mark: str) -> str:
    return mark.join(word)


def _after_each(word: str, mark: str) -> str:
    return "".join(ch + mark for ch in word)


def _tags(text: str) -> str:
    return "".join(chr(0xE0000 + ord(ch)) for ch in text)


OBFUSCATIONS: dict[str, str] = {
    "zero-width-space": "ka\u200bboom",
    "zero-width-non-joiner": "kab\u200coom",
    "zero-width-joiner": "ka\u200dbo\u200dom",
    "word-joiner": "kab\u2060oom",
    "byte-order-mark": "\ufeffka\ufeffboom",
    "soft-hyphen": "ka\u00adboom",
    "zero-width-everywhere": _between(WORD, "\u200b"),
    "fullwidth": "ｋａｂｏｏｍ",
    "math-bold": _math(WORD, 0x1D41A),
    "math-italic": _math(WORD, 0x1D44E),
    "math-script": "\U0001d4c0\U0001d4b6\U0001d4b7\u2134\u2134\U0001d4c2",
    "math-fraktur": _math(WORD, 0x1D51E),
    "math-double-struck": _math(WORD, 0x1D552),
    "math-monospace": _math(WORD, 0x1D68A),
    "math-sans-bold": _math(WORD, 0x1D5EE),
    "circled": "ⓚⓐⓑⓞⓞⓜ",
    "negative-circled": "🅚🅐🅑🅞🅞🅜",
    "regional-indicators": "🇰🇦🇧🇴🇴🇲",
    "combining-overlay": _after_each(WORD, "\u0336"),
    "combining-acute": _after_each(WORD, "\u0301"),
    "zalgo": _after_each(WORD, "\u0353\u033d\u0358"),
    "cyrillic-homoglyphs": "k\u0430b\u043e\u043em",
    "cyrillic-k-and-m": "\u043aab\u043eo\u043c",
    "greek-homoglyphs": "k\u03b1b\u03bf\u03bfm",
    "greek-capitals": "ΚΑΒΟΟΜ",
    "armenian-o": "kab\u0585\u0585m",
    "bidi-override-inside": "ka\u202eboom\u202c",
    "bidi-override-reversed": "\u202emoobak\u202c",
    "bidi-marks": "ka\u200fbo\u200eom",
    "bidi-isolates": "ka\u2067boo\u2069m",
    "tag-characters-inside": "kab\U000e0041oom",
    "tag-smuggled-text": "note" + _tags(" kaboom"),
    "variation-selectors": _after_each(WORD, "\ufe0f"),
    "combining-grapheme-joiner": "ka\u034fboom",
    "hangul-filler": "ka\u3164boom",
    "mixed": "ｋ\u200b\u0430b\u00ad\U0001d428om",
    "html-decimal": "&#107;&#97;&#98;&#111;&#111;&#109;",
    "html-hex": "&#x6B;&#x61;&#x62;&#x6f;&#x6f;&#x6d;",
    "html-no-semicolons": "&#107&#97&#98&#111&#111&#109",
    "html-one-letter": "ka&#98;oom",
    "percent-encoded": "%6B%61%62%6F%6F%6D",
    "percent-one-letter": "kab%6Fom",
    "percent-encoded-lookalike": "k%D0%B0boom",
    "base64": "a2Fib29t",
    "base64-urlsafe-lookalike": "a9CwYm9vbQ",  # "kаboom" with a Cyrillic а, no padding
}


@pytest.fixture()
def fresh(harness: Harness) -> Iterator[Harness]:
    """The harness with the fake upstream's script reset after the test."""
    yield harness
    harness.upstream.reply = "Hello! How can I help you today?"
    harness.upstream.stream_pieces = None


def _ask(harness: Harness, text: str, *, stream: bool) -> None:
    messages = [{"role": "user", "content": f"Tell me about {text} please."}]
    with harness.client("blocker") as client:
        result = client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=stream)  # type: ignore[call-overload]
        if stream:
            list(result)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("obfuscated", list(OBFUSCATIONS.values()), ids=list(OBFUSCATIONS))
def test_obfuscated_word_in_a_request_is_blocked(fresh: Harness, obfuscated: str, stream: bool) -> None:
    before = len(fresh.upstream.received)
    with pytest.raises(openai.BadRequestError) as caught:
        _ask(fresh, obfuscated, stream=stream)
    assert caught.value.status_code == 400
    assert len(fresh.upstream.received) == before  # never forwarded


@pytest.mark.parametrize("obfuscated", list(OBFUSCATIONS.values()), ids=list(OBFUSCATIONS))
def test_obfuscated_word_in_an_answer_is_blocked(fresh: Harness, obfuscated: str) -> None:
    fresh.upstream.reply = f"Sure, {obfuscated} is here."
    with fresh.client("blocker") as client:
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    choice = completion.choices[0]
    assert choice.finish_reason == "content_filter"
    assert obfuscated not in (choice.message.content or "")


@pytest.mark.parametrize("obfuscated", list(OBFUSCATIONS.values()), ids=list(OBFUSCATIONS))
def test_obfuscated_word_in_a_streamed_answer_is_blocked(fresh: Harness, obfuscated: str) -> None:
    answer = f"Sure, {obfuscated} is here. And more."
    fresh.upstream.stream_pieces = [answer[i : i + 3] for i in range(0, len(answer), 3)]
    with fresh.client("blocker") as client:
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["content_filter"]
    assert obfuscated not in text and "Sure" not in text


def test_there_are_at_least_24_obfuscations() -> None:
    assert len(OBFUSCATIONS) >= 24


SAFE_TEXTS = [
    "Привет! Как дела? Мой дом рядом с рекой.",
    "Το καλό παιδί διαβάζει ένα βιβλίο.",
    "Le café est très bon, merci beaucoup.",
    "Việt Nam là một đất nước xinh đẹp.",
    "我今天很好，你呢？",
    "می‌خواهم به خانه بروم.",
    "I ❤️ this 👨‍👩‍👧 family photo.",
    "The skill of ｔｙｐｏｇｒａｐｈｙ is 𝐛𝐨𝐥𝐝.",
]


@pytest.mark.parametrize("text", SAFE_TEXTS)
def test_ordinary_text_in_any_script_still_passes(fresh: Harness, text: str) -> None:
    with fresh.client("blocker") as client:
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
        )
    assert completion.choices[0].finish_reason == "stop"
    assert fresh.upstream.last.body["messages"][0]["content"] == text


def test_a_rule_matches_the_normalized_view(fresh: Harness) -> None:
    # The blocker tenant's openai_key rule (sk-[A-Za-z0-9]{20,}) still sees a key split by a zero-width space.
    key = "sk-" + "A" * 10 + "\u200b" + "B" * 12
    with fresh.client("blocker") as client, pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"key {key}"}]
        )


def test_a_rule_match_in_the_view_redacts_exactly_the_original_characters(fresh: Harness) -> None:
    # The redactor tenant's email rule, on an address written with a soft hyphen and a fullwidth "@".
    text = "Write to ana\u00adbel＠example.com today."
    with fresh.client("redactor") as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
    assert fresh.upstream.last.body["messages"][0]["content"] == "Write to [gone] today."
