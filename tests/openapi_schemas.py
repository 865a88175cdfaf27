"""Validate JSON bodies against component schemas of OpenAI's OpenAPI description (a test helper).

The spec ships in ``tests/data/openai-openapi/`` (MIT, with its licence and source note), so these tests
always run; ``$CREST_OPENAPI_SPEC`` points them at another copy.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest

_BASE_URI = "urn:openai-openapi"
_DEFAULT_SPEC = Path(__file__).resolve().parent / "data" / "openai-openapi" / "openapi.yaml"


def spec_path() -> Path:
    """Where the OpenAPI description is expected (``$CREST_OPENAPI_SPEC`` wins)."""
    override = os.environ.get("CREST_OPENAPI_SPEC")
    return Path(override) if override else _DEFAULT_SPEC


def require_spec() -> Path:
    """The spec's path, or skip the calling test when it is not there."""
    path = spec_path()
    if not path.is_file():
        pytest.skip(f"OpenAI OpenAPI description not found at {path} (set CREST_OPENAPI_SPEC to its path)")
    return path


def assert_valid(instance: Any, component_name: str) -> None:
    """Fail the test (listing every violation) unless ``instance`` validates against ``component_name``."""
    validator = _validator(str(require_spec()), component_name)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"- {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}" for e in errors]
        pytest.fail(f"instance does not validate against {component_name}:\n" + "\n".join(lines))


@functools.cache
def _validator(path: str, component_name: str) -> Any:
    from jsonschema import Draft202012Validator

    registry = _registry(path)
    schema = {"$ref": f"{_BASE_URI}#/components/schemas/{component_name}"}
    return Draft202012Validator(schema, registry=registry)


@functools.lru_cache(maxsize=1)
def _registry(path: str) -> Any:
    # The 3 MB YAML is parsed once per session (with libyaml when available: ~10x faster).
    import yaml
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as handle:
        spec = yaml.load(handle, Loader=loader)  # noqa: S506 - a safe loader
    if not isinstance(spec, dict) or "components" not in spec:
        raise AssertionError(f"{path} is not an OpenAPI description with components")
    resource = DRAFT202012.create_resource(_nullable_to_json_schema(spec))
    return Registry().with_resource(_BASE_URI, resource)


def _nullable_to_json_schema(node: Any) -> Any:
    """Rewrite OpenAPI 3.0's ``nullable: true`` (left over in this 3.1 document) as JSON Schema.

    JSON Schema 2020-12 ignores ``nullable``, so e.g. a stream chunk's ``finish_reason: null`` would be
    rejected although the spec means to allow it.
    """
    if isinstance(node, list):
        return [_nullable_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    # Only the boolean keyword is dropped: a *property* called "nullable" maps to a schema object.
    flag = node.get("nullable")
    converted = {
        k: _nullable_to_json_schema(v)
        for k, v in node.items()
        if not (k == "nullable" and isinstance(flag, bool))
    }
    if flag is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted
