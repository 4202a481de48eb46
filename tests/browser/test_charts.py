"""The metric charts in Chromium: hover values, smoothing, log scale, zoom on every chart at
once, wall-time x, live updates without a redraw from scratch, the comparison page and the
CSV download. Jobs and their points come from ``Job.record_metrics`` (no worker)."""

from __future__ import annotations

from tests.browser.conftest import screenshot
from tests.factories import trained_job
from webapp.jobs.charts import ema
from webapp.jobs.models import Job

CHART = "#job-charts [data-metric='{}']"


def chart_js(metric: str, expression: str) -> str:
    """A JS expression on the uPlot instance ``u`` of the job page's chart of ``metric``."""
    return (
        f"(() => {{ const u = document.querySelector('#job-charts').wsCharts.charts"
        f".get('{metric}').u; return {expression}; }})()"
    )


def watch_errors(page) -> list:
    """The uncaught script errors of the tab from now on (a chart that throws draws nothing)."""
    errors: list = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def open_job(page, job: Job) -> None:
    page.errors = watch_errors(page)
    page.goto(f"{page.base}/jobs/{job.pk}/")
    page.wait_for_selector(CHART.format("test_accuracy") + " canvas")
    # Bring the charts to the top of the tab, so the screenshots show them.
    page.evaluate("document.querySelector('.metrics-head').scrollIntoView()")


def test_hovering_a_chart_shows_the_value_of_every_series(page, owner):
    job = trained_job(owner, steps=400, eval_every=20, period=100, name="fm16 nino vs adam")
    open_job(page, job)
    assert page.locator("#job-charts .chart-card").count() == 2  # train loss, test accuracy
    over = page.locator(CHART.format("train_loss") + " .u-over")
    box = over.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    screenshot(page, "charts_job_hover")
    legend = page.locator(CHART.format("train_loss") + " .u-legend")
    labels = legend.locator(".u-series .u-label").all_inner_texts()
    assert labels[:5] == ["step", "nino raw", "nino", "plain raw", "plain"]
    values = legend.locator(".u-series .u-value").all_inner_texts()
    assert values[0] not in ("—", "--", "") and int(values[0]) > 100  # the hovered step
    assert all(v not in ("—", "--", "") for v in values[1:5])
    # The hover is shared: the accuracy chart's cursor follows to the same step.
    accuracy_step = page.locator(CHART.format("test_accuracy") + " .u-legend .u-value").first
    assert accuracy_step.inner_text() not in ("—", "--", "")
    note = page.locator("#job-charts .chart-note").inner_text()
    assert "nowcasts" in note and "published behaviour" in note
    assert page.errors == []


def test_the_smoothing_slider_changes_the_line_and_keeps_the_raw_one(page, owner):
    job = trained_job(owner, steps=300, eval_every=50)
    open_job(page, job)
    raw = page.evaluate(chart_js("train_loss", "Array.from(u.data[1].slice(0, 50))"))
    before = page.evaluate(chart_js("train_loss", "Array.from(u.data[2].slice(0, 50))"))
    assert before == [pytest_approx(v) for v in ema(raw, 0.6)]  # the default, TensorBoard's
    page.locator("#job-charts input[name=smoothing]").fill("0.95")
    after = page.evaluate(chart_js("train_loss", "Array.from(u.data[2].slice(0, 50))"))
    assert after != before and after == [pytest_approx(v) for v in ema(raw, 0.95)]
    assert page.evaluate(chart_js("train_loss", "Array.from(u.data[1].slice(0, 50))")) == raw
    assert page.locator("#job-charts .chart-controls output").inner_text() == "0.95"
    # The raw line is drawn faint (a translucent stroke), the smoothed one solid.
    assert page.evaluate(chart_js("train_loss", "u.series[1]._stroke")).endswith("40")
    screenshot(page, "charts_smoothing")


def test_the_log_toggle_puts_the_y_axis_on_a_log_scale(page, owner):
    job = trained_job(owner, steps=300, eval_every=50)
    open_job(page, job)
    assert page.evaluate(chart_js("train_loss", "u.scales.y.distr")) == 1
    page.locator("#job-charts input[name=log]").check()
    page.wait_for_selector(CHART.format("train_loss") + " h4:has-text('log scale')")
    assert page.evaluate(chart_js("train_loss", "u.scales.y.distr")) == 3
    page.locator("#job-charts input[name=log]").uncheck()
    page.wait_for_function(
        "document.querySelector('#job-charts').wsCharts.charts.get('train_loss')"
        ".u.scales.y.distr === 1"
    )
    page.locator("#job-charts input[name=log]").check()
    screenshot(page, "charts_log")
    assert page.errors == []


def x_range(page, metric: str) -> tuple[float, float]:
    return tuple(page.evaluate(chart_js(metric, "[u.scales.x.min, u.scales.x.max]")))


def test_dragging_zooms_every_chart_to_the_same_range_and_double_click_resets(page, owner):
    job = trained_job(owner, steps=400, eval_every=20)
    open_job(page, job)
    full = x_range(page, "train_loss")
    assert full == x_range(page, "test_accuracy") == (1, 400)  # aligned before any zoom
    over = page.locator(CHART.format("train_loss") + " .u-over")
    box = over.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.25, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=8)
    page.mouse.up()
    zoomed = x_range(page, "train_loss")
    assert full[0] < zoomed[0] < zoomed[1] < full[1]
    assert x_range(page, "test_accuracy") == zoomed  # the other chart follows
    screenshot(page, "charts_zoom")
    over.dblclick(position={"x": box["width"] * 0.5, "y": box["height"] / 2})
    assert x_range(page, "train_loss") == full == x_range(page, "test_accuracy")
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=8)
    page.mouse.up()
    page.get_by_role("button", name="Reset zoom").click()
    assert x_range(page, "train_loss") == full


def test_the_x_axis_can_show_wall_time_from_the_recorded_times(page, owner):
    job = trained_job(owner, steps=200, eval_every=50)
    open_job(page, job)
    page.locator("#job-charts select[name=x]").select_option("time")
    page.wait_for_function(
        "document.querySelector('#job-charts').wsCharts.charts.get('train_loss')"
        ".u.series[0].label === 'time'"
    )
    xs = page.evaluate(chart_js("train_loss", "Array.from(u.data[0])"))
    assert len(xs) >= 200 and xs == sorted(xs) and xs[0] >= 0
    assert "wall time" in page.evaluate(chart_js("train_loss", "u.axes[0].label"))
    assert x_range(page, "train_loss") == x_range(page, "test_accuracy")


def test_a_running_job_gets_its_new_points_in_the_same_charts(page, owner):
    job = Job.objects.create(owner=owner, kind="train", parameters={"steps": 100})
    job.claim("test-worker")
    page.goto(f"{page.base}/jobs/{job.pk}/")
    page.wait_for_selector("#job-charts .empty:has-text('first ones appear')")
    job.record_metrics("nino:train_loss", [(s, 2.0 / s) for s in range(1, 21)])
    page.wait_for_selector(CHART.format("train_loss") + " canvas")  # the first points show
    page.evaluate("document.querySelector('.metrics-head').scrollIntoView()")
    screenshot(page, "charts_live")
    page.evaluate("window.firstChart = " + chart_js("train_loss", "u"))
    job.record_metrics("nino:train_loss", [(s, 2.0 / s) for s in range(21, 41)])
    page.wait_for_function(chart_js("train_loss", "u.data[0].length === 40"))
    same = page.evaluate(chart_js("train_loss", "u === window.firstChart"))
    assert same  # updated in place (no rebuild, no flicker) across the htmx swaps
    job.record_metrics("nino:test_accuracy", [(40, 0.5)])
    page.wait_for_selector(CHART.format("test_accuracy") + " canvas")
    assert page.evaluate(chart_js("train_loss", "u === window.firstChart"))  # a new chart only
    job.succeed("Trained")
    page.wait_for_selector(".status-line :text('Succeeded')")
    page.wait_for_function("document.querySelector('#job-charts').wsCharts.active === false")
    assert page.evaluate(chart_js("train_loss", "u === window.firstChart"))


def test_the_comparison_page_overlays_two_jobs_with_a_legend_of_their_names(page, owner):
    a = trained_job(owner, steps=300, eval_every=20, name="adam lr 0.006", speed=1.0)
    b = trained_job(
        owner, steps=300, eval_every=20, name="nino lr 0.01", speed=2.0, parameters={"lr": 0.01}
    )
    errors = watch_errors(page)
    page.goto(f"{page.base}/jobs/compare/?ids={a.pk},{b.pk}")
    page.wait_for_selector("#compare-charts [data-metric='test_accuracy'] canvas")
    labels = page.locator(
        "#compare-charts [data-metric='test_accuracy'] .u-legend .u-label"
    ).all_inner_texts()
    assert "adam lr 0.006 · nino" in labels and "nino lr 0.01 · nino" in labels
    colours = page.evaluate(
        "(() => { const u = document.querySelector('#compare-charts').wsCharts.charts"
        ".get('test_accuracy').u; return u.series.slice(1).map(s => s._stroke); })()"
    )
    assert len({c for c in colours if not c.endswith("40")}) == 2  # one colour per job
    assert page.locator("table.results tbody tr").count() == 4
    differs = page.locator("table.parameters tr.differs th").all_inner_texts()
    assert [t.rstrip(" ≠").lower() for t in differs] == ["lr"]  # the one parameter that differs
    screenshot(page, "charts_compare")
    assert errors == []


def test_the_csv_link_downloads_every_point(page, owner, tmp_path):
    job = trained_job(owner, steps=120, eval_every=40, runs=("nino",), period=40)
    open_job(page, job)
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").click()
    path = tmp_path / "metrics.csv"
    download.value.save_as(path)
    lines = path.read_text().splitlines()
    assert lines[0] == "series,step,value,recorded_at"
    assert len(lines) - 1 == job.metrics.count() == 120 + 3 + 3
    assert download.value.suggested_filename == f"job-{job.pk}-metrics.csv"


def pytest_approx(value: float):
    import pytest

    return pytest.approx(value, rel=1e-9, abs=1e-12)
