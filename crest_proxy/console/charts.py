"""Charts as inline SVG strings, drawn on the server: no CDN, no script, readable offline (issue 17).

Every chart is ``role="img"`` with a ``<title>`` and a ``<desc>`` (what a screen reader announces) and
scales to its container (``viewBox``, width 100%). Every string that reaches the markup is escaped: labels
come from audit records, which hold attacker-chosen names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

WIDTH, HEIGHT = 460, 250
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 10, 10, 56
# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
ACTION_COLOURS = {"allow": "#009E73", "log": "#56B4E9", "redact": "#E69F00", "block": "#D55E00"}


def _open(ident: str, title: str, desc: str, height: int = HEIGHT) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'aria-labelledby="{ident}-t {ident}-d" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{ident}-t">{escape(title)}</title><desc id="{ident}-d">{escape(desc)}</desc>'
    )


def colour(key: str, index: int) -> str:
    """The colour of a series: fixed for actions, else the palette in order."""
    return ACTION_COLOURS.get(key, PALETTE[index % len(PALETTE)])


def _legend(keys: Sequence[str], y: int) -> str:
    parts, x = [], _LEFT
    for i, key in enumerate(keys):
        parts.append(
            f'<rect x="{x}" y="{y}" width="10" height="10" fill="{colour(key, i)}"/>'
            f'<text x="{x + 14}" y="{y + 9}" font-size="11">{escape(key[:24])}</text>'
        )
        x += 24 + 7 * min(len(key), 24)
    return "".join(parts)


def stacked_bars(ident: str, title: str, labels: Sequence[str], series: Mapping[str, Sequence[int]]) -> str:
    """Vertical bars, one per label, stacked by series (e.g. decisions per hour by action)."""
    totals = [sum(v[i] for v in series.values()) for i in range(len(labels))]
    top = max(totals, default=0) or 1
    desc = f"{sum(totals)} in all over {len(labels)} buckets; " + ", ".join(
        f"{k}: {sum(v)}" for k, v in series.items()
    )
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    step = plot_w / max(len(labels), 1)
    parts = [_open(ident, title, desc), _axis(top, plot_h)]
    for i, label in enumerate(labels):
        y = float(_TOP + plot_h)
        for j, (key, values) in enumerate(series.items()):
            h = values[i] / top * plot_h
            y -= h
            parts.append(
                f'<rect x="{_LEFT + i * step + 1:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" '
                f'height="{h:.1f}" fill="{colour(key, j)}"><title>{escape(label)} {escape(key)}: '
                f"{values[i]}</title></rect>"
            )
    parts.append(_x_labels(labels, step))
    parts.append(_legend(list(series), HEIGHT - 16))
    return "".join(parts) + "</svg>"


def _axis(top: float, plot_h: float, fmt: str = "{:g}") -> str:
    parts = []
    for frac in (0, 0.5, 1):
        y = _TOP + plot_h * (1 - frac)
        parts.append(
            f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ccc"/>'
            f'<text x="{_LEFT - 4}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"{escape(fmt.format(round(top * frac, 3)))}</text>"
        )
    return "".join(parts)


def _x_labels(labels: Sequence[str], step: float) -> str:
    if not labels:
        return ""
    every = max(1, len(labels) // 6)
    y = HEIGHT - _BOTTOM + 16
    return "".join(
        f'<text x="{_LEFT + i * step + step / 2:.1f}" y="{y}" font-size="10" text-anchor="middle">'
        f"{escape(_short(label))}</text>"
        for i, label in enumerate(labels)
        if i % every == 0
    )


def _short(label: str) -> str:
    """A bucket's axis label: ``07:00`` for an hour, ``07:28`` for a minute, ``11-22`` for a day."""
    date, _, time = label.partition("T")
    if not time:
        return date[5:] or date
    return time if ":" in time else f"{time}:00"


def horizontal_bars(ident: str, title: str, rows: Sequence[tuple[str, float, str]], top: float) -> str:
    """One horizontal bar per (label, value, text shown at its end); ``top`` is the full-width value."""
    bar_h, height = 20, 24 * max(len(rows), 1) + 8
    desc = "; ".join(f"{label}: {text}" for label, _, text in rows) or "no data"
    parts = [_open(ident, title, desc, height)]
    left, usable = 110, WIDTH - 110 - 100
    for i, (label, value, text) in enumerate(rows):
        y = 4 + i * 24
        w = 0 if top <= 0 else max(value / top * usable, 0)
        parts.append(
            f'<text x="{left - 6}" y="{y + 15}" font-size="12" text-anchor="end">{escape(label[:16])}</text>'
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{PALETTE[0]}"/>'
            f'<text x="{left + w + 6:.1f}" y="{y + 15}" font-size="12">{escape(text)}</text>'
        )
    return "".join(parts) + "</svg>"


def curves(
    ident: str,
    title: str,
    lines: Mapping[str, Sequence[tuple[float, float]]],
    x_label: str,
    y_label: str,
    marks: Sequence[tuple[float, float, str]] = (),
) -> str:
    """Lines on a unit square (PR and ROC curves): x and y in 0..1; ``marks`` are labelled points."""
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    desc = f"{y_label} against {x_label} for " + ", ".join(lines)
    desc += "".join(f"; {label} at ({x:.3f}, {y:.3f})" for x, y, label in marks)
    parts = [_open(ident, title, desc), _axis(1.0, plot_h)]
    for i, (name, points) in enumerate(lines.items()):
        coords = " ".join(f"{_LEFT + x * plot_w:.1f},{_TOP + (1 - y) * plot_h:.1f}" for x, y in points)
        parts.append(f'<polyline fill="none" stroke="{colour(name, i)}" stroke-width="2" points="{coords}"/>')
    for j, (x, y, label) in enumerate(marks):
        cx, cy = _LEFT + x * plot_w, _TOP + (1 - y) * plot_h
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="none" stroke="{PALETTE[j + 1]}" '
            'stroke-width="2">'
            f"<title>{escape(label)}</title></circle>"
            f'<text x="{cx - 8 if x > 0.5 else cx + 8:.1f}" y="{cy + 16 + 12 * j:.1f}" font-size="10" '
            f'text-anchor="{"end" if x > 0.5 else "start"}">'
            f"{escape(label)}</text>"
        )
    parts.append(
        f'<text x="{_LEFT + plot_w / 2:.0f}" y="{HEIGHT - _BOTTOM + 18}" font-size="11" '
        f'text-anchor="middle">{escape(x_label)} (0 to 1)</text>'
        f'<text x="12" y="{_TOP + plot_h / 2:.0f}" font-size="11" transform="rotate(-90 12 '
        f'{_TOP + plot_h / 2:.0f})" text-anchor="middle">{escape(y_label)}</text>'
    )
    parts.append(_legend(list(lines), HEIGHT - 16))
    return "".join(parts) + "</svg>"
