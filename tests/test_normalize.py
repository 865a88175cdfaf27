"""The normalized view (pure): what it folds, what it leaves alone, and its map back to the original."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crest_proxy.policy.model import redact
from crest_proxy.screening.lookalikes import latin_lookalikes
from crest_proxy.screening.normalize import needs_second_look, normalize
from crest_proxy.screening.readings import readings
from crest_proxy.types import Span
from tests.test_obfuscation import OBFUSCATIONS


@pytest.mark.parametrize("obfuscated", list(OBFUSCATIONS.values()), ids=list(OBFUSCATIONS))
def test_every_obfuscation_reads_as_the_word(obfuscated: str) -> None:
    view = normalize(f"Say {obfuscated} now.")
    assert "kaboom" in view.text.lower()


@pytest.mark.parametrize("obfuscated", list(OBFUSCATIONS.values()), ids=list(OBFUSCATIONS))
def test_the_word_maps_back_to_exactly_its_original_characters(obfuscated: str) -> None:
    text = f"Say {obfuscated} now."
    view = normalize(text)
    found = view.text.lower().index("kaboom")
    start, end = view.to_original(found, found + len("kaboom"))
    # Only invisible characters (which belong to their neighbours) may stay outside the word's range.
    assert visible(text[:start]) in ("Say ", "Say note") and visible(text[end:]) == " now."
    assert start < end


def visible(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


@pytest.mark.parametrize(
    "hidden",
    [
        "ka\u200bbо\u00adom",  # invisible characters and a Cyrillic о
        "k&#97;b%6Fom",  # markup escapes: each is replaced whole
        "a2Fib29t",  # base64: the run is replaced
    ],
    ids=["invisible-and-lookalike", "escapes", "base64"],
)
def test_a_mapped_span_redacts_the_obfuscated_word_and_nothing_else(hidden: str) -> None:
    text = f"Keep this. Say {hidden} now. Keep that."
    view = normalize(text)
    found = view.text.index("kaboom")
    span = Span(*view.to_original(found, found + 6), "crest")
    assert redact(text, [span], "[X]") == "Keep this. Say [X] now. Keep that."


@pytest.mark.parametrize(
    "text",
    [
        "Plain ASCII text, nothing to fold.",
        "Привет! Как дела? Мой дом рядом с рекой.",
        "Το καλό παιδί διαβάζει ένα βιβλίο.",
        "Le café est très bon, merci beaucoup.",
        "Việt Nam là một đất nước xinh đẹp.",
        "我今天很好，你呢？（测试）",
        "日本語のテキスト。ﾊﾝｶｸ",
        "I ❤️ this 👨‍👩‍👧 photo.",
        "नमस्ते, आप कैसे हैं?",
        "مرحبا كيف حالك؟",
        "สวัสดีครับ วันนี้อากาศดีมาก",
    ],
)
def test_ordinary_text_needs_no_second_look(text: str) -> None:
    assert not needs_second_look(text, normalize(text))


def test_ascii_is_its_own_view() -> None:
    view = normalize("hello")
    assert view.text == "hello" and view.to_original(1, 3) == (1, 3)


def test_lookalike_table_is_derived_from_ts39_data() -> None:
    table = latin_lookalikes()
    assert len(table) > 1000  # derived, not typed in
    assert table["\u0430"] == "a" and table["\u039a"] == "K" and table["🅚"] == "K"
    assert all(
        not source.isascii() and target.isascii() and target.isalpha() for source, target in table.items()
    )


def test_russian_prose_keeps_its_letters_but_a_mixed_word_is_folded() -> None:
    assert normalize("Это сок.").text == "Это сок."
    assert normalize("Это очень хороший сок, kаboom.").text == "Это очень хороший сок, kaboom."


@given(st.text(max_size=60))
def test_the_map_always_points_into_the_original(text: str) -> None:
    view = normalize(text)
    assert len(view.starts) == len(view.ends) == len(view.text)
    for start, end in zip(view.starts, view.ends, strict=True):
        assert 0 <= start <= end <= len(text)
    if view.text:
        start, end = view.to_original(0, len(view.text))
        assert 0 <= start <= end <= len(text)


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=40))
def test_nfkc_only_differences_need_no_second_look(text: str) -> None:
    wide = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)
    view = normalize(wide)
    assert view.text == unicodedata.normalize("NFKC", wide)
    assert not needs_second_look(wide, view)


def test_readings_map_junctions_back_to_each_part() -> None:
    found = readings(["How to kab", "oom now."], ["m", "m"])
    glued = next(r for r in found if r.text == "How to kaboom now.")
    located = glued.locate(7, 13)
    assert [(loc.index, loc.start, loc.end) for loc in located] == [(0, 7, 10), (1, 0, 3)]
    assert glued.blame == (1,)


@pytest.mark.parametrize(
    ("text", "view"),
    [
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("caf%C3%A9 &#x263A;", "café ☺"),
        ("a&#8203;b", "ab"),  # a decoded zero-width space is dropped like a literal one
        ("100% sure, AT&T, &unknown; %zz %C3", "100% sure, AT&T, &unknown; %zz %C3"),  # not escapes
    ],
)
def test_markup_escapes_are_read_as_what_they_stand_for(text: str, view: str) -> None:
    assert normalize(text).text == view
