"""What an upstream may send back (issue 14): size caps, malformed answers (502, never 500), keys it echoes,
and a stream hold-back that stays linear in the size of one event."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Iterator, Sequence

import httpx
import pytest

from crest_proxy.classifier import CrestClassifier
from crest_proxy.policy.model import Policy
from crest_proxy.screening import holdback
from crest_proxy.screening.guard import Guard
from crest_proxy.server import memory
from crest_proxy.types import Score
from crest_proxy.upstream import masking, pool
from crest_proxy.wire import strict_json
from tests.support.harness import UPSTREAM_KEY, Harness, running_proxy

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]}


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, classifier: CrestClassifier) -> Iterator[Harness]:
    limits = {"max_upstream_body_bytes": 200_000, "max_upstream_event_bytes": 100_000}
    with running_proxy(tmp_path_factory.mktemp("upstream-limits"), classifier, **limits) as h:
        yield h


@pytest.fixture(autouse=True)
def _reset(harness: Harness) -> Iterator[None]:
    yield
    up = harness.upstream
    up.reply, up.raw_body, up.status, up.error, up.stream_pieces = "Hello!", None, 200, None, None


def test_an_answer_over_the_size_cap_is_a_502(harness: Harness) -> None:
    harness.upstream.reply = "word " * 50_000  # 250 KB of content, over the 200 KB cap
    answer = harness.post("/v1/chat/completions", CHAT, tenant="logger")
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "upstream_too_large"
    harness.upstream.reply = "word " * 1_000
    assert harness.post("/v1/chat/completions", CHAT, tenant="logger").status_code == 200


def test_a_stream_event_over_the_size_cap_ends_the_stream_with_an_error_event(harness: Harness) -> None:
    harness.upstream.stream_pieces = ["Fine. ", "word " * 30_000, "never sent"]  # one 150 KB event
    answer = harness.post("/v1/chat/completions", {**CHAT, "stream": True}, tenant="logger")
    assert answer.status_code == 200
    events = [json.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: {")]
    assert events[-1]["error"]["code"] == "upstream_too_large"
    assert "never sent" not in answer.text and "word word" not in answer.text
    (record,) = [
        r
        for r in harness.records()
        if r["request_id"] == answer.headers["x-request-id"] and r["extra"].get("stream")
    ]
    assert record["extra"]["upstream_error"] == "upstream_too_large"


MALFORMED = {
    "not-json": b"<html>oops</html>",
    "nan": b'{"id": "x", "choices": [], "usage": {"total_tokens": NaN}}',
    "out-of-range": b'{"id": "x", "choices": [], "created": 1e400}',
    "lone-surrogate": b'{"id": "x", "choices": [{"index": 0, "message": {"content": "\\ud800"}}]}',
    "huge-integer": b'{"id": "x", "created": ' + b"1" * 5000 + b"}",
    "array": b"[1, 2, 3]",
    "choices-not-an-array": b'{"id": "x", "object": "chat.completion", "choices": "none"}',
    "text-tucked-in-an-object": (
        b'{"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", '
        b'"content": {"text": "kaboom"}}}]}'
    ),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_answer_is_a_502(harness: Harness, body: bytes) -> None:
    harness.upstream.raw_body = body
    answer = harness.post("/v1/chat/completions", CHAT, tenant="logger")
    assert answer.status_code == 502
    assert answer.json()["error"]["type"] == "api_error"


def test_pieces_of_the_upstream_key_in_an_error_are_masked(harness: Harness) -> None:
    partial = UPSTREAM_KEY[:16]  # "sk-upstream-secr": what OpenAI's "Incorrect API key" message quotes
    harness.upstream.status = 429
    harness.upstream.error = {
        "error": {
            "message": f"Rate limit for key {partial}****{UPSTREAM_KEY[-4:]} (org {UPSTREAM_KEY[5:13]})"
        }
    }
    answer = harness.post("/v1/chat/completions", CHAT, tenant="logger")
    assert answer.status_code == 429
    message = answer.json()["error"]["message"]
    assert partial not in message and UPSTREAM_KEY[5:13] not in message and "***" in message


async def test_pieces_of_the_key_in_upstream_headers_are_masked() -> None:
    key = "sk-live-0123456789abcdef"

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, headers={"x-debug": f"key={key[2:12]}"}, json={"error": {"message": key}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(upstream), base_url="http://up") as client:
        headers = {"authorization": f"Bearer {key}"}
        answer = await pool.post_json(client, "chat/completions", {}, headers, total_s=5)
    assert answer.headers["x-debug"] == "key=***"
    assert json.loads(answer.content) == {"error": {"message": "***"}}


def test_mask_key_fragments_keeps_short_coincidences() -> None:
    key = "sk-upstream-secret-0123456789"
    short = "ends in 6789, id sk-a"  # pieces under 8 characters stay
    assert masking.mask_key_fragments(short, key) == short
    assert masking.mask_key_fragments(f"a {key} b {key[3:11]}", key) == "a *** b ***"


# --- strict JSON --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("NaN", "NaN is not a JSON number"),
        ('{"a": -Infinity}', "-Infinity is not a JSON number"),
        ("[1e400]", "out of range"),
        ('"\\udc00"', "lone UTF-16 surrogate"),
        ("9" * 4301, "4301 digits"),
        ("{", "not valid JSON"),
        (b'"\xff"', "not valid UTF-8"),
        ("[" * 100_000, "nested too deeply"),
    ],
)
def test_strict_json_refuses_what_json_is_not(text: str | bytes, words: str) -> None:
    with pytest.raises(strict_json.JsonRejected, match=words.replace("(", r"\(")):
        strict_json.loads(text)


def test_strict_json_keeps_what_json_is() -> None:
    text = '{"a": [1, -2.5e10, 1e-400, "\\ud83d\\ude00", null, true], "b": ' + "9" * 4300 + "}"
    value = strict_json.loads(text)
    assert value["a"] == [1, -2.5e10, 0.0, "\U0001f600", None, True] and len(str(value["b"])) == 4300


# --- hold-back is linear in one event's size ----------------------------------------------------------


class _Safe:
    async def classify(self, texts: Sequence[str]) -> list[Score]:
        return [Score(0.0, "safe", 1) for _ in texts]


def test_holding_back_one_huge_delta_scans_it_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scanned = 0
    prefix = holdback.complete_prefix

    def counting(text: str, *, max_chars: int) -> int:
        nonlocal scanned
        scanned += len(text)
        return prefix(text, max_chars=max_chars)

    monkeypatch.setattr(holdback, "complete_prefix", counting)
    policy = Policy.model_validate(
        {"tenant": "t", "keys": ["env:K"], "upstream": {"base_url": "http://u/v1"}}
    )
    screener = holdback.StreamScreener(Guard(_Safe(), timeout_s=10), policy)
    delta = "All good here. " * 70_000  # one 1 MB event
    started = time.perf_counter()
    released = asyncio.run(screener.push(0, delta)).text
    released += asyncio.run(screener.finish(0)).text
    assert released == delta
    # Quadratic hold-back scanned what was left for every window: ~n²/(2·window) = 1.4e9 characters here.
    assert scanned <= 3 * len(delta), scanned
    assert time.perf_counter() - started < 60  # generous: the quadratic version took minutes


# --- freed memory goes back to the system -------------------------------------------------------------


async def test_freed_heap_is_handed_back_when_the_process_grew(monkeypatch: pytest.MonkeyPatch) -> None:
    assert memory.malloc_trim() is not None  # glibc (the image this runs on) has malloc_trim
    assert (memory.resident_bytes() or 0) > 0
    calls: list[int] = []
    rss = [100 << 20]
    checked = asyncio.Event()

    def resident() -> int:
        checked.set()
        return rss[0]

    monkeypatch.setattr(
        memory, "malloc_trim", lambda: lambda: (calls.append(1), rss.__setitem__(0, 110 << 20))
    )
    async with memory.trimming_memory(interval_s=0.01, grow_bytes=50 << 20, resident=resident):
        for _ in range(5):  # steady: grown by less than grow_bytes, nothing is trimmed
            checked.clear()
            await checked.wait()
        assert calls == []
        rss[0] = 400 << 20  # a large answer grew the heap
        while len(calls) < 1:
            await asyncio.sleep(0.01)
        for _ in range(5):  # back near the new floor: no second trim
            checked.clear()
            await checked.wait()
        assert calls == [1]
        rss[0] = 200 << 20  # grown again past the floor (110 MiB) by grow_bytes
        while len(calls) < 2:
            await asyncio.sleep(0.01)
    settled = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == settled  # stopped with the app


def test_a_served_app_freezes_its_start_up_objects(harness: Harness) -> None:
    assert gc.get_freeze_count() > 10_000  # modules, tables and policies of the running proxy


def test_start_up_objects_are_left_out_of_collections_while_serving() -> None:
    built_at_start = [{"table": i} for i in range(1000)]
    with memory.startup_objects_frozen():
        assert gc.get_freeze_count() >= len(built_at_start)
        gc.collect()  # a full collection no longer walks them
        assert gc.get_freeze_count() >= len(built_at_start)
    # Stopping gives them back to the collector (every frozen object: the freeze is process-wide).
    assert gc.get_freeze_count() == 0
