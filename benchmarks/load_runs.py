"""Measuring runs of the load benchmark: targets taken in turns, server CPU and RSS sampled alongside.

The machine is shared, so targets are measured **in turns** (round 1: direct, crest, LiteLLM …; round 2:
the same in reverse order, and so on): a neighbour's burst, or a load that drifts over the run, then slows
every target alike instead of one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from load_clients import Load, Outcome, Summary, Target, drive, summarize
from load_servers import cpu_seconds, rss_bytes

MIB = 2**20


@dataclass(frozen=True)
class Cell:
    """One target under one load, over all its turns: client-side summary plus the server's CPU and RSS."""

    target: str
    stream: bool
    concurrency: int
    seconds: float
    summary: Summary
    cpu_ms_per_request: float | None  # the proxy process's CPU time per successful request
    peak_rss_mib: float | None


@dataclass(frozen=True)
class SoakPoint:
    """The proxy's RSS and the streams completed so far, at one moment of the soak."""

    at_s: float
    rss_mib: float
    completed: int
    errors: int


@dataclass(frozen=True)
class Soak:
    """A long run of many concurrent streams through one proxy: errors, throughput and RSS over time."""

    target: str
    streams: int
    seconds: float
    summary: Summary
    rss_before_mib: float
    rss_after_mib: float
    timeline: tuple[SoakPoint, ...]
    cpu_s: dict[str, float]  # CPU seconds used during the soak: proxy, upstream, clients (this process)


@dataclass
class _Sampler:
    """Samples the RSS of some processes while a run goes on (mutable: owned by one run)."""

    pids: Mapping[str, int]
    interval_s: float = 0.5
    peaks: dict[str, int] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for name, pid in self.pids.items():
                self.peaks[name] = max(self.peaks.get(name, 0), rss_bytes(pid))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)


async def measure(
    targets: Sequence[Target],
    load: Load,
    *,
    rounds: int,
    pids: Mapping[str, int],
    progress: Callable[[str], None],
) -> list[Cell]:
    """Each target ``rounds`` times in turn, ``load.duration_s / rounds`` seconds a turn; one Cell each."""
    turn = replace(load, duration_s=load.duration_s / rounds)
    outcomes: dict[str, list[Outcome]] = {t.name: [] for t in targets}
    cpu: dict[str, float] = dict.fromkeys(outcomes, 0.0)
    elapsed: dict[str, float] = dict.fromkeys(outcomes, 0.0)
    sampler = _Sampler({t.name: pids[t.name] for t in targets if t.name in pids})
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(stop))
    try:
        for r in range(rounds):
            for target in targets if r % 2 == 0 else targets[::-1]:
                pid = pids.get(target.name)
                before, started = (cpu_seconds(pid) if pid else 0.0), time.perf_counter()
                got = await drive(target, turn)
                elapsed[target.name] += time.perf_counter() - started
                cpu[target.name] += (cpu_seconds(pid) - before) if pid else 0.0
                outcomes[target.name] += got
                progress(f"  round {r + 1}/{rounds} {target.name:<18} {_brief(got, turn.duration_s)}")
    finally:
        stop.set()
        await sampling
    return [_cell(t, load, outcomes[t.name], elapsed[t.name], cpu[t.name], pids, sampler) for t in targets]


def _cell(
    target: Target,
    load: Load,
    outcomes: list[Outcome],
    seconds: float,
    cpu_s: float,
    pids: Mapping[str, int],
    sampler: _Sampler,
) -> Cell:
    """Throughput over the turns' real length (requests started before a deadline finish after it)."""
    summary = summarize(outcomes, seconds)
    measured = target.name in pids and summary.requests > 0
    peak = sampler.peaks.get(target.name)
    return Cell(
        target=target.name,
        stream=load.stream,
        concurrency=load.concurrency,
        seconds=seconds,
        summary=summary,
        cpu_ms_per_request=cpu_s * 1e3 / summary.requests if measured else None,
        peak_rss_mib=peak / MIB if peak else None,
    )


def _brief(outcomes: Sequence[Outcome], seconds: float) -> str:
    s = summarize(outcomes, seconds)
    return f"{s.throughput_rps:8.1f} req/s  p50 {s.p50_ms:8.1f} ms  errors {s.errors}"


async def soak(
    target: Target,
    load: Load,
    *,
    pid: int,
    upstream_pid: int,
    every_s: float,
    progress: Callable[[str], None],
) -> Soak:
    """``load`` (many streams, long) against ``target``, with the proxy's RSS sampled every ``every_s``."""
    done: list[Outcome] = []
    rss_before = rss_bytes(pid) / MIB
    cpu_before = _cpu_split(pid, upstream_pid)
    started = time.perf_counter()
    timeline: list[SoakPoint] = []
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            errors = sum(o.error is not None for o in done)
            point = SoakPoint(time.perf_counter() - started, rss_bytes(pid) / MIB, len(done) - errors, errors)
            timeline.append(point)
            if len(timeline) % max(1, round(10 / every_s)) == 0:
                progress(
                    f"  soak t={point.at_s:5.1f}s RSS {point.rss_mib:7.1f} MiB, {point.completed} streams"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

    watching = asyncio.create_task(watch())
    try:
        outcomes = await drive(target, load, on_outcome=done.append)
    finally:
        stop.set()
        await watching
    seconds = time.perf_counter() - started
    cpu = {k: v - cpu_before[k] for k, v in _cpu_split(pid, upstream_pid).items()}
    await asyncio.sleep(2.0)  # let the proxy finish its audit writes before the last reading
    return Soak(
        target=target.name,
        streams=load.concurrency,
        seconds=seconds,
        summary=summarize(outcomes, seconds),
        rss_before_mib=rss_before,
        rss_after_mib=rss_bytes(pid) / MIB,
        timeline=tuple(timeline),
        cpu_s=cpu,
    )


def _cpu_split(pid: int, upstream_pid: int) -> dict[str, float]:
    return {"proxy": cpu_seconds(pid), "upstream": cpu_seconds(upstream_pid), "clients": time.process_time()}
