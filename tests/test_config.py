"""Loading policy files: precise error messages, env secrets, PolicySet lookups, the shipped policies."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from crest_proxy.errors import ConfigError
from crest_proxy.policy.files import (
    PolicySet,
    assemble_policies,
    hash_key,
    load_policies,
    load_policy,
    load_policy_entry,
)
from crest_proxy.policy.model import Policy
from crest_proxy.settings import ServerSettings
from crest_proxy.types import Action, Direction

SHIPPED = Path(__file__).resolve().parent.parent / "policies"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "policies"
DIGEST = "sha256:" + hashlib.sha256(b"sk-one").hexdigest()

BASE = """\
tenant: {tenant}
keys: [{key}]
upstream:
  base_url: https://api.example.com/v1
"""


def write(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def base(tenant: str = "acme", key: str = DIGEST, extra: str = "") -> str:
    return BASE.format(tenant=tenant, key=key) + textwrap.dedent(extra)


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    loader = load_policies if path.is_dir() else load_policy
    with pytest.raises(ConfigError) as info:
        loader(path, environ=environ or {})
    return info.value.problems


# --- precise errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "inbound:\n  actoin: block\n",
            "inbound.actoin: unknown key; allowed keys: action, threshold, roles, tool_calls",
        ),
        (
            "outbound:\n  threshold: 1.5\n",
            "outbound.threshold: 1.5 is out of range; use a number from 0 to 1",
        ),
        ("inbound:\n  threshold: high\n", "inbound.threshold: 'high' is not a number; use a number like 0.5"),
        (
            "inbound:\n  tool_calls: maybe\n",
            "inbound.tool_calls: 'maybe' is not a boolean; use true or false",
        ),
        ("inbound:\n  action: deny\n", "inbound.action: 'deny' is not allowed; use one of: 'allow', 'log',"),
        ("on_error: retry\n", "on_error: 'retry' is not allowed; use one of: 'block' or 'allow'"),
        ("rules:\n  - {name: a, pattern: '[a-'}\n", "rules[0].pattern: invalid regular expression"),
        ("rules:\n  - {name: a}\n", "rules[0].pattern: required key is missing; add it"),
        ("rules:\n  - {name: a, pattern: x, directions: [sideways]}\n", "rules[0].directions[0]: 'sideways'"),
        ("rules: {name: a}\n", "rules: {'name': 'a'} is not a list; use a YAML list"),
        (
            "outbound:\n  stream:\n    windowchars: 3\n",
            "outbound.stream.windowchars: unknown key; allowed keys: ",
        ),
        (
            "languages:\n  sw:\n    inbound: {actoin: log}\n",
            "languages.sw.inbound.actoin: unknown key; allowed keys: ",
        ),
        ("block: {style: popup}\n", "block.style: 'popup' is not allowed"),
        ("audit: {content: everything}\n", "audit.content: 'everything' is not allowed"),
    ],
)
def test_validation_errors_name_file_key_and_fix(tmp_path: Path, extra: str, expected: str) -> None:
    path = write(tmp_path, "acme.yaml", base(extra=extra))
    problems = problems_of(path)
    assert any(p.startswith(f"{path}: {expected}") for p in problems), problems


def test_allowed_keys_are_listed_for_nested_models(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.yaml",
        "tenant: a\nkeys: [env:K]\nupstream: {base_url: 'https://x', timeout: {reed: 1}}\ncolour: red\n",
    )
    problems = problems_of(path, {"K": "v"})
    expected = f"{path}: upstream.timeout.reed: unknown key; allowed keys: connect, read, write, pool, total"
    assert expected in problems
    assert any(
        p.startswith(f"{path}: colour: unknown key; allowed keys: tenant, keys, upstream,") for p in problems
    )


def test_every_problem_in_a_file_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "acme.yaml",
        base(
            extra="inbound: {threshold: 2, actoin: x}\n"
            "outbound: {action: nope}\n"
            "rules: [{name: r, pattern: '('}]\n"
        ),
    )
    keys = {p.split(": ")[1] for p in problems_of(path)}
    assert keys == {"inbound.threshold", "inbound.actoin", "outbound.action", "rules[0].pattern"}


def test_missing_env_var_names_file_key_and_fix(tmp_path: Path) -> None:
    path = write(tmp_path, "acme.yaml", base(key="env:ACME_PROXY_KEY") + "  api_key: env:ACME_UPSTREAM\n")
    problems = problems_of(path)
    assert problems == [
        f"{path}: keys[0]: environment variable ACME_PROXY_KEY is not set; "
        "set ACME_PROXY_KEY or use sha256:<digest>",
        f"{path}: upstream.api_key: environment variable ACME_UPSTREAM is not set; "
        "set ACME_UPSTREAM or remove upstream.api_key",
    ]
    assert "is empty" in problems_of(path, {"ACME_PROXY_KEY": "", "ACME_UPSTREAM": "x"})[0]


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "acme.yaml", "tenant: acme\nkeys: [env:K\nupstream:\n  base_url: x\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: line ")
    assert problem.endswith("; fix the YAML syntax")


def test_yaml_duplicate_keys_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "acme.yaml", base(extra="inbound: {action: log}\ninbound: {action: allow}\n"))
    (problem,) = problems_of(path)
    assert problem == f"{path}: line 6, column 1: duplicate key 'inbound'; write each key once"


@pytest.mark.parametrize(
    ("body", "expected"),
    [("", "(file): is empty"), ("- a\n- b\n", "(top level): expected a mapping of keys, got list")],
)
def test_empty_or_non_mapping_files(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, "acme.yaml", body)
    assert problems_of(path)[0].startswith(f"{path}: {expected}")


def test_missing_and_empty_directories(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as info:
        load_policies(missing)
    assert info.value.problems == [
        f"{missing}: (directory): does not exist; pass the directory that holds the policy files"
    ]
    assert problems_of(missing)[0].startswith(f"{missing}: (file): cannot be read")  # load_policy
    (tmp_path / "notes.txt").write_text("not a policy")
    assert "no policy files (*.yaml, *.yml)" in problems_of(tmp_path)[0]


def test_problems_across_files_are_all_listed(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", base(tenant="a", extra="inbound: {threshold: 3}\n"))
    write(tmp_path, "b.yml", base(tenant="b", key="env:B_KEY"))
    write(tmp_path, "c.yaml", "tenant: [\n")
    write(tmp_path, "ok.yaml", base(tenant="ok", key="sha256:" + "cd" * 32))
    with pytest.raises(ConfigError) as info:
        load_policies(tmp_path, environ={})
    files = [p.split(": ")[0] for p in info.value.problems]
    assert files == [str(tmp_path / n) for n in ("a.yaml", "b.yml", "c.yaml")]
    assert str(info.value).startswith("3 configuration problems:\n")


def test_duplicate_tenants_and_shared_keys_are_errors(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", base(tenant="acme"))
    write(tmp_path, "b.yaml", base(tenant="acme", key="sha256:" + "cd" * 32))
    write(tmp_path, "c.yaml", base(tenant="other", key="env:SAME"))  # env value hashes to DIGEST
    problems = problems_of(tmp_path, {"SAME": "sk-one"})
    assert problems == [
        f"{tmp_path / 'b.yaml'}: tenant: 'acme' is already defined in {tmp_path / 'a.yaml'}; "
        "tenant names must be unique",
        f"{tmp_path / 'c.yaml'}: keys[0]: this proxy key is also used by tenant 'acme' "
        f"({tmp_path / 'a.yaml'}); give every tenant its own key",
    ]


def test_duplicate_rule_names_are_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path, "a.yaml", base(extra="rules:\n  - {name: r, pattern: x}\n  - {name: r, pattern: y}\n")
    )
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: rules: duplicate rule name 'r' at rules[1] (first at rules[0]);")


def test_literal_secrets_are_rejected_without_echo(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", base(key="sk-live-123456"))
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: keys[0]: not an env:VAR or sha256:<64 hex digits> reference")
    assert "sk-live-123456" not in problem


# --- PolicySet ---------------------------------------------------------------------------------------


@pytest.fixture
def two_tenants(tmp_path: Path) -> PolicySet:
    write(tmp_path, "a.yaml", base(tenant="a", key=DIGEST))
    write(tmp_path, "b.yaml", base(tenant="b", key="env:B_KEY") + "  api_key: env:B_UPSTREAM\n")
    return load_policies(tmp_path, environ={"B_KEY": "sk-two", "B_UPSTREAM": "upstream-secret"})


def test_tenant_for_key(two_tenants: PolicySet) -> None:
    a, b = two_tenants.tenant_for_key("sk-one"), two_tenants.tenant_for_key("sk-two")
    assert a is not None and a.tenant == "a"
    assert b is not None and b.tenant == "b"
    for wrong in ("", "sk-on", "sk-one ", "SK-ONE", DIGEST, "\udcff"):
        assert two_tenants.tenant_for_key(wrong) is None


def test_secrets_are_resolved_and_kept_as_digests(two_tenants: PolicySet, tmp_path: Path) -> None:
    assert two_tenants.upstream_api_key("b") == "upstream-secret"
    assert two_tenants.upstream_api_key("a") is None
    assert two_tenants.source_of("a") == tmp_path / "a.yaml"
    assert sorted(two_tenants.policies) == ["a", "b"]
    # The plain proxy key appears nowhere in the set; the upstream key stays out of its repr.
    assert all(len(d) == 32 for d, _ in two_tenants.key_digests)
    assert "sk-two" not in repr(two_tenants.__dict__)
    assert "upstream-secret" not in repr(two_tenants)
    with pytest.raises(TypeError):
        two_tenants.policies["c"] = two_tenants.policies["a"]  # type: ignore[index]


def test_policy_set_from_in_memory_policies() -> None:
    policy = Policy.model_validate(
        {"tenant": "mem", "keys": ["env:MEM_KEY"], "upstream": {"base_url": "https://x", "api_key": "env:UP"}}
    )
    ps = PolicySet.from_policies([policy], environ={"MEM_KEY": "k1", "UP": "u1"})
    assert ps.tenant_for_key("k1") is policy
    assert ps.upstream_api_key("mem") == "u1"
    with pytest.raises(ConfigError, match="MEM_KEY is not set"):
        PolicySet.from_policies([policy], environ={"UP": "u1"})


def test_hash_key_matches_sha256() -> None:
    assert hash_key("sk-acme-demo") == "sha256:" + hashlib.sha256(b"sk-acme-demo").hexdigest()


# --- the shipped policy files ------------------------------------------------------------------------


def test_shipped_policies_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREST_PROXY_KEY", "sk-default-test")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-test")
    assert sorted(p.name for p in SHIPPED.iterdir()) == ["default.yaml"]  # no published key is ever live
    ps = assemble_policies(
        [load_policy_entry(SHIPPED / "default.yaml"), load_policy_entry(EXAMPLES / "acme.yaml")]
    )
    assert sorted(ps.policies) == ["acme", "default"]
    default, acme = ps.policies["default"], ps.policies["acme"]
    assert ps.tenant_for_key("sk-default-test") is default
    assert ps.tenant_for_key("sk-acme-demo") is acme  # the digest in acme.yaml is of this demo key
    assert ps.upstream_api_key("default") == "sk-openai-test" and ps.upstream_api_key("acme") is None
    assert default.upstream.base_url == "https://api.openai.com/v1"
    assert (default.inbound.action, default.outbound.action, default.on_error) == (Action.BLOCK,) * 2 + (
        "block",
    )
    assert acme.upstream.base_url == "http://127.0.0.1:11434/v1"
    assert (acme.inbound.action, acme.outbound.action) == (Action.REDACT, Action.LOG)
    assert (acme.block.style, acme.audit.content) == ("refusal", "redacted")
    assert acme.upstream.models and acme.upstream.aliases and acme.languages


@pytest.mark.parametrize(
    ("text", "rule", "action"),
    [
        ("mail ann.lee+x@example.co.uk now", "email", Action.REDACT),
        ("card 4111 1111 1111 1111 thanks", "credit-card", Action.REDACT),
        ("key sk-abcdefghijklmnopqrstuvwxyz0123", "openai-api-key", Action.BLOCK),
        ("AKIAIOSFODNN7EXAMPLE is mine", "aws-access-key-id", Action.BLOCK),
        ("ghp_" + "a1B2" * 9, "github-token", Action.BLOCK),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE", "private-key", Action.BLOCK),
        ("-----BEGIN PRIVATE KEY-----", "private-key", Action.BLOCK),
    ],
)
def test_default_rules_catch_common_secrets(
    monkeypatch: pytest.MonkeyPatch, text: str, rule: str, action: Action
) -> None:
    from crest_proxy.policy.model import evaluate

    monkeypatch.setenv("CREST_PROXY_KEY", "k")
    monkeypatch.setenv("OPENAI_API_KEY", "o")
    policy = load_policy(SHIPPED / "default.yaml")
    verdict = evaluate(policy, Direction.INBOUND, text, 0.0)
    assert verdict.rules == (rule,) and verdict.action is action


def test_default_rules_are_fast_on_long_adversarial_text(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from crest_proxy.policy.model import match_rules

    monkeypatch.setenv("CREST_PROXY_KEY", "k")
    monkeypatch.setenv("OPENAI_API_KEY", "o")
    policies = [load_policy(SHIPPED / "default.yaml"), load_policy(EXAMPLES / "acme.yaml")]
    texts = ["a" * 200_000, "1 " * 100_000, "sk-" * 60_000, "a." * 100_000]
    started = time.perf_counter()
    for policy in policies:
        for text in texts:
            match_rules(policy, Direction.INBOUND, text)
    assert time.perf_counter() - started < 5.0  # bounded repeats: linear, not quadratic


# --- server settings ---------------------------------------------------------------------------------


def test_server_settings_defaults_and_validation() -> None:
    s = ServerSettings()
    assert (s.host, s.port, s.max_body_bytes, s.classify_timeout_s) == (
        "127.0.0.1",
        8080,
        8 * 1024 * 1024,
        10.0,
    )
    assert s.audit_log == Path("crest-audit.jsonl") and s.policies_dir == Path("policies")
    with pytest.raises(ConfigError) as info:
        ServerSettings(port=70000, classify_timeout_s=0)
    assert len(info.value.problems) == 2
