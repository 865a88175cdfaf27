"""The one decision path: every caller's decisions are audited and counted alike (issue 12's drift bugs)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crest_proxy.audit.sink import MemoryAuditSink
from crest_proxy.policy.files import load_policies
from crest_proxy.screening.decision import (
    FAIL_CLOSED_MESSAGE,
    Answer,
    Exchange,
    Recorders,
    decide,
    outcome_of,
)
from crest_proxy.screening.guard import Guard, RequestContext
from crest_proxy.server.app import create_app
from crest_proxy.settings import ServerSettings
from crest_proxy.types import Direction
from tests.support.classifiers import FakeClassifier, broken_classifier
from tests.support.harness import UPSTREAM_KEY, Harness, key_of, running_proxy, write_policies
from tests.support.policies import make_policy
from tests.support.servers import serve
from tests.support.upstream import FakeUpstream
from tests.support.waiting import wait_for

PACKAGE = Path(__file__).resolve().parent.parent / "crest_proxy"


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    tmp = tmp_path_factory.mktemp("decision")
    with running_proxy(tmp, FakeClassifier(), detect_language=False) as h:
        yield h


def metrics(h: Harness) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{h.proxy_url}/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def grew(before: dict, after: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def stream_chat(h: Harness, tenant: str = "blocker") -> str:
    with h.client(tenant).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    ) as stream:
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


# --- streamed decisions reach Prometheus ---------------------------------------------------------------


def test_streamed_decisions_upstream_calls_and_stream_timings_are_counted(harness: Harness) -> None:
    harness.upstream.stream_pieces = ["Hello ", "there. ", "All fine."]
    before = metrics(harness)
    assert stream_chat(harness) == "Hello there. All fine."
    allowed = {"tenant": "blocker", "action": "allow", "language": "unknown"}
    labels = {**allowed, "direction": "outbound"}
    wait_for(lambda: grew(before, metrics(harness), "crest_decisions_total", **labels) == 1)
    after = metrics(harness)
    assert grew(before, after, "crest_decisions_total", direction="inbound", **allowed) == 1
    upstream = {"tenant": "blocker", "endpoint": "chat.completions", "outcome": "2xx"}
    assert grew(before, after, "crest_upstream_duration_seconds_count", **upstream) == 1
    assert grew(before, after, "crest_stream_holdback_seconds_count", tenant="blocker") == 1
    assert grew(before, after, "crest_stream_added_ttft_seconds_count", tenant="blocker") == 1


def test_a_blocked_stream_is_counted_as_an_outbound_block(harness: Harness) -> None:
    harness.upstream.stream_pieces = ["Fine. ", "Then kaboom. ", "More."]
    before = metrics(harness)
    assert stream_chat(harness) == "Fine. "
    labels = {"tenant": "blocker", "direction": "outbound", "action": "block", "language": "unknown"}
    wait_for(lambda: grew(before, metrics(harness), "crest_decisions_total", **labels) == 1)


# --- the fail-closed message has one wording -------------------------------------------------------------


def test_the_fail_closed_message_is_written_once() -> None:
    holders = [p.name for p in PACKAGE.rglob("*.py") if "fails closed; retry later" in p.read_text()]
    assert holders == ["decision.py"]


async def test_fail_closed_outcomes_are_503_or_429_with_the_one_message() -> None:
    policy = make_policy(on_error="block")
    failed = await Guard(broken_classifier()).screen(policy, Direction.OUTBOUND, ["hi"])
    outcome = outcome_of(failed, policy, "chat.completions")
    assert (outcome.answer, outcome.status, outcome.code, outcome.message) == (
        Answer.UNAVAILABLE, 503, "classifier_unavailable", FAIL_CLOSED_MESSAGE,
    )  # fmt: skip


def test_a_non_streamed_answer_fails_closed_like_a_streamed_one(tmp_path: Path) -> None:
    with running_proxy(tmp_path, broken_classifier(), detect_language=False) as h:
        # "picky" screens only user messages inbound: the request passes, the answer's screening fails.
        body = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "hi"}]}
        response = h.post("/v1/chat/completions", body, "picky")
    assert response.status_code == 503
    assert response.json()["error"]["message"] == FAIL_CLOSED_MESSAGE


async def test_decide_writes_the_record_and_answers_by_block_style() -> None:
    sink = MemoryAuditSink()
    policy = make_policy(block={"style": "refusal", "message": "No."})
    screening = await Guard(FakeClassifier()).screen(policy, Direction.INBOUND, ["a kaboom"])
    ctx = RequestContext("req-1", "t1", "embeddings", None)
    rejected = await decide(screening, ctx, policy, Recorders(sink), upstream=Exchange(None, error="x"))
    ctx = RequestContext("req-2", "t1", "chat.completions", None)
    refused = await decide(screening, ctx, policy, Recorders(sink))
    assert (rejected.answer, rejected.status, refused.answer, refused.message) == (
        Answer.REJECT, 400, Answer.REFUSE, "No.",
    )  # fmt: skip
    assert [(r.request_id, r.action, r.extra) for r in sink.records] == [
        ("req-1", "block", {"upstream_error": "x"}), ("req-2", "block", {}),
    ]  # fmt: skip


# --- create_app works with defaults only -----------------------------------------------------------------


def test_create_app_with_default_settings_serves_and_audits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with serve(FakeUpstream().app()) as upstream_url:
        (tmp_path / "policies").mkdir()
        for name, value in write_policies(tmp_path / "policies", upstream_url).items():
            monkeypatch.setenv(name, value)
        app = create_app(ServerSettings(), classifier=FakeClassifier())
        with serve(app) as proxy_url:
            headers = {"authorization": f"Bearer {key_of('blocker')}"}
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            answer = httpx.post(f"{proxy_url}/v1/chat/completions", json=body, headers=headers)
    assert answer.status_code == 200
    lines = (tmp_path / "crest-audit.jsonl").read_text().splitlines()
    assert len(lines) == 2 and '"direction":"outbound"' in lines[1]


# --- a reload mid-request does not change the call's upstream key -----------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_reload_mid_request_keeps_the_calls_upstream_key(tmp_path: Path, stream: bool) -> None:
    gate = threading.Event()
    classifier = FakeClassifier(gate=gate)
    with running_proxy(tmp_path, classifier, detect_language=False) as h, ThreadPoolExecutor(1) as pool:
        h.upstream.stream_pieces = ["Hello."] if stream else None
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        pending = pool.submit(h.post, "/v1/chat/completions", body, "blocker")
        assert classifier.entered.wait(10)  # the request authenticated and is being screened
        rotated = {**(h.environ or {}), "UPSTREAM_KEY": "sk-rotated-key-000000000000"}
        h.app.state.gateway.store.current = load_policies(h.policy_dir, environ=rotated)
        gate.set()
        assert pending.result(timeout=10).status_code == 200
    assert h.upstream.last.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
