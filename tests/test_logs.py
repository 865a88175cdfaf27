"""Structured server logs: JSON lines with the request id, an access log of our own, no prompt text."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from crest_proxy.server.logs import REQUEST_ID, JsonFormatter, RequestIdFilter, configure_logging
from tests.support.classifiers import safe_classifier
from tests.support.harness import running_proxy


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide logging: put it back for the other tests."""
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx")
    loggers = [logging.getLogger(n) for n in names]
    saved = [(list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in loggers]
    yield
    for lg, (handlers, level, propagate, disabled) in zip(loggers, saved, strict=True):
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate, lg.disabled = propagate, disabled


def test_json_lines_carry_the_request_id_extras_and_exceptions(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    log = logging.getLogger("crest_proxy.test")
    token = REQUEST_ID.set("req_abc")
    try:
        log.info("screened %d texts", 3, extra={"tenant": "acme"})
        try:
            raise ValueError("bad thing")
        except ValueError:
            log.exception("it failed")
    finally:
        REQUEST_ID.reset(token)
    log.debug("not at info level")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "screened 3 texts" and first["level"] == "info"
    assert (first["request_id"], first["tenant"], first["logger"]) == ("req_abc", "acme", "crest_proxy.test")
    assert first["ts"].endswith("+00:00")
    assert second["exc_type"] == "ValueError" and "bad thing" in second["exc"]
    assert logging.getLogger("uvicorn.access").disabled  # replaced by crest_proxy.server.access
    assert logging.getLogger("httpx").level == logging.WARNING  # no second line per upstream call


def test_text_format_names_the_request(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("warning", "text", stream)
    token = REQUEST_ID.set("req_xyz")
    logging.getLogger("uvicorn.error").warning("uvicorn speaking")
    REQUEST_ID.reset(token)
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("WARNING uvicorn.error [req_xyz] uvicorn speaking")
    with pytest.raises(ValueError, match="unknown log format"):
        configure_logging("info", "xml", stream)


def test_access_log_has_one_line_per_request_and_never_the_prompt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "my-private-prompt-7f3a9"
    with running_proxy(tmp_path, safe_classifier(), detect_language=False) as h:  # type: ignore[arg-type]
        h.upstream.reply = f"echo {secret}"
        ok = h.post(
            "/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": secret}]},
        )
        denied = h.post("/v1/chat/completions?q=" + secret, {"model": "x", "messages": []}, tenant=None)
    assert (ok.status_code, denied.status_code) == (200, 401)
    formatter, stamp = JsonFormatter(), RequestIdFilter()
    lines = []
    for record in caplog.records:
        if not record.name.startswith(("crest_proxy", "uvicorn")):
            continue  # the test's own HTTP client logs the URLs it calls
        stamp.filter(record)
        lines.append(json.loads(formatter.format(record)))
    assert not [line for line in lines if secret in json.dumps(line)]  # not in any log line, query included
    access = [line for line in lines if line["logger"] == "crest_proxy.server.access"]
    assert [(a["request_id"], a["tenant"], a["status"], a["path"], a["method"]) for a in access] == [
        (ok.headers["x-request-id"], "blocker", 200, "/v1/chat/completions", "POST"),
        (denied.headers["x-request-id"], None, 401, "/v1/chat/completions", "POST"),
    ]
    assert all(a["duration_ms"] > 0 and a["client"] == "127.0.0.1" for a in access)
