"""The console's page frame: one stylesheet (inline: works offline), navigation, and escaping helpers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from urllib.parse import urlencode

STYLE = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0}
body{color:#1b1b1b;background:#f6f7f9}
header{background:#1d2733;color:#fff;padding:.6rem 1rem}
header{display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;align-items:center}
header a{color:#fff}
header .brand{font-weight:700;margin-right:auto}
header form{margin:0}
main{padding:1rem;max-width:1200px;margin:0 auto}
a{color:#0b5cad}
h1{font-size:1.35rem;margin:.2rem 0 1rem}
h2{font-size:1.1rem;margin:1.2rem 0 .5rem}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,420px),1fr));gap:1rem;margin-bottom:1rem}
.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:.8rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;background:#fff}
caption{text-align:left;font-weight:600;padding:.3rem 0}
th,td{border-bottom:1px solid #e3e6ea;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
form.filters{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:.5rem;align-items:end}
label{display:flex;flex-direction:column;font-size:.85rem;gap:.15rem}
input,select,button{font:inherit;padding:.3rem .4rem}
form.filters button{justify-self:start;padding:.35rem 1.2rem}
button{background:#0b5cad;color:#fff;border:0;border-radius:4px;cursor:pointer}
.error{background:#fde8e8;border:1px solid #e0a0a0;padding:.5rem;border-radius:4px}
.block{color:#a03000;font-weight:600}
.over{color:#a03000;font-weight:600}
pre{white-space:pre-wrap;word-break:break-word;background:#f1f1f1;padding:.5rem;border-radius:4px}
.muted{color:#5a6470}
.vh{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}
.pager{display:flex;gap:1rem;margin:.6rem 0;flex-wrap:wrap}
@media (max-width:600px){main{padding:.5rem}th,td{padding:.3rem}}
"""


def e(value: object) -> str:
    """``value`` as text safe inside HTML elements and quoted attributes."""
    return escape("" if value is None else str(value), quote=True)


def query_link(path: str, params: Mapping[str, str]) -> str:
    """``path`` with ``params`` as its query string (escaped for an attribute)."""
    query = urlencode({k: v for k, v in params.items() if v})
    return e(f"{path}?{query}" if query else path)


def page(title: str, body: str, *, signed_in: bool = True) -> str:
    """A whole HTML document: the frame, navigation when signed in, and ``body`` (already escaped)."""
    nav = ""
    if signed_in:
        nav = (
            '<nav aria-label="Console"><a href="/console/">Overview</a> · '
            '<a href="/console/decisions">Decisions</a></nav>'
            '<form method="post" action="/console/logout"><button type="submit">Sign out</button></form>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{e(title)} · crest-proxy console</title><style>{STYLE}</style></head><body>"
        f'<header><span class="brand">crest-proxy audit console</span>{nav}</header>'
        f"<main>{body}</main></body></html>"
    )


def table(
    caption: str, headers: Iterable[str], rows: Iterable[Iterable[str]], numeric: frozenset[int] = frozenset()
) -> str:
    """A table with a caption and ``<th scope="col">`` headers; cells are already-escaped HTML."""
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return (
        f'<div class="scroll"><table><caption>{e(caption)}</caption><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )
