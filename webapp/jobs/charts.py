"""What the metric charts and the comparison page show, computed on the web tier.

Series are named ``<run>:<metric>`` (e.g. ``nino:train_loss``, ``plain:test_accuracy``) or
just ``<metric>``; ``<run>:nowcast`` series hold a 1.0 at each step where NiNo jumped. The
browser draws the charts (uPlot, ``static/js/charts/``) from :func:`chart_payload`; this module
also holds the arithmetic the comparison's results table needs (EMA smoothing, steps to a
target, speed-ups), so that the page, the CSV and the API agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

MARK_SERIES = "nowcast"
# Above this many points a series is thinned for the page (labelled with its factor); the
# exports and the API always serve every point.
MAX_CHART_POINTS = 20_000
# One colour per run on a job page, one per job on the comparison page.
PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#db2777", "#65a30d"]
PLAIN_COLOUR = "#dc2626"
# The smoothing the comparison applies before looking for a loss target (raw loss is noisy).
LOSS_SMOOTHING = 0.9
DEFAULT_ACCURACY_TARGETS = (0.7, 0.8)
NOWCAST_NOTE = (
    "Dashed purple lines mark NiNo nowcasts (parameter jumps). Right after a jump accuracy "
    "drops sharply and recovers within about 10 steps — the published behaviour, not a failure."
)


def split_name(name: str) -> tuple[str, str]:
    """``"nino:train_loss"`` → ``("nino", "train_loss")``; ``"train_loss"`` → ``("", …)``."""
    run, _, metric = name.rpartition(":")
    return run, metric


def run_order(run: str) -> tuple[int, str]:
    """Accelerated runs first (they are trained first), the plain baseline last."""
    return (run == "plain", run)


def ema(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's debiased exponential moving average.

    ``last = last * w + (1 - w) * x`` starting from 0, divided by ``1 - w**t`` (``t`` counts
    the finite values seen) so the first points are not pulled towards zero. Non-finite values
    pass through unchanged and do not move the average.
    """
    if not 0 <= weight < 1:
        raise ValueError("The smoothing weight must be in [0, 1).")
    last, seen, out = 0.0, 0, []
    for value in values:
        if not math.isfinite(value):
            out.append(value)
            continue
        last = last * weight + (1 - weight) * value
        seen += 1
        out.append(last / (1 - weight**seen))
    return out


def steps_to_target(
    points: Iterable[Sequence[float]], target: float, *, higher_is_better: bool = True
) -> int | None:
    """The first step whose value reaches ``target`` (at or above it, or at or below it when
    lower is better, as for a loss); None when no point does."""
    for step, value in points:
        if (value >= target) if higher_is_better else (value <= target):
            return int(step)
    return None


def ordinal(number: int) -> str:
    """1 → "1st", 2 → "2nd", 11 → "11th", 23 → "23rd"."""
    if 10 <= number % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def thin_factor(count: int, limit: int = MAX_CHART_POINTS) -> int:
    """Keep every n-th point so that at most ``limit`` remain (1: every point is drawn)."""
    return max(1, math.ceil(count / limit))


def _epoch(moment: datetime | None) -> float | None:
    return round(moment.timestamp(), 3) if moment else None


def series_entry(
    name: str, rows: list[tuple[int, float, datetime | None]], *, label: str, colour: str,
    dash: bool = False, thin: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """One series for the browser: steps, values, wall times (epoch seconds) and styling."""
    run, metric = split_name(name)
    factor = thin_factor(len(rows)) if thin else 1
    shown = rows[::factor]
    if factor > 1 and shown[-1] is not rows[-1]:
        shown.append(rows[-1])  # the latest point is always drawn
    return {
        "name": name, "run": run, "metric": metric, "label": label, "colour": colour,
        "dash": dash, "points": len(rows), "factor": factor,
        "steps": [r[0] for r in shown],
        # JSON has no NaN or infinity: a diverged value is sent as null (a gap).
        "values": [r[1] if math.isfinite(r[1]) else None for r in shown],
        "times": [_epoch(r[2]) for r in shown],
    }  # fmt: skip


def run_colours(runs: Iterable[str]) -> dict[str, str]:
    """A stable colour per run of one job: the plain baseline red, accelerated runs from blue."""
    colours, index = {}, 0
    for run in sorted(set(runs), key=run_order):
        if run == "plain":
            colours[run] = PLAIN_COLOUR
        else:
            colours[run] = PALETTE[0] if index == 0 else PALETTE[(index + 1) % len(PALETTE)]
            index += 1
    return colours


def chart_payload(job: Any, after: datetime | None = None) -> dict[str, Any]:
    """What the job page's charts draw: every series of ``job`` (only the points recorded
    after ``after`` when given, for the live updates), the job's state and the next cursor."""
    rows = job.metrics.order_by("series", "step")
    if after is not None:
        rows = rows.filter(recorded_at__gt=after)
    by_series: dict[str, list[tuple[int, float, datetime | None]]] = {}
    cursor = after
    for name, step, value, recorded in rows.values_list("series", "step", "value", "recorded_at"):
        by_series.setdefault(name, []).append((step, value, recorded))
        if recorded and (cursor is None or recorded > cursor):
            cursor = recorded
    all_runs = job.metrics.values_list("series", flat=True).distinct()
    colours = run_colours(split_name(name)[0] for name in all_runs)
    # Paired runs coincide until the first jump: the plain baseline is dashed, so the
    # accelerated line stays visible under it.
    paired = len(colours) > 1
    series = [
        series_entry(
            name, points, label=split_name(name)[0] or split_name(name)[1],
            colour=colours.get(split_name(name)[0], PALETTE[0]), thin=after is None,
            dash=paired and split_name(name)[0] == "plain",
        )  # fmt: skip
        for name, points in by_series.items()
    ]
    return {
        "job": job.pk,
        "status": job.status,
        "active": job.is_active,
        "started": _epoch(job.started_at or job.created_at),
        "cursor": cursor.isoformat() if cursor else None,
        "incremental": after is not None,
        "series": series,
        "note": NOWCAST_NOTE,
    }


# --- comparison ------------------------------------------------------------------------------
def _test_metric(metrics: Iterable[str]) -> str | None:
    tests = sorted(m for m in metrics if m.startswith("test_"))
    return tests[0] if tests else None


def comparison(
    jobs: Sequence[Any],
    targets: Sequence[float] | None = None,
    loss_target: float | None = None,
) -> dict[str, Any]:
    """Compare jobs (in the given order): their lines for the charts (one colour per job, the
    plain baseline of a job dashed), a parameter table with the differing rows marked, and per
    run the final metrics, steps to each target and the speed-up over the first run."""
    lines: list[dict[str, Any]] = []
    series: list[dict[str, Any]] = []
    for index, job in enumerate(jobs):
        colour = PALETTE[index % len(PALETTE)]
        by_series: dict[str, list[tuple[int, float, datetime | None]]] = {}
        for name, step, value, recorded in job.metrics.order_by("series", "step").values_list(
            "series", "step", "value", "recorded_at"
        ):
            by_series.setdefault(name, []).append((step, value, recorded))
        runs = sorted({split_name(n)[0] for n in by_series}, key=run_order)
        title = job_title(job)
        for run in runs:
            label = f"{title} · {run}" if run and len(runs) > 1 else title
            mine = {split_name(n)[1]: p for n, p in by_series.items() if split_name(n)[0] == run}
            lines.append({"job": job, "run": run, "label": label, "colour": colour,
                          "dash": run == "plain" and len(runs) > 1, "series": mine})  # fmt: skip
            for metric, points in mine.items():
                series.append(
                    series_entry(f"{run}:{metric}" if run else metric, points, label=label,
                                 colour=colour, dash=lines[-1]["dash"])  # fmt: skip
                )
                series[-1]["job"] = job.pk
    test_metric = _test_metric(m for line in lines for m in line["series"])
    higher = test_metric != "test_perplexity"
    if targets is None:
        wanted = set(DEFAULT_ACCURACY_TARGETS) if higher else set()
        for job in jobs:
            wanted.update(float(t) for t in job.parameters.get("targets", []) or [])
        targets = sorted(wanted)[:6]
    results = [_result(line, test_metric, targets, higher, loss_target) for line in lines]
    first = results[0] if results else None
    for result in results:
        result["speedup"] = {
            key: _ratio(first["steps_to_target"][key], steps) if first else None
            for key, steps in result["steps_to_target"].items()
        }
        result["reference"] = result is first
        # (target, steps, speed-up) for the page's table, in the order of the columns.
        result["cells"] = [
            (key, steps, result["speedup"][key]) for key, steps in result["steps_to_target"].items()
        ]
    return {
        "jobs": list(jobs),
        "series": series,
        "results": results,
        "targets": list(targets),
        "loss_target": loss_target,
        "test_metric": test_metric,
        "parameters": parameter_table(jobs),
        "note": NOWCAST_NOTE,
    }


def _ratio(reference: int | None, steps: int | None) -> float | None:
    return round(reference / steps, 2) if reference and steps else None


def _result(
    line: dict[str, Any], test_metric: str | None, targets: Sequence[float], higher: bool,
    loss_target: float | None,
) -> dict[str, Any]:  # fmt: skip
    job, points = line["job"], line["series"]
    test = [(s, v) for s, v, _ in points.get(test_metric or "", [])]
    loss = [(s, v) for s, v, _ in points.get("train_loss", [])]
    reached: dict[str, int | None] = {
        f"{test_metric} {target:g}": steps_to_target(test, target, higher_is_better=higher)
        for target in targets
    }
    if loss_target is not None:
        smooth = ema([v for _, v in loss], LOSS_SMOOTHING) if loss else []
        reached[f"train_loss {loss_target:g}"] = steps_to_target(
            zip([s for s, _ in loss], smooth, strict=True), loss_target, higher_is_better=False
        )
    return {
        "job": job.pk,
        "name": job_title(job),
        "run": line["run"],
        "label": line["label"],
        "colour": line["colour"],
        "steps": max((s for s, _ in loss), default=None),
        "final_test": test[-1][1] if test else None,
        "best_test": (max if higher else min)(v for _, v in test) if test else None,
        "final_loss": loss[-1][1] if loss else None,
        "nowcasts": len(points.get(MARK_SERIES, [])),
        "steps_to_target": reached,
    }


def job_title(job: Any) -> str:
    """``name`` when the job has one, else ``"#12 resnet18"`` (its id and model)."""
    if getattr(job, "name", ""):
        return job.name
    model = job.architecture.name if job.architecture_id else job.get_kind_display()
    return f"#{job.pk} {model}"


def parameter_table(jobs: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per parameter (model, checkpoint and every key of ``parameters``), the value
    per job (``"—"`` when a job has none) and whether the jobs differ on it."""
    rows: list[dict[str, Any]] = []

    def add(label: str, values: list[str]) -> None:
        rows.append({"label": label, "values": values, "differs": len(set(values)) > 1})

    add("kind", [job.get_kind_display() for job in jobs])
    add("model", [job.architecture.name if job.architecture_id else "—" for job in jobs])
    add("checkpoint", [job.checkpoint.name if job.checkpoint_id else "—" for job in jobs])
    keys: list[str] = []
    for job in jobs:
        keys += [k for k in job.parameters if k not in keys]
    for key in keys:
        add(key.replace("_", " "), [format_value(job.parameters.get(key, "—")) for job in jobs])
    return rows


def format_value(value: Any) -> str:
    """A parameter as a person reads it: lists comma-separated, booleans yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(format_value(v) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def comparison_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The comparison's results as flat rows (one per run of each job) for CSV and JSON."""
    rows = []
    models = {j.pk: j.architecture.name if j.architecture_id else "" for j in data["jobs"]}
    for result in data["results"]:
        row = {
            "job": result["job"], "name": result["name"], "run": result["run"],
            "model": models.get(result["job"], ""), "steps": result["steps"],
            "final_test": result["final_test"], "best_test": result["best_test"],
            "final_loss": result["final_loss"], "nowcasts": result["nowcasts"],
        }  # fmt: skip
        for key, steps in result["steps_to_target"].items():
            row[f"steps to {key}"] = steps
            row[f"speed-up {key}"] = result["speedup"][key]
        rows.append(row)
    return rows


def rows_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows of dicts as CSV text (the columns of the first row unless given; None is empty)."""
    import csv
    import io

    out = io.StringIO()
    fields = list(columns or (rows[0].keys() if rows else []))
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def parse_ids(values: Iterable[str]) -> tuple[list[int], list[str]]:
    """Job ids from ``?ids=3,5,8`` and/or ``?ids=3&ids=5``, in order, without repeats; the
    pieces that are not ids come back second (the page names them)."""
    ids: list[int] = []
    bad: list[str] = []
    for value in values:
        for piece in value.replace(" ", ",").split(","):
            if not piece:
                continue
            if piece.isdigit() and int(piece) > 0:
                if int(piece) not in ids:
                    ids.append(int(piece))
            else:
                bad.append(piece[:20])
    return ids, bad


def parse_targets(text: str | None) -> list[float] | None:
    """``"0.7, 0.8"`` → ``[0.7, 0.8]``; None (use the defaults) when empty or not numbers."""
    if not text:
        return None
    try:
        values = sorted({float(t) for t in text.replace(";", ",").split(",") if t.strip()})
    except ValueError:
        return None
    return [v for v in values if math.isfinite(v)][:10] or None


def parse_number(text: str | None) -> float | None:
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def owned_jobs(owner: Any, ids: Sequence[int]) -> tuple[list[Any], list[int]]:
    """The owner's jobs among ``ids`` in the order asked, and the ids that are not theirs (or
    do not exist: the two are never told apart)."""
    from webapp.jobs.models import Job

    found = Job.objects.filter(owner=owner, pk__in=ids).select_related(
        "architecture", "checkpoint"
    )
    by_id = {job.pk: job for job in found}
    return [by_id[i] for i in ids if i in by_id], [i for i in ids if i not in by_id]


#: How many jobs one comparison shows (the page and the API alike).
MAX_COMPARED_JOBS = 12


def comparison_of(
    owner: Any, ids_given: Iterable[str], targets: str | None, loss: str | None
) -> tuple[dict[str, Any] | None, list[int], list[str]]:
    """The comparison a page or API request asks for (``?ids=``, ``?targets=``, ``?loss=``):
    the data (None when no id is one of the owner's jobs), the ids left out (not theirs, or
    beyond ``MAX_COMPARED_JOBS``) and the pieces that are not ids."""
    ids, bad = parse_ids(ids_given)
    jobs, missing = owned_jobs(owner, ids[:MAX_COMPARED_JOBS])
    if not jobs:
        return None, missing, bad
    data = comparison(
        jobs, targets=parse_targets(targets), loss_target=parse_number(loss)
    )
    return data, missing + ids[MAX_COMPARED_JOBS:], bad


def duration_text(seconds: float) -> str:
    """65 → "1 min 5 s", 3725 → "1 h 2 min", 12 → "12 s"."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def compare_json(
    data: dict[str, Any], rows: list[dict[str, Any]], not_found: Sequence[int] = ()
) -> dict[str, Any]:
    """The comparison as the API and the JSON download give it: the jobs with their
    parameters, the targets and one results row per run (as in the CSV)."""
    return json_safe({
        "jobs": [
            {"id": job.pk, "name": job_title(job), "kind": job.kind, "status": job.status,
             "model": job.architecture.name if job.architecture_id else None,
             "checkpoint": job.checkpoint_id, "parameters": job.parameters}
            for job in data["jobs"]
        ],
        "targets": data["targets"],
        "loss_target": data["loss_target"],
        "test_metric": data["test_metric"],
        "not_found": list(not_found),
        "results": rows,
    })  # fmt: skip
