"""The console's pages as HTML strings: login, overview, decisions, one request. Everything is escaped."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from crest_proxy.audit.query import Found
from crest_proxy.console import charts
from crest_proxy.console.filters import ACTIONS, DIRECTIONS, PAGE_SIZE, Page
from crest_proxy.console.layout import e, page, query_link, table
from crest_proxy.console.overview import Overview

_FIELDS = (
    ("since", "From (ISO time or 24h)", "text"), ("until", "Until", "text"), ("tenant", "Tenant", "text"),
    ("language", "Language", "text"), ("rule", "Rule", "text"), ("request_id", "Request id", "text"),
    ("min_score", "Score at least", "number"), ("max_score", "Score at most", "number"),
)  # fmt: skip


def login_page(error: str | None = None) -> str:
    """The sign-in form (POST only, so the key never lands in a URL or a log)."""
    problem = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    body = (
        f"<h1>Sign in</h1>{problem}"
        '<form method="post" action="/console/login" class="card" style="max-width:420px">'
        '<label for="key">Admin key<input id="key" name="key" type="password" '
        'autocomplete="current-password" '
        'required autofocus></label><p><button type="submit">Sign in</button></p></form>'
    )
    return page("Sign in", body, signed_in=False)


def overview_page(view: Overview, since: str) -> str:
    """Charts and tables of the newest decisions."""
    capped = f" (the newest {view.records:,} records)" if view.capped else ""
    rates = [(r.language, r.rate, f"{r.rate:.1%} of {r.decisions}") for r in view.block_rates]
    rules = [(name, float(n), str(n)) for name, n in view.top_rules]
    top_rule = max((n for _, n, _ in rules), default=0.0)
    latency = [(k, v, f"{v:.1f} ms") for k, v in view.latency_ms.items()]
    body = (
        f"<h1>Overview</h1>{_since_form(since)}<p>{view.records:,} decisions since {e(since)}{e(capped)}, "
        f"in buckets of one {e(view.bucket)}.</p>"
        '<div class="grid">'
        + _card("Decisions by action", charts.stacked_bars("by-action", "Decisions by action over time",
                view.by_action.buckets, view.by_action.counts))
        + _card("Decisions by tenant", charts.stacked_bars("by-tenant", "Decisions by tenant over time",
                view.by_tenant.buckets, view.by_tenant.counts))
        + _card("Block rate by language",
                charts.horizontal_bars("block-rate", "Block rate by language", rates, 1.0))
        + _card("Top rules", charts.horizontal_bars("top-rules", "Rules matched most often", rules, top_rule))
        + _card("Classifier latency", charts.horizontal_bars("latency", "Screening latency percentiles",
                latency, max((v for _, v, _ in latency), default=0.0)))
        + "</div>"
        + table("Block rate by language", ["Language", "Decisions", "Blocked", "Rate"],
                [[_filter_link({"language": r.language}, r.language), str(r.decisions), str(r.blocked),
                  f"{r.rate:.1%}"] for r in view.block_rates], numeric=frozenset({1, 2, 3}))
    )  # fmt: skip
    return page("Overview", body)


def overview_error(since: str, error: str) -> str:
    """The overview's form again, saying what was wrong with ``since``."""
    body = f'<h1>Overview</h1>{_since_form(since)}<p class="error" role="alert">{e(error)}</p>'
    return page("Overview", body)


def _card(heading: str, chart: str) -> str:
    return f'<section class="card"><h2>{e(heading)}</h2>{chart}</section>'


def _since_form(since: str) -> str:
    return (
        '<form method="get" action="/console/" class="filters"><label for="ov-since">Since (ISO time or 15m, '
        f'24h, 7d)<input id="ov-since" name="since" value="{e(since)}"></label>'
        '<button type="submit">Show</button></form>'
    )


def _filter_link(params: Mapping[str, str], text: str) -> str:
    return f'<a href="{query_link("/console/decisions", params)}">{e(text)}</a>'


def decisions_page(raw: Mapping[str, str], result: Page | None, error: str | None, cursor: str | None) -> str:
    """The filter form, the page of records, links to the next page and to exports."""
    problem = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    rows = [] if result is None else [_row(r) for r in result.records]
    pager = _pager(raw, result, cursor) + _partial(result)
    headers = ["Time (UTC)", "Request", "Tenant", "Direction", "Action", "Score / threshold", "Language",
               "Rules", "Model", "Latency ms"]  # fmt: skip
    body = (
        f"<h1>Decisions</h1>{_filter_form(raw)}{problem}{pager}"
        + table("Decisions, newest first", headers, rows, numeric=frozenset({9}))
        + (f"<p>{pager}</p>" if rows else "<p>No decisions match these filters.</p>")
    )
    return page("Decisions", body)


def _partial(result: Page | None) -> str:
    """A note when the page stopped at its read budget before it was full."""
    if result is None or not result.next_cursor or len(result.records) >= PAGE_SIZE:
        return ""
    searched = f"{result.scanned_bytes / 1e6:,.0f} MB of log" if result.scanned_bytes else ""
    searched = searched or f"{result.scanned_rows:,} records"
    return (
        f'<p class="muted" role="status">Searched {searched} without filling this page; '
        "“Older” searches further back.</p>"
    )


def _filter_form(raw: Mapping[str, str]) -> str:
    inputs = "".join(
        f'<label for="f-{name}">{e(text)}<input id="f-{name}" name="{name}" type="{kind}" '
        f'{"step=0.01 min=0 max=1 " if kind == "number" else ""}value="{e(raw.get(name, ""))}"></label>'
        for name, text, kind in _FIELDS
    )
    selects = "".join(
        _select(name, text, options, raw.get(name, ""))
        for name, text, options in (("action", "Action", ACTIONS), ("direction", "Direction", DIRECTIONS))
    )
    return (
        '<form method="get" action="/console/decisions" class="filters" aria-label="Filters">'
        f"{inputs}{selects}"
        '<button type="submit">Filter</button></form>'
    )


def _select(name: str, text: str, options: Sequence[str], chosen: str) -> str:
    items = "".join(
        f'<option value="{e(o)}"{" selected" if o == chosen else ""}>{e(o or "any")}</option>'
        for o in ("", *options)
    )
    return f'<label for="f-{name}">{e(text)}<select id="f-{name}" name="{name}">{items}</select></label>'


def _pager(raw: Mapping[str, str], result: Page | None, cursor: str | None) -> str:
    links = []
    if cursor:
        links.append(f'<a href="{query_link("/console/decisions", raw)}">Newest</a>')
    if result is not None and result.next_cursor:
        links.append(
            f'<a href="{query_link("/console/decisions", {**raw, "cursor": result.next_cursor})}" '
            'rel="next">Older</a>'
        )
    links.append(f'<a href="{query_link("/console/export.csv", raw)}">Export CSV</a>')
    links.append(f'<a href="{query_link("/console/export.jsonl", raw)}">Export JSONL</a>')
    return f'<nav class="pager" aria-label="Pages and exports">{" ".join(links)}</nav>'


def _row(r: Mapping[str, Any]) -> list[str]:
    request = str(r.get("request_id") or "")
    link = f'<a href="/console/requests/{e(_path_part(request))}">{e(request[:16])}</a>'
    action = str(r.get("action") or "")
    return [
        _time(r.get("ts")), link, e(r.get("tenant")), e(r.get("direction")),
        _action(action),
        f"{_num(r.get('score'))} / {_num(r.get('threshold'))}", e(r.get("language") or ""),
        e(", ".join(str(x) for x in r.get("rules") or ())), e(r.get("model") or ""),
        _num(r.get("latency_ms"), 1),
    ]  # fmt: skip


def _action(action: object) -> str:
    """An action, set off when it is a block."""
    return f'<span class="{"block" if action == "block" else ""}">{e(action)}</span>'


def _time(ts: object) -> str:
    """``2026-11-22 07:28:54`` for the table (the full timestamp in its tooltip)."""
    text = str(ts or "")
    return f'<time datetime="{e(text)}" title="{e(text)}">{e(text[:19].replace("T", " "))}</time>'


def _path_part(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _num(value: Any, digits: int = 3) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{digits}f}"
    return "–"


def request_page(request_id: str, found: Sequence[Found]) -> str:
    """Every record of one request: scores against thresholds, windows, rules, upstream, chain."""
    if not found:
        body = f"<h1>Request {e(request_id)}</h1><p>No decision records carry this request id.</p>"
        return page("Request", body)
    sections = "".join(_record_section(i, item) for i, item in enumerate(found, start=1))
    body = (
        f"<h1>Request <code>{e(request_id)}</code></h1>"
        f"<p>{len(found)} decision records, oldest first.</p>{sections}"
    )
    return page(f"Request {request_id}", body)


def _record_section(index: int, item: Found) -> str:
    r = item.record
    score, threshold = r.get("score"), r.get("threshold")
    over = isinstance(score, (int, float)) and isinstance(threshold, (int, float)) and score >= threshold
    verdict = "at or over the threshold" if over else "under the threshold"
    facts = [
        ("Time (UTC)", e(r.get("ts"))), ("Tenant", e(r.get("tenant"))), ("Endpoint", e(r.get("endpoint"))),
        ("Model", e(r.get("model"))), ("Direction", e(r.get("direction"))),
        ("Action", _action(r.get("action"))),
        ("Score", f'<span class="{"over" if over else ""}">{_num(score, 6)}</span> vs threshold '
                  f"{_num(threshold)} ({verdict})" if score is not None else "not scored"),
        ("Windows", e(r.get("windows"))), ("Texts", e(r.get("texts"))),
        ("Language", e(r.get("language") or "unknown")),
        ("Rules", e(", ".join(str(x) for x in r.get("rules") or ()) or "none")),
        ("Upstream status", e(r.get("upstream_status") if r.get("upstream_status") is not None else "none")),
        ("Latency", f"{_num(r.get('latency_ms'), 1)} ms"), ("Error", e(r.get("error") or "none")),
        ("Client request id", e(r.get("client_request_id") or "none")),
        ("Content SHA-256", e(r.get("text_sha256") or "not kept")), ("Chain", _chain_status(item)),
    ]  # fmt: skip
    extra = r.get("extra") or {}
    if isinstance(extra, dict):
        facts += [(f"extra.{k}", e(v)) for k, v in extra.items()]
    rows = "".join(f'<tr><th scope="row">{e(k)}</th><td>{v}</td></tr>' for k, v in facts)
    content = r.get("content")
    kept = (
        f"<h3>Kept content</h3><pre>{e(content)}</pre>"
        if content is not None
        else '<p class="muted">No text kept (the tenant\'s audit.content is none or hash).</p>'
    )
    caption = f"Record {index}: {r.get('direction')} {r.get('action')}"
    return (
        f'<section class="card"><h2>{e(caption)}</h2>'
        f'<div class="scroll"><table><caption class="vh">{e(caption)}</caption>'
        f"<tbody>{rows}</tbody></table></div>{kept}</section>"
    )


def _chain_status(item: Found) -> str:
    """Whether the line's own hash matches its bytes (the whole chain: ``crest-proxy audit verify``)."""
    line, wanted = item.line, item.record.get("hash")
    cut = line.rfind(b',"hash":"')
    if not isinstance(wanted, str) or cut < 0:
        return "not chained"
    ok = hashlib.sha256(line[:cut] + b"}").hexdigest() == wanted
    prev = str(item.record.get("prev_hash", ""))[:12]
    status = "line hash matches" if ok else "LINE HASH MISMATCH: the line was changed after it was written"
    whole = '<span class="muted">(whole chain: crest-proxy audit verify)</span>'
    return f"{e(status)}; hash {e(wanted[:12])}…, previous {e(prev)}… {whole}"
