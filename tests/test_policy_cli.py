"""``crest-proxy policy check`` and ``crest-proxy policy hash-key``."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crest_proxy.cli import main

SHIPPED = Path(__file__).resolve().parent.parent / "policies"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "policies"


def test_check_shipped_policies(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CREST_PROXY_KEY", "k")
    monkeypatch.setenv("OPENAI_API_KEY", "o")
    assert main(["policy", "check", str(SHIPPED)]) == 0
    out, err = capsys.readouterr()
    assert out == "ok: 1 tenant (default)\n" and err == ""


def test_check_lists_every_error_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CREST_PROXY_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "o")
    shutil.copy(SHIPPED / "default.yaml", tmp_path / "default.yaml")
    bad = (
        (EXAMPLES / "acme.yaml")
        .read_text()
        .replace("threshold: 0.6", "threshold: 6")
        .replace("style:", "styl:")
    )
    (tmp_path / "acme.yaml").write_text(bad)
    assert main(["policy", "check", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{tmp_path / 'acme.yaml'}: outbound.threshold: 6 is out of range; use a number from 0 to 1",
        f"{tmp_path / 'acme.yaml'}: block.styl: unknown key; allowed keys: style, message",
        f"{tmp_path / 'default.yaml'}: keys[0]: environment variable CREST_PROXY_KEY is not set; "
        "set CREST_PROXY_KEY or use sha256:<digest>",
    ]


def test_check_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", str(tmp_path / "absent")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_hash_key_argument_and_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = "sha256:" + hashlib.sha256(b"sk-acme-demo").hexdigest()
    assert main(["policy", "hash-key", "sk-acme-demo"]) == 0
    assert capsys.readouterr().out == expected + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO("sk-acme-demo\n"))
    assert main(["policy", "hash-key"]) == 0
    assert capsys.readouterr().out == expected + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["policy", "hash-key"]) == 2
    assert "empty key" in capsys.readouterr().err


def test_policy_without_action_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy"]) == 2
    assert "check" in capsys.readouterr().err


def test_console_entry_point_exit_code(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("tenant: x\n")
    result = subprocess.run(
        [sys.executable, "-m", "crest_proxy", "policy", "check", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert f"{tmp_path / 'x.yaml'}: keys: required key is missing; add it" in result.stderr
    assert f"{tmp_path / 'x.yaml'}: upstream: required key is missing; add it" in result.stderr


def test_check_without_secrets(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``--no-env`` validates the files where their secrets are not set (a CI job, a reviewer's laptop)."""
    monkeypatch.delenv("CREST_PROXY_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["policy", "check", str(SHIPPED)]) == 1
    capsys.readouterr()
    assert main(["policy", "check", "--no-env", str(SHIPPED)]) == 0
    assert capsys.readouterr().out == "ok: 1 tenant (default)\n"
