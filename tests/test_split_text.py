"""Split text is seen whole (issue 13, item 5): parts of one message joined, each message after the last.

The trigger model flags "kaboom"; "kab" and "oom" alone are safe. Requests go through the real OpenAI
SDK against the running proxy; redaction must land on the parts that held the unsafe sentence.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest

from crest_proxy.classifier import CrestClassifier
from crest_proxy.policy.model import Policy
from crest_proxy.screening.guard import Guard
from crest_proxy.screening.readings import JUNCTION_CHARS
from crest_proxy.types import Action, Direction
from tests.support.harness import Harness


def parts(*texts: str) -> list[dict[str, str]]:
    return [{"type": "text", "text": t} for t in texts]


def chat(harness: Harness, tenant: str, messages: list[dict[str, Any]]) -> Any:
    with harness.client(tenant) as client:
        return client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]


SPLITS: dict[str, list[dict[str, Any]]] = {
    "word-across-parts": [{"role": "user", "content": parts("Tell me how to kab", "oom now.")}],
    "word-across-three-parts": [{"role": "user", "content": parts("Say ka", "b", "oom.")}],
    "word-with-invisible-at-the-split": [{"role": "user", "content": parts("Say kab\u200b", "\u00adoom.")}],
    "obfuscated-word-across-parts": [{"role": "user", "content": parts("Say k\u0430b", "\u043eom.")}],
    "word-across-messages": [
        {"role": "user", "content": "Let us talk about kab"},
        {"role": "user", "content": "oom today."},
    ],
    "word-across-roles": [
        {"role": "system", "content": "The topic is kab"},
        {"role": "user", "content": "oom, explain it."},
    ],
    "word-across-assistant-and-user": [
        {"role": "user", "content": "Finish my word: zar"},
        {"role": "assistant", "content": "quon? Sure."},
    ],
}


@pytest.mark.parametrize("messages", list(SPLITS.values()), ids=list(SPLITS))
def test_a_split_unsafe_word_is_blocked(harness: Harness, messages: list[dict[str, Any]]) -> None:
    before = len(harness.upstream.received)
    with pytest.raises(openai.BadRequestError):
        chat(harness, "blocker", messages)
    assert len(harness.upstream.received) == before


def test_redaction_lands_on_the_parts_that_held_the_sentence(harness: Harness) -> None:
    messages = [{"role": "user", "content": parts("Hello there. How to kab", "oom now. Bye.", "Fine part.")}]
    chat(harness, "redactor", messages)
    sent = [p["text"] for p in harness.upstream.last.body["messages"][0]["content"]]
    assert sent == ["Hello there. [gone]", "[gone] Bye.", "Fine part."]


def test_redaction_across_messages_keeps_the_safe_sentences(harness: Harness) -> None:
    messages = [
        {"role": "user", "content": "Hi. We discuss kab"},
        {"role": "user", "content": "oom recipes here. Thanks!"},
    ]
    chat(harness, "redactor", messages)
    sent = [m["content"] for m in harness.upstream.last.body["messages"]]
    assert sent == ["Hi. [gone]", "[gone] Thanks!"]
    assert "kab" not in str(harness.upstream.last.body) and "oom" not in str(harness.upstream.last.body)


def test_split_responses_input_parts_are_blocked(harness: Harness) -> None:
    content = [{"type": "input_text", "text": "Explain kab"}, {"type": "input_text", "text": "oom please"}]
    with harness.client("blocker") as client, pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": content}])  # type: ignore[list-item]


SAFE_SPLITS = [
    [{"role": "user", "content": parts("The skill", " is fine.")}],
    [{"role": "user", "content": "Tell me a story."}, {"role": "user", "content": "About a boat."}],
    [{"role": "user", "content": "x" * (JUNCTION_CHARS * 3) + " kab"}, {"role": "user", "content": "le"}],
]


@pytest.mark.parametrize("messages", SAFE_SPLITS)
def test_safe_split_text_still_passes(harness: Harness, messages: list[dict[str, Any]]) -> None:
    completion = chat(harness, "blocker", messages)
    assert completion.choices[0].finish_reason == "stop"


def make_policy(action: str) -> Policy:
    return Policy.model_validate(
        {
            "tenant": "t1",
            "keys": ["sha256:" + "ab" * 32],
            "upstream": {"base_url": "https://api.example.com/v1"},
            "inbound": {"action": action},
            "redaction": {"placeholder": "[X]"},
        }
    )


def test_an_unsafe_message_does_not_redact_the_safe_message_after_it(classifier: CrestClassifier) -> None:
    # The junction "...kaboom. / Fine." is unsafe, but only because of the text before it.
    texts = ["A kaboom. ", "Fine words here."]
    screening = asyncio.run(Guard(classifier).screen(make_policy("redact"), Direction.INBOUND, texts))
    assert screening.redacted_texts() == ["[X] ", "Fine words here."]


def test_a_long_tail_is_read_only_near_the_junction(classifier: CrestClassifier) -> None:
    texts = ["Intro. " + "word " * 200 + "kab", "oom ends it."]
    screening = asyncio.run(Guard(classifier).screen(make_policy("block"), Direction.INBOUND, texts))
    assert screening.action is Action.BLOCK


def test_text_parts_of_one_message_share_a_group() -> None:
    from crest_proxy import wire

    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": parts("a", "b")},
            {"role": "user", "content": "c"},
        ],
    }
    slots = wire.request_texts("chat.completions", body)
    groups = {s.text: s.group for s in slots}
    assert groups["a"] == groups["b"] != groups["c"]


def test_json_values_are_separate_texts_so_redaction_rewrites_only_the_offending_value(
    harness: Harness,
) -> None:
    """A model reads quotes and commas between JSON strings: one unsafe value must not redact its neighbours,
    and a newline inside a value (an escape in the raw JSON) is a word break, not glue (issue 13)."""
    arguments = json.dumps({"a": "hello there", "q": "Steps:\nkaboom assembly", "b": "fine", "w": "Привет"})
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": arguments}}
    messages = [
        {"role": "user", "content": "Look it up."},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
    ]
    chat(harness, "redactor", messages)
    sent = harness.upstream.last.body["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(sent) == {"a": "hello there", "q": "Steps:\n[gone]", "b": "fine", "w": "Привет"}
    with pytest.raises(openai.BadRequestError):
        chat(harness, "blocker", messages)
