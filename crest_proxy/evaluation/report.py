"""What ``crest-proxy eval`` writes: metrics.json, thresholds.yaml, report.html, and the stdout table."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from crest_proxy.console import charts
from crest_proxy.console.layout import STYLE
from crest_proxy.evaluation import metrics
from crest_proxy.evaluation.summary import Evaluation, GroupMetrics

_BINS = 20


def write_all(result: Evaluation, out: Path, *, source: str) -> list[Path]:
    """Write the three files into ``out`` (created if needed); their paths."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "metrics.json": json.dumps(metrics_json(result, source), indent=2) + "\n",
        "thresholds.yaml": thresholds_yaml(result, source),
        "report.html": report_html(result, source),
    }
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    return [out / name for name in files]


def metrics_json(result: Evaluation, source: str) -> dict[str, object]:
    """``{"overall": {...}, "languages": {lang: {...}}, "recommended": {...}, "not_tuned": {...}}``."""
    return {
        "data": source,
        "overall": result.overall.as_json(),
        "languages": {lang: g.as_json() for lang, g in result.languages.items()},
        "recommended": {
            lang: {
                "threshold": r.threshold,
                "method": r.method,
                "f1": round(r.confusion.f1, 6),
                "fpr": round(r.confusion.fpr, 6),
                "recall": round(r.confusion.recall, 6),
            }
            for lang, r in result.recommended.items()
        },  # fmt: skip
        "not_tuned": dict(result.not_tuned),
        "target_fpr": result.target_fpr,
    }


def thresholds_yaml(result: Evaluation, source: str) -> str:
    """A ``languages:`` block for a policy file, one recommended threshold per tuned language."""
    method = (
        "max F1" if result.target_fpr is None else f"the lowest threshold with FPR <= {result.target_fpr:g}"
    )
    lines = [
        f"# Recommended per-language thresholds from `crest-proxy eval` on {_comment(source)} ({method}).",
        "# Paste into a tenant's policy (replacing its `languages:`); each applies to both directions.",
        "languages:" + ("" if result.recommended else " {}"),
    ]
    for lang, rec in result.recommended.items():
        group = result.languages[lang]
        c = rec.confusion
        lines += [
            f"  {lang}:  # n={group.n} ({group.positives} unsafe, {group.negatives} safe): "
            f"F1 {c.f1:.3f}, recall {c.recall:.3f}, FPR {c.fpr:.3f} here",
            f"    threshold: {rec.threshold}",
        ]
    if result.not_tuned:
        lines.append("# Not tuned (the policy's thresholds apply):")
        lines += [
            f"#   {_comment(lang)}: n={result.languages[lang].n}, {why}"
            for lang, why in result.not_tuned.items()
        ]
    return "\n".join(lines) + "\n"


def _comment(text: str) -> str:
    return text.replace("\n", " ").replace("\r", " ")


def table(result: Evaluation) -> str:
    """The compact per-language table printed at the end of stdout."""
    columns = (
        ("n", 7),
        ("unsafe", 8),
        ("prec", 7),
        ("recall", 7),
        ("f1", 7),
        ("fpr", 7),
        ("auc", 7),
        ("thr", 7),
    )
    header = f"{'lang':<8}" + "".join(f"{name:>{width}}" for name, width in columns) + "  recommended"
    rows = [header]
    for lang, g in [*result.languages.items(), ("overall", result.overall)]:
        rec = result.recommended.get(lang)
        advice = f"{rec.threshold:g} ({rec.method})" if rec else result.not_tuned.get(lang, "")
        rows.append(_row(lang, g) + "  " + advice)
    return "\n".join(rows)


def _row(lang: str, g: GroupMetrics) -> str:
    c = g.confusion
    auc = "-" if g.auc is None else f"{g.auc:.3f}"
    thr = "-" if g.threshold is None else f"{g.threshold:g}"
    return (
        f"{lang[:8]:<8}{g.n:>7}{g.positives:>8}{c.precision:>7.3f}{c.recall:>7.3f}{c.f1:>7.3f}{c.fpr:>7.3f}"
        f"{auc:>7}{thr:>7}"
    )


def report_html(result: Evaluation, source: str) -> str:
    """One self-contained page: a summary table, and per language PR, ROC and score histograms (SVG)."""
    sections = "".join(_language_section(i, lang, result) for i, lang in enumerate(result.languages))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>crest-proxy evaluation of {escape(source)}</title><style>{STYLE}</style></head><body>"
        f'<header><span class="brand">crest-proxy evaluation</span></header><main>'
        f"<h1>Evaluation of <code>{escape(source)}</code></h1>{_summary_table(result)}{sections}"
        "</main></body></html>"
    )


def _summary_table(result: Evaluation) -> str:
    head = "".join(
        f'<th scope="col">{h}</th>'
        for h in (
            "Language",
            "n",
            "Unsafe",
            "Precision",
            "Recall",
            "F1",
            "FPR",
            "AUC",
            "Policy threshold",
            "Recommended",
        )
    )
    rows = []
    for lang, g in [*result.languages.items(), ("overall", result.overall)]:
        c, rec = g.confusion, result.recommended.get(lang)
        advice = f"{rec.threshold:g} ({rec.method})" if rec else result.not_tuned.get(lang, "")
        cells = [g.n, g.positives, f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}", f"{c.fpr:.3f}",
                 "–" if g.auc is None else f"{g.auc:.3f}",
                 "–" if g.threshold is None else f"{g.threshold:g}"]  # fmt: skip
        body = "".join(f'<td class="num">{escape(str(v))}</td>' for v in cells)
        rows.append(f'<tr><th scope="row">{escape(lang)}</th>{body}<td>{escape(advice)}</td></tr>')
    return (
        '<div class="scroll"><table><caption>Metrics at the policy\'s thresholds, per language</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _operating_points(lang: str, result: Evaluation) -> list[tuple[str, metrics.Confusion]]:
    """Where the policy's threshold, and the recommended one, sit on the curves."""
    group = result.languages[lang]
    points = [(f"policy {group.threshold:g}", group.confusion)]
    if (rec := result.recommended.get(lang)) is not None:
        points.append((f"recommended {rec.threshold:g}", rec.confusion))
    return points


def _language_section(index: int, lang: str, result: Evaluation) -> str:
    scores, labels = result.scores[lang]
    ident = f"l{index}"
    points = _operating_points(lang, result)
    pr_line = {lang: metrics.pr_points(scores, labels)}
    pr = charts.curves(f"{ident}-pr", f"Precision-recall, {lang}", pr_line, "Recall", "Precision",
                       [(c.recall, c.precision, name) for name, c in points])  # fmt: skip
    roc_line = {lang: [*metrics.roc_points(scores, labels), (1.0, 1.0)]}
    roc = charts.curves(f"{ident}-roc", f"ROC, {lang}", roc_line, "False-positive rate", "True-positive rate",
                        [(c.fpr, c.recall, name) for name, c in points])  # fmt: skip
    safe = metrics.histogram([s for s, u in zip(scores, labels, strict=True) if not u], _BINS)
    unsafe = metrics.histogram([s for s, u in zip(scores, labels, strict=True) if u], _BINS)
    bins = [f"{i / _BINS:.2f}" for i in range(_BINS)]
    hist = charts.stacked_bars(
        f"{ident}-hist", f"Score histogram, {lang}", bins, {"safe": safe, "unsafe": unsafe}
    )
    cards = "".join(
        f'<section class="card"><h3>{escape(title)}</h3>{svg}</section>'
        for title, svg in (("Precision-recall", pr), ("ROC", roc), ("Scores by label", hist))
    )
    return f'<h2 id="lang-{escape(lang)}">{escape(lang)}</h2><div class="grid">{cards}</div>'
