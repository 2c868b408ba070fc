"""The token-use chart: an inline SVG drawn on the server (no script, no styles inline).

The buffer's token count after each event is a line; the limit in force a dashed line
(where there is one). Colours come from classes in ``viewer.css``.
"""

from __future__ import annotations

from eventmem.ui.data import TokenPoint
from eventmem.ui.html import esc

__all__ = ["token_chart"]

_WIDTH, _HEIGHT = 720, 200
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 12, 12, 28


def _ticks(top: int) -> list[int]:
    """About four round values from 0 to ``top``."""
    if top <= 0:
        return [0]
    raw = top / 4
    magnitude = 10 ** (len(str(int(raw))) - 1)
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return list(range(0, top + 1, step))


def token_chart(points: list[TokenPoint], version: int) -> str:
    """The chart of ``points`` over positions 1..``version``, as an ``<svg>`` element."""
    if not points:
        return '<p class="muted">no events to chart</p>'
    limits = [p.limit for p in points if p.limit is not None]
    top = max([p.tokens for p in points] + limits + [1])
    top = max(_ticks(top)[-1], top)
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def x(position: int) -> float:
        return _LEFT + (plot_w * (position - 1) / max(version - 1, 1))

    def y(tokens: int) -> float:
        return _TOP + plot_h - plot_h * tokens / top

    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="buffer tokens over {version} events" xmlns="http://www.w3.org/2000/svg">',
        f"<title>buffer tokens after each event (peak {max(p.tokens for p in points)})</title>",
    ]
    for tick in _ticks(top):
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y(tick):.1f}" '
            f'y2="{y(tick):.1f}"/><text class="axis" x="{_LEFT - 6}" y="{y(tick) + 4:.1f}" '
            f'text-anchor="end">{tick}</text>'
        )
    for position in sorted({1, version}):
        parts.append(
            f'<text class="axis" x="{x(position):.1f}" y="{_HEIGHT - 8}" '
            f'text-anchor="middle">{position}</text>'
        )
    line = " ".join(f"{x(p.position):.1f},{y(p.tokens):.1f}" for p in points)
    parts.append(f'<polyline class="tokens" points="{line}"/>')
    segments: list[list[str]] = []
    previous: int | None = None
    for p in points:
        if p.limit is None:
            previous = None
            continue
        if previous != p.limit or not segments:
            segments.append([])
        segments[-1].append(f"{x(p.position):.1f},{y(p.limit):.1f}")
        previous = p.limit
    for segment in segments:
        if len(segment) == 1:
            segment.append(segment[0])
        parts.append(f'<polyline class="limit" points="{" ".join(segment)}"/>')
    parts.append(
        f'<text class="axis" x="{_LEFT + plot_w / 2:.1f}" y="{_HEIGHT - 8}" '
        f'text-anchor="middle">{esc("position")}</text></svg>'
    )
    return "".join(parts)
