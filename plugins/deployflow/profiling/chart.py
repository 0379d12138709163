"""Inline SVG of latency against achieved rate, one line per candidate (no scripts, no network).

The latency axis is logarithmic: above capacity latency grows by orders of magnitude,
which would flatten every passing step onto the axis of a linear chart.
"""

from __future__ import annotations

import html
import math
from typing import Any

WIDTH, HEIGHT = 760, 420
LEFT, RIGHT, TOP, BOTTOM = 64, 190, 20, 48
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _points(candidate: dict[str, Any], key: str) -> list[tuple[float, float]]:
    pts = [(s["measuredQueriesPerSecond"], s["latencyMs"][key]) for s in candidate["steps"]]
    return sorted((x, y) for x, y in pts if y > 0)


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


def latency_chart(report: dict[str, Any]) -> str:
    """p99 (solid) and p50 (dashed) latency against achieved rate, with the SLO as a horizontal line."""
    candidates = report["candidates"]
    slo_ms = float(report["slo"]["latency_ms"])
    all_pts = [p for c in candidates for key in ("p50", "p99") for p in _points(c, key)]
    x_max = max([x for x, _ in all_pts] + [1.0]) * 1.05
    y_lo = math.log10(min([y for _, y in all_pts] + [slo_ms]) / 1.5)
    y_hi = math.log10(max([y for _, y in all_pts] + [slo_ms]) * 1.5)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + plot_w * x / x_max

    def sy(y_ms: float) -> float:
        return TOP + plot_h * (1 - (math.log10(y_ms) - y_lo) / (y_hi - y_lo))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="latency against request rate">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>',
    ]
    step = _nice_step(x_max)
    for i in range(int(x_max / step) + 1):
        x = i * step
        parts.append(f'<text x="{sx(x):.1f}" y="{TOP + plot_h + 16}" font-size="11" text-anchor="middle">{x:g}</text>')
    for exp in range(math.floor(y_lo), math.ceil(y_hi) + 1):
        for m in (1, 2, 5):
            y = m * 10.0**exp
            if y_lo <= math.log10(y) <= y_hi:
                parts.append(
                    f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#eee"/>'
                    f'<text x="{LEFT - 6}" y="{sy(y) + 4:.1f}" font-size="11" text-anchor="end">{y:g}</text>'
                )
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" font-size="12" text-anchor="middle">'
        "achieved requests/s</text>"
        f'<text x="14" y="{TOP + plot_h / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2})">latency ms (log)</text>'
    )
    slo_label = f"SLO p{report['slo']['percentile']:g} ≤ {slo_ms:g} ms"
    parts.append(
        f'<line class="slo" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{sy(slo_ms):.1f}" y2="{sy(slo_ms):.1f}" '
        f'stroke="#000" stroke-dasharray="6 3"/>'
        f'<text x="{LEFT + plot_w + 6}" y="{sy(slo_ms) + 4:.1f}" font-size="11">{html.escape(slo_label)}</text>'
    )
    for i, c in enumerate(candidates):
        colour, name = COLOURS[i % len(COLOURS)], html.escape(c["name"])
        for key, dash in (("p99", ""), ("p50", ' stroke-dasharray="3 3"')):
            pts = _points(c, key)
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            parts.append(
                f'<polyline class="{key}" data-candidate="{name}" points="{coords}" fill="none" '
                f'stroke="{colour}" stroke-width="2"{dash}/>'
            )
            if key == "p99":
                parts.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>' for x, y in pts)
        legend_y = TOP + 40 + 18 * i
        parts.append(
            f'<line x1="{LEFT + plot_w + 6}" x2="{LEFT + plot_w + 26}" y1="{legend_y}" y2="{legend_y}" '
            f'stroke="{colour}" stroke-width="2"/>'
            f'<text x="{LEFT + plot_w + 30}" y="{legend_y + 4}" font-size="11">{name}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w + 6}" y="{TOP + 40 + 18 * len(candidates) + 8}" font-size="10">'
        "solid p99, dashed p50</text></svg>"
    )
    return "".join(parts)
