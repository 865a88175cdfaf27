#!/usr/bin/env python
"""CREST classifier speed on this CPU: backend x precision x length x batch, micro-batching, compute limit.

    python benchmarks/classifier.py                      # full grid (~20 min on 2 cores, first run longer)
    python benchmarks/classifier.py --quick --json out.json

The model is generated (``classifier.synthetic.build_random_model``: CREST-Base's exact shape, random
weights, which cost exactly what trained ones cost), so nothing is downloaded. Generated checkpoints and
ONNX artifacts are cached under ``--workdir`` so re-runs skip generation, export and quantization.
Progress goes to stderr; the markdown tables go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak import Peaks, best_of, measure_peaks  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

REPO = Path(__file__).resolve().parent.parent
# CREST-Base (xlm-roberta-base) shape: hidden, layers, FFN width, labels.
HIDDEN, LAYERS, INTERMEDIATE, LABELS = 768, 12, 3072, 2


@dataclass(frozen=True)
class Variant:
    """One row family of the table: a backend and precision, as ClassifierSettings fields."""

    backend: str
    quantize: bool
    settings: dict[str, Any] = field(default_factory=dict)  # extra ClassifierSettings fields (bf16, auto…)


# Adding a variant (bf16, auto) is one entry here.
VARIANTS: dict[str, Variant] = {
    "torch-fp32": Variant("torch", quantize=False),
    "torch-int8": Variant("torch", quantize=True),
    "onnx-fp32": Variant("onnx", quantize=False),
    "onnx-int8": Variant("onnx", quantize=True),
    "bf16": Variant("bf16", quantize=True),
    # Times onnx-int8 and bf16 per batch shape at load (cached next to the artifact), then routes each batch.
    "auto": Variant("auto", quantize=True),
}
BATCHING_VARIANT = "onnx-int8"


@dataclass(frozen=True)
class Cell:
    """Latency of one (variant, length, batch) cell of the grid."""

    variant: str
    tokens: int
    batch: int
    iterations: int
    median_ms: float
    p95_ms: float
    texts_per_s: float
    windows: int


@dataclass(frozen=True)
class Concurrency:
    """Throughput of concurrent single-text callers, micro-batching on or off."""

    tokens: int
    callers: int
    batching: bool
    texts_per_s: float


def flops_per_text(tokens: int) -> float:
    """Matmul FLOPs (multiply-add = 2) of one xlm-roberta-base forward over ``tokens`` tokens, head included.

    Per layer: Q, K, V and output projections 4·L·h²·2; FFN up and down 2·L·h·i·2; attention scores and
    context 2·L²·h·2. Head (on <s> only): dense h·h·2 + out_proj h·2·2. Embedding lookups, LayerNorm,
    softmax and GELU are not counted. Linear part: 12·(8h² + 4hi) = 0.170 GFLOP/token, the issue's figure.
    """
    h, i = HIDDEN, INTERMEDIATE
    per_layer = 4 * tokens * h * h * 2 + 2 * tokens * h * i * 2 + 2 * tokens * tokens * h * 2
    return LAYERS * per_layer + (h * h + h * LABELS) * 2


# ---------------------------------------------------------------- inputs


def ensure_model(workdir: Path, progress: Callable[[str], None]) -> Path:
    """The generated CREST-shaped checkpoint, built once per workdir (a marker file guards partial builds)."""
    from crest_proxy.classifier.synthetic import build_random_model

    model_dir = workdir / "xlm-roberta-base-random"
    marker = model_dir / ".complete"
    if not marker.exists():
        progress(f"generating a random xlm-roberta-base checkpoint in {model_dir} …")
        build_random_model(model_dir, shape="xlm-roberta-base")
        marker.write_text("ok\n")
    return model_dir


class TextMaker:
    """Fresh random texts that tokenize to exactly N tokens, <s> and </s> included."""

    def __init__(self, model_dir: Path, seed: int = 0) -> None:
        from transformers import AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(str(model_dir))
        self._words = _single_token_words(self._tok)
        self._rng = random.Random(seed)

    def batch(self, tokens: int, size: int) -> list[str]:
        """``size`` distinct texts (so no cache anywhere can answer for them) of exactly ``tokens`` tokens."""
        return [self.text(tokens) for _ in range(size)]

    def text(self, tokens: int) -> str:
        """One text of ``tokens`` tokens: tokens - 2 one-piece words, checked with the tokenizer."""
        text = " ".join(self._rng.choice(self._words) for _ in range(tokens - 2))
        got = len(self._tok(text)["input_ids"])
        if got != tokens:
            raise RuntimeError(f"built a {got}-token text for a {tokens}-token cell")
        return text


def _single_token_words(tokenizer: Any) -> list[str]:
    pieces = [p[1:] for p in tokenizer.get_vocab() if p.startswith("\u2581") and p[1:].isalpha()]
    return sorted(w for w in pieces if len(tokenizer.tokenize(" " + w)) == 1)


# ---------------------------------------------------------------- measuring


def load_variant(name: str, args: argparse.Namespace, model_dir: Path, **overrides: Any) -> Any:
    """Load one variant through the engine's public API (artifacts cached under the workdir)."""
    from crest_proxy.classifier import ClassifierSettings, load_classifier

    variant = VARIANTS[name]
    settings = ClassifierSettings(
        model=str(model_dir),
        backend=variant.backend,
        quantize=variant.quantize,
        threads=args.threads,
        cache_dir=args.workdir / "artifacts",
        offline=True,
        **{**variant.settings, **overrides},
    )
    return load_classifier(settings, progress=_progress)


def measure_cell(
    clf: Any, name: str, texts: TextMaker, tokens: int, batch: int, args: argparse.Namespace
) -> Cell:
    """Warm up once, then time whole classify_sync calls until min_iters and the time budget are both met.

    Cells whose calls take tens of seconds (fp32 at 512 x 32) stop early, after at least one timed call,
    once another call would push them past ``max_cell`` seconds; the table's n column shows it.
    """
    scores = clf.classify_sync(texts.batch(tokens, batch))
    times: list[float] = []
    started = time.perf_counter()
    while _more(times, time.perf_counter() - started, args):
        inputs = texts.batch(tokens, batch)
        t0 = time.perf_counter()
        clf.classify_sync(inputs)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return Cell(
        name,
        tokens,
        batch,
        len(times),
        median * 1e3,
        _p95(times) * 1e3,
        batch / median,
        max(s.windows for s in scores),
    )


def _more(times: Sequence[float], elapsed: float, args: argparse.Namespace) -> bool:
    if not times:
        return True
    if elapsed + times[-1] > args.max_cell:
        return False
    return len(times) < args.min_iters or (elapsed < args.budget and len(times) < 1000)


def _p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def _one_round(clf: Any, texts: TextMaker, tokens: int, callers: int) -> float:
    """Seconds for ``callers`` coroutines, each awaiting classify([one text]), to all finish."""
    inputs = texts.batch(tokens, callers)
    started = time.perf_counter()
    await asyncio.gather(*(clf.classify([t]) for t in inputs))
    return time.perf_counter() - started


async def _alternating_rounds(
    clfs: dict[bool, Any], texts: TextMaker, tokens: int, args: argparse.Namespace
) -> dict[bool, float]:
    """Texts/s per classifier, rounds alternating between them so that a neighbour's load hits both."""
    for clf in clfs.values():
        await _one_round(clf, texts, tokens, args.callers)  # warm-up: batch shapes, thread pools
    spent = dict.fromkeys(clfs, 0.0)
    rounds = 0
    while rounds < args.min_iters or sum(spent.values()) < 2 * args.budget:
        for batching, clf in clfs.items():
            spent[batching] += await _one_round(clf, texts, tokens, args.callers)
        rounds += 1
    return {batching: rounds * args.callers / seconds for batching, seconds in spent.items()}


def measure_concurrency(args: argparse.Namespace, model_dir: Path, texts: TextMaker) -> list[Concurrency]:
    """Micro-batching on (max_batch_size=callers) vs off (max_batch_size=1), both loaded at once.

    Two onnxruntime sessions on 2 cores: only one runs at a time (rounds alternate), the other idles.
    """
    clfs = {
        batching: load_variant(
            BATCHING_VARIANT,
            args,
            model_dir,
            max_batch_size=args.callers if batching else 1,
            max_wait_ms=args.max_wait_ms,
        )
        for batching in (True, False)
    }
    results = []
    try:
        for tokens in args.concurrency_lengths:
            rates = asyncio.run(_alternating_rounds(clfs, texts, tokens, args))
            results += [Concurrency(tokens, args.callers, b, rate) for b, rate in rates.items()]
            _progress(f"concurrency {tokens} tokens: on {rates[True]:.1f}, off {rates[False]:.1f} texts/s")
    finally:
        for clf in clfs.values():
            clf.close()
    return results


def measure_paired_speedup(
    args: argparse.Namespace,
    model_dir: Path,
    texts: TextMaker,
    *,
    fast: str,
    slow: str,
    tokens: int = 64,
    batch: int = 1,
) -> float:
    """Median latency of ``slow`` ÷ ``fast``, calls alternating between the two loaded variants."""
    clfs = [load_variant(name, args, model_dir) for name in (slow, fast)]
    times: list[list[float]] = [[], []]
    try:
        for clf in clfs:
            clf.classify_sync(texts.batch(tokens, batch))  # warm-up
        while len(times[0]) < 2 * args.min_iters or sum(map(sum, times)) < 2 * args.budget:
            for clf, bucket in zip(clfs, times, strict=True):
                inputs = texts.batch(tokens, batch)
                started = time.perf_counter()
                clf.classify_sync(inputs)
                bucket.append(time.perf_counter() - started)
    finally:
        for clf in clfs:
            clf.close()
    return statistics.median(times[0]) / statistics.median(times[1])


def run_grid(
    args: argparse.Namespace, model_dir: Path, texts: TextMaker
) -> tuple[list[Cell], dict[str, Any]]:
    """Every variant over lengths x batches, one loaded classifier at a time (memory: ~1 GB each)."""
    cells: list[Cell] = []
    infos: dict[str, Any] = {}
    for name in args.variants:
        clf = load_variant(name, args, model_dir)
        infos[name] = _info_dict(clf.info)
        try:
            for tokens in args.lengths:
                for batch in args.batches:
                    cells.append(measure_cell(clf, name, texts, tokens, batch, args))
                    _progress(f"{name} {tokens}x{batch}: {cells[-1].median_ms:.1f} ms median")
        finally:
            clf.close()
    return cells, infos


def _info_dict(info: Any) -> dict[str, Any]:
    raw = asdict(info) if hasattr(info, "__dataclass_fields__") else dict(vars(info))
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in raw.items()}


# ---------------------------------------------------------------- reporting


def header(args: argparse.Namespace, peaks: Peaks) -> str:
    """Machine, library versions and thread settings, as markdown bullet lines."""
    import onnxruntime
    import torch
    import transformers

    lines = [
        f"- CPU: {_cpu_model()} — {os.cpu_count()} logical cores; {platform.system()} {platform.machine()}",
        f"- torch {torch.__version__} (capability {torch.backends.cpu.get_cpu_capability()}), onnxruntime "
        f"{onnxruntime.__version__}, transformers {transformers.__version__}, "
        f"Python {platform.python_version()}",
        f"- threads: ClassifierSettings.threads={args.threads} (torch intra-op / ORT intra_op_num_threads); "
        f"microbenchmarks use the same count",
        f"- peaks measured in this run (best of start and end): int8 MatMulInteger "
        f"{peaks.int8_tops:.3f} TOPS "
        f"(DynamicQuantizeMatMul {peaks.dqmm_tops:.3f} TOPS incl. activation quantization), torch fp32 "
        f"{peaks.fp32_gflops:.0f} GFLOPS, torch bf16 {_bf16(peaks)}",
        f"- compute limit = flops_per_text(L) ÷ int8 MatMulInteger rate; flops_per_text counts every matmul "
        f"(0.170 GFLOP/token linear + attention 4·L·h per token per layer + head); "
        f"{flops_per_text(64) / 1e9:.2f} GFLOP per 64-token text",
        "- % of compute limit: the same FLOPs ÷ the better of this CPU's int8 and bf16 rates above (what the "
        "best backend could reach if every matmul ran at the hardware's best measured rate)",
        f"- per cell: 1 warm-up call, then ≥{args.min_iters} timed calls (n) and ≥{args.budget:g} s, fewer "
        f"only where that would exceed {args.max_cell:g} s; p95 over n ≤ 10 calls is the slowest call; "
        f"fresh random texts every call; tokens = sequence length INCLUDING <s> and </s>",
    ]
    return "\n".join(lines)


def _bf16(peaks: Peaks) -> str:
    return f"{peaks.bf16_gflops:.0f} GFLOPS" if peaks.bf16_gflops else "not supported"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def compute_limit_texts_per_s(tokens: int, peaks: Peaks) -> float:
    """Texts/s if every matmul ran at this CPU's best measured rate (int8 or bf16) and nothing else cost."""
    best = max(peaks.int8_tops * 1e12, (peaks.bf16_gflops or 0.0) * 1e9)
    return best / flops_per_text(tokens)


def limit_texts_per_s(tokens: int, peaks: Peaks) -> float:
    """Texts/s if every matmul ran at the measured int8 rate and nothing else cost anything."""
    return peaks.int8_tops * 1e12 / flops_per_text(tokens)


def grid_table(cells: Sequence[Cell], peaks: Peaks) -> str:
    """One row per cell: latency, throughput and share of the int8 compute limit."""
    rows = [
        "| variant | tokens (incl. <s></s>) | batch | n | median ms/call | p95 ms/call | texts/s "
        "| % of int8 limit | % of compute limit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        pct = 100 * c.texts_per_s / limit_texts_per_s(c.tokens, peaks)
        compute = 100 * c.texts_per_s / compute_limit_texts_per_s(c.tokens, peaks)
        win = "" if c.windows == 1 else f" ({c.windows} windows!)"
        rows.append(
            f"| {c.variant} | {c.tokens}{win} | {c.batch} | {c.iterations} | {c.median_ms:.1f} | "
            f"{c.p95_ms:.1f} | "
            f"{c.texts_per_s:.1f} | {pct:.0f}% | {compute:.0f}% |"
        )
    return "\n".join(rows)


def summary_table(cells: Sequence[Cell], peaks: Peaks, variants: Sequence[str]) -> str:
    """Texts/s per variant side by side; the best variant per row against the compute limit."""
    rows = [
        "| tokens | batch | " + " | ".join(variants) + " | best | compute limit texts/s | best % of limit |",
        "|---:|---:|" + "---:|" * (len(variants) + 3),
    ]
    by_key = {(c.tokens, c.batch, c.variant): c for c in cells}
    for tokens, batch in sorted({(c.tokens, c.batch) for c in cells}):
        row = [by_key.get((tokens, batch, v)) for v in variants]
        best = max((c for c in row if c), key=lambda c: c.texts_per_s)
        limit = compute_limit_texts_per_s(tokens, peaks)
        rates = " | ".join(f"{c.texts_per_s:.1f}" if c else "–" for c in row)
        rows.append(
            f"| {tokens} | {batch} | {rates} | {best.variant} | {limit:.0f} | "
            f"{100 * best.texts_per_s / limit:.0f}% |"
        )
    return "\n".join(rows)


def concurrency_table(results: Sequence[Concurrency], args: argparse.Namespace) -> str:
    """Batching on vs off per length, with the ratio."""
    rows = [
        f"| tokens | callers | batching on texts/s (max_batch_size={args.callers}, max_wait_ms="
        f"{args.max_wait_ms:g}) | batching off texts/s (max_batch_size=1) | on ÷ off |",
        "|---:|---:|---:|---:|---:|",
    ]
    for tokens in args.concurrency_lengths:
        on = _rate(results, tokens, True)
        off = _rate(results, tokens, False)
        rows.append(f"| {tokens} | {args.callers} | {on:.1f} | {off:.1f} | {on / off:.2f}× |")
    return "\n".join(rows)


def _rate(results: Sequence[Concurrency], tokens: int, batching: bool) -> float:
    return next(r.texts_per_s for r in results if r.tokens == tokens and r.batching == batching)


def ratios_table(cells: Sequence[Cell], results: Sequence[Concurrency], paired: float | None) -> str:
    """The issue's targets, measured in this run (rows whose inputs were not measured are skipped)."""
    rows = ["| ratio | measured | target | |", "|---|---:|---:|---|"]
    label = "onnx-int8 ÷ torch-fp32 speed, batch 1 × 64 tokens"
    if paired:
        rows.append(_ratio_row(f"{label} (paired: alternating calls)", paired, 3.5))
    speed = _speedup(cells, "onnx-int8", "torch-fp32", tokens=64, batch=1)
    if speed:
        rows.append(_ratio_row(f"{label} (grid cells, minutes apart)", speed, 3.5))
    for tokens, target in ((16, 2.0), (64, 1.3)):
        try:
            ratio = _rate(results, tokens, True) / _rate(results, tokens, False)
        except StopIteration:
            continue
        rows.append(_ratio_row(f"batching on ÷ off, 32 callers × {tokens} tokens", ratio, target))
    return "\n".join(rows)


@dataclass(frozen=True)
class AutoPair:
    """auto's speed relative to each single backend on one shape, from interleaved calls."""

    tokens: int
    batch: int
    rounds: int
    ratios: dict[str, float]  # single backend -> its median seconds ÷ auto's (> 1: auto is faster)

    @property
    def worst(self) -> float:
        """auto against the best single backend on this shape."""
        return min(self.ratios.values())


def measure_auto_pairs(args: argparse.Namespace, model_dir: Path, texts: TextMaker) -> list[AutoPair]:
    """auto vs every other variant, round-robin calls on the same inputs (grid cells run minutes apart).

    On a shared machine a neighbour's burst can halve one grid cell; interleaving spreads it over all
    variants alike. Shapes up to ``--pair-max-tokens`` tokens per call (bigger ones take minutes).
    """
    names = ["auto", *[v for v in args.variants if v != "auto"]]
    clfs = {name: load_variant(name, args, model_dir) for name in names}
    shapes = [(t, b) for t in args.lengths for b in args.batches if t * b <= args.pair_max_tokens]
    pairs = []
    try:
        for tokens, batch in shapes:
            pairs.append(_pair(clfs, texts, tokens, batch, args))
            _progress(f"auto pairs {tokens}x{batch}: worst {pairs[-1].worst:.2f}x {pairs[-1].ratios}")
    finally:
        for clf in clfs.values():
            clf.close()
    return pairs


def _pair(
    clfs: dict[str, Any], texts: TextMaker, tokens: int, batch: int, args: argparse.Namespace
) -> AutoPair:
    times: dict[str, list[float]] = {name: [] for name in clfs}
    for clf in clfs.values():
        clf.classify_sync(texts.batch(tokens, batch))  # warm-up
    spent = 0.0
    while len(times["auto"]) < args.min_iters or spent < len(clfs) * args.budget:
        for name, clf in clfs.items():
            inputs = texts.batch(tokens, batch)
            started = time.perf_counter()
            clf.classify_sync(inputs)
            times[name].append(time.perf_counter() - started)
            spent += times[name][-1]
    auto = statistics.median(times["auto"])
    ratios = {n: statistics.median(t) / auto for n, t in times.items() if n != "auto"}
    return AutoPair(tokens, batch, len(times["auto"]), ratios)


def pairs_table(pairs: Sequence[AutoPair]) -> str:
    """auto ÷ each single backend per shape (speed ratio), and against the best of them."""
    singles = list(pairs[0].ratios) if pairs else []
    rows = [
        "| tokens | batch | rounds | "
        + " | ".join(f"auto speed ÷ {n}" for n in singles)
        + " | vs best | ≥ 0.90× |",
        "|---:|---:|---:|" + "---:|" * (len(singles) + 1) + "---|",
    ]
    for p in pairs:
        cells = " | ".join(f"{p.ratios[n]:.2f}×" for n in singles)
        verdict = "met" if p.worst >= 0.9 else "MISSED"
        rows.append(f"| {p.tokens} | {p.batch} | {p.rounds} | {cells} | {p.worst:.2f}× | {verdict} |")
    return "\n".join(rows)


def targets_table(cells: Sequence[Cell], peaks: Peaks) -> str:
    """Issue 8: best >= 50 % of the compute limit at 64 tokens x batch >= 8; auto within 10 % of the best."""
    rows = ["| target | measured | goal | |", "|---|---:|---:|---|"]
    by_key: dict[tuple[int, int], list[Cell]] = {}
    for c in cells:
        by_key.setdefault((c.tokens, c.batch), []).append(c)
    for (tokens, batch), group in sorted(by_key.items()):
        best = max(group, key=lambda c: c.texts_per_s)
        if tokens == 64 and batch >= 8:
            pct = 100 * best.texts_per_s / compute_limit_texts_per_s(tokens, peaks)
            label = f"best ({best.variant}) % of compute limit, {tokens} tokens × {batch}"
            rows.append(f"| {label} | {pct:.0f}% | ≥ 50% | {'met' if pct >= 50 else 'MISSED'} |")
        auto = next((c for c in group if c.variant == "auto"), None)
        single = [c for c in group if c.variant != "auto"]
        if auto and single:
            top = max(single, key=lambda c: c.texts_per_s)
            ratio = auto.texts_per_s / top.texts_per_s
            label = f"auto ÷ best single ({top.variant}), {tokens} tokens × {batch} (grid cells)"
            rows.append(f"| {label} | {ratio:.2f}× | ≥ 0.90× | {'met' if ratio >= 0.9 else 'MISSED'} |")
    return "\n".join(rows)


def fresh_rss(name: str, args: argparse.Namespace, model_dir: Path) -> int | None:
    """Resident memory right after loading ``name`` in a fresh process (this one holds earlier variants')."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_loaded_rss, (name, args, model_dir))


def _loaded_rss(name: str, args: argparse.Namespace, model_dir: Path) -> int | None:
    clf = load_variant(name, args, model_dir)
    clf.close()
    return clf.info.rss_bytes


def memory_table(infos: dict[str, Any], rss: dict[str, int | None]) -> str:
    """What each variant loaded, and a fresh process's resident memory right after loading it."""
    rows = ["| variant | precision | device | RSS after load (fresh process) |", "|---|---|---|---:|"]
    for name, info in infos.items():
        size = f"{rss[name] / 2**20:.0f} MiB" if rss.get(name) else "?"
        rows.append(f"| {name} | {info.get('precision')} | {info.get('device')} | {size} |")
    return "\n".join(rows)


def auto_lines(infos: dict[str, Any]) -> str:
    """The routing table ``auto`` chose at load (or why it chose none)."""
    from crest_proxy.classifier.autoselect import selection_from_dict
    from crest_proxy.classifier.routing import describe_table

    data = infos.get("auto", {}).get("selection")
    if not data:
        return "auto: no choice to make on this machine (one backend only)"
    selection = selection_from_dict(data)
    lines = [f"auto on {selection.machine.describe()}: {selection.summary()}", "", "```"]
    return "\n".join([*lines, *describe_table(selection.table), "```"])


def _speedup(cells: Sequence[Cell], fast: str, slow: str, *, tokens: int, batch: int) -> float | None:
    pick = {c.variant: c for c in cells if c.tokens == tokens and c.batch == batch}
    return pick[slow].median_ms / pick[fast].median_ms if fast in pick and slow in pick else None


def _ratio_row(label: str, value: float, target: float) -> str:
    return f"| {label} | {value:.2f}× | ≥ {target:g}× | {'met' if value >= target else 'MISSED'} |"


# ---------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line flags; --quick shrinks the grid to a few minutes."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--variants", type=_names, default=list(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}"
    )
    p.add_argument("--lengths", type=_ints, default=[16, 64, 128, 512], help="token lengths incl. <s></s>")
    p.add_argument("--batches", type=_ints, default=[1, 8, 32], help="texts per classify_sync call")
    p.add_argument("--budget", type=float, default=2.0, help="seconds of timed calls per cell (default 2)")
    p.add_argument("--min-iters", type=int, default=3, help="timed calls per cell at least (default 3)")
    p.add_argument("--max-cell", type=float, default=60.0, help="stop a slow cell past this many s")
    p.add_argument("--callers", type=int, default=32, help="concurrent callers in the batching test")
    p.add_argument(
        "--concurrency-lengths", type=_ints, default=[16, 64], help="lengths for the batching test"
    )
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="micro-batching wait with batching on")
    p.add_argument("--no-ratios", action="store_true", help="skip the paired speedup and batching runs")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads everywhere")
    p.add_argument(
        "--workdir", type=Path, default=REPO / ".cache" / "bench", help="generated models/artifacts"
    )
    p.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    p.add_argument("--no-auto-pairs", action="store_true", help="skip auto vs single backends, interleaved")
    p.add_argument(
        "--pair-max-tokens", type=int, default=2048, help="largest batch x tokens in the auto pairs"
    )
    p.add_argument("--quick", action="store_true", help="lengths 16,64,128 × batches 1,8; 1 s per cell")
    args = p.parse_args(argv)
    if args.quick:
        args.lengths, args.batches, args.budget = [16, 64, 128], [1, 8], 1.0
    return args


def _ints(raw: str) -> list[int]:
    return [int(x) for x in raw.split(",") if x.strip()]


def _names(raw: str) -> list[str]:
    names = [x.strip() for x in raw.split(",") if x.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    return names


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure peaks, the grid and micro-batching; print markdown; optionally save JSON."""
    args = parse_args(argv)
    started = time.perf_counter()
    first = measure_peaks(args.threads)
    _progress(f"peaks before: {first}")
    model_dir = ensure_model(args.workdir, _progress)
    texts = TextMaker(model_dir)
    cells, infos = run_grid(args, model_dir, texts)
    concurrency = [] if args.no_ratios else measure_concurrency(args, model_dir, texts)
    paired = None
    if not args.no_ratios:
        paired = measure_paired_speedup(args, model_dir, texts, fast="onnx-int8", slow="torch-fp32")
    # Measured again at the end: on a shared machine the better of the two is closer to the hardware.
    peaks = best_of(first, measure_peaks(args.threads))
    _progress(f"peaks (best of before/after): {peaks}")
    print("## CREST classifier benchmark\n\n" + header(args, peaks) + "\n")
    print(grid_table(cells, peaks) + "\n\n" + summary_table(cells, peaks, args.variants) + "\n")
    if concurrency:
        print(concurrency_table(concurrency, args) + "\n")
    print(ratios_table(cells, concurrency, paired) + "\n")
    print(targets_table(cells, peaks) + "\n")
    if "auto" in args.variants and len(args.variants) > 1 and not args.no_auto_pairs:
        print(pairs_table(measure_auto_pairs(args, model_dir, texts)) + "\n")
    print(memory_table(infos, {name: fresh_rss(name, args, model_dir) for name in infos}) + "\n")
    if "auto" in infos:
        print(auto_lines(infos) + "\n")
    print(f"_total wall time {time.perf_counter() - started:.0f} s_")
    if args.json:
        _save(args, peaks, cells, concurrency, infos, paired)
    return 0


def _save(
    args: argparse.Namespace,
    peaks: Peaks,
    cells: list[Cell],
    conc: list[Concurrency],
    infos: dict,
    paired: float | None,
) -> None:
    doc = {
        "cpu": _cpu_model(),
        "threads": args.threads,
        "peaks": asdict(peaks),
        "models": infos,
        "cells": [asdict(c) for c in cells],
        "concurrency": [asdict(r) for r in conc],
        "paired_speedup_onnx_int8_vs_torch_fp32_64x1": paired,
        "flops_per_text": {t: flops_per_text(t) for t in args.lengths},
    }
    args.json.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    sys.exit(main())
