"""The rollout timeline: a decision record drawn as one self-contained HTML page (inline SVG, no scripts).

Three panels share the time axis: the new deployment's traffic and mirror share (a step plot
of the record's events), then error rate and p99 of new and old deployment per gate window.
Each window is a band coloured by its verdict across all panels, labelled with its step, verdict
and traffic source; the rollback or completion is a vertical line. Every series carries its
label at its end, so nothing needs a legend.
"""

from __future__ import annotations

import html
from typing import Any

WIDTH = 960
LEFT, RIGHT = 70, 170
BAND_LABELS_H = 40  # two rows of window labels above the first panel
SHARE_H, METRIC_H, GAP = 170, 110, 34
VERDICT_COLOURS = {"pass": "#2ca02c", "fail": "#d62728", "inconclusive": "#ff9f1c", "not judged": "#7f7f7f"}
NEW_COLOUR, OLD_COLOUR, MIRROR_COLOUR, LIMIT_COLOUR = "#1f5fbf", "#7f7f7f", "#8e44ad", "#d62728"
MARKERS = {"rollback": ("rolled back", "#d62728"), "finish": ("completed", "#2ca02c")}


def _text(x: float, y: float, text: str, *, size: int = 11, anchor: str = "start", colour: str = "#222",
          cls: str = "", weight: str = "normal") -> str:  # fmt: skip
    klass = f' class="{cls}"' if cls else ""
    return (
        f'<text{klass} x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{colour}" '
        f'font-weight="{weight}">{html.escape(text)}</text>'
    )


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2g}%" if value < 0.1 else f"{100 * value:.0f}%"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _steps(events: list[dict[str, Any]], key: str, deployment: str, t_end: float) -> list[tuple[float, float]]:
    """(t, share %) corners of a step plot: each event that sets ``key`` changes the share from then on."""
    points, share = [(0.0, 0.0)], 0.0
    for event in events:
        split = event.get(key)
        if split is None:
            continue
        new_share = float(split.get(deployment, 0))
        points += [(event["t_s"], share), (event["t_s"], new_share)]
        share = new_share
    points.append((t_end, share))
    return points


def _window_value(window: dict[str, Any], who: str, metric: str) -> float | None:
    stats = window.get(who)
    return None if stats is None else stats.get(metric)


def timeline_svg(record: dict[str, Any]) -> str:
    """The record's events and windows as one SVG; classes name what is drawn (tests count them)."""
    events, windows, new = record.get("events", []), record.get("windows", []), record["new"]
    t_end = max(
        [float(record.get("duration_s") or 0)]
        + [float(e["t_s"]) for e in events]
        + [float(w["t_end_s"]) for w in windows]
        + [1.0]
    )
    plot_w = WIDTH - LEFT - RIGHT
    share_top = BAND_LABELS_H + 10
    error_top = share_top + SHARE_H + GAP
    p99_top = error_top + METRIC_H + GAP
    bottom = p99_top + METRIC_H
    height = bottom + 50

    def sx(t: float) -> float:
        return LEFT + plot_w * t / t_end

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-label="rollout timeline of {html.escape(new)}" font-family="sans-serif">'
    ]
    for i, window in enumerate(windows):
        verdict = window.get("verdict", "inconclusive")
        colour = VERDICT_COLOURS.get(verdict, "#999")
        x0, x1 = sx(window["t_start_s"]), sx(window["t_end_s"])
        parts.append(
            f'<rect class="window" data-verdict="{html.escape(verdict)}" x="{x0:.1f}" y="{share_top}" '
            f'width="{max(x1 - x0, 1):.1f}" height="{bottom - share_top}" fill="{colour}" fill-opacity="0.14" '
            f'stroke="{colour}" stroke-opacity="0.6"/>'
        )
        step = "bake" if window.get("bake") else f"step {window.get('step_index', i) + 1}: {window.get('step', '')}"
        row = BAND_LABELS_H - 22 + 18 * (i % 2)  # alternate rows so neighbouring labels do not collide
        parts.append(_text(x0 + 2, row - 9, step, size=10, cls="window-label"))
        parts.append(_text(x0 + 2, row + 2, f"{verdict} · {window.get('source', '?')}", size=10, colour=colour,
                           weight="bold", cls="window-verdict"))  # fmt: skip

    parts += _share_panel(events, new, t_end, sx, share_top, plot_w)
    parts += _metric_panel(windows, "error_rate", "max_error_rate", "error rate", _percent, sx, error_top, record)
    parts += _metric_panel(windows, "p99_ms", "max_p99_ms", "p99 latency", _ms, sx, p99_top, record)

    for event in events:
        if event.get("kind") not in MARKERS:
            continue
        label, colour = MARKERS[event["kind"]]
        x = sx(event["t_s"])
        parts.append(
            f'<line class="marker {event["kind"]}" x1="{x:.1f}" x2="{x:.1f}" y1="{share_top - 4}" y2="{bottom + 6}" '
            f'stroke="{colour}" stroke-width="2.5"/>'
        )
        anchor = "end" if x > LEFT + plot_w * 0.6 else "start"
        parts.append(_text(x + (-4 if anchor == "end" else 4), bottom + 20, f"{label} at {event['t_s']:.0f} s",
                           colour=colour, weight="bold", anchor=anchor, cls="marker-label"))  # fmt: skip
    for tick in _ticks(t_end):
        parts.append(_text(sx(tick), bottom + 36, f"{tick:g} s", size=10, anchor="middle", colour="#555"))
    parts.append("</svg>")
    return "".join(parts)


def _ticks(t_end: float, count: int = 6) -> list[float]:
    raw = t_end / count
    step = next(m * 10**e for e in range(-1, 6) for m in (1, 2, 5) if m * 10**e >= raw)
    return [i * step for i in range(int(t_end / step) + 1)]


def _share_panel(events, new, t_end, sx, top, plot_w) -> list[str]:  # type: ignore[no-untyped-def]
    def sy(share: float) -> float:
        return top + SHARE_H * (1 - share / 100)

    parts = [f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{SHARE_H}" fill="none" stroke="#bbb"/>']
    for share in (0, 50, 100):
        parts.append(_text(LEFT - 6, sy(share) + 4, f"{share}%", size=10, anchor="end", colour="#555"))
    parts.append(_text(12, top + SHARE_H / 2, "share", size=11, colour="#555"))
    for key, colour, dash, name in (("traffic", NEW_COLOUR, "", "traffic"), ("mirror", MIRROR_COLOUR, "6 3", "mirror")):
        pts = _steps(events, key, new, t_end)
        coords = " ".join(f"{sx(t):.1f},{sy(s):.1f}" for t, s in pts)
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<polyline class="share {key}" points="{coords}" fill="none" stroke="{colour}" '
            f'stroke-width="2.5"{dashes}/>'
        )
        last = pts[-1][1]
        offset = -4 if key == "traffic" else 12
        parts.append(_text(sx(t_end) + 6, sy(last) + offset, f"{name} to {new}: {last:g}%", colour=colour,
                           weight="bold", cls=f"share-label {key}"))  # fmt: skip
    return parts


def _metric_panel(windows, metric, limit_key, title, fmt, sx, top, record) -> list[str]:  # type: ignore[no-untyped-def]
    values = [v for w in windows for who in ("new", "old") if (v := _window_value(w, who, metric)) is not None]
    limits = [w["thresholds"][limit_key] for w in windows if (w.get("thresholds") or {}).get(limit_key) is not None]
    y_max = max(values + limits + [0.0]) * 1.25 or 1.0

    def sy(value: float) -> float:
        return top + METRIC_H * (1 - value / y_max)

    plot_w = WIDTH - LEFT - RIGHT
    parts = [
        f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{METRIC_H}" fill="none" stroke="#bbb"/>',
        _text(12, top + METRIC_H / 2, title, size=11, colour="#555"),
        _text(LEFT - 6, sy(0) + 4, fmt(0.0) if metric == "error_rate" else "0", size=10, anchor="end", colour="#555"),
    ]
    if values or limits:
        parts.append(_text(LEFT - 6, top + 10, fmt(y_max), size=10, anchor="end", colour="#555"))
    names = {"new": record["new"], "old": record.get("old") or "old"}
    last_y: dict[str, float] = {}
    for window in windows:
        x0, x1 = sx(window["t_start_s"]), sx(window["t_end_s"])
        for who, colour, dash in (("new", NEW_COLOUR, ""), ("old", OLD_COLOUR, ' stroke-dasharray="5 3"')):
            value = _window_value(window, who, metric)
            if value is None:
                continue
            y = sy(value)
            parts.append(
                f'<line class="metric {metric} {who}" x1="{x0:.1f}" x2="{x1:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{colour}" stroke-width="2.5"{dash}/>'
            )
            label_y = y - 4 if who == "new" else y + 12
            parts.append(_text(x0 + 3, label_y, fmt(value), size=10, colour=colour, cls=f"value {metric} {who}"))
            last_y[who] = y
        limit = (window.get("thresholds") or {}).get(limit_key)
        if limit is not None:
            y = sy(limit)
            parts.append(
                f'<line class="limit {metric}" x1="{x0:.1f}" x2="{x1:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{LIMIT_COLOUR}" stroke-dasharray="2 3"/>'
            )
            last_y["limit"], names["limit"] = y, f"limit {fmt(limit)}"
    labels = [
        (last_y[who], f"{who}: {names[who]}" if who != "limit" else names[who], colour, f"series-label {metric} {who}")
        for who, colour in (("new", NEW_COLOUR), ("old", OLD_COLOUR), ("limit", LIMIT_COLOUR))
        if who in last_y
    ]
    for y, label, colour, cls in _spread(labels):
        parts.append(_text(LEFT + plot_w + 6, y + 4, label, colour=colour, cls=cls))
    if not values:
        parts.append(_text(LEFT + plot_w / 2, top + METRIC_H / 2, "no gate window measured", anchor="middle",
                           colour="#888"))  # fmt: skip
    return parts


def _spread(labels: list[tuple[float, str, str, str]], gap: float = 13) -> list[tuple[float, str, str, str]]:
    """End labels moved apart vertically (keeping their order) so two series at one value stay readable."""
    placed: list[tuple[float, str, str, str]] = []
    for y, *rest in sorted(labels):
        if placed and y < placed[-1][0] + gap:
            y = placed[-1][0] + gap
        placed.append((y, *rest))  # type: ignore[arg-type]
    order = {label[1]: i for i, label in enumerate(labels)}
    return sorted(placed, key=lambda label: order[label[1]])


def _windows_table(windows: list[dict[str, Any]]) -> str:
    rows = []
    for i, w in enumerate(windows):
        new, old = w.get("new") or {}, w.get("old") or {}
        step = "bake" if w.get("bake") else f"{w.get('step_index', i) + 1}: {w.get('step', '')}"
        cells = [
            step,
            f"{w['t_start_s']:.0f}–{w['t_end_s']:.0f} s",
            f"{w.get('source', '?')}" + (f" ({w['source_note']})" if w.get("source_note") else ""),
            f"{new.get('requests', '—')} / {old.get('requests', '—')}",
            f"{_percent(new.get('error_rate'))} / {_percent(old.get('error_rate'))}",
            f"{_ms(new.get('p99_ms'))} / {_ms(old.get('p99_ms'))}",
            w.get("verdict", "?"),
            "; ".join(w.get("reasons", [])),
        ]
        colour = VERDICT_COLOURS.get(w.get("verdict", ""), "#999")
        tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        rows.append(f'<tr style="border-left:4px solid {colour}">{tds}</tr>')
    head = "".join(
        f"<th>{h}</th>"
        for h in ("step", "window", "source", "requests new/old", "errors new/old", "p99 new/old", "verdict", "why")
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_timeline_html(record: dict[str, Any]) -> str:
    """A decision record as a page a person reads: headline, timeline picture, and the windows' numbers."""
    outcome = record.get("outcome") or "in progress"
    old = record.get("old")
    title = f"Rollout of {record['new']} on {record['endpoint']}: {outcome}"
    facts = [f"model {record.get('model', '?')}", f"replacing {old}" if old else "first release"]
    if record.get("started_at"):
        facts.append(f"started {record['started_at']}")
    if record.get("duration_s") is not None:
        facts.append(f"{float(record['duration_s']):.0f} s")
    lines = "".join(f"<li>{html.escape(e.get('line', ''))}</li>" for e in record.get("events", []) if e.get("line"))
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:24px;color:#222}h1{font-size:20px;margin:0 0 4px}"
        "p.facts{color:#555;margin:0 0 12px}table{border-collapse:collapse;font-size:12px;margin-top:12px}"
        "td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}ol{font-size:12px;color:#333}"
        "</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='facts'>{html.escape(' · '.join(facts))}</p>"
        f"{timeline_svg(record)}{_windows_table(record.get('windows', []))}"
        f"<h2 style='font-size:14px'>What happened</h2><ol>{lines}</ol></body></html>"
    )
