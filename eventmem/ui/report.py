"""``eventmem report``: a session's viewer pages as one self-contained HTML file.

The file holds the session's overview (figures, verify status, the token chart), its
buffer at the last position, and its whole timeline, with the stylesheet and script
inlined under a Content-Security-Policy that admits only those two blocks: it opens
offline, from anywhere, and loads nothing. It needs no extra (no Starlette).
"""

from __future__ import annotations

from eventmem.api import Store
from eventmem.ui import data, pages
from eventmem.ui.html import layout

__all__ = ["render_report"]


async def render_report(store: Store, session_id: str, *, shown: str) -> str:
    """The report of ``session_id`` as HTML; ``shown`` names the store (masked)."""
    version = await data.find_session(store, session_id)
    links = pages.ReportLinks(version)
    series = await data.token_series(store, session_id)
    report = await data.verify_session(store, session_id)
    view = await data.buffer_at(store, session_id, None)
    lineage = await data.lineage(store, session_id)
    timeline = await data.timeline_page(store, session_id, 1, version)
    buffer = pages.buffer_page(view, None, links, size=max(len(view.entries), 1))
    body = (
        pages.session_overview(session_id, version, series, report, links, lineage, view.erased)
        + f'<section class="report" id="buffer">{buffer}</section>'
        + '<section class="report" id="timeline"><h2>Timeline</h2>'
        + pages.event_rows(timeline.events, links, session_id=session_id, rewound=timeline.rewound)
        + "</section>"
    )
    return layout(f"report of {session_id}", body, store=shown, inline=True)
