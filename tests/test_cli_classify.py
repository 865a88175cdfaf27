"""``crest-proxy classify`` on arguments and on JSONL stdin; errors; lazy imports for ``--help``."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from crest_proxy.classifier import CrestClassifier
from crest_proxy.cli import main


@pytest.fixture(scope="module")
def model_args(trigger_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """--model/--cache-dir pointing at the trigger model and the session's shared artifact cache."""
    cache = tmp_path_factory.getbasetemp() / "crest-artifacts"
    return ["--model", str(trigger_model_dir), "--cache-dir", str(cache)]


def test_classify_arguments_prints_label_score_text(
    model_args: list[str], capsys: pytest.CaptureFixture
) -> None:
    assert main(["classify", *model_args, "hello", "kaboom now", "two\tcols"]) == 0
    out, err = capsys.readouterr()
    rows = [line.split("\t") for line in out.splitlines()]
    assert [(r[0], r[2]) for r in rows] == [
        ("safe", "hello"),
        ("unsafe", "kaboom now"),
        ("safe", "two\\tcols"),
    ]
    assert float(rows[0][1]) < 0.5 <= float(rows[1][1])
    assert "ready:" in err  # progress goes to stderr, never stdout


def test_classify_jsonl_keeps_other_fields(
    model_args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        {"text": "hi", "id": 1},
        {"text": "zarquon!", "meta": {"a": [1]}},
        {"text": "the " * 600 + "kaboom"},
    ]
    stdin = (
        "\n".join(json.dumps(r, ensure_ascii=False) for r in lines[:2]) + "\n\n" + json.dumps(lines[2]) + "\n"
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    assert main(["classify", *model_args]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(o["label"], o["windows"]) for o in out] == [("safe", 1), ("unsafe", 1), ("unsafe", 2)]
    assert out[0]["id"] == 1 and out[1]["meta"] == {"a": [1]} and out[2]["text"] == lines[2]["text"]
    assert all(0.0 <= o["score"] <= 1.0 for o in out)


@pytest.mark.parametrize(
    ("bad", "complaint"),
    [("not json", "not valid JSON"), ("[1, 2]", "JSON object"), ('{"txt": "x"}', '"text"')],
)
def test_a_bad_line_names_its_number_and_exits_2(
    model_args: list[str],
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    bad: str,
    complaint: str,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"text": "a"}\n\n' + bad + "\n"))
    assert main(["classify", *model_args]) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and complaint in err and "Traceback" not in err


def test_ten_thousand_lines_are_classified_in_chunks(
    model_args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = CrestClassifier.classify_sync

    def counting(self: CrestClassifier, texts: list[str]) -> list:
        calls.append(len(texts))
        return real(self, texts)

    monkeypatch.setattr(CrestClassifier, "classify_sync", counting)
    texts = ["kaboom" if i % 1000 == 0 else f"line {i}" for i in range(10_000)]
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(json.dumps({"text": t}) + "\n" for t in texts)))
    assert main(["classify", *model_args]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 10_000 and max(calls) == 256 and len(calls) == 40
    flagged = [i for i, line in enumerate(out) if json.loads(line)["label"] == "unsafe"]
    assert flagged == list(range(0, 10_000, 1000))


def test_unavailable_model_exits_1_with_one_message(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert main(["classify", "--model", "repelloai/CREST-Base", "--cache-dir", str(tmp_path), "hi"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "crest-proxy model pull" in err and "--model /path/to/dir" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [["--help"], ["classify", "--help"], ["model", "info", "--help"]])
def test_help_imports_no_heavy_libraries(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from crest_proxy.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('torch', 'transformers', 'optimum', 'onnxruntime', 'tokenizers')\n"
        "print('HEAVY', [m for m in heavy if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: crest-proxy" in done.stdout
    assert done.stdout.strip().endswith("HEAVY []")
