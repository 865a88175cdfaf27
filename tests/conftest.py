"""Shared fixtures: generated CREST-shaped models (no network, no downloaded weights)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from crest_proxy.classifier import ClassifierSettings, CrestClassifier, load_classifier
from crest_proxy.classifier.synthetic import DEFAULT_TRIGGERS, build_trigger_model
from tests.support.harness import Harness, running_proxy


@pytest.fixture(scope="session")
def trigger_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real XLM-R checkpoint whose P(unsafe) is ~1 iff a trigger word (see TRIGGERS) occurs."""
    return build_trigger_model(tmp_path_factory.mktemp("trigger-model"))


@pytest.fixture(scope="session")
def triggers() -> tuple[str, ...]:
    """The words that make the trigger model say unsafe."""
    return DEFAULT_TRIGGERS


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never reach the network: the hub client must answer from the cache or fail fast.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def classifier(
    trigger_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CrestClassifier]:
    """One loaded trigger-model classifier (torch fp32: the fastest to load) shared by the proxy tests.

    CREST_TEST_BACKEND=remote-mlserver (or remote-triton) runs the same tests with the model on a real
    inference server instead (docs/remote-classifier.md).
    """
    backend = os.environ.get("CREST_TEST_BACKEND", "")
    if backend.startswith("remote-"):
        from tests.oip_servers import remote_classifier

        work = tmp_path_factory.mktemp("oip")
        with remote_classifier(backend.removeprefix("remote-"), trigger_model_dir, work) as remote:
            yield remote
        return
    clf = load_classifier(ClassifierSettings(model=str(trigger_model_dir), backend="torch", quantize=False))
    yield clf
    clf.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, classifier: CrestClassifier) -> Iterator[Harness]:
    """crest-proxy on loopback in front of a fake upstream, one per test module (modules may override it)."""
    with running_proxy(tmp_path_factory.mktemp("proxy"), classifier) as h:
        yield h
