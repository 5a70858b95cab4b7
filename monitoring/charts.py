"""Server-rendered inline SVG charts: no JavaScript library, no CDN, readable without colour (titles per bar,
a legend, a text summary in <desc>) and by screen readers (role="img", aria-labelledby title + desc)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape  # the stdlib one: Django's lazy wrapper costs more than the SVG itself
from itertools import count

from django.utils.safestring import SafeString, mark_safe

WIDTH = 760
HEIGHT = 220
PAD_LEFT = 56
PAD_RIGHT = 12
PAD_TOP = 14
PAD_BOTTOM = 44

_ids = count(1)


@dataclass
class Series:
    name: str
    values: Sequence[float | None]
    color: str


def _nice_max(value: float) -> float:
    """Round the axis maximum up to 1, 2 or 5 times a power of ten so the gridlines get round labels."""
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _fmt(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


# Colours of the sources (the groups of bars), distinct from the series colours and from the reference red.
GROUP_COLORS = ("#0b7285", "#f59f00", "#862e9c", "#5c940d", "#c2255c", "#364fc7", "#8d6e63", "#495057")
MAX_GROUPS_IN_LEGEND = 6


def group_colors(groups: Sequence[str]) -> dict[str, str]:
    """One colour per distinct group (source), in order of first appearance."""
    colors: dict[str, str] = {}
    for name in groups:
        if name not in colors:
            colors[name] = GROUP_COLORS[len(colors) % len(GROUP_COLORS)]
    return colors


def bar_chart(
    *,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[Series],
    unit: str = "",
    reference: float | None = None,
    reference_label: str = "",
    max_value: float | None = None,
    tooltips: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
) -> SafeString:
    """Grouped bars, one group per label. `reference` draws a dashed horizontal line (e.g. a budget at 100 %).

    `groups` names the source of each bar group: with one series the bars take the source's colour, with several
    a strip in the source's colour runs under each group; the legend names the sources either way."""
    uid = next(_ids)
    colors = group_colors(groups or [])
    by_group = len(series) == 1 and bool(colors)
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    top = max([v or 0 for s in series for v in s.values] + [reference or 0, 0])
    y_max = max_value or _nice_max(top)
    n = max(len(labels), 1)
    group_w = plot_w / n
    bar_w = max(min(group_w * 0.8 / max(len(series), 1), 28), 1)
    out: list[str] = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" width="100%" '
        f'aria-labelledby="chart-{uid}-title chart-{uid}-desc" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-{uid}-title">{escape(title)}</title>',
        f'<desc id="chart-{uid}-desc">{escape(desc)}</desc>',
    ]

    def y(v: float) -> float:
        return PAD_TOP + plot_h - (min(v, y_max) / y_max) * plot_h

    for i in range(5):
        value = y_max * i / 4
        yy = y(value)
        out.append(
            f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid-line" '
            f'stroke="#e3e6ef" stroke-width="1"/>'
            f'<text x="{PAD_LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="11" fill="#5b647a">'
            f"{escape(_fmt(value))}{escape(unit)}</text>"
        )
    if not labels:
        out.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" font-size="13" fill="#5b647a">'
            "No finished runs in this period yet</text>"
        )
    for i, label in enumerate(labels):
        x0 = PAD_LEFT + i * group_w + (group_w - bar_w * len(series)) / 2
        parts = []
        for j, s in enumerate(series):
            bar_value = s.values[i] if i < len(s.values) else None
            if bar_value is None:
                continue
            yy = y(bar_value)
            height = PAD_TOP + plot_h - yy
            group = groups[i] if groups and i < len(groups) else ""
            fill = colors[group] if by_group and group else s.color
            who = f"{group} · " if group else ""
            parts.append(
                f'<rect x="{x0 + j * bar_w:.1f}" y="{yy:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                f'height="{max(height, 0.5 if bar_value else 0):.1f}" fill="{fill}">'
                f"<title>{escape(who + label)}: {escape(s.name)} {escape(_fmt(bar_value))}{escape(unit)}</title></rect>"
            )
        group = groups[i] if groups and i < len(groups) else ""
        if group and not by_group:
            parts.append(
                f'<rect class="group-strip" x="{x0:.1f}" y="{PAD_TOP + plot_h + 1:.1f}" '
                f'width="{max(bar_w * len(series) - 1, 1):.1f}" height="4" fill="{colors[group]}"/>'
            )
        tip = f"<title>{escape(tooltips[i])}</title>" if tooltips and i < len(tooltips) else ""
        data = f' data-group="{escape(group)}"' if group else ""
        out.append(f'<g class="bar-group"{data}>{tip}{"".join(parts)}</g>')
    out.extend(_x_labels(labels, group_w))
    if reference is not None:
        yy = y(reference)
        out.append(
            f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#d64545" '
            f'stroke-width="1.5" stroke-dasharray="6 4" class="reference"/>'
            f'<text x="{WIDTH - PAD_RIGHT}" y="{yy - 4:.1f}" text-anchor="end" font-size="11" fill="#d64545">'
            f"{escape(reference_label)}</text>"
        )
    out.extend(_legend(series, colors, by_group=by_group))
    out.append("</svg>")
    return mark_safe("".join(out))  # every interpolated text above is escaped


def _x_labels(labels: Sequence[str], group_w: float) -> list[str]:
    # A few x labels, not all: 120 overlapping dates help nobody.
    step = max(1, len(labels) // 6)
    return [
        f'<text x="{PAD_LEFT + (i + 0.5) * group_w:.1f}" y="{HEIGHT - PAD_BOTTOM + 16}" text-anchor="middle" '
        f'font-size="11" fill="#5b647a">{escape(labels[i])}</text>'
        for i in range(0, len(labels), step)
    ]


def _legend(series: Sequence[Series], colors: dict[str, str], *, by_group: bool) -> list[str]:
    """The series (unless the bars take their source's colour), then the sources."""
    entries = [] if by_group else [(s.name, s.color, "legend-series") for s in series]
    names = list(colors)
    shown = names[:MAX_GROUPS_IN_LEGEND]
    entries += [(name, colors[name], "legend-group") for name in shown]
    if len(names) > len(shown):
        entries.append((f"+{len(names) - len(shown)} more sources", "#adb5bd", "legend-group"))
    out = []
    x = PAD_LEFT
    for name, color, kind in entries:
        square = f'<rect x="{x}" y="{HEIGHT - 16}" width="10" height="10" fill="{color}"/>'
        if kind == "legend-group":
            square = (
                f'<rect x="{x}" y="{HEIGHT - 13}" width="10" height="4" fill="{color}"/>' if not by_group else square
            )
        out.append(
            f'<g class="{kind}">{square}'
            f'<text x="{x + 14}" y="{HEIGHT - 7}" font-size="11" fill="#1d2333">{escape(name)}</text></g>'
        )
        x += 24 + 7 * len(name)
    return out


def run_charts(points: Sequence) -> list[dict[str, object]]:
    """The three dashboard charts from dashboard.RunPoint rows: records, durations, rate-limit budget use. Each
    bar group is one sync run, coloured and named by its source."""
    labels = [p.label for p in points]
    groups = [p.source_name for p in points]
    span = f"{len(points)} runs" if points else "no runs"
    sources = sorted(set(groups))
    who = f" Sources: {', '.join(sources)}." if sources else ""
    records = bar_chart(
        title="Records per sync run",
        desc=(
            f"Records read from HubSpot, sent to Segment and rejected, per sync run ({span}, last 30 days). "
            f"Totals: {sum(p.read for p in points)} read, {sum(p.sent for p in points)} sent, "
            f"{sum(p.rejected for p in points)} rejected.{who}"
        ),
        labels=labels,
        series=[
            Series("read", [p.read for p in points], "#4c6ef5"),
            Series("sent", [p.sent for p in points], "#12b886"),
            Series("rejected", [p.rejected for p in points], "#e8590c"),
        ],
        groups=groups,
        tooltips=[f"{p.source_name} · {p.label}: {p.read} read, {p.sent} sent, {p.rejected} rejected" for p in points],
    )
    durations = [p.duration for p in points]
    known = [d for d in durations if d is not None]
    duration_unit, divide = ("min", 60.0) if known and max(known) >= 180 else ("s", 1.0)
    summary = ""
    if known:
        longest, median = max(known) / divide, sorted(known)[len(known) // 2] / divide
        summary = f"Longest {longest:.1f} {duration_unit}, median {median:.1f} {duration_unit}."
    duration_chart = bar_chart(
        title="Sync run durations",
        desc=f"How long each sync run took ({span}). {summary}{who}",
        labels=labels,
        series=[
            Series(f"duration ({duration_unit})", [d / divide if d is not None else None for d in durations], "#7950f2")
        ],
        unit=" " + duration_unit if duration_unit == "min" else "s",
        groups=groups,
    )
    return [
        {"id": "chart-records", "title": "Records per run", "svg": records},
        {"id": "chart-durations", "title": "Run durations", "svg": duration_chart},
        {"id": "chart-api", "title": "Rate-limit budget used", "svg": budget_chart(points)},
    ]


def budget_chart(points: Sequence) -> SafeString:
    """Per run, its busiest 10 s of list/read/batch requests and busiest second of searches as shares of the
    account's budget (110 per 10 s and 5 per second at HubSpot). A run that met no 429 stayed inside the budget
    and is never drawn above the 100 % line."""
    general = [p.budget.percent if p.budget.measured else None for p in points]
    search = [p.budget.search_percent if p.budget.measured else None for p in points]
    measured = [p for p in points if p.budget.measured]
    peak = max([v for v in general + search if v is not None] or [0])
    limited = sum(p.budget.rate_limited for p in points)
    budgets = sorted({(p.budget.budget_10s, p.budget.search_budget_1s) for p in points}) or [(110, 5)]
    general_budget, search_budget = budgets[-1]
    return bar_chart(
        title="Rate-limit budget used per run",
        desc=(
            f"For each sync run, its busiest 10 seconds of HubSpot list, read and batch requests as a share of the "
            f"account's budget ({general_budget} per 10 s), and its busiest second of search requests as a share of "
            f"the search budget ({search_budget} per second). Peak {peak}% over {len(measured)} measured runs; "
            f"{limited} rate-limit answers (429) met."
        ),
        labels=[p.label for p in points],
        series=[
            Series(f"busiest 10 s, % of {general_budget}", general, "#1c7ed6"),
            Series(f"busiest search second, % of {search_budget}", search, "#66d9e8"),
        ],
        unit="%",
        reference=100,
        reference_label="the account's budget (100%)",
        max_value=120 if peak <= 110 else _nice_max(peak * 1.1),
        groups=[p.source_name for p in points],
        tooltips=[_budget_tip(p) for p in points],
    )


def _budget_tip(p) -> str:
    b = p.budget
    if not b.measured:
        return f"{p.source_name} · {p.label}: {p.api_calls} API calls (run from before the budget was measured)"
    return (
        f"{p.source_name} · {p.label}: busiest 10 s {b.shown_peak_10s} of {b.budget_10s} requests, busiest second "
        f"{b.shown_peak_search_1s} of {b.search_budget_1s} searches, {b.rate_limited} × 429, {p.api_calls} calls"
    )
