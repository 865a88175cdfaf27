"""``serve`` and ``classify`` are built from the settings: every field a flag, a default, a variable."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crest_proxy.classifier.settings import ClassifierSettings
from crest_proxy.cli import build_parser, main
from crest_proxy.cli.flags import add_flags, flags_of, settings_from
from crest_proxy.errors import ConfigError
from crest_proxy.settings import ServerSettings, setting
from tests.support.harness import write_policies

# Flag names that README, scripts and earlier releases use: they must keep working.
OLD_FLAGS = [
    ["--policies", "p"], ["--host", "0.0.0.0"], ["--port", "9"], ["--model", "m"], ["--revision", "r"],
    ["--backend", "onnx"], ["--no-quantize"], ["--audit-log", "a.jsonl"], ["--max-body-bytes", "5"],
    ["--classify-timeout", "2"], ["--max-inflight", "3"], ["--audit-max-bytes", "7"],
    ["--audit-max-age", "60"], ["--policy-poll", "0"], ["--no-language-id"], ["--cache-dir", "c"],
    ["--device", "cpu"], ["--threads", "2"], ["--classifier-url", "http://x:1"],
    ["--keep-alive-timeout", "1"], ["--no-audit-log"], ["--log-level", "debug"], ["--log-format", "json"],
]  # fmt: skip


def serve_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices["serve"]  # type: ignore[no-any-return]


def test_every_setting_has_a_serve_flag_with_its_default_and_variable() -> None:
    parser = serve_parser()
    options = {o: a for a in parser._actions for o in a.option_strings}
    for cls in (ServerSettings, ClassifierSettings):
        for flag in flags_of(cls):
            option = f"{flag.option}-env" if flag.secret else flag.option
            assert option in options, f"{cls.__name__}.{flag.name} has no flag"
            assert flag.env in (options[option].help or ""), option
            if flag.default is not None and not flag.secret:
                assert f"default: {flag.default}" in (options[option].help or ""), option


@pytest.mark.parametrize("argv", OLD_FLAGS, ids=lambda a: a[0])
def test_earlier_flag_names_still_parse(argv: list[str]) -> None:
    serve_parser().parse_args(argv)


def test_parsed_flags_become_settings_and_defaults_come_from_the_dataclass(tmp_path: Path) -> None:
    args = serve_parser().parse_args(
        ["--policies", str(tmp_path), "--port", "0", "--no-quantize", "--no-language-id", "--threads", "2"]
    )
    server = settings_from(ServerSettings, args, environ={})
    classifier = settings_from(ClassifierSettings, args)
    assert (server.policies_dir, server.port, server.detect_language) == (tmp_path, 0, False)
    assert (classifier.quantize, classifier.threads) == (False, 2)
    assert dataclasses.replace(server, policies_dir=Path("policies"), port=8080, detect_language=True) == (
        ServerSettings()
    )


def test_environment_variables_set_defaults_and_the_command_line_wins() -> None:
    parser = argparse.ArgumentParser()
    environ = {"CREST_PROXY_PORT": "9001", "CREST_PROXY_LANGUAGE_ID": "off", "CREST_PROXY_DEVICE": "cpu"}
    add_flags(parser, ServerSettings, environ=environ)
    add_flags(parser, ClassifierSettings, environ=environ)
    from_env = settings_from(ServerSettings, parser.parse_args([]), environ={})
    assert (from_env.port, from_env.detect_language) == (9001, False)
    assert settings_from(ClassifierSettings, parser.parse_args([])).device == "cpu"
    assert settings_from(ServerSettings, parser.parse_args(["--port", "7"]), environ={}).port == 7


@pytest.mark.parametrize(
    ("name", "value"),
    [("CREST_PROXY_PORT", "eighty"), ("CREST_PROXY_DEVICE", "tpu"), ("CREST_PROXY_AUDIT_FILE", "maybe")],
)
def test_a_malformed_variable_is_one_clear_error(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["serve", "--help"]) == 2
    assert name in capsys.readouterr().err


def test_secrets_are_read_from_the_environment_never_the_command_line() -> None:
    args = serve_parser().parse_args([])
    assert (
        settings_from(ServerSettings, args, environ={"CREST_PROXY_METRICS_TOKEN": "t0k"}).metrics_token
        == "t0k"
    )
    named = serve_parser().parse_args(["--metrics-token-env", "MY_TOKEN"])
    assert settings_from(ServerSettings, named, environ={"MY_TOKEN": "abc"}).metrics_token == "abc"
    with pytest.raises(ConfigError, match="MY_TOKEN is not set"):
        settings_from(ServerSettings, named, environ={})


def test_a_new_field_is_one_line_and_gets_its_flag_help_and_variable() -> None:
    @dataclass(frozen=True)
    class Example:
        retry_after_s: float = 1.5  # seconds a client is told to wait
        mode: str = setting("fast", choices=("fast", "safe"), help="how to run")

    retry, mode = flags_of(Example)
    assert (retry.option, retry.env, retry.kind, retry.help) == (
        "--retry-after", "CREST_PROXY_RETRY_AFTER", float, "seconds a client is told to wait",
    )  # fmt: skip
    assert (mode.option, mode.choices, mode.help) == ("--mode", ("fast", "safe"), "how to run")
    parser = argparse.ArgumentParser()
    add_flags(parser, Example, environ={"CREST_PROXY_RETRY_AFTER": "3"})
    assert settings_from(Example, parser.parse_args(["--mode", "safe"])) == Example(3.0, "safe")


def test_serve_listens_where_the_settings_say(
    tmp_path: Path, trigger_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    for name, value in write_policies(tmp_path, "http://127.0.0.1:9").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CREST_PROXY_PORT", "18123")
    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(kwargs))
    model = ["--model", str(trigger_model_dir), "--backend", "torch", "--no-quantize", "--no-language-id"]
    argv = [
        "serve",
        "--policies",
        str(tmp_path),
        "--host",
        "127.0.0.2",
        *model,
        "--audit-log",
        str(tmp_path / "a"),
    ]
    assert main(argv) == 0
    assert (served["host"], served["port"]) == ("127.0.0.2", 18123)
