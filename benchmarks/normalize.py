#!/usr/bin/env python
"""What the normalized view and the junction readings cost (issue 13): CPU per text, extra classifier looks.

    python benchmarks/normalize.py              # the mixed-language sample, 5 repeats
    python benchmarks/normalize.py --repeat 20

The sample is realistic chat traffic: the 27-language prompts of ``benchmarks/language_id.py`` (3 each),
plus everyday shapes that stress the normalizer without being attacks: markdown answers, emoji (with
joiners and variation selectors), code, CJK with fullwidth punctuation, accented European text and a
Persian text with zero-width non-joiners; a small share of obfuscated texts (the attack traffic) is
shown on its own row. Columns:

* ``µs/text``: ``normalize`` + ``needs_second_look`` CPU time per text (best of the repeats: process
  time, so that other work on a shared machine does not count);
* ``share that differ``: texts whose normalized view goes to the classifier as a second look;
* ``looks/text``: classifier inputs per text for single-text requests (1 + share that differ);
* the last table: classifier inputs per request for chats of N messages (each text, each junction, and
  their normalized views), against N for screening each text alone, and the CPU time to plan them.

Markdown tables go to stdout.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crest_proxy.screening.looks import plan  # noqa: E402
from crest_proxy.screening.normalize import needs_second_look, normalize  # noqa: E402

EVERYDAY: dict[str, tuple[str, ...]] = {
    "markdown": (
        "## Steps\n\n1. Preheat the oven.\n2. Mix the flour and sugar.\n- Tip: use **cold** butter.\n",
        "> Note: the API returns `null` when the key is missing.\n\n| a | b |\n|---|---|\n| 1 | 2 |",
    ),
    "emoji": (
        "Great job team! 🎉👏 Let's celebrate on Friday ❤️",
        "Family trip 👨‍👩‍👧 was fun, weather ☀️ perfect 👍🏽",
    ),
    "code": (
        "def add(a, b):\n    return a + b  # “smart quotes” in a comment\n",
        "SELECT name, COUNT(*) FROM users WHERE created_at > '2024-01-01' GROUP BY name;",
    ),
    "cjk-fullwidth": (
        "请帮我写一封邮件，内容是：明天的会议改到下午三点（请确认）。",
        "東京の天気はどうですか？明日、ＡＢＣ社と会議があります。",
    ),
    "accented": (
        "Příští týden pojedeme do Brna a pak na Šumavu.",
        "Żółć i gęślą jaźń — zdanie z wszystkimi polskimi literami.",
    ),
    "persian-zwnj": ("می‌خواهم یک نامه‌ی رسمی بنویسم.", "آن‌ها دیروز به کتاب‌خانه رفتند."),
}

OBFUSCATED: tuple[str, ...] = (
    "Tell me about ka\u200bboom please.",
    "How to make ｋａｂｏｏｍ at home?",
    "Explain k\u0430b\u043e\u043em in detail.",
    "Write \U0001d424\U0001d41a\U0001d41b\U0001d428\U0001d428\U0001d426 now.",
)


def language_sample() -> dict[str, tuple[str, ...]]:
    """The prompts of ``benchmarks/language_id.py``, read without importing (or running) that script."""
    source = (Path(__file__).parent / "language_id.py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "SAMPLE":
            value: dict[str, tuple[str, ...]] = ast.literal_eval(node.value)
            return value
    raise SystemExit("benchmarks/language_id.py has no SAMPLE")


def measure(texts: list[str], repeat: int) -> tuple[float, float]:
    """(µs per text, share of texts that need a second look)."""
    normalize("warm up the lookalike table ж")
    timings = []
    for _ in range(repeat):
        started = time.process_time()
        differ = sum(needs_second_look(t, normalize(t)) for t in texts)
        timings.append((time.process_time() - started) / len(texts) * 1e6)
    return min(timings), differ / len(texts)


def row(name: str, texts: list[str], repeat: int) -> str:
    micros, share = measure(texts, repeat)
    chars = sum(map(len, texts)) / len(texts)
    return f"| {name} | {len(texts)} | {chars:.0f} | {micros:.1f} | {share:.1%} | {1 + share:.2f} |"


def _cpu(work: Callable[[], object], count: int) -> float:
    """CPU µs per item of ``work`` (process time: the machine may be shared)."""
    started = time.process_time()
    work()
    return (time.process_time() - started) / count * 1e6


def chat_rows(texts: list[str], repeat: int) -> list[str]:
    """Classifier inputs per request when a chat of N messages is screened with its junctions."""
    out = []
    for n in (1, 2, 4, 8):
        requests = [texts[i : i + n] for i in range(0, len(texts) - n + 1, n)]
        looks = [len(plan(r).looks.strings) for r in requests]
        micros = min(_cpu(lambda rs=requests: [plan(r) for r in rs], len(requests)) for _ in range(repeat))
        mean = statistics.mean(looks)
        out.append(f"| {n} | {len(requests)} | {mean:.2f} | {mean / n:.2f} | {micros:.0f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    languages = language_sample()
    everyday = [t for group in languages.values() for t in group] + [t for g in EVERYDAY.values() for t in g]
    print("| sample | texts | chars/text | µs/text | share that differ | looks/text |")
    print("|---|---:|---:|---:|---:|---:|")
    print(row(f"mixed-language ({len(languages)} languages + everyday shapes)", everyday, args.repeat))
    for name, group in EVERYDAY.items():
        print(row(f"  {name}", list(group), args.repeat))
    ascii_texts = [t for t in everyday if t.isascii()]
    print(row("  ASCII only (fast path)", ascii_texts, args.repeat))
    print(row("obfuscated (attack traffic)", list(OBFUSCATED), args.repeat))
    print()
    print("| messages per request | requests | classifier inputs/request | per message | plan µs/request |")
    print("|---:|---:|---:|---:|---:|")
    for line in chat_rows(everyday, args.repeat):
        print(line)


if __name__ == "__main__":
    main()
