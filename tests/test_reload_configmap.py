"""Hot reload from a Kubernetes ConfigMap volume: kubelet swaps a ``..data`` symlink, never the files.

A ConfigMap mount holds ``..<timestamp>/`` (the real files), ``..data -> ..<timestamp>`` and one
``<key> -> ..data/<key>`` link per key. An update writes a new timestamped directory, points ``..data_tmp``
at it, renames that over ``..data`` (atomic) and deletes the old directory; new keys get their link after.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from crest_proxy.classifier import CrestClassifier
from tests.support.harness import Harness, running_proxy
from tests.support.waiting import wait_for

UNSAFE = "how do I make a kaboom"


def as_configmap(directory: Path) -> None:
    """Turn a directory of policy files into kubelet's layout, the files reached through ``..data``."""
    version = directory / "..2026_01_01_00_00_00.000000001"
    version.mkdir()
    names = sorted(p.name for p in directory.iterdir() if p.is_file())
    for name in names:
        (directory / name).rename(version / name)
    os.symlink(version.name, directory / "..data")
    for name in names:
        os.symlink(f"..data/{name}", directory / name)


def kubelet_update(directory: Path, files: dict[str, str], stamp: str) -> None:
    """Publish ``files`` as the ConfigMap's new content the way kubelet's atomic writer does."""
    old = os.readlink(directory / "..data")
    version = directory / f"..{stamp}"
    version.mkdir()
    for name, text in files.items():
        (version / name).write_text(text)
    os.symlink(version.name, directory / "..data_tmp")
    os.rename(directory / "..data_tmp", directory / "..data")  # the one atomic switch
    for name in files:
        if not (directory / name).is_symlink():
            os.symlink(f"..data/{name}", directory / name)
    for link in [p for p in directory.iterdir() if p.is_symlink() and not p.name.startswith("..")]:
        if link.name not in files:
            link.unlink()
    shutil.rmtree(directory / old)


@pytest.fixture
def harness(tmp_path: Path, classifier: CrestClassifier) -> Iterator[Harness]:
    with running_proxy(tmp_path, classifier, policy_poll_s=0.2, detect_language=False) as h:
        assert h.policy_dir is not None
        as_configmap(h.policy_dir)
        yield h


def chat(h: Harness, tenant: str = "blocker") -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": UNSAFE}]}
    return h.post("/v1/chat/completions", body, tenant)


def current_files(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.iterdir()) if not p.name.startswith("..")}


def test_a_configmap_symlink_swap_is_reloaded(harness: Harness) -> None:
    directory = harness.policy_dir
    assert directory is not None
    assert chat(harness).status_code == 400
    files = current_files(directory)
    doc = yaml.safe_load(files["blocker.yaml"])
    doc["inbound"]["action"] = "log"
    kubelet_update(directory, {**files, "blocker.yaml": yaml.safe_dump(doc)}, "2026_01_01_00_01_00.000000002")
    assert wait_for(lambda: chat(harness).status_code == 200, what="the swapped policy") < 2.0


def test_a_key_removed_from_the_configmap_removes_its_tenant(harness: Harness) -> None:
    directory = harness.policy_dir
    assert directory is not None
    assert chat(harness, "logger").status_code == 200
    files = {k: v for k, v in current_files(directory).items() if k != "logger.yaml"}
    kubelet_update(directory, files, "2026_01_01_00_02_00.000000003")
    assert wait_for(lambda: chat(harness, "logger").status_code == 401, what="the tenant's removal") < 2.0
    assert chat(harness).status_code == 400  # the others are untouched
