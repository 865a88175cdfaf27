"""The registry against the outside world: the README's table is it, rendered; OpenAI's spec knows its names.

Regenerate the table after changing a row: ``python -m tests.test_registry_docs`` prints it; paste it
between the ``registry`` markers in README.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crest_proxy import endpoints
from crest_proxy.endpoints import TextField
from crest_proxy.wire.patterns import compile_pattern
from tests.openapi_schemas import require_spec

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- registry:begin -->", "<!-- registry:end -->"
_MARKS = {"json": " (json)", "schema": " (schema)", "tokens": " (token ids)", "text": ""}
_MARKS["data_url"] = " (text file)"  # a file sent inline: a textual one is decoded and screened
_MARKS["alternatives"] = " (tokens)"  # per-token logprobs: the chosen and the alternative tokens' texts
_MARKS["media"] = " (media)"  # read by the model, not by the classifier: inbound.media_inputs
# ``json`` on a whole item: every key and string value of it.


def _split(path: str) -> tuple[str, str]:
    """A row's path as (container, field): the container ends at the last array step."""
    if "!=" in path and path.endswith("]"):  # a whole item of any type no other row names
        return "", path[: path.index("[")] + "[any other type]"
    cut = path.rfind("].")
    return (path[: cut + 1], path[cut + 2 :]) if cut >= 0 else ("", path)


def _cell(rows: list[TextField]) -> str:
    groups: dict[str, list[str]] = {}
    for row in rows:
        container, field = _split(row.path)
        groups.setdefault(container, []).append(f"`{field}`{_MARKS[row.kind]}")
    parts = [f"`{c}`: {', '.join(f)}" if c else ", ".join(f) for c, f in groups.items()]
    return "; ".join(parts).replace("|", "\\|")


def table() -> str:
    """The Markdown table of every endpoint's screened fields, in registry order."""
    lines = ["| endpoint | where | fields |", "|---|---|---|"]
    for endpoint in endpoints.ENDPOINTS:
        for where, stream in (("request", False), ("response", False), ("stream", True)):
            direction = endpoints.IN if where == "request" else endpoints.OUT
            rows = list(endpoints.fields(endpoint.name, direction, stream=stream))
            if rows:
                lines.append(f"| {endpoint.name} | {where} | {_cell(rows)} |")
        lanes = endpoints.event_lanes(endpoint.name)
        if lanes:
            families = ", ".join(f"`{lane.family}`{_MARKS[lane.kind]}" for lane in lanes)
            lines.append(
                f"| {endpoint.name} | stream | {families} (`.delta` / `.done`), and every item above |"
            )
    return "\n".join(lines)


def test_readme_table_matches_the_registry() -> None:
    text = README.read_text()
    assert BEGIN in text and END in text, "README.md lost its registry markers"
    documented = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert documented == table(), (
        "README's screened-fields table is stale: run python -m tests.test_registry_docs"
    )


def test_every_row_appears_in_the_table() -> None:
    rendered = table()
    for row in endpoints.FIELDS:
        assert f"`{_split(row.path)[1]}`" in rendered


# Fields OpenAI does not define but OpenAI-compatible servers send (LiteLLM, vLLM, DeepSeek …).
VENDOR_FIELDS = {"reasoning_content", "reasoning"}


def _names(node: Any, properties: set[str], values: set[str]) -> None:
    """Collect every property name and every string enum/const value of an OpenAPI document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                properties.update(value)
            if key == "enum" and isinstance(value, list):
                values.update(v for v in value if isinstance(v, str))
            if key == "const" and isinstance(value, str):
                values.add(value)
            _names(value, properties, values)
    elif isinstance(node, list):
        for element in node:
            _names(element, properties, values)


def test_every_name_a_row_uses_is_in_openais_description() -> None:
    """A misspelt key or item type would match nothing and screen nothing: check them against the spec."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec = yaml.load(require_spec().read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - safe loader
    properties: set[str] = set()
    values: set[str] = set()
    _names(spec["components"], properties, values)
    unknown = []
    for row in endpoints.FIELDS:
        for step in compile_pattern(row.path):
            names = [step.key, step.field] if step.key or step.field else []
            unknown += [f"{row.id}: {n}" for n in names if n and n not in properties | VENDOR_FIELDS]
            unknown += [f"{row.id}: {v}" for v in step.allowed if v and v not in values]
    events = [f"{lane.family}.{end}" for lane in endpoints.EVENT_LANES for end in ("delta", "done")]
    unknown += [event for event in events if event not in values]
    assert unknown == []


if __name__ == "__main__":
    print(table())
