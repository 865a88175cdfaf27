"""Sentence segmentation: exact cover of the text, boundaries per script, streaming hold-back."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crest_proxy.screening.segment import Segment, complete_prefix, segment


def pieces(text: str, max_chars: int = 400) -> list[str]:
    return [text[s.start : s.end] for s in segment(text, max_chars=max_chars)]


def assert_exact_cover(text: str, segments: list[Segment], max_chars: int) -> None:
    assert "".join(text[s.start : s.end] for s in segments) == text
    if not text:
        assert segments == []
        return
    assert segments[0].start == 0 and segments[-1].end == len(text)
    for prev, nxt in zip(segments, segments[1:], strict=False):
        assert prev.end == nxt.start
    assert all(0 < s.end - s.start <= max_chars for s in segments)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Hello world. Pi is 3.14 today! Is it? Yes",
            ["Hello world. ", "Pi is 3.14 today! ", "Is it? ", "Yes"],
        ),
        (
            "Dr. Smith arrived, e.g. at noon. Then he left.",
            ["Dr. Smith arrived, e.g. at noon. ", "Then he left."],
        ),
        ('He said "no." Then left.', ['He said "no." ', "Then left."]),
        ("Wait... what?!  Really.\n", ["Wait... ", "what?!  ", "Really.\n"]),
        ("Visit example.com/a.b now. Ok", ["Visit example.com/a.b now. ", "Ok"]),
        ("你好。今天天气很好！你呢？好", ["你好。", "今天天气很好！", "你呢？", "好"]),
        ("「行こう。」と言った。", ["「行こう。」", "と言った。"]),
        ("यह पहला वाक्य है। यह दूसरा है॥ तीसरा", ["यह पहला वाक्य है। ", "यह दूसरा है॥ ", "तीसरा"]),
        ("আমি ভালো আছি। তুমি কেমন আছ?", ["আমি ভালো আছি। ", "তুমি কেমন আছ?"]),
        ("هل أنت بخير؟ نعم. شكرا جزيلا", ["هل أنت بخير؟ ", "نعم. ", "شكرا جزيلا"]),
        ("یہ پہلا جملہ ہے۔ یہ دوسرا ہے", ["یہ پہلا جملہ ہے۔ ", "یہ دوسرا ہے"]),
        ("# Title\r\n- one\n- two\n\nEnd", ["# Title\r\n", "- one\n", "- two\n\n", "End"]),
    ],
)
def test_sentence_boundaries(text: str, expected: list[str]) -> None:
    assert pieces(text) == expected
    assert_exact_cover(text, segment(text), 400)


def test_empty_text_has_no_segments() -> None:
    assert segment("") == []
    assert complete_prefix("", max_chars=10) == 0


def test_thai_without_punctuation_splits_at_spaces() -> None:
    # Thai marks phrase ends with spaces only; vowel signs (Mn) must stay with their consonant.
    phrase = "ฉันชอบกินข้าวผัดมาก"
    text = " ".join([phrase] * 12)
    parts = pieces(text, max_chars=50)
    assert_exact_cover(text, segment(text, max_chars=50), 50)
    assert len(parts) > 1
    assert all(p.rstrip(" ") in {phrase, " ".join([phrase, phrase])} for p in parts)


def test_long_sentence_without_spaces_is_hard_split_on_grapheme_boundaries() -> None:
    text = "क्षत्रिय" * 30  # Devanagari with virama and vowel signs (combining marks)
    segs = segment(text, max_chars=25)
    assert_exact_cover(text, segs, 25)
    for s in segs[1:]:
        assert unicodedata.category(text[s.start]) not in ("Mn", "Mc", "Me")


def test_hard_split_never_separates_crlf_or_zwj_sequences() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    text = ("ab\r\n" + family + "\U0001f44d\U0001f3fd") * 20
    segs = segment(text, max_chars=7)
    assert_exact_cover(text, segs, 7)
    for s in segs[1:]:
        assert not (text[s.start - 1] == "\r" and text[s.start] == "\n")
        assert text[s.start - 1] != "\u200d" and text[s.start] != "\u200d"
        assert text[s.start] != "\U0001f3fd"


def test_over_long_sentence_prefers_last_space() -> None:
    text = "alpha beta gamma delta epsilon zeta eta theta."
    assert pieces(text, max_chars=20) == ["alpha beta gamma ", "delta epsilon zeta ", "eta theta."]


@given(st.text(max_size=300), st.integers(min_value=1, max_value=40))
@settings(max_examples=300, deadline=None)
def test_segments_cover_any_text_exactly(text: str, max_chars: int) -> None:
    assert_exact_cover(text, segment(text, max_chars=max_chars), max_chars)


_SCRIPTS = st.sampled_from(
    [
        "Hello there. ",
        "3.14 ",
        "你好。",
        "世界！",
        "नमस्ते। ",
        "॥",
        "؟",
        "۔",
        "สวัสดีครับ ",
        "\r\n",
        " ",
        "e.g. ",
        "…",
    ]
)


@given(st.lists(_SCRIPTS, max_size=40), st.integers(min_value=1, max_value=30))
@settings(max_examples=200, deadline=None)
def test_segments_cover_multilingual_mixes(parts: list[str], max_chars: int) -> None:
    text = "".join(parts)
    assert_exact_cover(text, segment(text, max_chars=max_chars), max_chars)


@given(st.text(max_size=200), st.integers(min_value=1, max_value=50))
@settings(max_examples=200, deadline=None)
def test_complete_prefix_is_within_text_and_forced_when_long(text: str, max_chars: int) -> None:
    n = complete_prefix(text, max_chars=max_chars)
    assert 0 <= n <= len(text)
    if len(text) > max_chars:
        assert n > 0  # a stream never holds back more than it must


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The value is 3.", 0),  # "3." may become "3.14"
        ("The value is 3.14", 0),
        ("The value is 3.14. Next", len("The value is 3.14. ")),
        ("One. Two! Three", len("One. Two! ")),
        ("e.g", 0),
        ("See e.g. this", 0),
        ("你好。世", len("你好。")),
        ("你好！", len("你好！")),
        ("यह है।", len("यह है।")),
        ("هل أنت بخير؟", len("هل أنت بخير؟")),
        ("line one\n", len("line one\n")),
        ("Done.\r", len("Done.")),  # '\n' may follow: never split CRLF
        ('He said "no." ', len('He said "no." ')),
    ],
)
def test_complete_prefix_on_partial_text(text: str, expected: int) -> None:
    assert complete_prefix(text, max_chars=100) == expected


def test_complete_prefix_forces_a_cut_at_the_last_space_when_long() -> None:
    text = "aaaa bbbb cccc dddd"
    assert complete_prefix(text, max_chars=12) == len("aaaa bbbb ")
    assert complete_prefix("aaaa bbbb", max_chars=12) == 0


def test_complete_prefix_forced_cut_is_grapheme_safe() -> None:
    text = "e\u0301" * 10  # 'e' + combining acute, no spaces
    n = complete_prefix(text, max_chars=5)
    assert 0 < n <= 5 and n % 2 == 0


def test_max_chars_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        segment("x", max_chars=0)
    with pytest.raises(ValueError, match="max_chars"):
        complete_prefix("x", max_chars=0)
