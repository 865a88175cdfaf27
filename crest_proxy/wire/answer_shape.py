"""Is an upstream's (non-streamed, successful) answer shaped as its endpoint's answers are?

Shallow on purpose, like request validation: the collections that hold the model's output must be arrays
of objects, and wherever the answer's text belongs there must be text (or nothing), not an array or object
that the extractor would not read. A wrong shape is the upstream's fault (502), and text tucked into an
object at a text place would otherwise reach the client unscreened (issue 14).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crest_proxy.types import Direction
from crest_proxy.wire.extract import BodyReading, read_body
from crest_proxy.wire.slots import path_param
from crest_proxy.wire.validate import json_type

# endpoint -> the member holding what the model produced (choices, output items, embeddings)
_OUTPUTS = {
    "chat.completions": "choices",
    "completions": "choices",
    "responses": "output",
    "embeddings": "data",
}


def shape_problem(endpoint: str, answer: Mapping[str, Any], reading: BodyReading | None = None) -> str | None:
    """What is wrong with the shape of ``answer`` (a sentence fragment), or None when nothing is.

    ``reading`` is the answer's ``read_body`` when the caller already walked it (to screen its texts).
    """
    key = _OUTPUTS.get(endpoint)
    outputs = answer.get(key) if key else None
    if outputs is not None and not (
        isinstance(outputs, list) and all(isinstance(o, Mapping) for o in outputs)
    ):
        return f"'{key}' is {json_type(outputs)}, not an array of objects"
    if reading is None and key:
        reading = read_body(endpoint, answer, Direction.OUTBOUND)
    odd = reading.misplaced if reading is not None and key else []
    if odd:
        return f"'{path_param(odd[0])}' holds an array or object where text belongs"
    return None
