"""Exact redaction (issue 13, item 6): only the unsafe sentence's characters are replaced, in every script.

Each case is screened whole (as a non-streamed body is) and streamed through the hold-back screener in
small pieces; both must give exactly the expected bytes. The generated trigger model flags "kaboom".
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from crest_proxy.classifier import CrestClassifier
from crest_proxy.policy.model import Policy
from crest_proxy.screening.guard import Guard
from crest_proxy.screening.holdback import StreamScreener
from crest_proxy.types import Direction
from tests.support.harness import Harness

# (script, text, expected) — the expected text keeps every byte outside the unsafe sentence.
CASES: list[tuple[str, str, str]] = [
    ("latin", "Hello. Here is kaboom now. Bye.", "Hello. [X] Bye."),
    ("latin-newlines", "Fine line.\nA kaboom line.\n\nNext paragraph.", "Fine line.\n[X]\n\nNext paragraph."),
    (
        "markdown-list",
        "# Title\n\n- first item\n- kaboom item\n  - nested\n",
        "# Title\n\n- first item\n- [X]\n  - nested\n",
    ),
    (
        "markdown-numbered",
        "Steps:\n1. Open it.\n2. Add kaboom.\n3. Close.",
        "Steps:\n1. Open it.\n2. [X]\n3. Close.",
    ),
    ("markdown-heading", "## The kaboom part\nBody text.", "## [X]\nBody text."),
    ("markdown-quote", "> quoted kaboom line\n> fine line", "> [X]\n> fine line"),
    ("greek-question-mark", "Γεια σου. Τι είναι kaboom\u037e Καλά.", "Γεια σου. [X] Καλά."),
    ("greek-nfc-semicolon", "Γεια σου. Είναι kaboom κακό; Καλά.", "Γεια σου. [X] Καλά."),
    ("cyrillic", "Привет. Это kaboom рецепт! Пока.", "Привет. [X] Пока."),
    ("armenian-full-stop", "Բարեւ։ Սա kaboom է։ Ցտեսություն։", "Բարեւ։ [X] Ցտեսություն։"),
    ("armenian-question", "Բարեւ։ Ինչ է kaboom՞ Լավ է։", "Բարեւ։ [X] Լավ է։"),
    ("arabic", "مرحبا. هذا kaboom خطير؟ شكرا.", "مرحبا. [X] شكرا."),
    ("hebrew", "שלום. זה kaboom מסוכן! תודה.", "שלום. [X] תודה."),
    ("devanagari", "नमस्ते। यह kaboom है। धन्यवाद॥", "नमस्ते। [X] धन्यवाद॥"),
    ("thai-clause-spaces", "สวัสดีครับ นี่คือ kaboom ครับ ขอบคุณครับ", "สวัสดีครับ [X] ขอบคุณครับ"),
    ("lao-clause-spaces", "ສະບາຍດີ ນີ້ແມ່ນ kaboom ແທ້ ຂອບໃຈ", "ສະບາຍດີ [X] ຂອບໃຈ"),
    ("khmer", "សួស្តី។ នេះ kaboom ណាស់។ អរគុណ។", "សួស្តី។ [X] អរគុណ។"),
    ("ethiopic", "ሰላም። ይህ kaboom ነው። አመሰግናለሁ።", "ሰላም። [X] አመሰግናለሁ።"),
    ("myanmar", "မင်္ဂလာပါ။ ဒါ kaboom ပါ။ ကျေးဇူးပါ။", "မင်္ဂလာပါ။ [X] ကျေးဇူးပါ။"),
    ("tibetan", "བཀྲ་ཤིས་བདེ་ལེགས། འདི་ kaboom རེད། ཐུགས་རྗེ་ཆེ།", "བཀྲ་ཤིས་བདེ་ལེགས། [X] ཐུགས་རྗེ་ཆེ།"),
    ("chinese", "你好。这是 kaboom 吗？谢谢。", "你好。[X]谢谢。"),
    ("ascii-terminator-then-cjk", "你好。Is it kaboom?谢谢。", "你好。[X]谢谢。"),
    ("japanese", "こんにちは。これは kaboom です！ありがとう。", "こんにちは。[X]ありがとう。"),
    ("korean", "안녕하세요. 이것은 kaboom 입니다. 감사합니다.", "안녕하세요. [X] 감사합니다."),
    ("trailing-spaces-kept", "  Fine.  kaboom here.   \n", "  Fine.  [X]   \n"),
    ("crlf", "Fine.\r\nA kaboom here!\r\nBye.", "Fine.\r\n[X]\r\nBye."),
]


def make_policy(action: str = "redact") -> Policy:
    data: dict[str, Any] = {
        "tenant": "t1",
        "keys": ["sha256:" + "ab" * 32],
        "upstream": {"base_url": "https://api.example.com/v1"},
        "inbound": {"action": action},
        "outbound": {"action": action},
        "redaction": {"placeholder": "[X]"},
    }
    return Policy.model_validate(data)


def whole(classifier: CrestClassifier, text: str) -> str:
    screening = asyncio.run(Guard(classifier).screen(make_policy(), Direction.OUTBOUND, [text]))
    return screening.redacted_texts()[0]


def streamed(classifier: CrestClassifier, text: str, size: int) -> str:
    async def run() -> str:
        screener = StreamScreener(Guard(classifier), make_policy())
        out = [(await screener.push("k", text[i : i + size])).text for i in range(0, len(text), size)]
        out.append((await screener.finish("k")).text)
        return "".join(out)

    return asyncio.run(run())


@pytest.mark.parametrize(("script", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_redaction_replaces_only_the_unsafe_sentence(
    classifier: CrestClassifier, script: str, text: str, expected: str
) -> None:
    assert whole(classifier, text) == expected


@pytest.mark.parametrize(("script", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_streamed_redaction_gives_the_same_bytes(
    classifier: CrestClassifier, script: str, text: str, expected: str
) -> None:
    for size in (1, 3, 7, len(text)):
        assert streamed(classifier, text, size) == expected, f"pieces of {size}"


def test_at_least_twelve_scripts_are_covered() -> None:
    scripts = {script.split("-")[0] for script, _, _ in CASES}
    assert len(scripts - {"latin", "markdown", "trailing", "crlf", "ascii"}) >= 12


def test_the_sdk_sees_the_same_bytes_streamed_and_not(harness: Harness) -> None:
    text = (
        "# Plan\n\n- Buy milk.\n- Build the kaboom now.\n\n"
        "Τι είναι kaboom\u037e Καλά. 你好。Is it kaboom?谢谢。"
    )
    expected = "# Plan\n\n- Buy milk.\n- [gone]\n\n[gone] Καλά. 你好。[gone]谢谢。"
    fake = harness.upstream
    fake.reply, fake.stream_pieces = text, [text[i : i + 4] for i in range(0, len(text), 4)]
    messages = [{"role": "user", "content": "hi"}]
    try:
        with harness.client("redactor") as client:
            plain = client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
            chunks = list(
                client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)  # type: ignore[arg-type]
            )
    finally:
        fake.reply, fake.stream_pieces = "Hello! How can I help you today?", None
    assert plain.choices[0].message.content == expected
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
