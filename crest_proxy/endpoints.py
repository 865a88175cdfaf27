"""The endpoint registry: every API endpoint, and every field of its bodies that carries text a model reads
or writes — one row each. Extraction (``wire.extract``), write-back (``wire.slots``), the stream dialects
(``streaming.chunks``, ``streaming.responses``), the LiteLLM guardrail and the README's "What is screened"
table all read these rows, so a field the proxy should screen is one row here and nowhere else.

Field names and shapes follow OpenAI's OpenAPI description (tests/data/openai-openapi) and what the
official SDKs send. Pure data: nothing here imports a web framework, an HTTP client or a YAML parser.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from crest_proxy.types import Direction

# How a field's value is read as text:
#   text   - a string, screened as it is;
#   json   - a string holding JSON (tool-call arguments, tool outputs): decoded, and every key and string
#            value inside is screened as text; a string that is not valid JSON is screened as it is;
#   schema - a JSON Schema object (tool parameters, structured-output schemas): every property name and
#            every string inside it (description, title, enum, default, pattern, format, vendor keywords …)
#            but the structural ones (type, $ref, required …), at any depth;
#   tokens - token ids (an array of integers): the classifier cannot read them (policy: inbound.token_inputs);
#   data_url - a file sent inline (``data:text/plain;base64,…``): a textual file is decoded and screened as
#            text, a redaction re-encoded in place; binary files (PDF, images) pass (``wire.data_url``);
#   alternatives - per-token logprobs: the texts the chosen tokens and each rank of ``top_logprobs`` spell
#            (``wire.alternatives``); they cannot be rewritten token by token, so a redaction drops them;
#   media  - an image, audio, a binary file or a file by reference (``file_id``, ``file_url``): the model
#            reads it, the classifier cannot (policy: inbound.media_inputs; audited either way).
Kind = Literal["text", "json", "schema", "tokens", "data_url", "alternatives", "media"]
StreamStyle = Literal["choices", "events", "none"]
IN, OUT = Direction.INBOUND, Direction.OUTBOUND
ITEM_ROLE = "<item>"  # the role is the ``role`` of the message/item the path runs through


@dataclass(frozen=True)
class Endpoint:
    """One API endpoint: its name, its path under /v1 (also upstream), its dialect and how it streams."""

    name: str
    path: str
    dialect: str
    stream: StreamStyle
    object: str | None = None  # the ``object`` of a response body
    chunk_object: str | None = None  # the ``object`` of a streamed chunk (``choices`` streams)


@dataclass(frozen=True)
class TextField:
    """One place text sits in one endpoint's bodies (``stream``: in a streamed chunk, path from the chunk).

    ``role`` is the speaker the policy's ``roles`` filter sees (``ITEM_ROLE``: the enclosing message's role,
    ``default_role`` when it has none; None: always screened). ``label`` names what the text is (audit,
    ``tool_calls: false`` skips ``tool_call``). ``lane`` groups a streamed field's deltas with the whole text
    the stream repeats at its end (Responses events and output items).
    """

    endpoint: str
    direction: Direction
    path: str
    kind: Kind = "text"
    role: str | None = None
    label: str = "content"
    default_role: str | None = None
    stream: bool = False
    lane: str = ""
    whole: bool = False  # a streamed field that arrives whole in one chunk (a tool name): screened at once

    @functools.cached_property
    def id(self) -> str:
        """A stable name for this row, e.g. ``chat.completions inbound messages[*].content``."""
        where = "stream" if self.stream else self.direction.value
        return f"{self.endpoint} {where} {self.path}"


@dataclass(frozen=True)
class EventLane:
    """A Responses-style event family that streams one text: ``<family>.delta`` pieces, ``<family>.done``
    with the whole text in ``whole``; ``lane`` matches the output-item field it fills, ``index`` the event
    attribute telling which part of the item it is."""

    endpoint: str
    family: str
    lane: str
    index: str | None
    whole: str | None
    label: str = "content"
    kind: Kind = "text"


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "chat.completions",
        "chat/completions",
        "openai.chat",
        "choices",
        "chat.completion",
        "chat.completion.chunk",
    ),
    Endpoint(
        "completions", "completions", "openai.completions", "choices", "text_completion", "text_completion"
    ),
    Endpoint("responses", "responses", "openai.responses", "events", "response"),
    Endpoint("embeddings", "embeddings", "openai.embeddings", "none"),  # vectors: no text comes back
)


def _rows(endpoint: str, direction: Direction, prefix: str, *specs: tuple[object, ...]) -> list[TextField]:
    """Rows sharing an endpoint, direction and path prefix; each spec is (path, kind, role, label[, lane])."""
    rows = []
    for spec in specs:
        path, kind, role, label, *lane = spec
        rows.append(
            TextField(
                endpoint, direction, f"{prefix}{path}", kind, role, label,  # type: ignore[arg-type]
                default_role="user" if role == ITEM_ROLE else None, lane=str(lane[0]) if lane else "",
            )
        )  # fmt: skip
    return rows


R = ITEM_ROLE
_CALL = "tool_arguments"  # tool/function-call names and arguments: the policy's ``tool_calls`` switch
_DEF = "tool_definition"
_ALT = "token_alternatives"  # per-token logprobs: the chosen and the most likely other tokens


def _tool_schema(prefix: str) -> tuple[tuple[object, ...], ...]:
    """A function definition's name, description and parameter schema (developer-written)."""
    return (
        (f"{prefix}name", "text", "developer", _DEF),
        (f"{prefix}description", "text", "developer", _DEF),
        (f"{prefix}parameters", "schema", "developer", _DEF),
    )


def _chat_message(role: str) -> tuple[tuple[object, ...], ...]:
    """The texts of one chat message (request history or a completion's message)."""
    return (
        ("content", "text", role, "content"),
        ("content[*].text", "text", role, "content"),
        ("content[*].refusal", "text", role, "refusal"),
        ("refusal", "text", role, "refusal"),
        ("reasoning_content", "text", role, "reasoning"),  # LiteLLM and OpenAI-compatible servers
        ("reasoning", "text", role, "reasoning"),  # vLLM and OpenRouter name the same text this way
        ("name", "text", role, "name"),
        ("tool_calls[*].function.name", "text", role, _CALL),
        ("tool_calls[*].function.arguments", "json", role, _CALL),
        ("tool_calls[*].custom.name", "text", role, _CALL),
        ("tool_calls[*].custom.input", "text", role, _CALL),
        ("function_call.name", "text", role, _CALL),
        ("function_call.arguments", "json", role, _CALL),
        ("audio.transcript", "text", role, "content"),
    )


_TOOL_OUTPUT = ("tool", "function")
CHAT = [
    *_rows("chat.completions", IN, f"messages[role!={'|'.join(_TOOL_OUTPUT)}].", *_chat_message(R)),
    # Tool results are often JSON: read decoded, as the model reads them (plain text stays plain).
    *_rows(
        "chat.completions",
        IN,
        f"messages[role={'|'.join(_TOOL_OUTPUT)}].",
        ("content", "json", R, "tool_output"),
        ("content[*].text", "json", R, "tool_output"),
        ("name", "text", R, "name"),
    ),  # fmt: skip
    # A file part sent inline: a text/plain (JSON, CSV …) file is text the model reads.
    *_rows("chat.completions", IN, "messages[*].", ("content[*].file.file_data", "data_url", R, "file")),
    # What the model reads but the classifier cannot: images, audio, binary or referenced files.
    *_rows(
        "chat.completions",
        IN,
        "messages[*].content[*].",
        ("image_url", "media", R, "media"),
        ("input_audio", "media", R, "media"),
        ("file.file_id", "media", R, "media"),
        ("file.file_data", "media", R, "media"),
    ),  # fmt: skip
    *_rows("chat.completions", IN, "tools[*].function.", *_tool_schema("")),
    *_rows(
        "chat.completions",
        IN,
        "tools[*].custom.",
        ("name", "text", "developer", _DEF),
        ("description", "text", "developer", _DEF),
        ("format.grammar.definition", "text", "developer", _DEF),
    ),  # fmt: skip
    *_rows("chat.completions", IN, "functions[*].", *_tool_schema("")),
    *_rows(
        "chat.completions",
        IN,
        "",
        ("response_format.json_schema.name", "text", "developer", "schema"),
        ("response_format.json_schema.description", "text", "developer", "schema"),
        ("response_format.json_schema.schema", "schema", "developer", "schema"),
        ("prediction.content", "text", None, "prediction"),
        ("prediction.content[*].text", "text", None, "prediction"),
    ),  # fmt: skip
    *_rows("chat.completions", OUT, "choices[*].message.", *_chat_message("assistant")),
    # Web-search citation titles (shown with the answer, not sent back as input), and the tokens the model
    # chose and nearly chose (``logprobs``, ``top_logprobs``): text it wrote, too.
    *_rows(
        "chat.completions",
        OUT,
        "choices[*].",
        ("message.annotations[*].url_citation.title", "text", "assistant", "citation"),
        ("logprobs.content", "alternatives", "assistant", _ALT),
        ("logprobs.refusal", "alternatives", "assistant", _ALT),
    ),  # fmt: skip
]

COMPLETIONS = _rows(
    "completions", IN, "",
    ("prompt", "text", None, "prompt"), ("prompt[*]", "text", None, "prompt"),
    ("prompt", "tokens", None, "prompt"), ("prompt[*]", "tokens", None, "prompt"),
    ("suffix", "text", None, "prompt"),
) + _rows(
    "completions", OUT, "choices[*].",
    ("text", "text", None, "text"), ("logprobs", "alternatives", None, _ALT),
)  # fmt: skip

EMBEDDINGS = _rows(
    "embeddings", IN, "",
    ("input", "text", None, "input"), ("input[*]", "text", None, "input"),
    ("input", "tokens", None, "input"), ("input[*]", "tokens", None, "input"),
)  # fmt: skip


def _item(kind: str, *specs: tuple[object, ...]) -> tuple[tuple[object, ...], ...]:
    """Specs of one Responses item type (``message`` also matches items without a ``type``)."""
    step = "[type=message|]" if kind == "message" else f"[type={kind}]"
    return tuple((f"{step}.{spec[0]}", *spec[1:]) for spec in specs)


def _responses_items() -> tuple[tuple[object, ...], ...]:
    """Every Responses item type that carries text, as input history and as output."""
    tool, asst, out, T, J = "tool", "assistant", "tool_output", "text", "json"
    return (
        *_item("message", ("content", T, R, "content"), ("content[*].text", T, R, "content", "text"),
               ("content[*].refusal", T, R, "refusal", "refusal")),
        *_item("function_call", ("name", T, asst, _CALL), ("arguments", J, asst, _CALL, "arguments")),
        *_item("function_call_output", ("output", J, tool, out), ("output[*].text", J, tool, out)),
        *_item("custom_tool_call", ("name", T, asst, _CALL), ("input", T, asst, _CALL, "input")),
        *_item("custom_tool_call_output", ("output", J, tool, out), ("output[*].text", J, tool, out)),
        *_item("mcp_call", ("name", T, asst, _CALL), ("arguments", J, asst, _CALL, "arguments"),
               ("output", J, tool, out), ("error", T, tool, out)),
        *_item("mcp_approval_request", ("name", T, asst, _CALL), ("arguments", J, asst, _CALL)),
        *_item("mcp_list_tools", ("tools[*].name", T, tool, _DEF), ("tools[*].description", T, tool, _DEF),
               ("tools[*].input_schema", "schema", tool, _DEF)),
        *_item("local_shell_call", ("action.command[*]", T, asst, _CALL)),
        *_item("local_shell_call_output", ("output", T, tool, out)),
        *_item("shell_call", ("action.commands[*]", T, asst, _CALL)),
        *_item("shell_call_output", ("output[*].stdout", T, tool, out), ("output[*].stderr", T, tool, out)),
        *_item("apply_patch_call", ("operation.diff", T, asst, _CALL)),
        *_item("apply_patch_call_output", ("output", T, tool, out)),
        *_item("computer_call", ("pending_safety_checks[*].message", T, tool, out)),
        *_item("computer_call_output", ("acknowledged_safety_checks[*].message", T, tool, out)),
        *_item("file_search_call", ("queries[*]", T, asst, _CALL), ("results[*].text", T, tool, out),
               ("results[*].filename", T, tool, out)),
        *_item("web_search_call", ("action.query", T, asst, _CALL)),
        *_item("code_interpreter_call", ("code", T, asst, _CALL, "code"), ("outputs[*].logs", T, tool, out)),
        *_item("reasoning", ("summary[*].text", T, asst, "reasoning", "summary"),
               ("content[*].text", T, asst, "reasoning", "reasoning")),
        *_item("image_generation_call", ("revised_prompt", T, asst, "content")),
    )  # fmt: skip


def _media(prefix: str) -> tuple[tuple[object, ...], ...]:
    """Responses input parts the classifier cannot read: images, audio, binary or referenced files."""
    fields = ("image_url", "file_id", "file_url", "file_data", "input_audio")
    return tuple((f"{prefix}{field}", "media", R, "media") for field in fields)


def _responses_tools() -> tuple[tuple[object, ...], ...]:
    """Responses ``tools``: function tools are flat (no ``function`` wrapper), custom tools, MCP servers."""
    return (
        *_tool_schema("tools[type=function]."),
        ("tools[type=custom].name", "text", "developer", _DEF),
        ("tools[type=custom].description", "text", "developer", _DEF),
        ("tools[type=custom].format.definition", "text", "developer", _DEF),
        ("tools[type=mcp].server_description", "text", "developer", _DEF),
        ("text.format.name", "text", "developer", "schema"),
        ("text.format.description", "text", "developer", "schema"),
        ("text.format.schema", "schema", "developer", "schema"),
    )


RESPONSES = [
    *_rows(
        "responses",
        IN,
        "",
        ("instructions", "text", "developer", "instructions"),
        ("input", "text", "user", "input"),
        ("prompt.variables{*}", "text", "user", "input"),
        ("prompt.variables{*}.text", "text", "user", "input"),
        *_responses_tools(),
    ),  # fmt: skip
    *_rows("responses", IN, "input", *_responses_items()),
    *_rows(
        "responses",
        IN,
        "input",
        *_item("message", ("content[*].file_data", "data_url", R, "file")),
        *_item("function_call_output", ("output[*].file_data", "data_url", "tool", "tool_output")),
        *_item("custom_tool_call_output", ("output[*].file_data", "data_url", "tool", "tool_output")),
        *_item("message", *_media("content[*].")),
        *_item("function_call_output", *_media("output[*].")),
        *_item("custom_tool_call_output", *_media("output[*].")),
    ),  # fmt: skip
    *_rows("responses", OUT, "output", *_responses_items()),
    *_rows(
        "responses",
        OUT,
        "output",
        *_item(
            "message",
            ("content[*].annotations[*].title", "text", R, "citation"),
            ("content[*].annotations[*].filename", "text", R, "citation"),
            ("content[*].logprobs", "alternatives", R, _ALT),
        ),
    ),  # fmt: skip
]


def _unknown_items() -> str:
    """A filter for item types no row above knows (a vendor's, or one newer than this registry)."""
    known = {str(spec[0])[len("[type=") :].split("]")[0] for spec in _responses_items()}
    return f"[type!={'|'.join(sorted(known | {'item_reference'}))}]"


# Whatever an item of an unknown type holds is read: every key and string value (``json`` on an object),
# so a new item type cannot carry text past the guard before it has rows of its own.
RESPONSES += [
    TextField("responses", IN, f"input{_unknown_items()}", "json", "user", "unknown_item"),
    TextField("responses", OUT, f"output{_unknown_items()}", "json", "assistant", "unknown_item"),
]

# Streamed chunks of the ``choices`` dialect: paths from one chunk. A stream's logprobs are held per choice
# and read (``alternatives``) when it finishes, before they go out (``streaming.choices``).
CHOICE_STREAMS = [
    TextField("chat.completions", OUT, f"choices[*].delta.{row.path.removeprefix('choices[*].message.')}",
              row.kind, row.role, row.label, stream=True, whole=row.path.endswith((".name", ".title")))
    for row in CHAT
    if row.direction is OUT and row.path.startswith("choices[*].message.")
    and "content[*]" not in row.path and row.path != "choices[*].message.name"
] + [TextField("completions", OUT, "choices[*].text", "text", None, "text", stream=True)]  # fmt: skip

_RESP = "responses"
EVENT_LANES: tuple[EventLane, ...] = (
    EventLane(_RESP, "response.output_text", "text", "content_index", "text"),
    EventLane(_RESP, "response.refusal", "refusal", "content_index", "refusal", "refusal"),
    EventLane(_RESP, "response.reasoning_summary_text", "summary", "summary_index", "text", "reasoning"),
    EventLane(_RESP, "response.reasoning_text", "reasoning", "content_index", "text", "reasoning"),
    EventLane(_RESP, "response.audio.transcript", "transcript", None, None),
    EventLane(_RESP, "response.function_call_arguments", "arguments", None, "arguments", _CALL, "json"),
    EventLane(_RESP, "response.custom_tool_call_input", "input", None, "input", _CALL),
    EventLane(_RESP, "response.mcp_call_arguments", "arguments", None, "arguments", _CALL, "json"),
    EventLane(_RESP, "response.code_interpreter_call_code", "code", None, "code", _CALL),
)

FIELDS: tuple[TextField, ...] = (*CHAT, *COMPLETIONS, *EMBEDDINGS, *RESPONSES, *CHOICE_STREAMS)
BY_NAME: dict[str, Endpoint] = {e.name: e for e in ENDPOINTS}
BY_PATH: dict[str, Endpoint] = {e.path: e for e in ENDPOINTS}


def endpoint(name: str) -> Endpoint:
    """The endpoint called ``name``; ValueError lists the known ones."""
    found = BY_NAME.get(name)
    if found is None:
        raise ValueError(f"unknown endpoint {name!r}; expected one of {', '.join(BY_NAME)}")
    return found


def by_object(value: object, *, chunk: bool = False) -> Endpoint | None:
    """The endpoint whose response bodies (``chunk``: streamed chunks) carry ``object: value``."""
    for found in ENDPOINTS:
        if value is not None and value == (found.chunk_object if chunk else found.object):
            return found
    return None


@functools.lru_cache(maxsize=64)
def fields(name: str, direction: Direction, *, stream: bool = False) -> tuple[TextField, ...]:
    """The rows of one endpoint and direction (``stream``: the streamed-chunk rows), in registry order."""
    endpoint(name)
    return tuple(f for f in FIELDS if f.endpoint == name and f.direction is direction and f.stream is stream)


def event_lanes(name: str) -> tuple[EventLane, ...]:
    """The event families of an ``events``-style stream."""
    return tuple(lane for lane in EVENT_LANES if lane.endpoint == name)


# --- Anthropic's Messages API (issue 16) -------------------------------------------------------------------
# Served by its own endpoint module (errors in Anthropic's shape, x-api-key auth), so these rows are kept out
# of ENDPOINTS / FIELDS, which build the OpenAI routes. ``json`` on ``input`` means decoded JSON already (an
# object, not a string): every key and string value. ``wire.anthropic`` walks these paths; a test pins that
# every text it finds is one of these rows (docs.anthropic.com/en/api/messages).
_A = "messages"
_MSG = "messages[*].content"
ANTHROPIC_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("messages", "messages", "anthropic.messages", "events", "message"),
    Endpoint("messages.count_tokens", "messages/count_tokens", "anthropic.messages", "none"),
)
ANTHROPIC_FIELDS: tuple[TextField, ...] = (
    *_rows(
        _A, IN, "",
        ("system", "text", "system", "content"), ("system[*].text", "text", "system", "content"),
        ("tools[*].name", "text", "system", _DEF),
        ("tools[*].description", "text", "system", _DEF), ("tools[*].input_schema", "schema", "system", _DEF),
    ),
    *_rows(
        _A, IN, _MSG,
        ("", "text", R, "content"), ("[*].text", "text", R, "content"),
        ("[*].thinking", "text", R, "reasoning"), ("[*].input", "json", R, _CALL),
        ("[*].name", "text", R, _CALL),  # tool_use / server_tool_use / mcp_tool_use names
        ("[*].citations[*].cited_text", "text", R, "content"),
        ("[*].citations[*].title", "text", R, "content"),
        ("[*].citations[*].document_title", "text", R, "content"),
        ("[type=document].source.data", "text", R, "document"),  # only sources of type text
        ("[type=document].source.content", "text", R, "document"),
        ("[type=document].source.content[*].text", "text", R, "document"),
        ("[type=document|search_result].title", "text", R, "document"),
        ("[type=document].context", "text", R, "document"),
        ("[type=search_result].content[*].text", "text", R, "document"),
        ("[type=tool_result|mcp_tool_result].content", "json", "tool", "tool_output"),
        ("[type=tool_result|mcp_tool_result].content[*].text", "json", "tool", "tool_output"),
        ("[type=tool_result|mcp_tool_result].content[*].source.data", "text", "tool", "document"),
        ("[type=tool_result|mcp_tool_result].content[*].title", "text", "tool", "document"),
    ),
    *_rows(
        _A, OUT, "content",
        ("[*].text", "text", "assistant", "content"), ("[*].thinking", "text", "assistant", "reasoning"),
        ("[*].input", "json", "assistant", _CALL), ("[*].name", "text", "assistant", _CALL),
        ("[*].citations[*].cited_text", "text", "assistant", "content"),
        ("[*].citations[*].title", "text", "assistant", "content"),
        ("[*].citations[*].document_title", "text", "assistant", "content"),
        # Any other block type (web search results, a newer API's blocks): every string value.
        ("[type!=text|thinking|redacted_thinking|tool_use|server_tool_use|mcp_tool_use]", "json", "assistant",
         "content"),
    ),
    # Streamed: one lane per content block (content_block_delta events).
    TextField(_A, OUT, "delta.text", "text", "assistant", "content", stream=True, lane="text_delta"),
    TextField(_A, OUT, "delta.thinking", "text", "assistant", "reasoning", stream=True,
              lane="thinking_delta"),
    TextField(_A, OUT, "delta.partial_json", "text", "assistant", _CALL, stream=True,
              lane="input_json_delta"),
)  # fmt: skip
