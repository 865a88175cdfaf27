"""The texts per-token logprobs spell (``wire.alternatives``): chosen tokens, then one reading per rank."""

from __future__ import annotations

from typing import Any

import pytest

from crest_proxy.wire import alternatives


def _entry(token: Any, *others: Any) -> dict[str, Any]:
    top = [{"token": token, "logprob": -0.1}, *({"token": o, "logprob": -2.0} for o in others)]
    return {"token": token, "logprob": -0.1, "bytes": None, "top_logprobs": top}


def test_chat_and_responses_lists_read_chosen_then_each_rank() -> None:
    logprobs = [_entry("Hi", "Hello", "Hey"), _entry(" there", " you"), _entry(".")]
    # Rank 0 repeats the chosen tokens (read once); a position with fewer alternatives keeps its token.
    assert alternatives.readings(logprobs) == ["Hi there.", "Hello you.", "Hey there."]
    assert alternatives.chosen_tokens(logprobs) == ["Hi", " there", "."]


def test_legacy_completions_read_the_parallel_lists() -> None:
    logprobs = {
        "tokens": ["Hi", " there"],
        "token_logprobs": [-0.1, -0.2],
        "top_logprobs": [{"Hi": -0.1, "Yo": -1.0}, None],
        "text_offset": [0, 2],
    }
    assert alternatives.readings(logprobs) == ["Hi there", "Yo there"]


@pytest.mark.parametrize(
    ("logprobs", "expected"),
    [
        (None, []),
        ([], []),
        ({"tokens": None, "top_logprobs": None}, []),
        ([{"token": 7, "top_logprobs": [{"token": "kaboom"}, {"token": None}]}], ["kaboom"]),
        (["not an entry", _entry("ok", "fine")], ["ok", "fine"]),
        # Ragged parallel lists: a top_logprobs entry with no chosen token is still read.
        ({"tokens": ["a"], "top_logprobs": [{"a": -1}, {"kaboom": -1}]}, ["a", "akaboom"]),
    ],
)
def test_odd_shapes_are_read_as_far_as_they_hold_strings(logprobs: Any, expected: list[str]) -> None:
    assert alternatives.readings(logprobs) == expected


def test_chosen_tokens_refuse_a_list_holding_a_non_string() -> None:
    assert alternatives.chosen_tokens([_entry("a"), {"token": 1}]) is None
    assert alternatives.chosen_tokens(["a", "b"]) == ["a", "b"]  # legacy ``tokens``
    assert alternatives.chosen_tokens({"tokens": []}) is None


def test_bytes_that_spell_something_else_are_read_too() -> None:
    hidden = {"token": "Hi", "logprob": -0.1, "bytes": list(b"kaboom"), "top_logprobs": []}
    assert alternatives.readings([hidden, _entry(".")]) == ["Hi.", "kaboom."]
    other = _entry("Hi", "Yo")
    other["top_logprobs"][1]["bytes"] = list(b"ka")
    assert alternatives.readings([other, _entry("boom")]) == ["Hiboom", "Yoboom", "kaboom"]


def test_bytes_of_one_character_split_across_tokens_decode_whole() -> None:
    euro = "€".encode()
    split = [
        {"token": "\ufffd", "bytes": list(euro[:1]), "top_logprobs": []},
        {"token": "\ufffd", "bytes": list(euro[1:]), "top_logprobs": []},
    ]
    assert alternatives.readings(split) == ["\ufffd\ufffd", "€"]
    # Bytes that agree with their tokens add nothing (and cost no decoding).
    assert alternatives.readings([_entry("Hi", "Yo")]) == ["Hi", "Yo"]
