"""Markdown tables of the load benchmark: pass-through, streaming, overhead ratio, micro-batching, soak."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from load_clients import Summary
from load_runs import Cell, Soak, SoakPoint

DIRECT = "direct"
TARGET_RATIO = 1 / 3
# A column: its header, and its text for one cell given the direct cell (the same load, no proxy).
Column = tuple[str, Callable[[Cell, Summary | None], str]]


def _ms(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.1f}"


def _minus(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return None
    return a - b


def _added(mine: Summary, base: Summary | None, field: str) -> str:
    """``field`` of ``mine`` minus the same field of ``base`` (the direct run), signed."""
    diff = None if base is None else _minus(getattr(mine, field), getattr(base, field))
    return "–" if diff is None else f"{diff:+.1f}"


def _errors(summary: Summary) -> str:
    kinds = ", ".join(f"{k}: {n}" for k, n in summary.error_kinds.items())
    return f"{summary.errors}" + (f" ({kinds})" if kinds else "")


def _find(cells: Sequence[Cell], target: str, like: Cell) -> Cell | None:
    same = (
        c for c in cells if (c.target, c.concurrency, c.stream) == (target, like.concurrency, like.stream)
    )
    return next(same, None)


def _render(cells: Sequence[Cell], columns: Sequence[Column]) -> str:
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for c in cells:
        direct = _find(cells, DIRECT, c)
        base = direct.summary if direct else None
        lines.append("| " + " | ".join(text(c, base) for _, text in columns) + " |")
    return "\n".join(lines)


_HEAD: list[Column] = [("target", lambda c, d: c.target), ("clients", lambda c, d: str(c.concurrency))]
_TAIL: list[Column] = [
    ("proxy CPU ms/req", lambda c, d: _ms(c.cpu_ms_per_request)),
    ("peak RSS MiB", lambda c, d: _ms(c.peak_rss_mib)),
    ("errors", lambda c, d: _errors(c.summary)),
]


def passthrough_table(cells: Sequence[Cell]) -> str:
    """Non-streamed requests: latency, added latency over direct, throughput, proxy CPU and RSS."""
    columns: list[Column] = [
        *_HEAD,
        ("req/s", lambda c, d: f"{c.summary.throughput_rps:.0f}"),
        ("p50 ms", lambda c, d: _ms(c.summary.p50_ms)),
        ("p95 ms", lambda c, d: _ms(c.summary.p95_ms)),
        ("p99 ms", lambda c, d: _ms(c.summary.p99_ms)),
        ("added p50", lambda c, d: _added(c.summary, d, "p50_ms")),
        ("added p95", lambda c, d: _added(c.summary, d, "p95_ms")),
        ("added p99", lambda c, d: _added(c.summary, d, "p99_ms")),
        *_TAIL,
    ]
    return _render(cells, columns)


def streaming_table(cells: Sequence[Cell]) -> str:
    """Streamed requests: time to first content and to [DONE], each with what the proxy added."""
    columns: list[Column] = [
        *_HEAD,
        ("streams/s", lambda c, d: f"{c.summary.throughput_rps:.1f}"),
        ("TTFT p50", lambda c, d: _ms(c.summary.ttft_p50_ms)),
        ("TTFT p99", lambda c, d: _ms(c.summary.ttft_p99_ms)),
        ("added TTFT p50", lambda c, d: _added(c.summary, d, "ttft_p50_ms")),
        ("added TTFT p99", lambda c, d: _added(c.summary, d, "ttft_p99_ms")),
        ("total p50", lambda c, d: _ms(c.summary.p50_ms)),
        ("total p99", lambda c, d: _ms(c.summary.p99_ms)),
        ("added total p50", lambda c, d: _added(c.summary, d, "p50_ms")),
        ("added total p95", lambda c, d: _added(c.summary, d, "p95_ms")),
        ("added total p99", lambda c, d: _added(c.summary, d, "p99_ms")),
        *_TAIL,
    ]
    return _render(cells, columns)


def ratio_table(cells: Sequence[Cell], litellm: str, proxies: Sequence[str]) -> str:
    """Each crest variant's pass-through overhead ÷ LiteLLM's: added latency and proxy CPU per request.

    For streams "added" is the whole stream's (through [DONE]); TTFT is shown apart, because crest's
    hold-back keeps the first sentence until it is screened — the guardrail's work, not pass-through.
    """
    header = ["mode", "clients", "proxy", "added p50 ÷ LiteLLM's", "added p95 ÷ LiteLLM's",
              "added TTFT p50 ÷ LiteLLM's", "CPU/req ÷ LiteLLM's", "≤ 1/3 (p50 and CPU)?"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in cells:
        other, direct = _find(cells, litellm, c), _find(cells, DIRECT, c)
        if c.target in proxies and other is not None and direct is not None:
            lines.append("| " + " | ".join(_ratio_row(c, other, direct)) + " |")
    return "\n".join(lines)


def _ratio_row(mine: Cell, theirs: Cell, direct: Cell) -> list[str]:
    def over(pick: Callable[[Summary], float | None]) -> float | None:
        base = pick(direct.summary)
        return _ratio(_minus(pick(mine.summary), base), _minus(pick(theirs.summary), base))

    p50, p95 = over(lambda s: s.p50_ms), over(lambda s: s.p95_ms)
    ttft = over(lambda s: s.ttft_p50_ms)
    cpu = _ratio(mine.cpu_ms_per_request, theirs.cpu_ms_per_request)
    met = "yes" if all(r is not None and r <= TARGET_RATIO for r in (p50, cpu)) else "no"
    mode = "stream" if mine.stream else "non-stream"
    return [mode, str(mine.concurrency), mine.target, _r(p50), _r(p95), _r(ttft), _r(cpu), met]


def regression_table(cells: Sequence[Cell], new: str, old: str, limit: float) -> str:
    """``new``'s pass-through overhead against ``old``'s (two builds of the same proxy, same run): ms and ÷.

    The verdict reads added p50 and proxy CPU per request; for streams, added TTFT p50 instead of the added
    total, which the upstream's pacing dominates (20 ms a piece: a few ms of proxy time are in the noise).
    """
    header = ["mode", "clients", "added p50 ms (new / old)", "÷", "added TTFT p50 ms (new / old)", "÷",
              "CPU ms/req (new / old)", "÷", "peak RSS MiB (new / old)", f"≤ {limit:.2f}?"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in cells:
        other, direct = _find(cells, old, c), _find(cells, DIRECT, c)
        if c.target == new and other is not None and direct is not None:
            lines.append("| " + " | ".join(_regression_row(c, other, direct, limit)) + " |")
    return "\n".join(lines)


def _regression_row(new: Cell, old: Cell, direct: Cell, limit: float) -> list[str]:
    def pair(pick: Callable[[Summary], float | None]) -> tuple[str, float | None]:
        base = pick(direct.summary)
        mine, theirs = _minus(pick(new.summary), base), _minus(pick(old.summary), base)
        return f"{_ms(mine)} / {_ms(theirs)}", _ratio(mine, theirs)

    (p50_ms, p50), (ttft_ms, ttft) = pair(lambda s: s.p50_ms), pair(lambda s: s.ttft_p50_ms)
    cpu = _ratio(new.cpu_ms_per_request, old.cpu_ms_per_request)
    cpu_ms = f"{new.cpu_ms_per_request or math.nan:.2f} / {old.cpu_ms_per_request or math.nan:.2f}"
    rss = f"{_ms(new.peak_rss_mib)} / {_ms(old.peak_rss_mib)}"
    latency = ttft if new.stream else p50
    met = "yes" if all(r is not None and r <= limit for r in (latency, cpu)) else "no"
    mode = "stream" if new.stream else "non-stream"
    return [mode, str(new.concurrency), p50_ms, _r(p50), ttft_ms if new.stream else "–",
            _r(ttft) if new.stream else "–", cpu_ms, _r(cpu), rss, met]  # fmt: skip


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b <= 0:
        return None
    return a / b


def _r(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def batching_table(cells: Sequence[Cell]) -> str:
    """Micro-batching on vs off with a CREST-shaped model: throughput and latency under concurrency."""
    columns: list[Column] = [
        ("crest-proxy", lambda c, d: c.target),
        ("clients", lambda c, d: str(c.concurrency)),
        ("req/s", lambda c, d: f"{c.summary.throughput_rps:.1f}"),
        ("p50 ms", lambda c, d: _ms(c.summary.p50_ms)),
        ("p95 ms", lambda c, d: _ms(c.summary.p95_ms)),
        ("p99 ms", lambda c, d: _ms(c.summary.p99_ms)),
        *_TAIL,
    ]
    return _render(cells, columns)


def soak_table(result: Soak) -> str:
    """The soak: streams completed, errors, latency, and the proxy's RSS over time."""
    s = result.summary
    marks = [_at(result.timeline, result.seconds * f) for f in (0.1, 0.5, 1.0)]
    first, last = marks[0], marks[-1]
    growth = f"{last.rss_mib - first.rss_mib:+.1f}" if first and last else "–"
    cells = {
        "proxy": result.target,
        "streams": str(result.streams),
        "seconds": f"{result.seconds:.0f}",
        "completed": str(s.requests),
        "streams/s": f"{s.throughput_rps:.1f}",
        "errors": _errors(s),
        "TTFT p50": _ms(s.ttft_p50_ms),
        "TTFT p99": _ms(s.ttft_p99_ms),
        "total p50": _ms(s.p50_ms),
        "total p99": _ms(s.p99_ms),
        "RSS MiB idle before": _ms(result.rss_before_mib),
        "@10%": _ms(first.rss_mib if first else None),
        "@50%": _ms(marks[1].rss_mib if marks[1] else None),
        "@end": _ms(last.rss_mib if last else None),
        "growth 10%→end": growth,
        "idle after": _ms(result.rss_after_mib),
    }
    rows = [
        "| " + " | ".join(cells) + " |",
        "|" + "---|" * len(cells),
        "| " + " | ".join(cells.values()) + " |",
    ]
    return "\n".join(rows)


def _at(timeline: Sequence[SoakPoint], seconds: float) -> SoakPoint | None:
    return min(timeline, key=lambda p: abs(p.at_s - seconds), default=None)


def soak_lines(result: Soak, every_s: float = 10.0) -> str:
    """The soak's RSS every ``every_s`` seconds, and the CPU time each process used during it."""
    points, next_at = [], 0.0
    for p in result.timeline:
        if p.at_s >= next_at:
            points.append(f"{p.at_s:.0f}s {p.rss_mib:.0f}")
            next_at += every_s
    cpu = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.cpu_s.items())
    per_stream = result.cpu_s.get("proxy", 0.0) * 1e3 / max(1, result.summary.requests)
    return (
        f"RSS MiB over the soak: {', '.join(points)}.\n\n"
        f"CPU time used during the soak ({result.seconds:.0f} s wall): {cpu}; "
        f"proxy CPU per stream {per_stream:.1f} ms."
    )
