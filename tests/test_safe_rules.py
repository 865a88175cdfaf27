"""Regex rules run in linear time (issue 14): RE2, or a bounded Python ``re`` pattern, or refused at load."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from crest_proxy.cli import main
from crest_proxy.policy.files import load_policy
from crest_proxy.policy.model import match_rules
from crest_proxy.policy.rules import MAX_PATHS, RuleError, backtracking_bound, compile_rule
from crest_proxy.types import Direction, Span
from tests.test_policy import make_policy, rule

ROOT = Path(__file__).resolve().parent.parent
LITELLM_POLICY = ROOT / "examples" / "litellm" / "policy.yaml"
SHIPPED_POLICIES = [
    ROOT / "policies" / "default.yaml",
    LITELLM_POLICY,
    ROOT / "examples" / "compose-policies" / "demo.yaml",
]


def test_a_catastrophic_pattern_runs_on_re2_and_answers_at_once() -> None:
    matcher = compile_rule(r"(a+)+$")
    assert matcher.engine == "re2"  # an automaton: no backtracking, linear in the text
    assert list(matcher.spans("a" * 26 + "!")) == []
    assert list(matcher.spans("x" + "a" * 26)) == [(1, 27)]


@pytest.mark.parametrize("policy_file", SHIPPED_POLICIES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_shipped_email_rule_runs_on_re2_and_redacts_a_long_address_whole(policy_file: Path) -> None:
    doc = yaml.safe_load(policy_file.read_text())
    (email,) = [r for r in doc["rules"] if r["name"] == "email"]
    matcher = compile_rule(email["pattern"])
    assert matcher.engine == "re2"  # unbounded is linear on RE2 (on Python re it would be quadratic)
    assert list(matcher.spans("a" * 20_000)) == []
    assert list(matcher.spans("write to ann.lee@mail.example.org today")) == [(9, 33)]
    # A bounded local part ({1,64}) let a search start 64 characters before the "@": the rest stayed.
    address = "x" * 100 + "@a.example.co.uk"
    assert list(matcher.spans(f"to {address} now")) == [(3, 3 + len(address))]


def test_python_classes_keep_their_unicode_meaning_on_re2() -> None:
    email_pattern = r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}"
    email = compile_rule(email_pattern)
    text = "mail jürgen@bücher.de now"
    assert list(email.spans(text)) == [m.span() for m in re.finditer(email_pattern, text)] == [(5, 21)]
    assert list(compile_rule(r"\d{3}").spans("٣٤٥")) == [(0, 3)]  # Arabic-Indic digits are \d in Python
    assert list(compile_rule(r"\S+").spans("a\u00a0b")) == [(0, 1), (2, 3)]  # NBSP is whitespace
    assert list(compile_rule(r"[^\s]+", ignore_case=True).spans("Ab cD")) == [(0, 2), (3, 5)]


def test_offsets_are_characters_not_utf8_bytes() -> None:
    p = make_policy(rules=[rule("secret", "secret", ignore_case=True)])
    assert [m.span for m in match_rules(p, Direction.INBOUND, "héllo wörld SECRET")] == [
        Span(12, 18, "secret")
    ]


def test_a_bounded_lookaround_pattern_runs_on_python_re() -> None:
    matcher = compile_rule(r"(?<!\d)\d{16}(?!\d)")
    assert matcher.engine == "re"
    assert list(matcher.spans("card 4111111111111111 ok 41111111111111111")) == [(5, 21)]


@pytest.mark.parametrize(
    "pattern",
    [r"(\w+)\1", r"(?=a)(a|aa){1,30}$", r"(?<=x)a+b", r"(?!z)(a*)*$"],
)
def test_python_only_patterns_that_can_backtrack_are_refused_with_the_fix(pattern: str) -> None:
    with pytest.raises(RuleError, match=r"bound every repeat"):
        compile_rule(pattern)


def test_the_backtracking_bound_counts_paths() -> None:
    import re._parser as sre_parse

    assert backtracking_bound(sre_parse.parse(r"a{1,10}b")) == 10
    assert backtracking_bound(sre_parse.parse(r"(?:ab|cd|ef){2}")) == 9  # 3 ways, twice
    assert backtracking_bound(sre_parse.parse(r"(a|aa){1,30}")) > MAX_PATHS


def test_policy_check_names_the_file_the_rule_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = {
        "tenant": "t",
        "keys": ["sha256:" + "ab" * 32],
        "upstream": {"base_url": "https://x.example/v1"},
        "rules": [
            {"name": "fine", "pattern": "(a+)+$"},
            {"name": "slow", "pattern": r"(?<=id:)(\w+)\1"},
            {"name": "broken", "pattern": "(unclosed"},
        ],
    }
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["policy", "check", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{path}: rules[1].pattern: RE2 cannot run this pattern")
    assert "bound every repeat" in err[0]
    assert err[1].startswith(f"{path}: rules[2].pattern: invalid regular expression")
    with pytest.raises(Exception, match=r"rules\[1\]\.pattern"):
        load_policy(path)


def test_the_empty_match_check_still_applies() -> None:
    with pytest.raises(Exception, match="matches the empty string"):
        make_policy(rules=[rule("empty", "a*")])


@pytest.mark.parametrize(
    ("pattern", "required"),
    [
        (r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}", ("@", ".")),
        (r"\bsk-[A-Za-z0-9_-]{20}", ("sk-",)),
        (r"foo(bar)?baz", ("foo", "baz")),  # an optional group is not required
        (r"(?:x(?i:yz)w)+", ("x", "w")),  # nor a case-insensitive one
        (r"(?i)secret", ()),
        (r"cat|dog", ()),  # nor one alternative
        (r"x{0,3}y", ("y",)),
    ],
)
def test_literals_every_match_contains_are_found(pattern: str, required: tuple[str, ...]) -> None:
    assert compile_rule(pattern).required == required
    assert compile_rule(pattern, ignore_case=True).required == ()


@pytest.mark.parametrize(
    "pattern",
    [
        r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}",
        r"\bsk-[A-Za-z0-9_-]{8}",
        r"foo(bar)?baz",
        "x{0,3}y",
    ],
)
@pytest.mark.parametrize(
    "text",
    ["", "mail me: jo@example.org or ann@x.co.uk", "no at sign. here", "sk-abcdefgh0123 and sk-",
     "foobaz foobarbaz", "xxxy y", "Ünïcødé jö@exämple.de ＠ fullwidth"],
)  # fmt: skip
def test_skipping_texts_without_the_required_literals_changes_no_match(pattern: str, text: str) -> None:
    matcher = compile_rule(pattern)
    searched = [(m.start(), m.end()) for m in matcher.compiled.finditer(text)]
    assert list(matcher.spans(text)) == searched


def test_tenants_with_the_same_rule_share_one_compilation() -> None:
    email = r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}"  # ~83 MiB of RE2 program
    first = make_policy(rules=[rule("email", email)])
    second = make_policy(tenant="other", rules=[rule("mail", email)])
    assert first.rules[0].matcher is second.rules[0].matcher
    folded = make_policy(rules=[rule("email", email, ignore_case=True)])
    assert folded.rules[0].matcher is not first.rules[0].matcher
