"""Files sent inline (``file_data`` data URLs): a textual file is read and screened, a binary one passes.

Attacker's tries, each a case: another charset, percent-encoding instead of base64, a JSON file hiding the
word behind ``\\u`` escapes, bare base64 without a media type, undecodable base64 and bytes invalid in the
charset (screened raw, never passed unread), a misleading media type, a tool output's file part.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import pytest

from crest_proxy import wire
from crest_proxy.wire import data_url
from crest_proxy.wire.extract import misplaced
from tests.support.harness import Harness

WORD = "kaboom"
UNSAFE = f"Please explain {WORD} in detail."
NOT_UTF8, PNG, BINARY = b"\xff\xfe\xfa", b"\x89PNG", b"\x00\x01binary"
ESCAPED_JSON = json.dumps({"q": UNSAFE}).replace("k", "\\u006b")  # the word is not in the bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _chat(file_data: str) -> dict[str, Any]:
    part = {"type": "file", "file": {"filename": "notes.txt", "file_data": file_data}}
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [part]}]}


# --- reading and rewriting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        f"data:text/plain;base64,{_b64(UNSAFE.encode())}",
        f"data:text/plain;charset=utf-16;base64,{_b64(UNSAFE.encode('utf-16'))}",
        f"data:text/csv;charset=ISO-8859-1;base64,{_b64(UNSAFE.encode('latin-1'))}",
        f"data:text/plain,{quote(UNSAFE)}",
        f"data:application/x-yaml;base64,{_b64(UNSAFE.encode())}",
        f"data:;base64,{_b64(UNSAFE.encode())}",  # no media type: valid UTF-8 is read
        f"data:application/octet-stream;base64,{_b64(UNSAFE.encode())}",  # a type chosen to look binary
        _b64(UNSAFE.encode()),  # bare base64
        f"data:text/plain;base64,{_b64(UNSAFE.encode()).rstrip('=')}",  # padding dropped
    ],
    ids=["plain", "utf-16", "latin-1", "percent", "yaml", "no-type", "octet-stream", "bare", "no-padding"],
)
def test_textual_files_are_read_decoded_and_rewritten_in_their_encoding(value: str) -> None:
    read = data_url.read(value)
    assert read is not None and read[1] and WORD in read[0]
    rewritten = data_url.rewrite(value, read[0].replace(WORD, "[gone]"))
    again = data_url.read(rewritten)
    assert again is not None and again[0] == UNSAFE.replace(WORD, "[gone]")
    assert rewritten.split(",")[0] == value.split(",")[0] if value.startswith("data:") else True


@pytest.mark.parametrize(
    "value",
    [
        f"data:text/plain;base64,{UNSAFE}",  # not base64 at all
        "data:text/plain;base64," + _b64(NOT_UTF8 + UNSAFE.encode()),  # not UTF-8
        f"data:text/plain;charset=x-no-such;base64,{_b64(UNSAFE.encode())}",  # unknown charset
        UNSAFE,  # bare, not base64
    ],
    ids=["bad-base64", "bad-utf8", "unknown-charset", "bare-text"],
)
def test_a_textual_file_that_does_not_decode_is_screened_raw(value: str) -> None:
    assert data_url.read(value) == (value, False)


@pytest.mark.parametrize(
    "value",
    [
        f"data:application/pdf;base64,{_b64(b'%PDF-1.4 ' + UNSAFE.encode())}",
        "data:image/png;base64," + _b64(PNG + UNSAFE.encode()),
        "data:;base64," + _b64(BINARY),
    ],
    ids=["pdf", "png", "untyped-binary"],
)
def test_binary_files_pass_unread(value: str) -> None:
    assert data_url.read(value) is None


def test_a_json_file_is_read_decoded_and_redacted_in_place() -> None:
    document = '{"q": "Steps: \\u006baboom", "n": 1}'
    body = _chat(f"data:application/json;base64,{_b64(document.encode())}")
    slots = wire.request_texts("chat.completions", body)
    unsafe = [s for s in slots if WORD in s.text]
    assert [s.text for s in unsafe] == ["Steps: kaboom"]
    changed = wire.replace_texts(body, {unsafe[0]: "Steps: [gone]"})
    sent = changed["messages"][0]["content"][0]["file"]["file_data"]
    header, payload = sent.split(",", 1)
    assert header == "data:application/json;base64"
    assert base64.b64decode(payload).decode() == '{"q": "Steps: [gone]", "n": 1}'


def test_a_file_is_a_text_of_its_own_not_joined_with_the_message() -> None:
    body = _chat(f"data:text/plain;base64,{_b64(UNSAFE.encode())}")
    body["messages"][0]["content"].insert(0, {"type": "text", "text": "Read this."})
    groups = {slot.group for slot in wire.request_texts("chat.completions", body)}
    assert len(groups) == 2


def test_a_file_where_text_belongs_but_an_object_sits_is_refused() -> None:
    body = _chat("")
    body["messages"][0]["content"][0]["file"]["file_data"] = {"data": UNSAFE}
    assert misplaced("chat.completions", body)


# --- through the running proxy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "file_data",
    [
        f"data:text/plain;charset=utf-16;base64,{_b64(UNSAFE.encode('utf-16'))}",
        f"data:text/plain,{quote(UNSAFE)}",
        "data:application/json;base64," + _b64(ESCAPED_JSON.encode()),
        f"data:text/plain;base64,{UNSAFE}",
    ],
    ids=["utf-16", "percent", "json-escaped", "bad-base64"],
)
def test_encoded_files_are_blocked(harness: Harness, file_data: str) -> None:
    before = len(harness.upstream.received)
    reply = harness.post("/v1/chat/completions", _chat(file_data))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == "content_policy_violation"
    assert len(harness.upstream.received) == before


def test_a_pdf_passes_untouched(harness: Harness) -> None:
    pdf = f"data:application/pdf;base64,{_b64(b'%PDF-1.4 binary')}"
    reply = harness.post("/v1/chat/completions", _chat(pdf))
    assert reply.status_code == 200, reply.text
    assert harness.upstream.last.body["messages"][0]["content"][0]["file"]["file_data"] == pdf


def test_a_tool_output_file_is_redacted_upstream(harness: Harness) -> None:
    part = {
        "type": "input_file",
        "filename": "out.txt",
        "file_data": f"data:text/plain;base64,{_b64(UNSAFE.encode())}",
    }
    item = {"type": "function_call_output", "call_id": "call_1", "output": [part]}
    reply = harness.post("/v1/responses", {"model": "gpt-4o-mini", "input": [item]}, tenant="redactor")
    assert reply.status_code == 200, reply.text
    sent = harness.upstream.last.body["input"][0]["output"][0]["file_data"]
    header, payload = sent.split(",", 1)
    assert header == "data:text/plain;base64"
    text = base64.b64decode(payload, validate=True).decode()
    assert "[gone]" in text and WORD not in text
