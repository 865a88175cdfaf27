#!/usr/bin/env python
"""Issue 14 as figures: fair scheduling at CREST-Base cost, batch-composition flips per backend, the int8
recipes' speed, then the fuzz run of ``benchmarks/fuzz.py`` (schemathesis + hand-made cases).

    python benchmarks/adversarial.py                        # all of it (fuzz: >= 10,000 requests)
    python benchmarks/adversarial.py --fuzz-requests 1000   # a shorter fuzz run
    python benchmarks/adversarial.py --skip-fuzz

The model is generated (CREST-Base's exact shape, random weights, one outlier token) and cached under
``--workdir``. Progress goes to stderr; markdown tables go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import adversarial_models as am  # noqa: E402

from crest_proxy.classifier import ClassifierSettings, CrestClassifier, ModelInfo  # noqa: E402
from crest_proxy.classifier.labels import find_labels  # noqa: E402
from crest_proxy.classifier.packing import pad  # noqa: E402
from crest_proxy.classifier.protocol import WorkKey  # noqa: E402
from crest_proxy.classifier.runtime import Runtime, load_onnx_runtime  # noqa: E402
from crest_proxy.classifier.windows import WindowShape  # noqa: E402

WORDS = [
    *("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog"),
    *("hello", "world", "how", "are", "you", "today", "please", "translate"),
]
SENTENCE = "Please summarise the attached report in three bullet points for me."
SHAPE = WindowShape(tokens=512, overlap=64)


def words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(count))


# --- fairness ---------------------------------------------------------------------------------------


def classifier_from(onnx_dir: Path, settings: ClassifierSettings) -> CrestClassifier:
    """A CrestClassifier over an exported artifact directory (what ``load_classifier`` would build)."""
    labels = find_labels({0: "safe", 1: "unsafe"}, model="crest-base-shaped")
    loaded = load_onnx_runtime(onnx_dir / "model.onnx", threads=None, unsafe_index=1, precision="int8")
    info = ModelInfo(
        model="crest-base-shaped",
        revision="random",
        backend="onnx",
        precision="int8",
        unsafe_label="unsafe",
        id2label=dict(labels.id2label),
        artifact_path=onnx_dir,
        artifact_reused=True,
        load_seconds=0.0,
        max_tokens=512,
    )
    encoder = am.encoder_of(onnx_dir)
    return CrestClassifier(info, runtime=loaded.runtime, encoder=encoder, labels=labels, settings=settings)


async def timed(call: Awaitable[object]) -> float:
    started = time.perf_counter()
    await call
    return (time.perf_counter() - started) * 1000


async def fairness(onnx_dir: Path, rounds: int, batch_tokens: int) -> None:
    """Another tenant's one-sentence latency, idle and beside a 300 KB prompt; one batch for scale."""
    settings = ClassifierSettings(model="bench", max_batch_tokens=batch_tokens)
    clf = classifier_from(onnx_dir, settings)
    big_text = words(random.Random(1), 60_000)[:300_000]
    await clf.classify([SENTENCE])  # warm-up
    idle = [await timed(clf.classify([SENTENCE], key=WorkKey("b", f"idle{i}"))) for i in range(rounds)]
    calls: list[float] = []
    stop_watching = clf.observe(CallTimes(calls))
    started_windows = clf.stats.windows
    attack = asyncio.ensure_future(clf.classify([big_text], key=WorkKey("a", "big")))
    while clf.stats.windows == started_windows:  # the prompt's windows are running
        await asyncio.sleep(0.01)
    loaded = [await timed(clf.classify([SENTENCE], key=WorkKey("b", f"busy{i}"))) for i in range(rounds)]
    big_windows, done_before = clf.count_tokens([big_text]) // SHAPE.stride + 1, clf.stats.windows
    attack.cancel()
    await asyncio.sleep(0)
    while clf.stats.queue_depth:
        await asyncio.sleep(0.01)
    stop_watching()
    batch_ms = max(calls)
    print(f"\n### max_batch_tokens = {batch_tokens}\n")
    print_fairness(idle, loaded, batch_ms, big_windows, clf.stats.windows - done_before)
    await clf.aclose()


class CallTimes:
    """A stats observer that keeps every model call's duration (the calls a request can wait behind)."""

    def __init__(self, into: list[float]) -> None:
        self.into = into

    def admitted(self, queue_depth: int) -> None:
        pass

    def model_call(self, rows: int, seconds: float) -> None:
        self.into.append(seconds * 1000)


def print_fairness(idle: list[float], loaded: list[float], batch_ms: float, windows: int, after: int) -> None:
    base = statistics.median(idle)
    target = 2 * base + batch_ms
    print("| one-sentence request | median ms | max ms |\n|---|---:|---:|")
    print(f"| idle | {base:.0f} | {max(idle):.0f} |")
    print(
        f"| beside a 300 KB prompt (another tenant) | {statistics.median(loaded):.0f} | {max(loaded):.0f} |"
    )
    print(f"| one batch: the longest model call during the attack | {batch_ms:.0f} | |")
    verdict = "met" if max(loaded) <= target else "NOT met"
    print(
        f"\nratio (median beside / median idle): {statistics.median(loaded) / base:.2f}; "
        f"target max <= 2 x idle + one batch = {target:.0f} ms: {verdict}"
    )
    print(f"the 300 KB prompt (~{windows} windows) was cancelled mid-way; windows computed after: {after}")


# --- batch-composition flips -------------------------------------------------------------------------


def compositions(windows: list[list[int]], mates: list[list[int]]) -> list[list[list[int]]]:
    """Batches of the texts: with the crafted mates, in eights (padding varies), and reversed."""
    return [
        *[mates + windows[i : i + 6] for i in range(0, len(windows), 6)],
        *[windows[i : i + 8] for i in range(0, len(windows), 8)],
        *[windows[::-1][i : i + 8] for i in range(0, len(windows), 8)],
    ]


def scores_in(runtime: Runtime, batches: list[list[list[int]]], windows: list[list[int]]) -> list[np.ndarray]:
    """Each window's score in every batch that holds it (by identity)."""
    seen: dict[int, list[float]] = {id(w): [] for w in windows}
    for batch in batches:
        for row, value in zip(batch, runtime.run(pad(batch, 1)).tolist(), strict=True):
            if id(row) in seen:
                seen[id(row)].append(value)
    return [np.array(seen[id(w)]) for w in windows]


def flips(checkpoint: Path, workdir: Path, texts: int) -> None:
    """Per backend: texts whose decision or score moves between alone and any crafted batch."""
    encoder = am.encoder_of(am.exported(checkpoint, workdir, quantize=True))
    rng = random.Random(7)
    corpus = [words(rng, rng.randint(5, 300)) for _ in range(texts)]
    windows = [w[0] for w in encoder.windows(corpus, SHAPE)]
    mate_texts = [(am.OUTLIER_WORD + " ") * 508, words(rng, 2000)]
    mates = [encoder.windows([t], SHAPE)[0][0] for t in mate_texts]
    print("\n## Batch-composition flips: a text scored alone vs inside crafted batches\n")
    print(f"{texts} texts; batch-mates: a window of the outlier token, a full 512-token window; threshold:")
    print("each backend's median alone score (half the texts flagged: the most sensitive cut)\n")
    print("| backend | flips | max abs score change | texts in batches |\n|---|---:|---:|---:|")
    for name, load in am.backends(checkpoint, workdir).items():
        am.progress(f"flips: {name}")
        runtime = load()
        alone = np.array([runtime.run(pad([w], 1))[0] for w in windows])
        batched = scores_in(runtime, compositions(windows, mates), windows)
        cut = float(np.median(alone))
        moved = sum(any((b >= cut) != (a >= cut) for b in bs) for a, bs in zip(alone, batched, strict=True))
        delta = max(float(np.abs(bs - a).max()) for a, bs in zip(alone, batched, strict=True))
        print(f"| {name} | {moved} of {texts} | {delta:.1e} | {sum(len(b) for b in batched)} |", flush=True)
        del runtime


# --- speed of the int8 recipes -----------------------------------------------------------------------


def best_ms(call: Callable[[], object], repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def recipe_speed(checkpoint: Path, workdir: Path, repeats: int) -> None:
    """ms per model call of each int8 candidate on typical batch shapes (best of ``repeats``)."""
    loaders = am.backends(checkpoint, workdir)
    candidates = {
        "batched, one scale per batch (before; batch-dependent)": loaders["onnx-int8 batched (before)"](),
        "rows one by one, unpadded (shipped)": loaders["onnx-int8 rows one by one (shipped)"](),
        "per-token scales in the graph (candidate)": loaders["onnx-int8 per-token scales (candidate)"](),
    }
    rng = np.random.default_rng(0)
    shapes = [(1, 64), (8, 64), (1, 512), (4, 512)]
    print("\n## int8 recipes: ms per model call (CREST-Base shape, best of", repeats, ")\n")
    print("| recipe | " + " | ".join(f"{r}x{t}" for r, t in shapes) + " |")
    print("|---|" + "---:|" * len(shapes))
    for name, runtime in candidates.items():
        cells = []
        for rows, tokens in shapes:
            batch = pad([[0, *rng.integers(5, 700, tokens - 2).tolist(), 2] for _ in range(rows)], 1)
            cells.append(f"{best_ms(lambda b=batch, r=runtime: r.run(b), repeats):.0f}")  # type: ignore[misc]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    print(
        "\nstatically calibrated scales: not re-measured (3-14 % slower than per-batch when tried earlier)."
    )


# --- fuzz --------------------------------------------------------------------------------------------


def fuzz(requests: int, workdir: Path) -> int:
    """``benchmarks/fuzz.py``'s run (schemathesis + hand-made cases), when that script is present."""
    if importlib.util.find_spec("fuzz") is None:
        print("\n(benchmarks/fuzz.py is not present: fuzz run skipped)")
        return 0
    try:
        import fuzz as fuzz_script
    except ImportError as exc:  # schemathesis is a benchmark-only dependency
        print(f"\n(benchmarks/fuzz.py cannot run here: {exc}; fuzz run skipped)")
        return 0

    print("\n## Fuzz: schemathesis + hand-made cases (benchmarks/fuzz.py)\n", flush=True)
    return int(fuzz_script.run(["--requests", str(requests), "--workdir", str(workdir)]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(".cache/bench/adversarial"))
    parser.add_argument("--rounds", type=int, default=8, help="one-sentence requests, idle and under attack")
    parser.add_argument("--batch-tokens", type=int, nargs="+", default=[512, 2048], help="max_batch_tokens")
    parser.add_argument("--texts", type=int, default=48, help="texts in the flips table")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per shape (best is kept)")
    parser.add_argument("--fuzz-requests", type=int, default=10_400)
    parser.add_argument("--skip-fuzz", action="store_true")
    parser.add_argument("--only", choices=("fairness", "flips", "speed", "fuzz"), action="append")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    only = set(args.only or ("fairness", "flips", "speed", "fuzz"))
    checkpoint = am.outlier_checkpoint(args.workdir)
    if "fairness" in only:
        print("\n## Fair scheduling: another tenant's one-sentence request beside a 300 KB prompt")
        for tokens in args.batch_tokens:
            asyncio.run(fairness(am.exported(checkpoint, args.workdir, quantize=True), args.rounds, tokens))
    if "flips" in only:
        flips(checkpoint, args.workdir, args.texts)
    if "speed" in only:
        recipe_speed(checkpoint, args.workdir, args.repeats)
    if "fuzz" in only and not args.skip_fuzz:
        return fuzz(args.fuzz_requests, args.workdir.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
