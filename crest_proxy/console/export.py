"""CSV and JSON Lines exports of the records a filter matches, streamed (no size cap, no buffering)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from crest_proxy.audit.query import Found

CSV_COLUMNS = (
    "ts", "request_id", "tenant", "direction", "endpoint", "model", "action", "score", "threshold", "rules",
    "language", "windows", "texts", "latency_ms", "upstream_status", "error", "text_sha256", "content",
)  # fmt: skip
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ROWS_PER_CHUNK = 500


def csv_cell(value: object) -> str:
    """A cell a spreadsheet shows as text: values starting like a formula get a leading quote.

    Tenant, model and rule names and kept content are attacker-chosen; ``=HYPERLINK(…)`` must not run
    when an operator opens the export (OWASP "CSV injection").
    """
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = ";".join(str(v) for v in value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_chunks(found: Iterable[Found]) -> Iterator[str]:
    """The CSV export: a header row, then one row per record, in chunks of text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for n, item in enumerate(found, start=1):
        writer.writerow([csv_cell(item.record.get(c)) for c in CSV_COLUMNS])
        if n % _ROWS_PER_CHUNK == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def jsonl_chunks(found: Iterable[Found]) -> Iterator[bytes]:
    """The JSON Lines export: each line exactly as written (hashes included, so it can be verified)."""
    lines: list[bytes] = []
    for item in found:
        lines.append(item.line + b"\n")
        if len(lines) == _ROWS_PER_CHUNK:
            yield b"".join(lines)
            lines.clear()
    yield b"".join(lines)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
