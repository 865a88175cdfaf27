"""``crest-proxy model quantize | info | pull``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crest_proxy.cli import main


def test_quantize_builds_once_then_reuses(
    trigger_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["model", "quantize", "--model", str(trigger_model_dir), "--cache-dir", str(tmp_path)]
    assert main(args) == 0
    built = capsys.readouterr()
    assert built.out.rstrip().endswith("built") and "quantize:" in built.err
    assert main(args) == 0
    reused = capsys.readouterr().out.split("\t")
    assert reused[2].strip() == "reused" and Path(reused[0]).joinpath("model.onnx").is_file()
    assert reused[0] == built.out.split("\t")[0]


def test_info_lists_labels_and_artifacts(
    trigger_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    common = ["--model", str(trigger_model_dir), "--cache-dir", str(tmp_path)]
    assert main(["model", "quantize", *common]) == 0
    capsys.readouterr()
    assert main(["model", "info", *common, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == str(trigger_model_dir.resolve())
    assert report["revision"].startswith("sha256:")
    assert report["id2label"] == {"0": "safe", "1": "unsafe"} and report["unsafe_label"] == "unsafe"
    [artifact] = report["artifacts"]
    assert artifact["precision"] == "int8" and artifact["current"] and artifact["size_bytes"] > 10_000
    assert main(["model", "info", *common]) == 0
    text = capsys.readouterr().out
    assert "unsafe label: unsafe" in text and "onnx int8" in text


def test_info_and_pull_explain_a_missing_model(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert main(["model", "info", "--cache-dir", str(tmp_path)]) == 1
    assert "not on this machine" in capsys.readouterr().out
    assert main(["model", "pull"]) == 1  # conftest keeps HF_HUB_OFFLINE=1
    assert "needs the network" in capsys.readouterr().err
