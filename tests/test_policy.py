"""The pure policy core: model validation, evaluate() decision table, rule matching, redaction."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from crest_proxy.policy.model import (
    NO_SCORE,
    RuleMatch,
    action_for,
    evaluate,
    match_rules,
    merge_spans,
    redact,
    threshold_for,
)
from crest_proxy.types import Action, Direction, Span
from tests.support.policies import make_policy

IN, OUT = Direction.INBOUND, Direction.OUTBOUND
EMAIL = r"[\w.+-]{1,64}@[\w-]{1,63}\.[\w.-]{1,63}"


def rule(name: str, pattern: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "pattern": pattern, **extra}


# --- the model ---------------------------------------------------------------------------------------


def test_defaults_fail_closed_and_screen_everything() -> None:
    p = make_policy()
    assert (p.inbound.action, p.outbound.action, p.on_error) == (Action.BLOCK, Action.BLOCK, "block")
    assert p.inbound.threshold == p.outbound.threshold == 0.5
    assert set(p.inbound.roles) == {"system", "developer", "user", "assistant", "tool", "function"}
    assert p.inbound.tool_calls and p.outbound.tool_calls
    assert (p.outbound.stream.window_chars, p.outbound.stream.context_chars) == (400, 200)
    assert (p.block.style, p.redaction.placeholder, p.audit.content) == ("error", "[REDACTED]", "hash")
    assert (p.upstream.timeout.connect, p.upstream.timeout.read) == (5.0, 60.0)
    assert p.upstream.models is None and p.upstream.api_key is None


def test_model_is_frozen() -> None:
    p = make_policy()
    with pytest.raises(ValidationError):
        p.tenant = "other"  # type: ignore[misc]


def test_base_url_trailing_slash_is_dropped_and_digests_are_lowercased() -> None:
    p = make_policy(keys=["sha256:" + "AB" * 32], upstream={"base_url": "http://127.0.0.1:11434/v1/"})
    assert p.upstream.base_url == "http://127.0.0.1:11434/v1"
    assert p.keys == ("sha256:" + "ab" * 32,)


def errors_of(**overrides: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        make_policy(**overrides)
    return {".".join(map(str, e["loc"])): e["msg"] for e in info.value.errors()}


@pytest.mark.parametrize(
    ("overrides", "loc", "fragment"),
    [
        ({"tenant": "Acme"}, "tenant", "not a valid tenant name"),
        ({"keys": []}, "keys", "no proxy key"),
        ({"keys": ["sk-literal-secret"]}, "keys.0", "policy files hold no secrets"),
        ({"keys": ["env:A", "env:A"]}, "keys", "listed twice"),
        (
            {"keys": ["sha256:" + "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},
            "keys.0",
            "empty",
        ),
        ({"upstream": {"base_url": "ftp://x"}}, "upstream.base_url", "not an http(s) URL"),
        ({"upstream": {"base_url": "https://u:p@x"}}, "upstream.base_url", "credentials"),
        ({"upstream": {"base_url": "https://x", "api_key": "sk-123"}}, "upstream.api_key", "literal secret"),
        (
            {"inbound": {"threshold": 1.5}},
            "inbound.threshold",
            "1.5 is out of range; use a number from 0 to 1",
        ),
        ({"outbound": {"threshold": -0.1}}, "outbound.threshold", "out of range"),
        ({"outbound": {"threshold": True}}, "outbound.threshold", "true is a boolean, not a number"),
        (
            {"upstream": {"base_url": "http://x", "timeout": {"read": float("inf")}}},
            "upstream.timeout.read",
            "inf",
        ),
        ({"outbound": {"stream": {"window_chars": 0}}}, "outbound.stream.window_chars", "too small"),
        ({"rules": [rule("bad", "(unclosed")]}, "rules.0.pattern", "invalid regular expression"),
        ({"rules": [rule("empty", "a*")]}, "rules.0.pattern", "matches the empty string"),
        ({"rules": [rule("x", "a"), rule("x", "b")]}, "rules", "duplicate rule name 'x' at rules[1]"),
        ({"languages": {"english": {"threshold": 0.2}}}, "languages.english.[key]", "ISO-639-1"),
    ],
)
def test_invalid_policies_name_the_key_and_the_fix(
    overrides: dict[str, Any], loc: str, fragment: str
) -> None:
    errors = errors_of(**overrides)
    assert loc in errors, errors
    assert fragment in errors[loc]


def test_literal_key_is_never_echoed_in_errors() -> None:
    errors = errors_of(keys=["sk-super-secret-value"])
    assert "sk-super-secret-value" not in str(errors)


def test_unknown_keys_are_rejected_everywhere() -> None:
    errors = errors_of(
        inbound={"actoin": "log"}, upstream={"base_url": "https://x", "extra": 1}, colour="red"
    )
    assert {"inbound.actoin", "upstream.extra", "colour"} <= set(errors)


def test_rule_regex_is_compiled_once_with_flags() -> None:
    p = make_policy(rules=[rule("code", "secret", ignore_case=True)])
    assert p.rules[0].regex is p.rules[0].regex
    assert p.rules[0].regex.search("SeCrEt")


# --- evaluate: the decision table --------------------------------------------------------------------


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize(
    ("score", "threshold", "unsafe"),
    [
        (0.49, 0.5, False),
        (0.5, 0.5, True),
        (0.51, 0.5, True),
        (1.0, 1.0, True),
        (0.0, 0.0, True),
        (0.99, 1.0, False),
    ],
)
def test_classifier_action_applies_at_or_above_threshold(
    action: Action, score: float, threshold: float, unsafe: bool
) -> None:
    p = make_policy(outbound={"action": action.value, "threshold": threshold})
    v = evaluate(p, OUT, "some text", score)
    assert v.action is (action if unsafe else Action.ALLOW)
    assert (v.score, v.threshold, v.rules) == (score, threshold, ())
    assert v.spans == ((Span(0, 9, "crest"),) if unsafe and action is Action.REDACT else ())


def test_directions_are_independent() -> None:
    p = make_policy(
        inbound={"action": "log", "threshold": 0.9}, outbound={"action": "redact", "threshold": 0.2}
    )
    assert evaluate(p, IN, "x", 0.5).action is Action.ALLOW
    assert evaluate(p, OUT, "x", 0.5).action is Action.REDACT


def test_unsafe_spans_from_the_guard_are_redacted_instead_of_the_whole_text() -> None:
    p = make_policy(inbound={"action": "redact"})
    text = "Fine sentence. Bad sentence. Fine again."
    v = evaluate(p, IN, text, 0.9, unsafe_spans=[Span(15, 29, "crest")])
    assert v.spans == (Span(15, 29, "crest"),)
    assert redact(text, v.spans, "[X]") == "Fine sentence. [X] Fine again."


@pytest.mark.parametrize(
    ("classifier", "rule_action", "score", "expected"),
    [
        ("allow", "redact", 0.9, Action.REDACT),
        ("log", "redact", 0.9, Action.REDACT),
        ("redact", "log", 0.9, Action.REDACT),
        ("redact", "block", 0.1, Action.BLOCK),
        ("block", "redact", 0.9, Action.BLOCK),
        ("block", "log", 0.1, Action.LOG),
        ("log", "allow", 0.9, Action.LOG),
        ("block", "allow", 0.1, Action.ALLOW),
    ],
)
def test_strictest_of_classifier_and_rules_wins(
    classifier: str, rule_action: str, score: float, expected: Action
) -> None:
    p = make_policy(inbound={"action": classifier}, rules=[rule("email", EMAIL, action=rule_action)])
    v = evaluate(p, IN, "write to ann@example.org today", score)
    assert v.action is expected
    assert v.rules == ("email",)
    if expected is not Action.REDACT:
        assert v.spans == ()


def test_redact_spans_combine_classifier_and_rule_spans_merged() -> None:
    p = make_policy(
        inbound={"action": "redact"},
        rules=[
            rule("email", EMAIL),
            rule("word", r"\bbomb\b", action="redact"),
            rule("seen", "today", action="log"),
        ],
    )
    text = "ann@example.org bomb today"
    v = evaluate(p, IN, text, 0.9, unsafe_spans=[Span(10, 20, "crest")])
    assert v.rules == ("email", "seen", "word")
    assert v.spans == (Span(0, 20, "crest+email+word"),)
    assert redact(text, v.spans, "#") == "# today"


def test_only_redacting_parts_contribute_spans() -> None:
    # The classifier only logs; the rule redacts: only the rule's match is replaced.
    p = make_policy(inbound={"action": "log"}, rules=[rule("email", EMAIL)])
    v = evaluate(p, IN, "mail ann@example.org now", 0.99)
    assert v.action is Action.REDACT
    assert v.spans == (Span(5, 20, "email"),)


def test_rules_respect_directions_and_report_sorted_unique_names() -> None:
    p = make_policy(
        rules=[
            rule("zeta", "x", directions=["outbound"]),
            rule("alpha", "x", directions=["inbound"]),
            rule("b", "y"),
        ]
    )
    assert evaluate(p, IN, "x y x y", 0.0).rules == ("alpha", "b")
    assert evaluate(p, OUT, "x y x y", 0.0).rules == ("b", "zeta")
    matches = match_rules(p, IN, "x y x")
    assert [m.rule for m in matches] == ["alpha", "alpha", "b"]
    assert matches[0] == RuleMatch("alpha", Action.REDACT, Span(0, 1, "alpha"))


def test_zero_length_matches_are_ignored() -> None:
    p = make_policy(rules=[rule("ahead", "(?=x)|x")])
    assert [m.span for m in match_rules(p, IN, "axb")] == [Span(1, 2, "ahead")]


def test_no_score_means_rules_only() -> None:
    p = make_policy(inbound={"action": "block", "threshold": 0.0}, rules=[rule("email", EMAIL)])
    v = evaluate(p, IN, "ann@example.org", None)
    assert (v.action, v.score, v.spans) == (Action.REDACT, NO_SCORE, (Span(0, 15, "email"),))
    assert evaluate(p, IN, "nothing here", None).action is Action.ALLOW


def test_redact_whole_text_when_no_spans_given_and_empty_text() -> None:
    p = make_policy(inbound={"action": "redact"})
    assert evaluate(p, IN, "", 0.9).spans == ()
    text = "ünïcødé 文字 🙂"
    v = evaluate(p, IN, text, 0.9)
    assert redact(text, v.spans, "[R]") == "[R]"


# --- per-language overrides --------------------------------------------------------------------------


def test_language_overrides() -> None:
    p = make_policy(
        inbound={"action": "redact", "threshold": 0.5},
        outbound={"action": "block", "threshold": 0.6},
        languages={
            "sw": {"threshold": 0.35},
            "th": {"threshold": 0.4, "inbound": {"action": "log"}, "outbound": {"threshold": 0.2}},
        },
    )
    assert threshold_for(p, IN, "sw") == threshold_for(p, OUT, "sw") == 0.35
    assert threshold_for(p, IN, "th") == 0.4 and threshold_for(p, OUT, "th") == 0.2
    assert threshold_for(p, OUT, "en") == 0.6 and threshold_for(p, IN, None) == 0.5
    assert action_for(p, IN, "th") is Action.LOG and action_for(p, OUT, "th") is Action.BLOCK
    assert action_for(p, IN, "sw") is Action.REDACT
    assert threshold_for(p, IN, "sw-KE") == 0.35 and threshold_for(p, IN, "TH") == 0.4
    v = evaluate(p, IN, "habari", 0.4, language="sw")
    assert (v.action, v.threshold, v.language) == (Action.REDACT, 0.35, "sw")
    assert evaluate(p, IN, "habari", 0.4, language="en").action is Action.ALLOW
    assert evaluate(p, IN, "สวัสดี", 0.9, language="th").action is Action.LOG


# --- redaction ---------------------------------------------------------------------------------------


def test_redact_merges_overlapping_and_adjacent_spans() -> None:
    text = "0123456789"
    spans = [Span(6, 8, "b"), Span(1, 3, "a"), Span(2, 4, "c"), Span(4, 5, "d"), Span(20, 30, "x")]
    assert redact(text, spans, "_") == "0_5_89"
    assert merge_spans(spans, len(text)) == (Span(1, 5, "a+c+d"), Span(6, 8, "b"))


def test_redact_keeps_multibyte_text_outside_spans() -> None:
    text = "Привет, 世界! ann@example.org — नमस्ते 🙂"
    p = make_policy(rules=[rule("email", EMAIL)])
    v = evaluate(p, OUT, text, 0.0)
    assert redact(text, v.spans, "[REDACTED]") == "Привет, 世界! [REDACTED] — नमस्ते 🙂"


@given(
    st.text(max_size=60),
    st.lists(st.tuples(st.integers(-5, 70), st.integers(-5, 70)), max_size=6),
    st.text(max_size=5),
)
@settings(max_examples=300, deadline=None)
def test_redact_changes_nothing_outside_spans(
    text: str, raw: list[tuple[int, int]], placeholder: str
) -> None:
    spans = [Span(a, b, "s") for a, b in raw]
    merged = merge_spans(spans, len(text))
    out = redact(text, spans, placeholder)
    # Rebuild the expected output from the kept slices: every character outside a span is unchanged, and
    # so is whitespace at a span's edges (a span of only whitespace replaces nothing).
    kept, cursor = [], 0
    for s in merged:
        assert 0 <= s.start < s.end <= len(text)
        inner = text[s.start : s.end]
        if not inner.strip():
            continue
        start = s.start + len(inner) - len(inner.lstrip())
        kept += [text[cursor:start], placeholder]
        cursor = s.end - (len(inner) - len(inner.rstrip()))
    assert out == "".join(kept) + text[cursor:]
    for a, b in zip(merged, merged[1:], strict=False):
        assert a.end < b.start  # merged spans neither overlap nor touch


# --- purity ------------------------------------------------------------------------------------------


def test_policy_module_imports_no_io_or_ml_libraries() -> None:
    code = (
        "import sys, crest_proxy.policy.model\n"
        "heavy = {'yaml', 'httpx', 'starlette', 'torch', 'transformers', 'onnxruntime', 'optimum'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
