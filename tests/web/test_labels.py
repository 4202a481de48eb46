"""Names, tags and notes: set at submission, edited on the pages and through the API, by the
owner only; uploads called alike can be told apart."""

from __future__ import annotations

import pytest

from tests.conftest import upload
from tests.factories import queued_job, zoo_architecture
from webapp.architectures.models import Architecture
from webapp.core.labels import TagError, normalise_tags, tag_list
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db
MLP_1D = {"in_features": 40, "hidden": [16], "num_classes": 10}


def test_tags_are_stored_lower_cased_trimmed_de_duplicated_and_sorted():
    assert normalise_tags("  Baseline, lr-sweep baseline ,v1.2") == ",baseline,lr-sweep,v1.2,"
    assert normalise_tags(["B", "a", "a"]) == ",a,b,"
    assert normalise_tags("") == "" and normalise_tags(None) == "" and normalise_tags([]) == ""
    assert tag_list(",a,b,") == ["a", "b"] and tag_list("") == []
    # A stored value pasted back reads the same.
    assert normalise_tags(",a,b,") == ",a,b,"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("no/slashes", "'no/slashes' has characters"),
        ("x" * 41, "longer than 40"),
        ([f"t{i}" for i in range(21)], "At most 20 tags"),
        ([3], "not int"),
    ],
)
def test_a_bad_tag_is_refused_with_a_sentence_naming_it(value, words):
    with pytest.raises(TagError, match=words):
        normalise_tags(value)


def test_a_person_who_submits_a_job_with_a_name_tags_and_notes_gets_them_back(api, owner):
    architecture = zoo_architecture(owner)
    response = api.post(
        "/api/v1/jobs/",
        {"kind": "inspect", "architecture": architecture.pk, "name": "first look",
         "tags": ["Baseline", "mlp"], "notes": "before the sweep"},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["name"], body["tags"], body["notes"]) == (
        "first look", ["baseline", "mlp"], "before the sweep"
    )  # fmt: skip
    assert Job.objects.get(pk=body["id"]).tags == ",baseline,mlp,"


def test_a_job_submitted_with_a_bad_tag_is_refused_and_not_created(api, owner):
    architecture = zoo_architecture(owner)
    response = api.post(
        "/api/v1/jobs/",
        {"kind": "inspect", "architecture": architecture.pk, "tags": ["ok", "not ok!"]},
        format="json",
    )
    assert response.status_code == 400
    assert "'not ok!' has characters" in str(response.json()["tags"])
    assert not Job.objects.exists()


def test_a_retry_keeps_the_name_tags_and_notes(owner):
    job = queued_job(owner)
    job.set_labels(name="run a", tags="x", notes="n")
    job.fail("boom")
    again = job.retry()
    assert (again.name, again.tags, again.notes) == ("run a", ",x,", "n")


def test_the_owner_patches_a_jobs_labels_and_nothing_else(api, owner):
    job = queued_job(owner)
    response = api.patch(
        f"/api/v1/jobs/{job.pk}/",
        {"tags": "sweep, LR-3", "notes": "lr 1e-3", "status": "succeeded"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["tags"] == ["lr-3", "sweep"]
    job.refresh_from_db()
    assert (job.tags, job.notes, job.status, job.name) == (",lr-3,sweep,", "lr 1e-3", "queued", "")
    assert api.put(f"/api/v1/jobs/{job.pk}/", {"name": "x"}, format="json").status_code == 405


def test_an_outsider_can_neither_read_nor_patch_someone_elses_labels(outsider_api, owner):
    job = queued_job(owner)
    job.set_labels(name="private")
    response = outsider_api.patch(f"/api/v1/jobs/{job.pk}/", {"name": "mine"}, format="json")
    assert response.status_code == 404
    architecture = job.architecture
    response = outsider_api.patch(
        f"/api/v1/architectures/{architecture.pk}/", {"tags": ["x"]}, format="json"
    )
    assert response.status_code == 404
    job.refresh_from_db()
    architecture.refresh_from_db()
    assert job.name == "private" and architecture.tags == ""
    assert outsider_api.get("/api/v1/jobs/?tag=private").json()["count"] == 0


def test_the_owner_renames_and_tags_a_model_but_cannot_blank_its_name(api, owner):
    architecture = zoo_architecture(owner)
    url = f"/api/v1/architectures/{architecture.pk}/"
    response = api.patch(url, {"name": "tiny mlp", "tags": ["zoo"]}, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["name"], response.json()["tags"]) == ("tiny mlp", ["zoo"])
    response = api.patch(url, {"name": ""}, format="json")
    assert response.status_code == 400 and "name" in response.json()
    architecture.refresh_from_db()
    assert architecture.name == "tiny mlp"


def test_the_job_list_api_filters_by_tag(api, owner):
    tagged, other = queued_job(owner), queued_job(owner)
    tagged.set_labels(tags=["sweep"])
    other.set_labels(tags=["sweeping"])  # a longer tag must not match
    ids = [row["id"] for row in api.get("/api/v1/jobs/?tag=Sweep").json()["results"]]
    assert ids == [tagged.pk]


def test_the_model_list_api_filters_by_tag(api, owner):
    tagged = zoo_architecture(owner, "mlp")
    zoo_architecture(owner, "cnn").set_labels(tags="vision-ish")
    tagged.set_labels(tags="vision")
    ids = [row["id"] for row in api.get("/api/v1/architectures/?tag=vision").json()["results"]]
    assert ids == [tagged.pk]


def test_the_job_page_shows_the_labels_and_their_inline_form(browser, owner):
    job = queued_job(owner)
    job.set_labels(name="resnet baseline", tags="baseline", notes="first try")
    page = browser.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="labels"' in page and "resnet baseline" in page and "first try" in page
    assert 'href="/?tag=baseline"' in page
    form = browser.get(f"/jobs/{job.pk}/labels/?edit=1", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in form and 'name="tags"' in form and 'value="baseline"' in form


def test_the_owner_saves_labels_inline_and_gets_the_updated_partial(browser, owner):
    job = queued_job(owner)
    response = browser.post(
        f"/jobs/{job.pk}/labels/",
        {"name": "  lr sweep 3 ", "tags": "Sweep lr", "notes": "try 3e-4"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    partial = response.content.decode()
    assert "<html" not in partial and "lr sweep 3" in partial and ">sweep</a>" in partial
    job.refresh_from_db()
    assert (job.name, job.tags, job.notes) == ("lr sweep 3", ",lr,sweep,", "try 3e-4")


def test_a_bad_tag_in_the_inline_form_comes_back_with_the_reason_and_saves_nothing(browser, owner):
    job = queued_job(owner)
    response = browser.post(
        f"/jobs/{job.pk}/labels/", {"name": "x", "tags": "good b@d"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200  # htmx swaps only 2xx: the form shows its error
    assert "&#x27;b@d&#x27; has characters" in response.content.decode()
    job.refresh_from_db()
    assert (job.name, job.tags) == ("", "")


def test_without_htmx_a_save_goes_back_to_the_page(browser, owner):
    job = queued_job(owner)
    response = browser.post(f"/jobs/{job.pk}/labels/", {"name": "plain", "tags": "", "notes": ""})
    assert response.status_code == 302 and response.url == f"/jobs/{job.pk}/"
    assert Job.objects.get(pk=job.pk).name == "plain"


def test_an_outsider_cannot_see_or_change_labels_on_the_pages(outsider_browser, owner):
    job = queued_job(owner)
    architecture = job.architecture
    assert outsider_browser.get(f"/jobs/{job.pk}/labels/?edit=1").status_code == 404
    assert outsider_browser.post(f"/jobs/{job.pk}/labels/", {"name": "x"}).status_code == 404
    response = outsider_browser.post(
        f"/architectures/{architecture.pk}/labels/", {"name": "x"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 404
    assert Job.objects.get(pk=job.pk).name == ""
    assert Architecture.objects.get(pk=architecture.pk).name == architecture.name


def test_renaming_a_model_inline_refreshes_its_page_and_a_blank_name_is_refused(browser, owner):
    architecture = zoo_architecture(owner)
    page = browser.get(f"/architectures/{architecture.pk}/").content.decode()
    assert 'id="labels"' in page and "No tags or notes yet." in page
    url = f"/architectures/{architecture.pk}/labels/"
    response = browser.post(url, {"name": "", "tags": "zoo"}, HTTP_HX_REQUEST="true")
    assert "This field is required." in response.content.decode()
    assert Architecture.objects.get(pk=architecture.pk).tags == ""
    response = browser.post(url, {"name": "My MLP", "tags": "zoo"}, HTTP_HX_REQUEST="true")
    assert response.headers.get("HX-Refresh") == "true"
    response = browser.post(url, {"name": "My MLP", "tags": "zoo", "notes": "n"},
                            HTTP_HX_REQUEST="true")  # fmt: skip
    assert "HX-Refresh" not in response.headers  # the name did not change: swap in place
    architecture.refresh_from_db()
    assert (architecture.name, architecture.tags, architecture.notes) == ("My MLP", ",zoo,", "n")


def test_two_uploads_called_model_py_get_distinct_default_names(api, settings):
    settings.ALLOW_PYTHON_MODELS = True
    names = []
    for body in (b"A = 1\n", b"B = 2\n"):
        response = api.post(
            "/api/v1/architectures/", {"source": "python", "file": upload("model.py", body)}
        )
        assert response.status_code == 201, response.json()
        names.append((response.json()["name"], response.json()["sha256"]))
    (first, sha1), (second, sha2) = names
    assert first != second
    assert first == f"model.py · {sha1[:8]}" and second == f"model.py · {sha2[:8]}"


def test_an_upload_takes_its_tags_and_notes_at_creation(api, settings):
    settings.ALLOW_PYTHON_MODELS = True
    response = api.post(
        "/api/v1/architectures/",
        {"source": "python", "name": "mine", "tags": "Tiny", "notes": "hand-written",
         "file": upload("model.py", b"C = 3\n")},
    )  # fmt: skip
    assert response.status_code == 201, response.json()
    assert (response.json()["tags"], response.json()["notes"]) == (["tiny"], "hand-written")


def test_models_called_alike_show_their_short_hash_on_the_dashboard(browser, owner):
    first = zoo_architecture(owner, "mlp")
    second = zoo_architecture(owner, "cnn")
    alone = zoo_architecture(owner, "mlp", {"hidden": [16]})
    Architecture.objects.filter(pk__in=[first.pk, second.pk]).update(name="model.pt2")
    alone.set_labels(name="unique")
    queued_job(owner, first)
    page = browser.get("/").content.decode()
    assert page.count(f">{first.sha256[:8]}") == 2  # its job row and its model row
    assert f">{second.sha256[:8]}" in page
    assert alone.sha256[:8] not in page
    options = browser.get("/").context["filters"].fields["model"].choices
    assert (first.pk, f"model.pt2 ({first.sha256[:8]})") in options
    row = browser.get(f"/jobs/{Job.objects.get().pk}/row/").content.decode()
    assert f">{first.sha256[:8]}</span>" in row


def test_a_person_names_and_tags_a_run_on_the_train_form_and_finds_it_by_the_tag(browser, owner):
    architecture = zoo_architecture(owner, "mlp", MLP_1D)
    form = {"dataset": "builtin:mnist1d", "accelerator": "none", "optimizer": "adamw",
            "lr": "0.003", "batch_size": "64", "steps": "100", "eval_every": "20",
            "period": "50", "targets": "", "run_name": "  lr sweep 3e-3 ",
            "run_tags": "Sweep, baseline"}  # fmt: skip
    response = browser.post(f"/architectures/{architecture.pk}/train/", form)
    job = Job.objects.get(kind="train")
    assert response.status_code == 302
    assert job.name == "lr sweep 3e-3" and job.tags == ",baseline,sweep,"
    assert "run_name" not in job.parameters and "run_tags" not in job.parameters
    assert "lr sweep 3e-3" in browser.get("/?tag=sweep").content.decode()


def test_a_bad_tag_on_the_train_form_is_refused_before_any_job_exists(browser, owner):
    architecture = zoo_architecture(owner, "mlp", MLP_1D)
    form = {"dataset": "builtin:mnist1d", "accelerator": "none", "optimizer": "adamw",
            "lr": "0.003", "batch_size": "64", "steps": "100", "eval_every": "20",
            "period": "50", "targets": "", "run_tags": "n/a"}  # fmt: skip
    response = browser.post(f"/architectures/{architecture.pk}/train/", form)
    assert response.status_code == 303 and not Job.objects.filter(kind="train").exists()
    assert "cannot hold" in browser.get(response.url).content.decode()
