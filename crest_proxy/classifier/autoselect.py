"""Backend ``auto``: time each loaded backend on representative batch shapes, once per machine, and cache it.

No backend wins everywhere: dynamic int8 (onnxruntime) has the lowest latency on short single texts,
bf16 (torch, on AMX or a GPU) can win batches and long windows. Which one wins where depends on the CPU,
so it is measured, not guessed. The table is saved next to the ONNX artifact, keyed by the machine, the
thread count and the library versions, so later starts reuse it in milliseconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from crest_proxy.classifier.machine import Machine
from crest_proxy.classifier.packing import PaddedBatch, pad
from crest_proxy.classifier.progress import PhaseReporter
from crest_proxy.classifier.routing import RoutingTable, Selection, ShapeTiming, describe_table
from crest_proxy.classifier.runtime import Runtime
from crest_proxy.classifier.windows import SpecialTokens

# Bump when what is timed or how changes: older cached tables then stop matching.
FORMAT_VERSION = 1
FILE_PREFIX = "autotune-"
ROWS = (1, 8, 32)
TOKENS = (16, 64, 128, 512)
# Once one backend is this many times slower on a shape, more iterations cannot change the winner.
DECISIVE_MARGIN = 1.5
_VERSIONED = ("torch", "onnxruntime", "transformers")


@dataclass(frozen=True)
class TuningPlan:
    """The shapes to time and how many timed calls each backend gets per shape."""

    shapes: tuple[tuple[int, int], ...]
    iterations: int


def plan_tuning(max_rows: int, max_tokens: int, *, token_budget: int, iterations: int) -> TuningPlan:
    """Rows 1/8/32 x tokens 16/64/128/512 (and the limits themselves), capped by the limits and the budget.

    Single windows of every length are always timed; bigger batches only up to ``token_budget`` tokens
    per call, which keeps start-up to seconds (the largest shapes route like their nearest measured one).
    """
    rows = sorted({r for r in (*ROWS, max_rows) if r <= max_rows})
    tokens = sorted({t for t in (*TOKENS, max_tokens) if t <= max_tokens})
    shapes = tuple((r, t) for r in rows for t in tokens if r == 1 or r * t <= token_budget)
    return TuningPlan(shapes=shapes, iterations=iterations)


def synthetic_batch(rows: int, tokens: int, specials: SpecialTokens) -> PaddedBatch:
    """A full (unpadded) batch of the given shape; a dense encoder's cost does not depend on token values."""
    window = [specials.bos_id, *[specials.eos_id] * (tokens - 1)]
    return pad([window] * rows, specials.pad_id)


def time_backends(runtimes: Mapping[str, Runtime], plan: TuningPlan, specials: SpecialTokens) -> RoutingTable:
    """Best-of-N seconds per call of every backend on every planned shape (calls interleaved)."""
    # One warm-up per backend (thread pools, arenas, lazy init); per-shape first-call costs (oneDNN
    # primitive creation) are milliseconds against calls of tens to hundreds, and best-of-N absorbs them.
    smallest = synthetic_batch(*min(plan.shapes, key=lambda s: s[0] * s[1]), specials)
    for runtime in runtimes.values():
        runtime.run(smallest)
    return RoutingTable(tuple(_time_shape(runtimes, r, t, plan.iterations, specials) for r, t in plan.shapes))


def _time_shape(
    runtimes: Mapping[str, Runtime], rows: int, tokens: int, iterations: int, specials: SpecialTokens
) -> ShapeTiming:
    batch = synthetic_batch(rows, tokens, specials)
    names = list(runtimes)
    best = dict.fromkeys(names, float("inf"))
    timing = ShapeTiming(rows, tokens, best)
    for round_ in range(iterations):
        # Interleaved, order flipped every round: a neighbour's burst of load hits every backend alike.
        for name in names if round_ % 2 == 0 else reversed(names):
            started = time.perf_counter()
            runtimes[name].run(batch)
            best[name] = min(best[name], time.perf_counter() - started)
        timing = ShapeTiming(rows, tokens, dict(best))
        if timing.margin >= DECISIVE_MARGIN:
            break
    return timing


def selection_key(machine: Machine, plan: TuningPlan, candidates: Sequence[str]) -> str:
    """A digest of everything a timing depends on: hardware, threads, libraries, backends and shapes."""
    blob = {
        "format": FORMAT_VERSION,
        "machine": asdict(machine),
        "versions": {name: _version(name) for name in _VERSIONED},
        "candidates": list(candidates),
        "shapes": [list(s) for s in plan.shapes],
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def cached_selection(
    cache_dir: Path | None, machine: Machine, plan: TuningPlan, candidates: Sequence[str]
) -> Selection | None:
    """The timing saved for exactly this machine, plan and candidates, if any (nothing is loaded to ask)."""
    file = selection_file(cache_dir, machine, plan, candidates)
    found = read_selection(file) if file is not None else None
    return found if found is not None and found.table.candidates == tuple(candidates) else None


def selection_file(
    cache_dir: Path | None, machine: Machine, plan: TuningPlan, candidates: Sequence[str]
) -> Path | None:
    """Where the timing for this machine, plan and candidates is cached (None: no cache directory)."""
    key = selection_key(machine, plan, candidates)
    return cache_dir / f"{FILE_PREFIX}{key}.json" if cache_dir is not None else None


def tune_backends(
    runtimes: Mapping[str, Runtime],
    *,
    plan: TuningPlan,
    machine: Machine,
    specials: SpecialTokens,
    cache_dir: Path | None,
    report: PhaseReporter,
) -> Selection:
    """Time the loaded backends now and cache the result next to the artifact."""
    file = selection_file(cache_dir, machine, plan, list(runtimes))
    with report.phase("auto", f"timing {', '.join(runtimes)} on {len(plan.shapes)} batch shapes"):
        started = time.perf_counter()
        table = time_backends(runtimes, plan, specials)
        seconds = time.perf_counter() - started
    selection = Selection(
        table, machine, reused=False, cache_file=str(file) if file else None, tuning_seconds=seconds
    )
    if file is not None:
        _write_selection(file, selection, report)
    return selection


def report_selection(selection: Selection, report: PhaseReporter) -> None:
    """Say, on the progress channel and in the log, which backend runs which batch shape."""
    report.say(f"auto: {selection.machine.describe()}")
    report.say(f"auto: {selection.summary()}")
    for line in describe_table(selection.table):
        report.say(f"auto:   {line}")


def read_selection(file: Path) -> Selection | None:
    """A saved selection, or None when the file is missing, unreadable or from another format."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT_VERSION:
            return None
        return selection_from_dict({**data, "reused": True, "cache_file": str(file)})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def selection_from_dict(data: Mapping[str, Any]) -> Selection:
    """Rebuild a Selection from its ``dataclasses.asdict`` form (a saved file, or ``model info --json``)."""
    machine = Machine(**{**data["machine"], "features": tuple(data["machine"]["features"])})
    timings = tuple(
        ShapeTiming(int(t["rows"]), int(t["tokens"]), {k: float(v) for k, v in t["seconds"].items()})
        for t in data["table"]["timings"]
    )
    return Selection(
        RoutingTable(timings),
        machine,
        reused=bool(data["reused"]),
        cache_file=data.get("cache_file"),
        tuning_seconds=float(data["tuning_seconds"]),
    )


def saved_selections(artifact_dir: Path) -> list[Selection]:
    """Every readable backend timing cached in an artifact directory (for ``crest-proxy model info``)."""
    files = sorted(artifact_dir.glob(f"{FILE_PREFIX}*.json")) if artifact_dir.is_dir() else []
    return [s for s in map(read_selection, files) if s is not None]


def _write_selection(file: Path, selection: Selection, report: PhaseReporter) -> None:
    data = {
        "format": FORMAT_VERSION,
        "versions": {name: _version(name) for name in _VERSIONED},
        **asdict(selection),
    }
    temp = file.with_name(f".{file.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        temp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        os.replace(temp, file)  # atomic: a concurrent start reads the old file or the new one, never half
    except OSError as exc:  # a read-only cache costs the timing on every start, nothing else
        report.say(f"auto: cannot cache the backend timing in {file} ({exc}); it will be redone next start")
        with contextlib.suppress(OSError):
            temp.unlink()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"
