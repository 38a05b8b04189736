"""The soak's picture: throughput over time with kills, restarts and partitions marked,
as one self-contained HTML file beside soak-report.json (inline SVG; no script, no
fetch, nothing outside the file). Every string in it is escaped."""
from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path

WIDTH, HEIGHT = 960, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 40
MARK_COLOURS = {"kill": "#c92a2a", "restart": "#f08c00", "partition": "#7048e8", "heal": "#2f9e44"}
MIB = 1024 * 1024
WINDOW_S = 5.0              # throughput is averaged over this long


@dataclass
class Timeline:
    """What the soak saw, as it saw it: verified bytes of every download, and marks."""

    started: float = field(default_factory=time.time)
    samples: list[tuple[float, int]] = field(default_factory=list)    # (seconds since start, bytes verified)
    marks: list[tuple[float, str, str]] = field(default_factory=list)  # (seconds since start, kind, node)

    def sample(self, bytes_verified: int) -> None:
        self.samples.append((round(time.time() - self.started, 3), bytes_verified))

    def mark(self, kind: str, node: str) -> None:
        self.marks.append((round(time.time() - self.started, 3), kind, node))

    def throughput(self, window_s: float = WINDOW_S) -> list[tuple[float, float]]:
        """(seconds, MiB/s over the last ``window_s``) at each sample; a drop (pieces lost
        in a kill) counts as 0. The soak samples about once a second, and a download that
        finishes between two samples would otherwise make the line jump from 0 to a peak."""
        out, start = [], 0
        for t1, b1 in self.samples[1:]:
            while self.samples[start + 1][0] <= t1 - window_s:
                start += 1
            t0, b0 = self.samples[start]
            if t1 > t0:
                out.append((t1, max(0, b1 - b0) / MIB / (t1 - t0)))
        return out


def _svg(timeline: Timeline) -> str:
    points = timeline.throughput()
    end = max([t for t, _ in points] + [t for t, _, _ in timeline.marks] + [1.0])
    top = max([v for _, v in points] + [1.0])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return round(LEFT + t / end * plot_w, 1)

    def y(v: float) -> float:
        return round(TOP + plot_h - v / top * plot_h, 1)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="throughput over time">',
             f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#ccd"/>']
    for i in range(5):
        v = top * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(v)}" y2="{y(v)}" stroke="#eef"/>'
                     f'<text x="{LEFT - 6}" y="{y(v) + 4}" text-anchor="end" font-size="11">{v:.1f}</text>')
        t = end * i / 4
        parts.append(f'<text x="{x(t)}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="11">{t:.0f} s</text>')
    parts.append(f'<text x="14" y="{TOP + plot_h / 2}" font-size="11" transform="rotate(-90 14 {TOP + plot_h / 2})" '
                 f'text-anchor="middle">MiB/s verified</text>')
    for t, kind, node in timeline.marks:
        colour = MARK_COLOURS.get(kind, "#495057")
        dash = "" if kind == "kill" else ' stroke-dasharray="4 3"'
        parts.append(f'<line class="mark mark-{html.escape(kind)}" x1="{x(t)}" x2="{x(t)}" y1="{TOP}" '
                     f'y2="{TOP + plot_h}" stroke="{colour}"{dash}><title>{t:.1f} s: {html.escape(kind)} '
                     f'{html.escape(node)}</title></line>')
    if points:
        line = " ".join(f"{x(t)},{y(v)}" for t, v in points)
        parts.append(f'<polyline points="{line}" fill="none" stroke="#1c7ed6" stroke-width="1.5"/>')
    legend_x = LEFT
    for kind, colour in [("throughput", "#1c7ed6"), *MARK_COLOURS.items()]:
        parts.append(f'<line x1="{legend_x}" x2="{legend_x + 18}" y1="{HEIGHT - 8}" y2="{HEIGHT - 8}" '
                     f'stroke="{colour}" stroke-width="2"/><text x="{legend_x + 22}" y="{HEIGHT - 4}" '
                     f'font-size="11">{kind}</text>')
        legend_x += 110
    parts.append("</svg>")
    return "\n".join(parts)


def _esc(value: object) -> str:
    return html.escape(str(value))


def _table(caption: str, head: list[str], rows: list[list[object]], cls: str) -> str:
    """One HTML table; every cell escaped."""
    header = "".join(f"<th>{_esc(h)}</th>" for h in head)
    body = "\n".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (f'<table class="{cls}"><caption>{_esc(caption)}</caption>\n<thead><tr>{header}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody></table>")


def _counts(caption: str, what: str, counts: dict, cls: str) -> str:
    """Counts per node (kills) or host (partitions), most first, then by name."""
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    return _table(caption, [what, "Count"], [list(r) for r in rows] or [["(none)", 0]], cls)


def _rss(rss_mib: dict) -> str:
    """RSS at the start and the end of each program, the most grown first."""
    rows = sorted(([name, start, end, round(end - start, 1)] for name, (start, end) in rss_mib.items()),
                  key=lambda r: (-r[3], str(r[0])))
    return _table("RSS per program (MiB)", ["Program", "Start", "End", "Growth"],
                  [[n, f"{s:.1f}", f"{e:.1f}", f"{g:+.1f}"] for n, s, e, g in rows], "rss")


TABLES = {   # report fields that are per-node maps, each drawn as a table of its own
    "kills_by_node": lambda v: _counts("Kills by node", "Node", v, "kills"),
    "partitions_by_host": lambda v: _counts("Partitions by host", "Host", v, "partitions"),
    "rss_mib": _rss,
}


def render_html(report: dict, timeline: Timeline, title: str = "zorrent soak") -> str:
    scalars = {k: v for k, v in report.items() if k not in TABLES}
    rows = "\n".join(f"<tr><th>{_esc(str(k).replace('_', ' '))}</th><td>{_esc(v)}</td></tr>"
                     for k, v in scalars.items())
    tables = "\n".join(draw(report[k]) for k, draw in TABLES.items() if k in report)
    marks = "\n".join(f"<li>{t:.1f} s: {_esc(kind)} {_esc(node)}</li>" for t, kind, node in timeline.marks)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{_esc(title)}</title>
<style>body{{font:13px system-ui,sans-serif;margin:16px;color:#1d2330}} th{{text-align:left;padding-right:16px;font-weight:500;color:#555}}
td,th{{border-bottom:1px solid #eee;padding:2px 8px}} table{{border-collapse:collapse;margin:0 24px 16px 0;vertical-align:top;display:inline-table}}
caption{{text-align:left;font-weight:600;padding:4px 0}} table:not(.report) td:not(:first-child){{text-align:right;font-variant-numeric:tabular-nums}} ol{{columns:3}}</style>
</head><body>
<h1>{_esc(title)}</h1>
<h2>Throughput over time</h2>
{_svg(timeline)}
<h2>Report</h2>
<table class="report">
{rows}
</table>
<div>
{tables}
</div>
<h2>Kills, restarts and partitions</h2>
<ol>
{marks}
</ol>
</body></html>
"""


def write_html(path: Path, report: dict, timeline: Timeline, title: str = "zorrent soak") -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_html(report, timeline, title))
    tmp.replace(path)
    return path
