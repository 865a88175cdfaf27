"""Files sent inline as data URLs (``file_data``): the text a model reads in them, and how to put it back.

A ``text/plain`` (JSON, CSV, XML, YAML, source …) file is text the model reads, so it is decoded (base64
or percent-encoding, the ``charset`` parameter, UTF-8 by default) and screened like a text field; a
redaction is written back in the same encoding under the same media type and parameters. Binary files
(PDF, images, audio) pass as they are: PDFs are not text-extracted. A textual file that does not decode
(bad base64, bytes invalid in its charset, an unknown charset) is never passed unread: the raw string is
screened instead. A file whose type is missing or unknown is read when its bytes are valid UTF-8 text. A
JSON file is read as a ``json`` field is: every key and string value decoded (``\\u006b`` hides nothing).
"""

from __future__ import annotations

import base64
import binascii
import codecs
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

# Media types that are text without saying ``text/``.
_TEXTUAL = frozenset(
    {
        "application/json", "application/ld+json", "application/xml", "application/x-yaml",
        "application/yaml", "application/javascript", "application/x-javascript", "application/ecmascript",
        "application/x-sh", "application/sql", "application/graphql", "application/toml",
        "application/x-tex", "application/rtf", "application/csv", "application/x-ndjson",
        "application/jsonl", "application/x-httpd-php", "application/x-python", "image/svg+xml",
    }
)  # fmt: skip
# Media types whose bytes a model does not read as text (a PDF's text is not extracted here).
_BINARY_PREFIXES = ("image/", "audio/", "video/", "font/")
_BINARY = frozenset({"application/pdf", "application/zip", "application/gzip", "application/x-tar"})


@dataclass(frozen=True)
class DataUrl:
    """A parsed data URL: its media type with parameters as written, whether base64, and the payload."""

    header: str  # everything between ``data:`` and the comma, as written (``text/plain;base64``)
    media_type: str  # lower-cased, without parameters ('' when absent)
    charset: str
    is_base64: bool
    payload: str


def parse(value: str) -> DataUrl | None:
    """``value`` as a data URL, or None when it is not one (then it is a bare base64 payload)."""
    if value[:5].lower() != "data:" or "," not in value:
        return None
    header, payload = value[5:].split(",", 1)
    params = [p.strip() for p in header.split(";")]
    media_type = params[0].lower()
    charset = next(
        (p.split("=", 1)[1].strip('"') for p in params[1:] if p.lower().startswith("charset=")), ""
    )
    is_base64 = any(p.lower() == "base64" for p in params[1:])
    return DataUrl(header, media_type, charset or "utf-8", is_base64, payload)


def is_textual(media_type: str) -> bool:
    """Whether a media type names text a model reads (``text/*``, JSON, XML, YAML, scripts …)."""
    return (
        media_type.startswith("text/")
        or media_type in _TEXTUAL
        or media_type.endswith(("+json", "+xml", "+yaml"))
    )


def is_json(value: str) -> bool:
    """Whether ``value`` is a data URL of a JSON document (read decoded, as a ``json`` field is)."""
    url = parse(value)
    return url is not None and (url.media_type == "application/json" or url.media_type.endswith("+json"))


def _is_binary(media_type: str) -> bool:
    return media_type.startswith(_BINARY_PREFIXES) or media_type in _BINARY


def read(value: str) -> tuple[str, bool] | None:
    """The text a model reads in ``value`` and whether it was decoded (False: ``value`` itself, which did
    not decode); None for a binary file, which passes unread."""
    url = parse(value)
    if url is None:  # bare base64, no media type: text when it decodes to UTF-8 text
        data = _bytes(value, is_base64=True, strict=True)
        return _decoded(_sniffed(data)) if data is not None else (value, False)
    if _is_binary(url.media_type) and not is_textual(url.media_type):
        return None
    data = _bytes(url.payload, is_base64=url.is_base64)
    if not is_textual(url.media_type):  # no type, or one not known: read what decodes as text
        return _decoded(_sniffed(data)) if data is not None else None
    text = _text(data, url.charset) if data is not None else None
    return (value, False) if text is None else (text, True)


def _decoded(text: str | None) -> tuple[str, bool] | None:
    return None if text is None else (text, True)


def rewrite(value: str, text: str) -> str:
    """``value`` (a data URL or bare base64 that ``read`` decoded) holding ``text`` instead, same encoding."""
    url = parse(value)
    if url is None:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")
    data = text.encode(_codec(url.charset) or "utf-8", errors="replace")
    payload = base64.b64encode(data).decode("ascii") if url.is_base64 else quote(data, safe="")
    return f"data:{url.header},{payload}"


def _bytes(payload: str, *, is_base64: bool, strict: bool = False) -> bytes | None:
    """The payload's bytes; None when base64 does not decode (``strict``: no lenient second reading)."""
    if not is_base64:
        return unquote_to_bytes(payload)
    compact = "".join(payload.split("\n")).replace("\r", "") if strict else "".join(payload.split())
    padded = compact + "=" * (-len(compact) % 4)
    try:  # line breaks and missing padding are tolerated, as lenient decoders do
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        pass
    if strict:
        return None
    try:  # the URL-safe alphabet; anything else does not decode, and the raw string is screened
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None


def _codec(charset: str) -> str | None:
    try:
        return codecs.lookup(charset).name
    except LookupError:
        return None


def _text(data: bytes, charset: str) -> str | None:
    codec = _codec(charset)
    if codec is None:
        return None
    try:
        text = data.decode(codec)
    except UnicodeDecodeError:
        return None
    return text.removeprefix("\ufeff")


def _sniffed(data: bytes) -> str | None:
    """``data`` as text when it is valid UTF-8 without NUL bytes (binary files are neither)."""
    if b"\x00" in data:
        return None
    return _text(data, "utf-8")
