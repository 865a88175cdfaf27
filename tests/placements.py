"""Bodies that put one text at one registry row's place: the placement matrix's cases, built from the rows.

``place(row, text)`` builds the smallest body (request, response, or the message a stream is made from) in
which ``row``'s pattern matches once and holds ``text`` (a JSON document for ``json`` rows, a JSON Schema
for ``schema`` rows), then fills in the fields the API requires around it (roles, ids, types, names), so
the OpenAI SDK and a real upstream would take it. A new registry row is placed by the same code: only a
new *container* (a new item type) needs a line in ``ITEM_DEFAULTS``.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from crest_proxy.endpoints import TextField
from crest_proxy.wire.patterns import Step, compile_pattern

UNSAFE = "Fine. Steps: kaboom now."
# The same sentence as JSON with its ``k`` escaped: the raw string does not contain the word at all.
UNSAFE_JSON = '{"q": "Fine. Steps: \\u006baboom now."}'
UNSAFE_SCHEMA = {"type": "object", "properties": {"q": {"type": "string", "description": UNSAFE}}}
SAFE = "Hi there."
# The sentence as a text file sent inline: its bytes (base64) do not contain the word either.
UNSAFE_FILE = f"data:text/plain;base64,{base64.b64encode(UNSAFE.encode()).decode()}"
# Token logprobs whose chosen tokens spell SAFE and whose second-best tokens spell UNSAFE.
_CHOSEN, _SECOND = ["Hi", " there."], ["Fine. Steps:", " kaboom now."]
UNSAFE_LOGPROBS = [
    {"token": t, "logprob": -0.1, "bytes": list(t.encode()),
     "top_logprobs": [{"token": t, "logprob": -0.1, "bytes": list(t.encode())},
                      {"token": a, "logprob": -2.0, "bytes": list(a.encode())}]}
    for t, a in zip(_CHOSEN, _SECOND, strict=True)
]  # fmt: skip
UNSAFE_LEGACY_LOGPROBS = {  # legacy completions: parallel lists
    "tokens": _CHOSEN, "token_logprobs": [-0.1, -0.1], "text_offset": [0, 2],
    "top_logprobs": [{t: -0.1, a: -2.0} for t, a in zip(_CHOSEN, _SECOND, strict=True)],
}  # fmt: skip

_CITED = {"url": "https://example.com/", "start_index": 0, "end_index": 2}  # a web-search citation
# Responses input parts holding what the classifier cannot read, by the field that holds it.
_MEDIA_PART: dict[str, dict[str, Any]] = {
    "image_url": {"type": "input_image", "detail": "auto"},
    "file_id": {"type": "input_file"},
    "file_url": {"type": "input_file"},
    "input_audio": {"type": "input_audio"},
}

# What an item of each Responses type needs besides the text under test.
ITEM_DEFAULTS: dict[str, dict[str, Any]] = {
    "function_call": {"call_id": "call_1", "name": "lookup", "arguments": "{}", "status": "completed"},
    "function_call_output": {"call_id": "call_1", "output": SAFE},
    "custom_tool_call": {"call_id": "call_2", "name": "lookup", "input": ""},
    "custom_tool_call_output": {"call_id": "call_2", "output": SAFE},
    "mcp_call": {"server_label": "srv", "name": "lookup", "arguments": "{}", "status": "completed"},
    "mcp_approval_request": {"server_label": "srv", "name": "lookup", "arguments": "{}"},
    "mcp_list_tools": {"server_label": "srv", "tools": [{"name": "lookup", "input_schema": {}}]},
    "local_shell_call": {"call_id": "call_3", "status": "completed", "action": {"type": "exec", "env": {}}},
    "local_shell_call_output": {"output": SAFE},
    "shell_call": {"call_id": "call_4", "status": "completed", "action": {}},
    "shell_call_output": {"call_id": "call_4", "output": [{"outcome": {"type": "exit", "exit_code": 0}}]},
    "apply_patch_call": {"call_id": "call_5", "status": "completed",
                         "operation": {"type": "create_file", "path": "a.txt"}},
    "apply_patch_call_output": {"call_id": "call_5", "status": "completed"},
    "computer_call": {"call_id": "call_6", "status": "completed", "action": {"type": "screenshot"},
                      "pending_safety_checks": [{"id": "sc_1", "code": "c"}]},
    "computer_call_output": {"call_id": "call_6", "acknowledged_safety_checks": [{"id": "sc_1", "code": "c"}],
                             "output": {"type": "computer_screenshot", "image_url": "data:,"}},
    "file_search_call": {"status": "completed", "queries": [], "results": [{"file_id": "f1", "score": 0.5}]},
    "web_search_call": {"status": "completed", "action": {"type": "search"}},
    "code_interpreter_call": {"status": "completed", "container_id": "c1", "code": "print(1)",
                              "outputs": [{"type": "logs"}]},
    "reasoning": {"summary": []},
    "image_generation_call": {"status": "completed", "result": None},
}  # fmt: skip


def media(row: TextField) -> Any:
    """A value the classifier cannot read for a ``media`` row (an image, audio, a PDF, a file id)."""
    name = row.path.rsplit(".", 1)[-1]
    if name == "image_url":
        url = "https://example.com/cat.png"
        return {"url": url} if row.endpoint == "chat.completions" else url
    return {
        "input_audio": {"data": base64.b64encode(b"RIFF....WAVE").decode(), "format": "wav"},
        "file_id": "file-abc123",
        "file_url": "https://example.com/report.pdf",
        "file_data": "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4\n").decode(),
    }[name]


def leaf(row: TextField) -> Any:
    """The unsafe value placed at ``row``: text, a JSON document, a JSON Schema, or a whole item."""
    if row.path.endswith("]") and "!=" in row.path.rsplit("[", 1)[-1]:  # a whole item of an unknown type
        return {"type": "vendor_item", "id": "vi_1", "note": UNSAFE}
    if row.kind == "alternatives":
        return UNSAFE_LEGACY_LOGPROBS if row.endpoint == "completions" else UNSAFE_LOGPROBS
    return {"json": UNSAFE_JSON, "schema": UNSAFE_SCHEMA, "data_url": UNSAFE_FILE}.get(row.kind, UNSAFE)


def place(row: TextField, value: Any, *, pattern: str | None = None) -> dict[str, Any]:
    """The smallest valid body of ``row``'s endpoint whose ``row`` place holds ``value``."""
    body = _build(compile_pattern(pattern or row.path), value)
    assert isinstance(body, dict)
    return _complete(row.endpoint, body, outbound=row.direction.value == "outbound")


def _build(steps: tuple[Step, ...], value: Any) -> Any:
    if not steps:
        return copy.deepcopy(value)
    step, inner = steps[0], _build(steps[1:], value)
    if step.key is not None:
        return {step.key: inner}
    if step.values:
        return {"var": inner}
    if step.field is not None and not step.negated and isinstance(inner, dict):
        inner = {step.field: next((a for a in sorted(step.allowed) if a), ""), **inner}
    return [inner]


def _merge(node: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` under ``node`` (``node`` wins; nested objects merge, list defaults apply per element)."""
    for key, value in defaults.items():
        if key not in node:
            node[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(node[key], dict):
            _merge(node[key], value)
        elif isinstance(value, list) and value and isinstance(node[key], list):
            for element in node[key]:
                if isinstance(element, dict) and isinstance(value[0], dict):
                    _merge(element, value[0])
    return node


def _complete(endpoint: str, body: dict[str, Any], *, outbound: bool) -> dict[str, Any]:
    if endpoint == "chat.completions":
        return _chat_response(body) if outbound else _chat_request(body)
    if endpoint == "responses":
        return _responses_response(body) if outbound else _responses_request(body)
    if endpoint == "completions":
        return _merge(body, {"prompt": SAFE}) if not outbound else _completion_response(body)
    return _merge(body, {"input": SAFE})


# --- chat ----------------------------------------------------------------------------------------------

_ASSISTANT_ONLY = ("tool_calls", "function_call", "refusal", "reasoning_content", "reasoning", "audio")


def _chat_message(message: dict[str, Any]) -> dict[str, Any]:
    parts = message.get("content") if isinstance(message.get("content"), list) else []
    for part in parts:
        typed = next((t for t in ("refusal", "file", "image_url", "input_audio") if t in part), "text")
        part.setdefault("type", typed)
        _merge(part, {"file": {"filename": "notes.txt"}} if "file" in part else {})
    assistant = any(k in message for k in _ASSISTANT_ONLY) or any("refusal" in p for p in parts)
    message.setdefault("role", "assistant" if assistant else "user")
    if message["role"] in ("tool", "function"):
        _merge(message, {"tool_call_id": "call_1", "name": "lookup"})
    if message["role"] != "assistant":
        message.setdefault("content", SAFE)
    for note in message.get("annotations", []):
        _merge(note, {"type": "url_citation", "url_citation": _CITED})
    for call in message.get("tool_calls", []):
        kind = "custom" if "custom" in call else "function"
        defaults = (
            {"name": "lookup", "input": ""} if kind == "custom" else {"name": "lookup", "arguments": "{}"}
        )
        _merge(call, {"id": "call_1", "type": kind, kind: defaults})
    _merge(
        message,
        {"function_call": {"name": "lookup", "arguments": "{}"}} if "function_call" in message else {},
    )
    _merge(message, {"audio": {"id": "audio_1"}} if "audio" in message else {})
    return message


def _chat_request(body: dict[str, Any]) -> dict[str, Any]:
    body.setdefault("messages", [{"role": "user", "content": SAFE}])
    body["messages"] = [_chat_message(m) for m in body["messages"]]
    for tool in body.get("tools", []):
        kind = "custom" if "custom" in tool else "function"
        _merge(tool, {"type": kind, kind: {"name": "lookup"}})
        grammar = tool.get("custom", {}).get("format", {}).get("grammar")
        if grammar is not None:
            _merge(tool["custom"]["format"], {"type": "grammar", "grammar": {"syntax": "lark"}})
    for function in body.get("functions", []):
        function.setdefault("name", "lookup")
    if "response_format" in body:
        _merge(
            body["response_format"], {"type": "json_schema", "json_schema": {"name": "answer", "schema": {}}}
        )
    if "prediction" in body:
        body["prediction"].setdefault("type", "content")
    return body


def _chat_response(body: dict[str, Any]) -> dict[str, Any]:
    choices = body.get("choices", [{}])
    for i, choice in enumerate(choices):
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict):  # the message says what the chosen tokens spell
            spelled = {name: spelled_by(tokens) for name, tokens in logprobs.items()}
            choice.setdefault("message", {}).update(spelled)
            _merge(logprobs, {"content": None, "refusal": None})
        message = _merge(choice.get("message", {}), {"role": "assistant", "content": None})
        choice["message"] = _chat_message(message)
        finish = "tool_calls" if "tool_calls" in message else "stop"
        _merge(choice, {"index": i, "finish_reason": finish, "logprobs": None})
    head = {"id": "chatcmpl-m", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini"}
    return {**head, "choices": choices}


def _completion_response(body: dict[str, Any]) -> dict[str, Any]:
    for i, choice in enumerate(body.get("choices", [])):
        if isinstance(choice.get("logprobs"), dict):
            choice.setdefault("text", "".join(choice["logprobs"]["tokens"]))
        _merge(choice, {"index": i, "finish_reason": "stop", "logprobs": None})
    return {"id": "cmpl-m", "object": "text_completion", "created": 1, "model": "gpt-4o-mini", **body}


# --- responses -----------------------------------------------------------------------------------------


def _item(item: dict[str, Any], n: int, *, outbound: bool) -> dict[str, Any]:
    kind = item.get("type") or "message"
    if kind == "message":
        parts = item.get("content") if isinstance(item.get("content"), list) else []
        assistant = outbound or any("refusal" in p for p in parts)
        for part in parts:
            text_type = "output_text" if assistant else "input_text"
            _merge(part, {"type": "input_file", "filename": "notes.txt"} if "file_data" in part else {})
            _merge(part, _MEDIA_PART.get(next((k for k in _MEDIA_PART if k in part), ""), {}))
            _merge(part, {"type": "refusal" if "refusal" in part else text_type})
            _merge(part, {"annotations": []} if part["type"] == "output_text" else {})
            _merge(part, {"text": spelled_by(part["logprobs"])} if "logprobs" in part else {})
            for note in part.get("annotations", []):
                cited = {"type": "file_citation", "file_id": "f1", "index": 0} if "filename" in note else {}
                _merge(note, cited or {"type": "url_citation", **_CITED})
            _merge(part, {"text": SAFE} if part["type"] == "output_text" else {})
        _merge(item, {"type": "message", "role": "assistant" if assistant else "user"})
        item.setdefault("content", SAFE)
    if kind == "reasoning":
        for part in item.get("summary", []):
            part.setdefault("type", "summary_text")
        for part in item.get("content", []):
            part.setdefault("type", "reasoning_text")
    if kind.endswith("_output") and isinstance(item.get("output"), list):
        for part in item["output"]:
            _merge(part, _MEDIA_PART.get(next((k for k in _MEDIA_PART if k in part), ""), {}))
            _merge(part, {"type": "input_text"} if "text" in part else {})
            _merge(part, {"type": "input_file", "filename": "notes.txt"} if "file_data" in part else {})
    if "tools" in item and kind == "mcp_list_tools":
        for tool in item["tools"]:
            _merge(tool, {"name": "lookup", "input_schema": {}})
    _merge(item, ITEM_DEFAULTS.get(kind, {}))
    _merge(item, {"id": f"{kind[:3]}_{n}", "status": "completed"} if outbound or kind != "message" else {})
    return item


def _responses_request(body: dict[str, Any]) -> dict[str, Any]:
    if isinstance(body.get("input"), list):
        body["input"] = [_item(item, n, outbound=False) for n, item in enumerate(body["input"])]
    body.setdefault("input", SAFE)
    if "prompt" in body:
        body["prompt"].setdefault("id", "pmpt_1")
        variables = body["prompt"].get("variables", {})
        for value in variables.values():
            _merge(value, {"type": "input_text"} if isinstance(value, dict) else {})
    for tool in body.get("tools", []):
        defaults = {"name": "lookup"} if tool.get("type") in ("function", "custom") else {}
        _merge(tool, {**defaults, "server_label": "srv", "server_url": "https://mcp.example"}
               if tool.get("type") == "mcp" else defaults)  # fmt: skip
        if tool.get("type") == "custom" and "format" in tool:
            _merge(tool["format"], {"type": "grammar", "syntax": "lark"})
    if "text" in body:
        _merge(body["text"], {"format": {"type": "json_schema", "name": "answer", "schema": {}}})
    return body


def _responses_response(body: dict[str, Any]) -> dict[str, Any]:
    output = [_item(item, n, outbound=True) for n, item in enumerate(body.get("output", []))]
    return {
        "id": "resp_m",
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "model": "gpt-4o-mini",
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }


def spelled_by(logprobs: list[dict[str, Any]]) -> str:
    """The text a logprobs list's chosen tokens spell."""
    return "".join(entry["token"] for entry in logprobs)


def strings_in(value: Any) -> list[str]:
    """Every string inside ``value``, also inside JSON-encoded strings (decoded), keys included."""
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return [value]
        return [value, *strings_in(decoded)] if not isinstance(decoded, str) else [value, decoded]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings_in(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []


# --- streams: the same answers as the upstream would stream them ---------------------------------------


def halves(text: str) -> list[str]:
    """``text`` in two pieces (a stream splits words; the proxy must not care)."""
    cut = len(text) // 2
    return [text[:cut], text[cut:]] if cut else [text]


def chat_chunks(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A ``chat.completion`` answer as the chunks of its stream (every text split in two)."""
    head = {k: response[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    chunks = []
    for choice in response["choices"]:
        deltas = _message_deltas(choice["message"])
        chunks += [{"index": choice["index"], "delta": d, "finish_reason": None} for d in deltas]
        chunks.append({"index": choice["index"], "delta": {}, "finish_reason": choice["finish_reason"]})
    return [{**head, "choices": [c]} for c in chunks]


def _message_deltas(message: dict[str, Any]) -> list[dict[str, Any]]:
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    for name in ("content", "refusal", "reasoning_content", "reasoning"):
        if isinstance(message.get(name), str):
            deltas += [{name: piece} for piece in halves(message[name])]
    if message.get("annotations"):  # citations arrive whole (OpenRouter sends them in a delta)
        deltas.append({"annotations": message["annotations"]})
    for k, call in enumerate(message.get("tool_calls") or []):
        kind = call["type"]
        field = "input" if kind == "custom" else "arguments"
        first = {**call, "index": k, kind: {**call[kind], field: ""}}
        deltas.append({"tool_calls": [first]})
        deltas += [{"tool_calls": [{"index": k, kind: {field: p}}]} for p in halves(call[kind][field])]
    if isinstance(message.get("function_call"), dict):
        legacy = message["function_call"]
        deltas.append({"function_call": {"name": legacy["name"], "arguments": ""}})
        deltas += [{"function_call": {"arguments": p}} for p in halves(legacy["arguments"])]
    if isinstance(message.get("audio"), dict):
        audio = message["audio"]
        deltas += [{"audio": {"id": audio["id"], "transcript": p}} for p in halves(audio["transcript"])]
    return deltas


def completion_chunks(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A ``text_completion`` answer as the chunks of its stream."""
    head = {k: response[k] for k in ("id", "object", "created", "model")}
    chunks = []
    for choice in response["choices"]:
        for piece in halves(choice["text"]):
            chunks.append({**head, "choices": [{**choice, "text": piece, "finish_reason": None}]})
        chunks.append({**head, "choices": [{**choice, "text": ""}]})
    return chunks


# Which event family streams a lane of an item type (both function and MCP calls stream "arguments").
def _family(lanes: dict[str, Any], lane: str, item_type: str) -> str:
    found = [family for family, spec in lanes.items() if spec.lane == lane]
    return next((f for f in found if item_type in f), found[0])


def response_events(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A Responses answer as its event stream: items added empty, texts as deltas, then done events."""
    from crest_proxy.streaming.paths import get_at, set_at
    from crest_proxy.streaming.response_texts import item_texts, lanes

    start = {**response, "status": "in_progress", "output": []}
    events: list[dict[str, Any]] = [{"type": "response.created", "response": start}]
    for n, item in enumerate(response["output"]):
        streamed = [t for t in item_texts(item) if t.streamed]
        added = copy.deepcopy(item) | {"status": "in_progress"}
        for text in streamed:
            set_at(added, text.path, "")
        events.append({"type": "response.output_item.added", "output_index": n, "item": added})
        for text in streamed:
            family = _family(lanes(), text.lane, item["type"])
            spec = lanes()[family]
            ids = {"item_id": item["id"], "output_index": n}
            ids |= {spec.index: text.sub or 0} if spec.index else {}
            whole = get_at(item, text.path)
            events += [{"type": f"{family}.delta", **ids, "delta": p} for p in halves(whole)]
            events.append({"type": f"{family}.done", **ids, **({spec.whole: whole} if spec.whole else {})})
        events.append({"type": "response.output_item.done", "output_index": n, "item": item})
    events.append({"type": "response.completed", "response": response})
    return [{**e, "sequence_number": i} for i, e in enumerate(events)]


def request_for(endpoint: str) -> dict[str, Any]:
    """A small safe request for ``endpoint`` (outbound cases: the answer is what is screened)."""
    return {
        "chat.completions": {"messages": [{"role": "user", "content": SAFE}]},
        "completions": {"prompt": SAFE},
        "responses": {"input": SAFE},
        "embeddings": {"input": SAFE},
    }[endpoint]
