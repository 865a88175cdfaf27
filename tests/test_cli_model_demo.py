"""``crest-proxy model demo``: the air-gapped stand-in model used by the README's run command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crest_proxy.cli import main


def test_demo_writes_a_loadable_trigger_model_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "demo"
    assert main(["model", "demo", str(target)]) == 0
    meta = json.loads((target / "synthetic.json").read_text())
    assert meta["triggers"] == ["kaboom", "zarquon"]
    stamp = (target / "model.safetensors").stat().st_mtime_ns
    assert main(["model", "demo", str(target)]) == 0
    assert (target / "model.safetensors").stat().st_mtime_ns == stamp, "second run must reuse the model"
    assert "already holds" in capsys.readouterr().err
    assert (
        main(["classify", "--model", str(target), "--backend", "torch", "--no-quantize", "hi", "kaboom"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["safe", "unsafe"]
