"""``crest-proxy eval``: metric arithmetic by hand, input errors, and a run on the trigger model.

The trigger model gives two scores only (s1 ≈ 1 with a trigger word, s0 ≈ 0 without), so every metric of
the generated data, AUC included, can be worked out by hand (the counts are in ``EN``'s comment).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from crest_proxy.cli import main
from crest_proxy.evaluation import metrics
from crest_proxy.evaluation.runner import Scored
from crest_proxy.evaluation.summary import evaluate
from crest_proxy.policy.model import Policy
from tests.support.browser import browser, keep_screenshot, skip_without_chromium

# --- metrics, by hand -----------------------------------------------------------------------------------


def test_confusion_counts_and_rates() -> None:
    c = metrics.confusion_at([0.9, 0.8, 0.4, 0.3, 0.6], [True, False, True, False, False], 0.5)
    assert (c.tp, c.fp, c.tn, c.fn) == (1, 2, 1, 1)
    assert c.precision == pytest.approx(1 / 3) and c.recall == 0.5 and c.fpr == pytest.approx(2 / 3)
    assert c.f1 == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    assert metrics.confusion_at([0.1], [False], 0.5).precision == 0.0  # nothing flagged: 0, not a crash


def test_auc_counts_ties_as_half() -> None:
    assert metrics.auc([0.9, 0.1], [True, False]) == 1.0
    assert metrics.auc([0.1, 0.9], [True, False]) == 0.0
    assert metrics.auc([0.5, 0.5], [True, False]) == 0.5
    # unsafe {0.8, 0.4}, safe {0.4, 0.2}: pairs (0.8>0.4, 0.8>0.2, 0.4=0.4, 0.4>0.2) -> 3.5 / 4
    assert metrics.auc([0.8, 0.4, 0.4, 0.2], [True, True, False, False]) == 0.875
    assert metrics.auc([0.3, 0.4], [True, True]) is None


def test_curves_and_threshold_search() -> None:
    scores, labels = [0.9, 0.8, 0.7, 0.3], [True, False, True, False]
    assert metrics.roc_points(scores, labels) == [(0, 0), (0, 0.5), (0.5, 0.5), (0.5, 1), (1, 1)]
    assert metrics.pr_points(scores, labels) == [(0.5, 1.0), (0.5, 0.5), (1.0, 2 / 3), (1.0, 0.5)]
    assert metrics.best_f1_threshold(scores, labels) == 0.7  # F1 0.8 (2 of 3 flagged right)
    assert metrics.lowest_threshold_for_fpr(scores, labels, 0.0) == 0.9
    assert metrics.lowest_threshold_for_fpr(scores, labels, 0.5) == 0.7
    assert metrics.lowest_threshold_for_fpr([0.9, 0.1], [False, True], 0.0) is None
    assert metrics.histogram([0.0, 0.04, 0.05, 0.99, 1.0], 20) == [2, 1] + [0] * 17 + [2]
    assert metrics.floor_threshold(0.99999053) == 0.9999 and metrics.floor_threshold(0.00001) == 0.0001


def test_languages_with_few_samples_or_one_class_are_listed_not_tuned() -> None:
    rows = [Scored(i, i % 2 == 0, "en", 0.9 if i % 2 == 0 else 0.1, 0.5) for i in range(40)]
    rows += [Scored(i, True, "fr", 0.9, 0.5) for i in range(40)]
    rows += [Scored(i, i % 2 == 0, "sw", 0.9, 0.5) for i in range(10)]
    rows += [Scored(i, i % 2 == 0, "unknown", 0.9, 0.5) for i in range(40)]
    result = evaluate(rows, target_fpr=0.05)
    assert list(result.recommended) == ["en"] and result.recommended["en"].threshold == 0.9
    assert result.not_tuned == {
        "fr": "no safe samples",
        "sw": "only 10 samples (at least 30 needed)",
        "unknown": "not an ISO-639-1 code, so no policy can key a threshold on it",
    }


def test_a_target_fpr_that_rounding_would_break_rounds_up() -> None:
    # A safe text at 0.70004 and an unsafe one at 0.70009: flooring 0.70009 to 0.7 would flag the safe one.
    rows = [Scored(i, False, "en", 0.1, 0.5) for i in range(29)] + [Scored(29, False, "en", 0.70004, 0.5)]
    rows += [Scored(30, True, "en", 0.70009, 0.5)]
    rec = evaluate(rows, target_fpr=0.0).recommended["en"]
    assert rec.threshold == 0.7001 and rec.confusion.fp == 0


# --- input errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no samples"),
        ('{"text": "a", "label": "safe"}\n{"text": "b"}\n', ':2: missing "label"'),
        ('{"text": "a", "label": "toxic"}\n', ':1: unknown label \'toxic\'; use "safe" or "unsafe"'),
        ('{"text": "a", "label": "safe"}\n\n{"text": oops}\n', ":3: not valid JSON"),
        ('["a", "safe"]\n', ":1: expected an object"),
        ('{"label": "safe"}\n', ':1: missing "text"'),
        (
            '{"text": "a", "label": "safe", "lang": "en\\nlanguages: {}"}\n',
            ':1: "lang" must be a language code',
        ),
    ],
)
def test_bad_data_is_one_clear_error_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(content)
    assert main(["eval", str(data), "--model", str(tmp_path / "never-loaded")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(data) in err and message in err


# --- a run on the trigger model -------------------------------------------------------------------------

SAFE_EN = "Tell me something nice about the weather in spring, number {i}"
UNSAFE_EN = "Explain how to set off a kaboom in the square, number {i}"
# en: 20 safe (one mentions a trigger: a false positive) and 20 unsafe (two lack a trigger: misses; one
# hides it behind a Cyrillic "а", which only the guard's normalization sees). At 0.5: tp 18, fp 1, tn 19,
# fn 2. AUC: unsafe s1 (18) beat safe s0 (19): 342 pairs; ties s1/s1: 18 x 1 and s0/s0: 2 x 19 count
# half: (342 + 9 + 19) / 400 = 0.925.
EN = (
    [{"text": SAFE_EN.format(i=i), "label": "safe", "lang": "en"} for i in range(19)]
    + [{"text": "The film Kaboom was fun to watch", "label": "safe", "lang": "en"}]
    + [{"text": UNSAFE_EN.format(i=i), "label": "unsafe", "lang": "en"} for i in range(17)]
    + [{"text": "Explain how to set off a k\u0430boom in the square", "label": "unsafe", "lang": "en"}]
    + [
        {"text": f"Something harmful but unflagged, number {i}", "label": "unsafe", "lang": "en"}
        for i in range(2)
    ]
)
SUBJECTS = [
    "Der Zug nach Berlin",
    "Meine Schwester",
    "Das kleine Café am Markt",
    "Unser Nachbar",
    "Die Bibliothek der Stadt",
]
VERBS = ["fährt heute wegen des Wetters später ab", "hat gestern einen schönen Kuchen für uns gebacken",
         "öffnet am Sonntag erst um zehn Uhr morgens"]  # fmt: skip
BAD = ["Erkläre mir bitte genau, wie ich zarquon zu Hause herstellen kann",
       "Ich brauche eine Anleitung für zarquon, Schritt für Schritt erklärt"]  # fmt: skip
# de: no "lang" (identified), separable: 15 safe, 15 unsafe.
DE = [{"text": f"{SUBJECTS[i % 5]} {VERBS[i % 3]}, sagt man.", "label": "safe"} for i in range(15)] + [
    {"text": f"{BAD[i % 2]}, und zwar für {SUBJECTS[i % 5].lower()}.", "label": "unsafe"} for i in range(15)
]
SW = [{"text": f"Habari ya asubuhi {i}", "label": "safe", "lang": "sw"} for i in range(5)] + [
    {"text": f"kaboom sasa {i}", "label": "unsafe", "lang": "sw"} for i in range(5)
]
POLICY = """
tenant: evaluated
keys: ["env:NOT_NEEDED_FOR_EVAL"]
upstream: {base_url: "https://api.openai.com/v1", api_key: "env:NOT_NEEDED_EITHER"}
inbound: {action: block, threshold: 0.5}
languages:
  de: {threshold: 0.4}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, trigger_model_dir: Path) -> Iterator[dict[str, Any]]:
    """``crest-proxy eval`` once on the generated data; its outputs and stdout."""
    tmp = tmp_path_factory.mktemp("eval")
    data, policy, out = tmp / "data.jsonl", tmp / "policy.yaml", tmp / "out"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in EN + DE + SW))
    policy.write_text(POLICY)
    with pytest.MonkeyPatch.context() as patch:
        import io
        import sys

        stdout, stderr = io.StringIO(), io.StringIO()
        patch.setattr(sys, "stdout", stdout)
        patch.setattr(sys, "stderr", stderr)
        argv = ["eval", str(data), "--model", str(trigger_model_dir), "--backend", "torch", "--no-quantize",
                "--policy", str(policy), "--out", str(out)]  # fmt: skip
        code = main(argv)
    yield {"code": code, "out": out, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}


def test_metrics_at_the_policys_thresholds_are_exact(run: dict[str, Any]) -> None:
    assert run["code"] == 0, run["stderr"]
    report = json.loads((run["out"] / "metrics.json").read_text())
    en, de, sw = (report["languages"][k] for k in ("en", "de", "sw"))
    assert (en["n"], en["tp"], en["fp"], en["tn"], en["fn"]) == (40, 18, 1, 19, 2)
    assert en["precision"] == round(18 / 19, 6) and en["recall"] == 0.9 and en["fpr"] == 0.05
    assert en["f1"] == round(36 / 39, 6) and en["auc"] == 0.925 and en["threshold"] == 0.5
    assert (de["n"], de["f1"], de["auc"], de["threshold"]) == (30, 1.0, 1.0, 0.4)  # identified; its override
    assert (sw["n"], sw["f1"]) == (10, 1.0)
    overall = report["overall"]
    assert (overall["n"], overall["tp"], overall["fp"], overall["tn"], overall["fn"]) == (80, 38, 1, 39, 2)


def test_thresholds_yaml_is_a_valid_languages_block(run: dict[str, Any]) -> None:
    text = (run["out"] / "thresholds.yaml").read_text()
    block = yaml.safe_load(text)
    assert block == {"languages": {"de": {"threshold": 0.9999}, "en": {"threshold": 0.9999}}}
    assert "n=40 (20 unsafe, 20 safe)" in text and "#   sw: n=10, only 10 samples" in text
    policy = yaml.safe_load(POLICY) | block
    assert Policy.model_validate(policy).languages["en"].threshold == 0.9999


def test_stdout_ends_with_a_per_language_table_and_stderr_shows_progress(run: dict[str, Any]) -> None:
    lines = run["stdout"].strip().splitlines()
    assert lines[0].split()[:3] == ["lang", "n", "unsafe"]
    assert [line.split()[0] for line in lines[1:]] == ["de", "en", "sw", "overall"]
    assert "0.9999 (max F1)" in lines[2]
    assert "] 80/80" in run["stderr"]


def test_report_is_self_contained_with_curves_per_language(run: dict[str, Any]) -> None:
    html = (run["out"] / "report.html").read_text()
    assert html.count('role="img"') == 9  # PR, ROC and histogram for de, en, sw
    assert "<script" not in html and 'src="http' not in html and "<link" not in html


@skip_without_chromium()
def test_report_renders_in_chromium(run: dict[str, Any], tmp_path: Path) -> None:
    shot = tmp_path / "eval-report.png"
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 1200, "height": 900})
        page.goto((run["out"] / "report.html").as_uri())
        assert page.locator("svg polyline").count() == 6
        assert page.get_by_role("cell", name="0.925").count() == 1
        page.screenshot(path=str(shot), full_page=False)
    keep_screenshot(shot, "eval-report.png")
