"""Comparing jobs: the arithmetic of the results table (EMA smoothing, steps to a target,
speed-ups), the page at /jobs/compare/?ids=…, its downloads and the API; other people's
jobs are never shown."""

from __future__ import annotations

import csv
import io
import math

import pytest

from tests.factories import trained_job
from webapp.jobs.charts import comparison, ema, ordinal, parse_ids, steps_to_target


# --- the arithmetic --------------------------------------------------------------------------
def test_ema_is_tensorboards_debiased_average():
    w = 0.6
    values = [1.0, 2.0, 3.0]
    last, expected = 0.0, []
    for t, x in enumerate(values, start=1):
        last = last * w + (1 - w) * x
        expected.append(last / (1 - w**t))
    assert ema(values, w) == pytest.approx(expected)
    assert ema(values, w)[0] == pytest.approx(1.0)  # debiased: the first point is not pulled to 0
    assert ema(values, 0.0) == values


def test_ema_of_a_constant_stays_constant_and_lets_nan_pass_through():
    assert ema([5.0] * 10, 0.9) == pytest.approx([5.0] * 10)
    smoothed = ema([1.0, float("nan"), 1.0], 0.5)
    assert smoothed[0] == smoothed[2] == pytest.approx(1.0) and math.isnan(smoothed[1])
    with pytest.raises(ValueError):
        ema([1.0], 1.0)


def test_steps_to_target_is_the_first_step_reaching_it_either_way():
    accuracy = [(100, 0.5), (200, 0.72), (300, 0.69), (400, 0.81)]
    assert steps_to_target(accuracy, 0.7) == 200
    assert steps_to_target(accuracy, 0.8) == 400
    assert steps_to_target(accuracy, 0.9) is None
    loss = [(1, 2.0), (2, 1.0), (3, 0.4)]
    assert steps_to_target(loss, 0.5, higher_is_better=False) == 3


def test_ordinals_read_as_english():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
    ]  # fmt: skip


def test_ids_come_comma_separated_or_repeated_in_order_without_repeats():
    assert parse_ids(["3,5", "8", "5"]) == ([3, 5, 8], [])
    assert parse_ids(["3,x,-1"]) == ([3], ["x", "-1"])


@pytest.mark.django_db
def test_the_comparison_finds_steps_to_targets_and_speedups_over_the_first_run(owner):
    fast = trained_job(owner, steps=300, eval_every=10, runs=("nino",), speed=2.0, name="fast")
    slow = trained_job(owner, steps=300, eval_every=10, runs=("nino",), speed=1.0, name="slow")
    data = comparison([fast, slow], targets=[0.7, 0.8], loss_target=0.5)
    first, second = data["results"]
    # accuracy = 0.95 (1 - exp(-rate s / 60)) reaches 0.7 just after s = 39.8 / rate: the
    # first evaluation at or above it is step 50 (fast) and step 90 (slow)
    assert first["steps_to_target"]["test_accuracy 0.7"] == 50
    assert second["steps_to_target"]["test_accuracy 0.7"] == 90
    assert second["speedup"]["test_accuracy 0.7"] == 0.56 and first["reference"]
    assert first["steps_to_target"]["train_loss 0.5"] < second["steps_to_target"]["train_loss 0.5"]
    assert first["final_test"] == pytest.approx(0.95 * (1 - math.exp(-10)), rel=1e-6)
    rows = {row["label"]: row for row in data["parameters"]}
    assert not rows["lr"]["differs"] and rows["kind"]["values"] == ["Train", "Train"]


# --- the page --------------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_person_compares_two_jobs_with_curves_parameters_and_results(browser, owner):
    a = trained_job(owner, name="adam baseline", parameters={"lr": 0.006})
    b = trained_job(owner, name="higher lr", parameters={"lr": 0.01})
    response = browser.get(f"/jobs/compare/?ids={a.pk},{b.pk}")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Comparing 2 jobs" in page and "adam baseline" in page and "higher lr" in page
    assert 'id="compare-data"' in page and "data-charts" in page
    assert '<tr class="differs"><th scope="row">Lr</th><td>0.006</td><td>0.01</td>' in page
    assert '<tr><th scope="row">Batch size</th>' in page  # the same for both: not highlighted
    assert "Steps to accuracy 0.7" in page and "reference" in page
    assert f"?ids={a.pk},{b.pk}" in page  # the address that holds the selection


@pytest.mark.django_db
def test_repeated_ids_select_the_same_jobs(browser, owner):
    a, b = trained_job(owner, name="one"), trained_job(owner, name="two")
    page = browser.get(f"/jobs/compare/?ids={a.pk}&ids={b.pk}").content.decode()
    assert "Comparing 2 jobs" in page


@pytest.mark.django_db
def test_someone_elses_job_is_dropped_with_a_note_and_never_shown(browser, owner, outsider):
    mine = trained_job(owner, name="mine")
    theirs = trained_job(outsider, name="their secret run")
    page = browser.get(f"/jobs/compare/?ids={mine.pk},{theirs.pk}").content.decode()
    assert "Comparing 1 job" in page and "their secret run" not in page
    assert f"Not shown: #{theirs.pk}" in page


@pytest.mark.django_db
def test_an_outsider_comparing_only_someone_elses_jobs_gets_404(outsider_browser, owner):
    job = trained_job(owner)
    assert outsider_browser.get(f"/jobs/compare/?ids={job.pk}").status_code == 404
    assert outsider_browser.get(f"/jobs/compare.csv?ids={job.pk}").status_code == 404
    assert outsider_browser.get("/jobs/compare/").status_code == 404


@pytest.mark.django_db
def test_the_comparison_downloads_as_csv_and_json(browser, owner):
    a, b = trained_job(owner, name="a"), trained_job(owner, name="b", speed=2.0)
    page = browser.get(f"/jobs/compare/?ids={a.pk},{b.pk}").content.decode()
    assert f'href="/jobs/compare.csv?ids={a.pk}%2C{b.pk}"' in page
    response = browser.get(f"/jobs/compare.csv?ids={a.pk},{b.pk}&targets=0.7")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["name"], r["run"]) for r in rows] == [
        ("a", "nino"), ("a", "plain"), ("b", "nino"), ("b", "plain"),
    ]  # fmt: skip
    assert "steps to test_accuracy 0.7" in rows[0] and rows[2]["speed-up test_accuracy 0.7"]
    body = browser.get(f"/jobs/compare.json?ids={a.pk},{b.pk}").json()
    assert [j["name"] for j in body["jobs"]] == ["a", "b"] and len(body["results"]) == 4


# --- the API ---------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_api_compares_your_jobs_and_lists_the_ids_it_left_out(api, owner, outsider):
    a, b = trained_job(owner, name="a"), trained_job(owner, name="b")
    theirs = trained_job(outsider, name="theirs")
    body = api.get(f"/api/v1/jobs/compare/?ids={a.pk},{b.pk},{theirs.pk}").json()
    assert [j["id"] for j in body["jobs"]] == [a.pk, b.pk]
    assert body["not_found"] == [theirs.pk] and body["targets"] == [0.7, 0.8]
    assert body["jobs"][0]["parameters"]["lr"] == 0.006
    text = api.get(f"/api/v1/jobs/compare/?ids={a.pk}&ids={b.pk}&format=csv").content.decode()
    assert text.splitlines()[0].startswith("job,name,run,model,steps,final_test")


@pytest.mark.django_db
def test_the_outsider_gets_404_from_the_comparison_api(outsider_api, owner):
    job = trained_job(owner)
    assert outsider_api.get(f"/api/v1/jobs/compare/?ids={job.pk}").status_code == 404
