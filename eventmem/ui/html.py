"""HTML building blocks: escaping, links, the page layout, and the assets it uses.

Every piece of text from the store (session ids, message text, tool arguments, model
names) reaches a page through `esc` or `attr`: message text is whatever an agent was
sent, so it is treated as hostile. Pages hold no inline script or style; the layout
links the package's own ``static/viewer.css`` and ``static/viewer.js``, or, for a
self-contained report, inlines them under a Content-Security-Policy that admits exactly
those two blocks by hash.
"""

from __future__ import annotations

import base64
import hashlib
import html
import urllib.parse
from datetime import datetime, timezone
from importlib import resources

__all__ = [
    "ASSETS",
    "CSP",
    "asset",
    "attr",
    "esc",
    "layout",
    "link",
    "report_csp",
    "url",
    "when",
]

ASSETS = {
    "viewer.css": "text/css; charset=utf-8",
    "viewer.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
"""The files under ``eventmem/ui/static/`` and their content types: all the viewer serves
besides its pages."""

CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""The Content-Security-Policy of every response of the server: its own stylesheet and
script only, no inline code, no other origin."""


def asset(name: str) -> str:
    """The text of the static file ``name`` (one of `ASSETS`)."""
    if name not in ASSETS:
        raise KeyError(name)
    return (
        resources.files("eventmem.ui").joinpath("static").joinpath(name).read_text(encoding="utf-8")
    )


def esc(value: object) -> str:
    """``value`` as HTML text: ``<``, ``>``, ``&`` and quotes escaped."""
    return html.escape(str(value), quote=True)


def attr(value: object) -> str:
    """``value`` as a double-quoted attribute value (quotes included)."""
    return f'"{esc(value)}"'


def url(path: str, **query: object) -> str:
    """A link to ``path`` with ``query`` (None values left out), percent-encoded."""
    pairs = [(k, str(v)) for k, v in query.items() if v is not None]
    return path + ("?" + urllib.parse.urlencode(pairs) if pairs else "")


def link(href: str, text: str, *, cls: str | None = None) -> str:
    """An ``<a>`` to ``href`` (already a URL) showing ``text`` (escaped here)."""
    extra = f" class={attr(cls)}" if cls else ""
    return f"<a href={attr(href)}{extra}>{esc(text)}</a>"


def when(moment: datetime | int | None) -> str:
    """A stored time as shown: UTC to the second, a raw number as is, ``-`` for none."""
    if moment is None:
        return "-"
    if isinstance(moment, int):
        return str(moment)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def report_csp(style: str, script: str) -> str:
    """The policy of a self-contained report: exactly its one inline style and script."""
    return (
        f"default-src 'none'; style-src '{_sha256(style)}'; script-src '{_sha256(script)}'; "
        "base-uri 'none'; form-action 'none'"
    )


def layout(title: str, body: str, *, store: str, inline: bool = False) -> str:
    """A whole page: ``title`` (text), ``body`` (HTML), the store's name (text, a URL
    already masked) in the header. ``inline`` puts the assets in the page (a report)."""
    if inline:
        style, script = asset("viewer.css"), asset("viewer.js")
        head = (
            f'<meta http-equiv="Content-Security-Policy" content={attr(report_csp(style, script))}>'
            f"<style>{style}</style>"
        )
        tail = f"<script>{script}</script>"
        home = ""
    else:
        head = (
            '<link rel="stylesheet" href="/static/viewer.css">'
            '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        )
        tail = '<script src="/static/viewer.js" defer></script>'
        home = '<a href="/" class="home">sessions</a>'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)} - eventmem</title>{head}</head>"
        f'<body><header><span class="brand">eventmem</span>{home}'
        f'<span class="store" title="the store (read-only)">{esc(store)} '
        '<span class="ro">read-only</span></span></header>'
        f"<main>{body}</main>{tail}</body></html>\n"
    )
