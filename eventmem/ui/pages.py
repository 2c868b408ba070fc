"""The viewer's pages as HTML, from what `eventmem.ui.data` read.

Each ``*_page`` function returns the ``<main>`` content of one page; `eventmem.ui.html`
wraps it in the layout. Links go through a `Links`: the server's `Links` points at its
routes, a report's (`ReportLinks`) at anchors within the one file.
"""

from __future__ import annotations

import msgspec

from eventmem.audit import VerifyReport
from eventmem.events import (
    CheckpointSaved,
    CheckpointsDeleted,
    CheckpointWritesSaved,
    ContentErased,
    Event,
    MemoryCleared,
    MessagesAppended,
    MessagesRetracted,
    SessionErased,
    SessionForked,
    SessionSealed,
    StepRecorded,
    StoredEvent,
    SummaryRecorded,
    TurnSaved,
    ViewRewound,
)
from eventmem.messages import Message
from eventmem.rules import stored_time
from eventmem.timeline import event_tokens
from eventmem.ui.chart import token_chart
from eventmem.ui.data import (
    BufferAt,
    Entry,
    Lineage,
    SessionPage,
    TimelinePage,
    TokenPoint,
    ViewDiff,
)
from eventmem.ui.html import attr, esc, link, url, when

__all__ = [
    "BUFFER_PAGE",
    "SESSION_COLUMNS",
    "TIMELINE_PAGE",
    "Links",
    "ReportLinks",
    "buffer_page",
    "diff_page",
    "error_page",
    "session_overview",
    "sessions_page",
    "timeline_page",
]

TIMELINE_PAGE = 100
"""Events per timeline page."""
BUFFER_PAGE = 200
"""Messages per page of the buffer view."""
SESSION_COLUMNS = (
    ("id", "session"),
    ("events", "events"),
    ("created", "first"),
    ("last", "last"),
    ("tokens", "tokens in view"),
)
"""The sortable columns of the session list: (order, heading)."""
_CLIP = 160
_DOT = " \u00b7 "


class Links:
    """Where the pages link to: the server's routes."""

    def session(self, session_id: str) -> str | None:
        """The session's overview."""
        return url("/session", id=session_id)

    def timeline(self, session_id: str, first: int = 1) -> str | None:
        """The timeline from position ``first``."""
        return url("/timeline", id=session_id, **{"from": first if first != 1 else None})

    def buffer(self, session_id: str, at: int | None = None, page: int | None = None) -> str | None:
        """The buffer after position ``at`` (None: the last)."""
        return url("/buffer", id=session_id, at=at, page=page)

    def diff(self, session_id: str, a: int, b: int) -> str | None:
        """The views after ``a`` and after ``b`` compared."""
        return url("/diff", id=session_id, a=a, b=b)

    def parent(self, session_id: str) -> str | None:
        """The overview of another session (a fork's parent)."""
        return self.session(session_id)

    def event(self, session_id: str, position: int) -> str | None:
        """The event at ``position`` in its timeline page."""
        first = (position - 1) // TIMELINE_PAGE * TIMELINE_PAGE + 1
        target = self.timeline(session_id, first)
        return None if target is None else f"{target}#e{position}"


class ReportLinks(Links):
    """A report's links: the events and the last buffer are in the file, nothing else."""

    def __init__(self, version: int) -> None:
        self.version = version

    def session(self, session_id: str) -> str | None:
        """The top of the report."""
        return "#top"

    def timeline(self, session_id: str, first: int = 1) -> str | None:
        """The timeline section."""
        return "#timeline"

    def buffer(self, session_id: str, at: int | None = None, page: int | None = None) -> str | None:
        """The buffer section, which shows the last position only."""
        return "#buffer" if at is None or at == self.version else None

    def diff(self, session_id: str, a: int, b: int) -> str | None:
        """No diffs in a report."""
        return None

    def parent(self, session_id: str) -> str | None:
        """Another session is not in the file."""
        return None

    def event(self, session_id: str, position: int) -> str | None:
        """The event's row."""
        return f"#e{position}"


def _maybe_link(href: str | None, text: str, *, cls: str | None = None) -> str:
    return link(href, text, cls=cls) if href is not None else esc(text)


def _clip(text: str, width: int = _CLIP) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "\u2026"


def _json(value: object) -> str:
    try:
        return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
    except (TypeError, msgspec.EncodeError):
        return repr(value)


def _pager(prev: str | None, next_: str | None, text: str) -> str:
    parts = [
        link(prev, "\u2190 previous", cls="prev")
        if prev
        else '<span class="muted">\u2190 previous</span>',
        f'<span class="where">{esc(text)}</span>',
        link(next_, "next \u2192", cls="next")
        if next_
        else '<span class="muted">next \u2192</span>',
    ]
    return f'<nav class="pager">{" ".join(parts)}</nav>'


# -- sessions ---------------------------------------------------------------------------


def sessions_page(
    page: SessionPage, *, search: str, order: str, descending: bool, links: Links
) -> str:
    """The session list: a search box, sortable headings, one row per session, a pager."""

    def here(**change: object) -> str:
        query: dict[str, object] = {
            "q": search or None,
            "sort": order,
            "desc": int(descending) or None,
        }
        query.update(change)
        return url("/", **query)

    heads = []
    for column, heading in SESSION_COLUMNS:
        flip = not descending if column == order else column in ("events", "last", "tokens")
        mark = (" \u25bc" if descending else " \u25b2") if column == order else ""
        heads.append(
            f"<th>{link(here(sort=column, desc=int(flip) or None, page=None), heading + mark)}</th>"
        )
    heads.insert(4, "<th>visible</th>")
    heads.append('<th title="sessions forked from another (none yet)">lineage</th>')
    rows = []
    for r in page.rows:
        rows.append(
            "<tr>"
            f'<td class="id">{_maybe_link(links.session(r.session_id), r.session_id)}</td>'
            f'<td class="num">{r.events}</td>'
            f"<td>{esc(when(r.created_at))}</td>"
            f"<td>{esc(when(r.last_activity))}</td>"
            f'<td class="num">{r.visible_messages}</td>'
            f'<td class="num">{r.tokens}</td>'
            '<td class="lineage"></td>'
            "</tr>"
        )
    empty = (
        f'<tr><td colspan="7" class="muted">no session id contains {esc(repr(search))}</td></tr>'
        if search
        else '<tr><td colspan="7" class="muted">no sessions in this store</td></tr>'
    )
    prev = here(page=page.page - 1) if page.page > 1 else None
    next_ = here(page=page.page + 1) if page.page < page.pages else None
    noun = "session" if page.matching == 1 else "sessions"
    hidden = f'<input type="hidden" name="sort" value={attr(order)}>' + (
        '<input type="hidden" name="desc" value="1">' if descending else ""
    )
    return (
        "<h1>Sessions</h1>"
        f'<form class="search" method="get" action="/">{hidden}'
        f'<input type="search" name="q" value={attr(search)} '
        'placeholder="session id contains\u2026" aria-label="search session ids" '
        'maxlength="500"> <button type="submit">search</button></form>'
        f'<p class="count">{page.matching} {noun}'
        f"{' match ' + esc(repr(search)) if search else ''}</p>"
        f'<table class="sessions"><thead><tr>{"".join(heads)}</tr></thead>'
        f"<tbody>{''.join(rows) or empty}</tbody></table>"
        + _pager(prev, next_, f"page {page.page} of {page.pages}")
    )


# -- one session --------------------------------------------------------------------------


def _verify_block(report: VerifyReport, session_id: str, links: Links) -> str:
    if report.ok:
        return (
            '<p class="verify ok" id="verify">\u2714 verified: the hash chain of '
            f"{report.events} events and the stored buffer check out</p>"
        )
    items = []
    for problem in report.problems:
        where = (
            _maybe_link(links.event(session_id, problem.position), f"position {problem.position}")
            if problem.session_id and problem.position > 0
            else "the store"
        )
        items.append(f"<li><b>{esc(problem.kind)}</b> at {where}: {esc(problem.detail)}</li>")
    first = next((p.position for p in report.problems if p.session_id and p.position > 0), None)
    headline = f"first bad position: {first}" if first is not None else "the store is damaged"
    return (
        f'<div class="verify bad" id="verify"><p>\u2718 verify failed ({esc(headline)})</p>'
        f"<ul>{''.join(items)}</ul></div>"
    )


def session_overview(
    session_id: str,
    version: int,
    series: list[TokenPoint],
    report: VerifyReport,
    links: Links,
    lineage: Lineage | None = None,
    erased: SessionErased | None = None,
) -> str:
    """A session at a glance: figures, its lineage if it is a fork, whether it was
    erased, verify status, the token chart, where to go next."""
    last = series[-1] if series else None
    limit = f" of {last.limit}" if last is not None and last.limit is not None else ""
    figures = (
        f'<dl class="figures"><dt>events</dt><dd>{version}</dd>'
        f"<dt>tokens in view</dt><dd>{last.tokens if last else 0}{esc(limit)}</dd>"
        f"<dt>peak</dt><dd>{max((p.tokens for p in series), default=0)}</dd></dl>"
    )
    nav = [
        _maybe_link(links.timeline(session_id), "timeline"),
        _maybe_link(links.buffer(session_id), "buffer now"),
    ]
    diff_form = ""
    if links.diff(session_id, 0, 0) is not None:
        diff_form = (
            '<form class="diff" method="get" action="/diff">'
            f'<input type="hidden" name="id" value={attr(session_id)}>'
            f'compare the buffer after <input name="a" type="number" min="0" max="{version}" '
            f'value="{max(version - 1, 0)}" aria-label="first position"> with after '
            f'<input name="b" type="number" min="0" max="{version}" value="{version}" '
            'aria-label="second position"> <button type="submit">diff</button></form>'
        )
    return (
        f'<h1 id="top">Session <span class="sid">{esc(session_id)}</span></h1>'
        + figures
        + _lineage_block(lineage, links)
        + ("" if erased is None else _erased_note(erased, version))
        + _verify_block(report, session_id, links)
        + f'<nav class="links">{_DOT.join(nav)}</nav>'
        + "<h2>Tokens in view</h2>"
        + token_chart(series, version)
        + '<p class="legend"><span class="key tokens"></span> buffer tokens after each event '
        '<span class="key limit"></span> limit in force</p>' + diff_form
    )


def _erased_note(tombstone: SessionErased, position: int) -> str:
    """What the pages of an erased session say first."""
    by = f" by {tombstone.by}" if tombstone.by else ""
    return (
        f'<p class="verify erased">erased at position {position}{esc(by)}: '
        f"{esc(tombstone.reason)}. The content of its {tombstone.events} earlier events is "
        "gone; their hashes remain, and the timeline lists them</p>"
    )


def _lineage_block(lineage: Lineage | None, links: Links) -> str:
    """A fork's parent and fork point, and which sessions hold what it inherited."""
    if lineage is None or lineage.fork is None:
        return ""
    fork = lineage.fork
    parent = _maybe_link(links.parent(fork.parent), fork.parent, cls="sid")
    held = ", ".join(
        f"{first}\u2013{last} from {esc(holder)}"
        if first != last
        else f"{first} from {esc(holder)}"
        for holder, first, last in lineage.inherited
    )
    inherited = f" (inherited: {held})" if held else " (nothing inherited)"
    return f'<p class="lineage">fork of {parent} at position {fork.at}{inherited}</p>'


# -- messages and events ------------------------------------------------------------------

_ROLE = {"human": "human", "ai": "ai", "system": "system", "developer": "developer"}


def _content(message: Message) -> str:
    if isinstance(message.content, str):
        return f'<div class="text">{esc(message.content)}</div>'
    parts = []
    for part in message.content:
        if isinstance(part, str):
            parts.append(f'<div class="text">{esc(part)}</div>')
        elif isinstance(part, dict) and part.get("type") == "text":
            parts.append(f'<div class="text">{esc(part.get("text", ""))}</div>')
        else:
            parts.append(f'<pre class="part">{esc(_json(part))}</pre>')
    return "".join(parts)


def _message(
    message: Message,
    *,
    anchor: str | None = None,
    calls: dict[str, str] | None = None,
    results: dict[str, str] | None = None,
    extra: str = "",
    cls: str = "",
) -> str:
    """One message; ``calls``/``results`` map tool-call ids to the anchors of the call
    and of its result, to link the two."""
    head = [f'<span class="role role-{esc(message.role)}">{esc(message.role)}</span>']
    if message.name:
        head.append(f'<span class="name">{esc(message.name)}</span>')
    if message.tool_call_id is not None:
        target = (calls or {}).get(message.tool_call_id)
        text = f"result of {message.tool_call_id}"
        head.append(
            f'<a class="callref" href="#{esc(target)}">{esc(text)}</a>'
            if target
            else f'<span class="callref">{esc(text)}</span>'
        )
    body = [_content(message)]
    for call in message.tool_calls:
        result = (results or {}).get(call.id or "")
        to = f' <a class="callref" href="#{esc(result)}">\u2192 result</a>' if result else ""
        data_id = f" data-call={attr(call.id)}" if call.id else ""
        body.append(
            f'<div class="call"{data_id}><span class="tool">{esc(call.name)}</span>'
            f"({esc(_clip(_json(call.args), 400))}) "
            f'<span class="muted">{esc(call.id or "")}</span>{to}</div>'
        )
    if message.function_call is not None:
        body.append(f'<pre class="call">{esc(_json(message.function_call))}</pre>')
    for invalid in message.invalid_tool_calls:
        body.append(f'<pre class="call invalid">{esc(_json(invalid))}</pre>')
    ident = f" id={attr(anchor)}" if anchor else ""
    data_result = f" data-result={attr(message.tool_call_id)}" if message.tool_call_id else ""
    return (
        f'<div class="msg {esc(cls)}"{ident}{data_result}>'
        f'<div class="head">{"".join(head)}{extra}</div>'
        f"{''.join(body)}</div>"
    )


def _gist(message: Message) -> str:
    text = message.text
    if not text.strip() and message.tool_calls:
        text = "calls " + ", ".join(c.name for c in message.tool_calls)
    return f"{message.role}: {_clip(text, 80)}"


def event_summary(event: Event) -> str:
    """One line about an event (text, not HTML); unknown kinds get their kind."""
    if isinstance(event, TurnSaved):
        text = " \u2192 ".join(_gist(m) for m in event.messages[:1] + event.messages[1:][-1:])
        if event.steps:
            text += f" (+{len(event.steps)} step{'s' if len(event.steps) != 1 else ''})"
        if event.abandoned:
            text += f" ({len(event.abandoned)} abandoned)"
        return text or "(no messages)"
    if isinstance(event, StepRecorded):
        live = " (live)" if event.live else ""
        return f"tool {event.action.tool} \u2192 {_clip(event.observation, 80)}{live}"
    if isinstance(event, MessagesAppended):
        text = " \u2192 ".join(_gist(m) for m in event.messages[:1] + event.messages[1:][-1:])
        if len(event.messages) > 2:
            text += f" ({len(event.messages)} messages)"
        return text
    if isinstance(event, MessagesRetracted):
        return f"popped {event.count} message{'s' if event.count != 1 else ''}"
    if isinstance(event, MemoryCleared):
        return "cleared the buffer"
    if isinstance(event, SummaryRecorded):
        count = event.end_seq - event.first_seq
        return (
            f"summarised {count} pruned message{'s' if count != 1 else ''}: "
            f"{_clip(event.summary, 80)}"
        )
    if isinstance(event, SessionForked):
        return f"fork of {_clip(event.parent, 80)} at position {event.at}"
    if isinstance(event, ViewRewound):
        count = len(event.view)
        return f"rewind to {event.to}, {count} message{'s' if count != 1 else ''} restored"
    if isinstance(event, SessionErased):
        by = f" by {_clip(event.by, 80)}" if event.by else ""
        count = event.events
        return f"erased {count} event{'s' if count != 1 else ''}{by}: {_clip(event.reason, 80)}"
    if isinstance(event, SessionSealed):
        return f"sealed the events before {event.before} ({event.events} emptied)"
    if isinstance(event, ContentErased):
        return "(content erased)"
    if isinstance(event, CheckpointSaved):
        return f"LangGraph checkpoint {_clip(event.checkpoint_id, 40)}"
    if isinstance(event, CheckpointWritesSaved):
        count = len(event.writes)
        on = _clip(event.checkpoint_id, 40)
        return f"{count} LangGraph write{'s' if count != 1 else ''} on {on}"
    if isinstance(event, CheckpointsDeleted):
        return f"LangGraph checkpoints hidden ({_clip(event.reason, 40)})"
    kind = getattr(event.__struct_config__, "tag", None) or type(event).__name__
    return f"an event of a kind this eventmem does not know ({kind})"


def _event_detail(event: Event) -> str:
    """The event's content: its messages, its step, or its data as JSON."""
    if isinstance(event, (TurnSaved, MessagesAppended)):
        figures = (
            f"limit {event.max_token_limit}"
            if isinstance(event, TurnSaved)
            else ("no limit" if event.max_tokens is None else f"limit {event.max_tokens}")
        )
        extra = f" \u00b7 {esc(event.model)}" if event.model else ""
        counts = "".join(
            _message(m, extra=f'<span class="tokens">{t} tokens</span>')
            for m, t in zip(event.messages, event.tokens, strict=False)
        )
        about = _DOT.join([esc(figures), esc(event.counter) + extra, "prune " + esc(event.prune)])
        return f'<p class="muted">{about}</p>{counts}'
    if isinstance(event, StepRecorded):
        return (
            f'<p><span class="tool">{esc(event.action.tool)}</span> input '
            f"<code>{esc(_clip(_json(event.action.tool_input), 2000))}</code></p>"
            f'<div class="text">{esc(event.observation)}</div>'
            + "".join(
                _message(m, extra=f'<span class="tokens">{t} tokens</span>')
                for m, t in zip(event.messages, event.tokens, strict=False)
            )
        )
    if isinstance(event, (MessagesRetracted, MemoryCleared)):
        return ""
    return f"<pre>{esc(_json(event))}</pre>"


def event_rows(
    events: list[StoredEvent],
    links: Links,
    *,
    session_id: str | None = None,
    rewound: dict[int, int] | None = None,
) -> str:
    """The rows of a timeline table of ``session_id``, one per event, each with its
    detail folded away; an event another session holds (a fork's parent) is marked with
    it, and one a rewind rewound over (``rewound``: position -> the rewind's) with that."""
    rows = []
    rewound = rewound or {}
    for stored in events:
        event, position = stored.data, stored.position
        sid = stored.session_id if session_id is None else session_id
        detail = _event_detail(event)
        summary = esc(event_summary(event))
        if stored.session_id != sid:
            summary = f'<span class="holder">{esc(stored.session_id)}</span> {summary}'
        rewind = rewound.get(position)
        if rewind is not None:
            summary = f'<span class="rewound">rewound at {rewind}</span> {summary}'
        cell = f"<details><summary>{summary}</summary>{detail}</details>" if detail else summary
        buffer = _maybe_link(links.buffer(sid, position), "buffer")
        diff = links.diff(sid, position - 1, position)
        diff_cell = link(diff, "diff") if diff is not None else ""
        over = " rewound-over" if rewind is not None else ""
        rows.append(
            f'<tr id="e{position}" class="kind-{esc(stored.kind)}{over}">'
            f'<td class="num">{position}</td>'
            f'<td class="time">{esc(when(stored_time(stored.recorded_at_us)))}</td>'
            f'<td><span class="kind">{esc(stored.kind)}</span></td>'
            f'<td class="num">{event_tokens(event)}</td>'
            f'<td class="summary">{cell}</td>'
            f'<td class="acts">{buffer} {diff_cell}</td></tr>'
        )
    return (
        '<table class="timeline"><thead><tr><th>pos</th><th>time (UTC)</th><th>kind</th>'
        "<th>tokens</th><th>event</th><th></th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def timeline_page(session_id: str, page: TimelinePage, first: int, links: Links) -> str:
    """A page of the session's events, from position ``first``."""
    version, events = page.version, page.events
    last = first + len(events) - 1
    prev = links.timeline(session_id, max(1, first - TIMELINE_PAGE)) if first > 1 else None
    next_ = links.timeline(session_id, last + 1) if last < version else None
    jump = (
        '<form class="jump" method="get" action="/timeline">'
        f'<input type="hidden" name="id" value={attr(session_id)}>'
        f'from position <input name="from" type="number" min="1" max="{version}" value="{first}" '
        'aria-label="first position"> <button type="submit">go</button></form>'
    )
    return (
        f"<h1>Timeline of {_maybe_link(links.session(session_id), session_id, cls='sid')}</h1>"
        f'<p class="count">positions {first}\u2013{last} of {version}</p>'
        + jump
        + _pager(prev, next_, f"{first}\u2013{last} of {version}")
        + event_rows(events, links, session_id=session_id, rewound=page.rewound)
        + _pager(prev, next_, f"{first}\u2013{last} of {version}")
    )


# -- the buffer ---------------------------------------------------------------------------


def _why(entry: Entry) -> str:
    at = f" at position {entry.left_at}"
    if entry.left == "cleared":
        return "cleared" + at
    if entry.left == "popped":
        return "popped" + at
    if entry.left == "rewound":
        return "rewound over by the rewind" + at
    if entry.message.role in ("tool", "function"):
        return "pruned" + at + " (over the token limit, or its tool call left: pair-safe)"
    return "pruned" + at + " (over the token limit)"


def _call_anchors(entries: list[Entry]) -> tuple[dict[str, str], dict[str, str]]:
    calls: dict[str, str] = {}
    results: dict[str, str] = {}
    for entry in entries:
        for call in entry.message.tool_calls:
            if call.id:
                calls[call.id] = f"m{entry.index}"
        if entry.message.tool_call_id is not None:
            results[entry.message.tool_call_id] = f"m{entry.index}"
    return calls, results


def _entry(
    entry: Entry, calls: dict[str, str], results: dict[str, str], links: Links, sid: str
) -> str:
    origin = _maybe_link(links.event(sid, entry.position), f"from {entry.position}")
    state = (
        f'<span class="why">{esc(_why(entry))}</span>'
        if entry.left
        else ('<span class="pin">pinned</span>' if entry.pinned else "")
    )
    extra = (
        f'<span class="tokens">{entry.tokens} tokens</span>'
        f'<span class="origin">{origin}</span>{state}'
    )
    return _message(
        entry.message,
        anchor=f"m{entry.index}",
        calls=calls,
        results=results,
        extra=extra,
        cls="gone" if entry.left else "seen",
    )


def buffer_page(view: BufferAt, page: int | None, links: Links, *, size: int = BUFFER_PAGE) -> str:
    """The buffer after a position: every message that entered it, the visible ones as the
    model saw them, the others greyed with why they left; paged by `BUFFER_PAGE`."""
    sid, entries = view.session_id, view.entries
    pages = max(1, -(-len(entries) // size))
    page = pages if page is None else page
    start = (page - 1) * size
    shown = entries[start : start + size]
    pending = f"; {view.pending_steps} step(s) pending their turn" if view.pending_steps else ""
    calls, results = _call_anchors(entries)
    limit = f" / limit {view.limit}" if view.limit is not None else " (no limit)"
    head = (
        f"<h1>Buffer of {_maybe_link(links.session(sid), sid, cls='sid')} "
        f"after position {view.position}</h1>"
        f'<p class="figures-line"><b>{len(view.visible)}</b> messages visible, '
        f"<b>{view.tokens}</b> tokens{esc(limit)}"
        f"{' (' + esc(view.counter) + ')' if view.counter else ''}; "
        f"{len(entries) - len(view.visible)} of {len(entries)} entered messages are out of it"
        f"{pending}</p>"
    )
    if view.erased is not None:
        head += _erased_note(view.erased, view.version)
    if view.damaged:
        head += (
            '<p class="verify bad">the stored buffer differs from the fold of the events '
            "(shown here); run eventmem verify</p>"
        )
    nav = []
    if view.position > 1:
        nav.append(
            _maybe_link(links.buffer(sid, view.position - 1), f"\u2190 after {view.position - 1}")
        )
    if view.position < view.version:
        nav.append(
            _maybe_link(links.buffer(sid, view.position + 1), f"after {view.position + 1} \u2192")
        )
    diff = links.diff(sid, view.position - 1, view.position)
    if diff is not None:
        nav.append(link(diff, f"what position {view.position} changed"))
    nav.append(_maybe_link(links.event(sid, view.position), f"event {view.position}"))
    toggle = (
        '<label class="toggle"><input type="checkbox" id="hide-gone"> hide messages out of the '
        "buffer</label>"
    )
    pager = ""
    if pages > 1:
        prev = links.buffer(sid, view.position, page - 1) if page > 1 else None
        next_ = links.buffer(sid, view.position, page + 1) if page < pages else None
        pager = _pager(
            prev,
            next_,
            f"messages {start + 1}\u2013{start + len(shown)} of {len(entries)}",
        )
    body = "".join(_entry(e, calls, results, links, sid) for e in shown) or (
        '<p class="muted">no content is left</p>'
        if view.erased is not None
        else '<p class="muted">no message entered the buffer yet</p>'
    )
    return (
        head
        + f'<nav class="links">{_DOT.join(nav)}</nav>'
        + toggle
        + pager
        + f'<div class="buffer">{body}</div>'
        + pager
    )


def diff_page(diff: ViewDiff, links: Links) -> str:
    """The buffer after ``a`` beside the one after ``b``: what left, came, stayed."""
    sid = diff.session_id
    calls, results = _call_anchors(diff.left + diff.stayed + diff.came)

    def block(title: str, entries: list[Entry], cls: str) -> str:
        inner = "".join(_entry(e, calls, results, links, sid) for e in entries) or (
            '<p class="muted">none</p>'
        )
        return f'<section class="{cls}"><h2>{esc(title)} ({len(entries)})</h2>{inner}</section>'

    return (
        f"<h1>Buffer of {_maybe_link(links.session(sid), sid, cls='sid')}: after {diff.a} "
        f"vs after {diff.b}</h1>"
        f'<p class="figures-line">tokens {diff.tokens_a} \u2192 {diff.tokens_b}; '
        f"{len(diff.left)} left, {len(diff.came)} came, {len(diff.stayed)} stayed{_DOT}"
        f"{_maybe_link(links.buffer(sid, diff.a) if diff.a else None, f'buffer after {diff.a}')}"
        f"{_DOT}"
        f"{_maybe_link(links.buffer(sid, diff.b) if diff.b else None, f'buffer after {diff.b}')}"
        "</p>"
        + block(f"left the buffer between {diff.a} and {diff.b}", diff.left, "diff-left")
        + block("came into it", diff.came, "diff-came")
        + block("in both", diff.stayed, "diff-stayed")
    )


def error_page(status: int, message: str) -> str:
    """An error's page body (``message`` is text)."""
    return f'<h1>{status}</h1><p class="error">{esc(message)}</p><p>{link("/", "all sessions")}</p>'
