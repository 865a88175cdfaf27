"""End to end: the OpenAI SDK -> a real ``litellm`` proxy process with ``CrestGuardrail`` -> a fake upstream.

The proxy runs from LiteLLM's own CLI with ``examples/litellm/config.yaml`` (its models pointed at a fake
OpenAI server on loopback, its guardrail at the generated trigger model), started once for the module and
always killed. Nothing leaves the machine: no database, no telemetry, a local model cost map.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.support.servers import serve
from tests.support.upstream import FakeUpstream
from tests.support.waiting import wait_for

if importlib.util.find_spec("litellm") is None:  # the `litellm` extra
    pytest.skip("litellm is not installed", allow_module_level=True)
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "litellm"
STARTUP_TIMEOUT_S = 180.0


@dataclass
class LiteLLMProxy:
    """Handles on the running LiteLLM proxy, the fake upstream behind it and the guardrail's audit log."""

    url: str
    fake: FakeUpstream
    audit_log: Path
    client: openai.OpenAI

    def payloads_for(self, call_id: str) -> list[dict[str, Any]]:
        """The standard logging payloads LiteLLM gave its callbacks for one call (waits for the first)."""
        path = self.audit_log.with_name("payloads.jsonl")

        def found() -> list[dict[str, Any]]:
            return [p for p in complete_json_lines(path) if p["call_id"] == call_id]

        wait_for(found, timeout=10, what=f"LiteLLM's logging payload of {call_id}")
        return found()

    def records_for(self, call_id: str, count: int) -> list[dict[str, Any]]:
        """The audit records of one call, waiting briefly for the writer thread of the other process."""

        def found() -> list[dict[str, Any]]:
            return [r for r in complete_json_lines(self.audit_log) if r["request_id"] == call_id]

        wait_for(lambda: len(found()) >= count, timeout=10, what=f"{count} audit records of {call_id}")
        return found()


def complete_json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines another process has finished writing.

    The LiteLLM process appends while the test reads, so the last line may be half written; only lines
    ended by a newline are complete (CI once read `{"call_id": "…", "status_fi` and failed).
    """
    text = path.read_text() if path.exists() else ""
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp: Path, fake_url: str, model_dir: Path) -> Path:
    """The shipped example, with its models sent to the fake upstream and its guardrail at tmp files."""
    config = yaml.safe_load((EXAMPLE / "config.yaml").read_text())
    config["model_list"] = [
        {
            "model_name": "gpt-4o-mini",
            "litellm_params": {
                "model": "openai/gpt-4o-mini",
                "api_base": f"{fake_url}/v1",
                "api_key": "sk-fake",
            },
        }
    ]
    shutil.copy(EXAMPLE / "policy.yaml", tmp / "policy.yaml")
    params = config["guardrails"][0]["litellm_params"]
    params.update(policy=str(tmp / "policy.yaml"), model=str(model_dir), backend="torch")
    params["audit_log"] = str(tmp / "audit.jsonl")
    # A callback of the kind LiteLLM users add (Langfuse, Datadog …): it writes every standard logging
    # payload it is given, so tests see what LiteLLM's spend logs and Guardrails Monitor are told.
    (tmp / "crest_capture.py").write_text(CAPTURE.replace("PAYLOADS", str(tmp / "payloads.jsonl")))
    config.setdefault("litellm_settings", {})["callbacks"] = ["crest_capture.handler"]
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp / "config.yaml"


CAPTURE = """
import json
from litellm.integrations.custom_logger import CustomLogger


class Capture(CustomLogger):
    def _write(self, kwargs):
        payload = kwargs.get("standard_logging_object") or {}
        record = {
            "call_id": kwargs.get("litellm_call_id"),
            "status": payload.get("status"),
            "status_fields": payload.get("status_fields"),
            "guardrail_information": payload.get("guardrail_information"),
        }
        with open("PAYLOADS", "a") as out:
            out.write(json.dumps(record, default=str) + "\\n")

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs)


handler = Capture()
"""


@contextmanager
def litellm_process(config: Path, port: int, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """LiteLLM's CLI starting to serve ``config`` on loopback (and its master key); killed on exit."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        LITELLM_MASTER_KEY=f"sk-{secrets.token_hex(32)}",
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # no download of the model cost map
        LITELLM_TELEMETRY="False",
        DISABLE_ADMIN_UI="True",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    cli = Path(sys.executable).with_name("litellm")
    command = [
        str(cli),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=config.parent, start_new_session=True
        )
    try:
        yield process, env["LITELLM_MASTER_KEY"]
    finally:
        _stop(process)


def wait_until_live(process: subprocess.Popen[bytes], url: str, log: Path) -> None:

    def live() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"litellm exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            return httpx.get(f"{url}/health/liveliness", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(live, timeout=STARTUP_TIMEOUT_S, what=f"litellm to start (its log: {log})")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group we started (by its id), then SIGKILL what is left."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[LiteLLMProxy]:
    tmp = tmp_path_factory.mktemp("litellm-proxy")
    fake = FakeUpstream()
    with ExitStack() as stack:
        fake_url = stack.enter_context(serve(fake.app()))
        config = write_config(tmp, fake_url, tmp / "model")
        port, log = free_port(), tmp / "litellm.log"
        process, master_key = stack.enter_context(litellm_process(config, port, log))
        # LiteLLM takes tens of seconds to boot and reads the model only on the first screened request:
        # the trigger model is built meanwhile.
        (tmp / "model").symlink_to(request.getfixturevalue("trigger_model_dir"), target_is_directory=True)
        url = f"http://127.0.0.1:{port}"
        wait_until_live(process, url, log)
        client = stack.enter_context(openai.OpenAI(base_url=f"{url}/v1", api_key=master_key, max_retries=0))
        # The guardrail loads its classifier on the first screened request: pay for it here, once.
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "warm up"}])
        yield LiteLLMProxy(url, fake, tmp / "audit.jsonl", client)


@pytest.fixture(autouse=True)
def _reset(proxy: LiteLLMProxy) -> None:
    proxy.fake.reply, proxy.fake.stream_pieces = "Hello! How can I help you today?", None
    proxy.fake.received.clear()


def ask(proxy: LiteLLMProxy, text: str) -> Any:
    return proxy.client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
    )


def test_safe_request_passes_and_each_direction_is_audited_under_litellms_call_id(
    proxy: LiteLLMProxy,
) -> None:
    raw = ask(proxy, "What is the capital of France?")
    assert raw.parse().choices[0].message.content == "Hello! How can I help you today?"
    assert proxy.fake.last.body["messages"][0]["content"] == "What is the capital of France?"
    call_id = raw.headers["x-litellm-call-id"]
    records = proxy.records_for(call_id, 2)
    assert [(r["direction"], r["action"]) for r in records] == [("inbound", "allow"), ("outbound", "allow")]
    assert all(r["tenant"] == "litellm" and r["extra"]["via"] == "litellm" for r in records)


def test_unsafe_prompt_is_a_400_and_never_reaches_the_upstream(proxy: LiteLLMProxy) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(proxy, "How do I build a kaboom?")
    assert caught.value.status_code == 400
    assert caught.value.body["message"] == "This request was blocked by the content policy."
    assert caught.value.body["provider_specific_fields"]["code"] == "content_policy_violation"
    assert "kaboom" not in caught.value.response.text
    assert proxy.fake.received == []
    (record,) = proxy.records_for(caught.value.response.headers["x-litellm-call-id"], 1)
    assert (record["direction"], record["action"], record["score"] > 0.99) == ("inbound", "block", True)


def test_redacted_prompt_is_what_the_upstream_receives(proxy: LiteLLMProxy) -> None:
    ask(proxy, "Please write to ana@example.com today.")
    assert proxy.fake.last.body["messages"][0]["content"] == "Please write to [REDACTED] today."


def test_unsafe_sentence_of_an_answer_is_redacted(proxy: LiteLLMProxy) -> None:
    proxy.fake.reply = "Here you go. The zarquon is assembled like this. Anything else?"
    raw = ask(proxy, "tell me")
    assert raw.parse().choices[0].message.content == "Here you go. [REDACTED] Anything else?"
    outbound = proxy.records_for(raw.headers["x-litellm-call-id"], 2)[-1]
    assert (outbound["direction"], outbound["action"]) == ("outbound", "redact")


def test_streamed_answer_is_held_back_and_the_unsafe_sentence_never_sent(proxy: LiteLLMProxy) -> None:
    proxy.fake.stream_pieces = ["The first part is fine. ", "Then a zar", "quon appears. ", "The end."]
    stream = proxy.client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "tell me"}], stream=True
    )
    with stream:
        chunks = list(stream)
        call_id = stream.response.headers["x-litellm-call-id"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The first part is fine. [REDACTED] The end."
    assert proxy.fake.last.body["stream"] is True
    outbound = proxy.records_for(call_id, 2)[-1]
    assert (outbound["direction"], outbound["action"], outbound["extra"]["stream"]) == (
        "outbound",
        "redact",
        True,
    )


# --- what LiteLLM's clients and logging see (issue 16) -----------------------------------------------------


def crest_entries(proxy: LiteLLMProxy, call_id: str) -> list[dict[str, Any]]:
    (payload,) = proxy.payloads_for(call_id)
    return [g for g in payload["guardrail_information"] or [] if g["guardrail_name"] == "crest"]


def test_block_has_serves_error_code_and_is_in_the_standard_logging_payload(proxy: LiteLLMProxy) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(proxy, "How do I build a kaboom?")
    assert (caught.value.code, caught.value.type) == ("content_policy_violation", "invalid_request_error")
    call_id = caught.value.response.headers["x-litellm-call-id"]
    (entry,) = crest_entries(proxy, call_id)
    assert (entry["guardrail_status"], entry["guardrail_mode"], entry["guardrail_provider"]) == (
        "guardrail_intervened", "pre_call", "crest",
    )  # fmt: skip
    assert entry["duration"] > 0 and entry["confidence_score"] > 0.99
    assert entry["guardrail_response"]["action"] == "block"
    assert "kaboom" not in json.dumps(entry)
    (payload,) = proxy.payloads_for(call_id)
    assert payload["status_fields"]["guardrail_status"] == "guardrail_intervened"


def test_redaction_and_allow_are_reported_with_masked_counts(proxy: LiteLLMProxy) -> None:
    raw = ask(proxy, "Please write to ana@example.com today.")
    entries = crest_entries(proxy, raw.headers["x-litellm-call-id"])
    assert [(e["guardrail_mode"], e["guardrail_status"]) for e in entries] == [
        ("pre_call", "guardrail_intervened"), ("post_call", "success"),
    ]  # fmt: skip
    assert entries[0]["masked_entity_count"] == {"email": 1}


async def test_content_policy_fallbacks_fire_for_a_litellm_router_client(proxy: LiteLLMProxy) -> None:
    import litellm

    guarded = {"model": "openai/gpt-4o-mini", "api_base": f"{proxy.url}/v1", "api_key": proxy.client.api_key}
    router = litellm.Router(
        model_list=[
            {"model_name": "guarded", "litellm_params": guarded},
            {
                "model_name": "safe-fallback",
                "litellm_params": {"model": "openai/x", "mock_response": "Fallback."},
            },
        ],
        content_policy_fallbacks=[{"guarded": ["safe-fallback"]}],
        num_retries=0,
    )
    messages = [{"role": "user", "content": "How do I build a kaboom?"}]
    if not openai_error_text_has_the_body():
        pytest.xfail(
            f"litellm {version('litellm')} maps content-policy errors by the exception text, and openai "
            f"{openai.__version__} puts only the message there, not the error's type and code"
        )
    try:
        with pytest.raises(litellm.ContentPolicyViolationError):
            await litellm.acompletion(**guarded, messages=messages, max_retries=0)
        answer = await router.acompletion(model="guarded", messages=messages)
    finally:
        await litellm.close_litellm_async_clients()  # its cached clients belong to this test's event loop
    assert answer.choices[0].message.content == "Fallback."
    assert proxy.fake.received == []


def openai_error_text_has_the_body() -> bool:
    """Whether this openai SDK's exception text carries the error body (litellm's mapping reads the text)."""
    body = {"error": {"message": "m", "type": "invalid_request_error", "code": "content_policy_violation"}}
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    with openai.OpenAI(api_key="sk-probe", base_url="http://127.0.0.1/v1") as client:
        error = client._make_status_error_from_response(httpx.Response(400, json=body, request=request))
    return "content_policy_violation" in str(error)
