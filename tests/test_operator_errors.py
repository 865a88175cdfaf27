"""What an operator sees when something outside the proxy is wrong: one clear line (issue 17, first hour)."""

from __future__ import annotations

import logging

import httpx
import pytest

from crest_proxy.upstream.pool import map_transport_error


def test_an_upstream_failure_logs_its_host_and_cause_but_no_url_or_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = httpx.Request("POST", "https://llm.internal:8443/v1/chat?api-key=sk-secret-123456", headers={})
    error = httpx.ConnectError("boom", request=request)
    error.__cause__ = ConnectionRefusedError(111, "refused")
    with caplog.at_level(logging.WARNING, logger="crest_proxy.upstream"):
        mapped = map_transport_error(error)
    assert mapped.status_code == 502
    (line,) = [r.getMessage() for r in caplog.records if r.name == "crest_proxy.upstream"]
    assert line == "upstream llm.internal:8443 failed: ConnectError caused by builtins.ConnectionRefusedError"
    assert "sk-secret" not in line and "/v1/chat" not in line
