"""Server-drawn line charts for metric series (no JavaScript charting library needed).

Series are named ``<run>:<metric>`` (e.g. ``nino:train_loss``, ``plain:test_accuracy``) or just
``<metric>``; each metric gets one chart with a line per run. ``<run>:nowcast`` series are drawn
as dashed vertical marks at the steps where a nowcast happened.
"""

from __future__ import annotations

import math

from webapp.jobs.models import downsample

WIDTH, HEIGHT, PAD = 640, 220, 36
DISPLAY_POINTS = 400
COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"]
MARK_SERIES = "nowcast"


def metric_charts(series: dict[str, list[list[float]]]) -> list[dict]:
    """One chart per metric, runs as lines, nowcasts as marks; empty when there is nothing."""
    by_metric: dict[str, dict[str, list[list[float]]]] = {}
    marks: set[float] = set()
    for name, points in series.items():
        run, _, metric = name.rpartition(":")
        if metric == MARK_SERIES:
            marks.update(step for step, _ in points)
            continue
        by_metric.setdefault(metric, {})[run or metric] = points
    charts = []
    for metric in sorted(by_metric, key=lambda m: (not m.startswith("train"), m)):
        chart = line_chart(by_metric[metric], sorted(marks))
        if chart:
            chart["title"] = metric.replace("_", " ")
            charts.append(chart)
    return charts


def line_chart(series: dict[str, list[list[float]]], marks: list[float] = ()) -> dict | None:
    """Scale the series into one SVG chart; each is thinned to ``DISPLAY_POINTS`` for display."""
    finite = {name: [p for p in points if math.isfinite(p[1])] for name, points in series.items()}
    finite = {name: points for name, points in finite.items() if points}
    if not finite:
        return None
    steps = [p[0] for points in finite.values() for p in points]
    values = [p[1] for points in finite.values() for p in points]
    x0, x1 = min(steps), max(steps)
    y0, y1 = min(values), max(values)
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + 1

    def sx(step: float) -> float:
        return PAD + (step - x0) / (x1 - x0) * (WIDTH - 2 * PAD)

    def sy(value: float) -> float:
        return HEIGHT - PAD - (value - y0) / (y1 - y0) * (HEIGHT - 2 * PAD)

    lines = []
    for index, (name, points) in enumerate(sorted(finite.items())):
        shown = downsample(points, DISPLAY_POINTS)
        lines.append(
            {
                "name": name,
                "colour": COLOURS[index % len(COLOURS)],
                "points": " ".join(f"{sx(s):.1f},{sy(v):.1f}" for s, v in shown),
                "count": len(points),
                "shown": len(shown),
                "last": points[-1][1],
            }
        )
    return {
        "width": WIDTH, "height": HEIGHT, "pad": PAD, "lines": lines,
        "x0": x0, "x1": x1, "y0": y0, "y1": y1,
        "marks": [round(sx(m), 1) for m in marks if x0 <= m <= x1],
        "mark_top": PAD, "mark_bottom": HEIGHT - PAD,
        "downsampled": any(line["shown"] < line["count"] for line in lines),
    }  # fmt: skip
