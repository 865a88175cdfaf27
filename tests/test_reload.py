"""Policies change without a restart: file changes and SIGHUP revalidate and swap each tenant's policy."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from crest_proxy.classifier import CrestClassifier
from crest_proxy.errors import ConfigError
from crest_proxy.policy.files import load_policies, load_policy_entry
from crest_proxy.policy.reload import merge
from crest_proxy.server.app import create_app
from crest_proxy.settings import ServerSettings
from tests.support.harness import Harness, key_of, running_proxy, write_policies
from tests.support.upstream import FakeUpstream
from tests.support.waiting import wait_for, wait_for_async

UNSAFE = "how do I make a kaboom"


@pytest.fixture
def harness(tmp_path: Path, classifier: CrestClassifier) -> Iterator[Harness]:
    with running_proxy(tmp_path, classifier, policy_poll_s=0.2, detect_language=False) as h:
        yield h


def chat(h: Harness, text: str, tenant: str = "blocker") -> httpx.Response:
    return h.post(
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
        tenant,
    )


def edit(directory: Path, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = directory / name
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc))


def metric(h: Harness, line_start: str) -> float:
    for line in httpx.get(f"{h.proxy_url}/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def set_inbound_action(action: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["inbound"]["action"] = action

    return change


# --- the watcher ----------------------------------------------------------------------------------------


def test_a_changed_file_takes_effect_within_two_seconds(harness: Harness) -> None:
    assert chat(harness, UNSAFE).status_code == 400
    edit(harness.policy_dir, "blocker.yaml", set_inbound_action("log"))  # type: ignore[arg-type]
    assert wait_for(lambda: chat(harness, UNSAFE).status_code == 200) < 2.0
    assert metric(harness, 'crest_policy_reloads_total{result="applied"}') == 1


def test_a_broken_file_keeps_the_previous_policy_logs_and_counts(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="crest_proxy.policy.reload")
    edit(harness.policy_dir, "blocker.yaml", lambda doc: doc["inbound"].update(threshold=7))  # type: ignore[arg-type]
    wait_for(lambda: metric(harness, 'crest_policy_reload_errors_total{file="blocker.yaml"}') == 1)
    assert chat(harness, UNSAFE).status_code == 400  # still the previous (valid) policy
    assert chat(harness, "hello", tenant="logger").status_code == 200  # other tenants untouched
    (message,) = [r.getMessage() for r in caplog.records if r.name == "crest_proxy.policy.reload"]
    assert "blocker.yaml: inbound.threshold:" in message and "previous policy stays in force" in message
    ready = httpx.get(f"{harness.proxy_url}/readyz").json()
    assert "kept previous policies for blocker.yaml" in ready["checks"]["policies"]["detail"]
    # Fixing the file applies the fix.
    edit(harness.policy_dir, "blocker.yaml", lambda doc: doc["inbound"].update(threshold=0.5, action="log"))  # type: ignore[arg-type]
    wait_for(lambda: chat(harness, UNSAFE).status_code == 200)


def test_deleting_a_file_removes_the_tenant_and_adding_one_adds_a_tenant(harness: Harness) -> None:
    assert chat(harness, "hello", tenant="logger").status_code == 200
    (harness.policy_dir / "logger.yaml").unlink()  # type: ignore[operator]
    wait_for(lambda: chat(harness, "hello", tenant="logger").status_code == 401)
    assert metric(harness, "crest_policy_tenants ") == 5
    newbie = yaml.safe_load((harness.policy_dir / "refuser.yaml").read_text())  # type: ignore[operator]
    newbie.update(tenant="newbie", keys=["env:NEWBIE_KEY"])
    harness.environ["NEWBIE_KEY"] = key_of("newbie")  # type: ignore[index]
    (harness.policy_dir / "newbie.yaml").write_text(yaml.safe_dump(newbie))  # type: ignore[operator]
    wait_for(lambda: chat(harness, "hello", tenant="newbie").status_code == 200)
    assert (
        chat(harness, UNSAFE, tenant="newbie").json()["choices"][0]["message"]["content"]
        == "I can't help with that."
    )


def test_a_request_in_flight_finishes_under_the_policy_it_started_with(harness: Harness) -> None:
    harness.upstream.reply, harness.upstream.delay_s = f"Sure: {UNSAFE}", 1.0
    with ThreadPoolExecutor(1) as pool:
        screened = metric(harness, "crest_classifier_texts_total")
        in_flight = pool.submit(chat, harness, "hello")
        # Once its prompt reached the classifier, the request has authenticated (and holds its policy).
        wait_for(lambda: metric(harness, "crest_classifier_texts_total") > screened)
        harness.upstream.delay_s = 0.0
        edit(harness.policy_dir, "blocker.yaml", lambda doc: doc["outbound"].update(action="log"))  # type: ignore[arg-type]
        wait_for(lambda: metric(harness, 'crest_policy_reloads_total{result="applied"}') == 1)
        old = in_flight.result(timeout=10).json()
    assert old["choices"][0]["message"]["content"] == "Blocked by policy."  # outbound: block, as it started
    new = chat(harness, "hello").json()
    assert new["choices"][0]["message"]["content"] == f"Sure: {UNSAFE}"  # outbound: log, after the reload


# --- SIGHUP, in this process ---------------------------------------------------------------------------


async def test_sighup_and_the_reload_entry_point(tmp_path: Path, classifier: CrestClassifier) -> None:
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    environ = write_policies(policy_dir, "http://upstream.test")
    settings = ServerSettings(
        policies_dir=policy_dir, audit_log=tmp_path / "audit.jsonl", policy_poll_s=0, detect_language=False
    )
    app = create_app(
        settings,
        policies=load_policies(policy_dir, environ=environ),
        classifier=classifier,
        transport=httpx.ASGITransport(FakeUpstream().app()),
        environ=environ,
    )
    before = signal.getsignal(signal.SIGHUP)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": UNSAFE}]}
    headers = {"authorization": f"Bearer {key_of('blocker')}"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://proxy.test") as client,
    ):
        assert (await client.post("/v1/chat/completions", json=body, headers=headers)).status_code == 400
        edit(policy_dir, "blocker.yaml", set_inbound_action("log"))
        # Polling is off: only SIGHUP (or the entry point it calls) reloads. The lifespan runs in the main
        # thread here, so the handler is installed; never send the signal without it (it would kill pytest).
        assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, signal.SIG_IGN, None, before)
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_for_async(lambda: app.state.reloader.last is not None, what="the SIGHUP reload")
        assert app.state.reloader.last.updated == ("blocker",)
        assert (await client.post("/v1/chat/completions", json=body, headers=headers)).status_code == 200
        edit(policy_dir, "blocker.yaml", set_inbound_action("block"))
        result = await app.state.reloader.reload()  # what the handler calls
        assert (result.result, result.updated, result.problems) == ("applied", ("blocker",), ())
        assert (await client.post("/v1/chat/completions", json=body, headers=headers)).status_code == 400
    assert signal.getsignal(signal.SIGHUP) == before  # the previous handler is back after shutdown


# --- merge (pure) ---------------------------------------------------------------------------------------


def test_a_conflicting_change_is_blamed_on_the_file_that_changed(tmp_path: Path) -> None:
    environ = write_policies(tmp_path, "http://upstream.test")
    previous = load_policies(tmp_path, environ=environ)
    edit(tmp_path, "blocker.yaml", lambda doc: doc.update(tenant="logger"))  # now claims logger's name
    edit(tmp_path, "picky.yaml", lambda doc: doc.update(keys=["env:LOGGER_KEY"]))  # and logger's key
    loaded = []
    for path in sorted(tmp_path.glob("*.yaml")):
        try:
            loaded.append((path, load_policy_entry(path, environ=environ)))
        except ConfigError as exc:
            loaded.append((path, exc))
    merged = merge(previous, loaded)
    assert sorted(p.name for p in merged.rejected) == ["blocker.yaml", "picky.yaml"]
    # Both kept their previous policies, and logger kept its name and key.
    assert dict(merged.policies.policies) == dict(previous.policies)
    assert set(merged.policies.key_digests) == set(previous.key_digests)
    assert any("already defined" in p for p in merged.problems)
    assert any("also used by tenant 'logger'" in p for p in merged.problems)
