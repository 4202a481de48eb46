"""Server-drawn line charts for metric series (no JavaScript charting library needed)."""

from __future__ import annotations

import math

from webapp.jobs.models import downsample

WIDTH, HEIGHT, PAD = 640, 220, 36
DISPLAY_POINTS = 400
COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"]


def line_chart(series: dict[str, list[list[float]]]) -> dict | None:
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
        "downsampled": any(line["shown"] < line["count"] for line in lines),
    }  # fmt: skip
