"""Checks before a job is queued (issue 11, items 4 and 5): a job that would fail on the worker
is refused by the page and the API with the reason, before it exists; the form starts on
choices that can run; the GHN's domain and measured accuracy sit next to the Predict button.

The architectures here carry the facts an inspect job stores (``record_inspection``, as
``workers/tasks/inspect.py`` calls it; the real inspection is tested in
``tests/jobs/test_inspect_task.py``), so these tests need no worker and no torch.
"""

from __future__ import annotations

import pytest

from tests.factories import zoo_architecture
from webapp.architectures.models import Architecture
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db

MLP_1D = {"in_features": 40, "hidden": [32], "num_classes": 10}
RESNET_LAYERS = {"Conv2d": 20, "BatchNorm2d": 20, "ReLU": 17, "MaxPool2d": 1, "Linear": 1}
SEVEN_BY_SEVEN = (
    "Layer conv1 has a 7x7 kernel (49 positions); the parameter graph holds at most 9 "
    "positions per edge (3x3)."
)


def inspected(architecture: Architecture, **facts) -> Architecture:
    """Record an inspection with the facts the worker would have stored."""
    values = {
        "num_params": 1000, "input_shape": [1, 28, 28], "layers": {"Conv2d": 3, "Linear": 1},
        "output_shape": [10], "input_dtype": "float32",
        "nino": {"supported": True, "reason": ""}, "ghn": {"supported": True, "reason": ""},
    }  # fmt: skip
    values.update(facts)
    architecture.record_inspection(**values)
    return architecture


def resnet18(owner) -> Architecture:
    return inspected(
        zoo_architecture(owner, "resnet18"),
        num_params=11_689_512, input_shape=[3, 224, 224], layers=RESNET_LAYERS,
        output_shape=[1000], nino={"supported": False, "reason": SEVEN_BY_SEVEN},
    )  # fmt: skip


def train_form(**overrides) -> dict:
    form = {"dataset": "builtin:fashion_mnist", "accelerator": "none", "optimizer": "adamw",
            "lr": "0.003", "batch_size": "64", "steps": "100", "eval_every": "20",
            "period": "50", "targets": "0.5"}  # fmt: skip
    form.update(overrides)
    return form


def post_train(api, architecture, **parameters):
    body = {"kind": "train", "architecture": architecture.pk,
            "parameters": {"dataset": "fashion_mnist", "accelerator": "none", **parameters}}
    return api.post("/api/v1/jobs/", body, format="json")


def refusal_text(response) -> str:
    return " ".join(str(m) for m in response.json()["parameters"])


# ----------------------------------------------------------------------------- refusals


def test_a_script_that_trains_resnet18_on_fashion_mnist_is_refused_with_the_reason(api, owner):
    response = post_train(api, resnet18(owner))
    assert response.status_code == 400
    text = refusal_text(response)
    assert "resnet18 takes 3-channel 224×224 images" in text
    assert "Fashion-MNIST has 1-channel 28×28 images" in text
    assert "1,000 outputs, but Fashion-MNIST has 10 classes" in text
    assert not Job.objects.exists()


def test_a_person_who_trains_resnet18_on_fashion_mnist_is_refused_before_a_job_exists(
    browser, owner
):
    architecture = resnet18(owner)
    page = f"/architectures/{architecture.pk}/"
    response = browser.post(f"{page}train/", train_form())
    assert response.status_code == 303 and response.url == f"{page}#train"
    assert not Job.objects.exists()
    shown = browser.get(page).content.decode()
    assert "Not started:" in shown and "its first layer cannot read them" in shown
    # Shown once: a refresh of the page neither re-submits nor repeats the refusal box.
    assert "Not started:" not in browser.get(page).content.decode()


def test_a_1000_class_head_is_refused_for_a_10_class_data_set_with_the_argument_to_change(
    api, owner
):
    architecture = inspected(zoo_architecture(owner, "cnn", {"num_classes": 1000}),
                             output_shape=[1000])  # fmt: skip
    response = post_train(api, architecture)
    assert response.status_code == 400
    text = refusal_text(response)
    assert "output layer has 1,000 outputs, but Fashion-MNIST has 10 classes" in text
    assert "Add the model again with num_classes=10" in text


def test_a_model_not_inspected_is_checked_from_the_catalog(api, owner):
    # The zoo knows resnet18's shapes without building it: the refusal needs no inspection.
    architecture = zoo_architecture(owner, "resnet18")
    assert architecture.inspected_at is None
    response = post_train(api, architecture)
    assert response.status_code == 400 and "3-channel" in refusal_text(response)


def test_an_uploaded_model_not_inspected_yet_is_let_through_with_a_warning(api, owner):
    from webapp.jobs.kinds import get_kind

    architecture = Architecture.objects.create(owner=owner, name="model.pt2", source="export",
                                               sha256="a" * 64)  # fmt: skip
    verdict = get_kind("train").preview(architecture, owner)
    assert verdict.ok and any("not inspected yet" in w for w in verdict.warnings)
    response = post_train(api, architecture)
    assert response.status_code == 201, response.json()


def test_an_uploaded_data_set_is_checked_from_what_its_upload_check_stored(api, owner):
    from webapp.datasets.models import Dataset

    colour = Dataset.objects.create(owner=owner, name="colour", format="npz", file="d.npz",
                                    file_bytes=1, sha256="b" * 64,
                                    summary={"samples": 100, "input_shape": [3, 32, 32],
                                             "classes": 10})  # fmt: skip
    architecture = inspected(zoo_architecture(owner, "cnn"))
    response = api.post("/api/v1/jobs/", {"kind": "train", "architecture": architecture.pk,
                        "parameters": {"dataset_id": colour.pk, "accelerator": "none"}},
                        format="json")  # fmt: skip
    assert response.status_code == 400
    assert "your data set 'colour' has 3-channel 32×32 images" in refusal_text(response)
    assert "in_channels=3" in refusal_text(response)  # the zoo argument that would fit it


def test_text_is_refused_for_an_image_classifier(api, owner):
    response = post_train(api, inspected(zoo_architecture(owner, "cnn")), dataset="shakespeare")
    assert response.status_code == 400
    assert "character-level text: it needs a language model" in refusal_text(response)


def test_nino_on_a_model_it_cannot_read_is_refused_and_the_plain_optimizer_is_not(api, owner):
    architecture = inspected(zoo_architecture(owner, "cnn"),
                             nino={"supported": False, "reason": SEVEN_BY_SEVEN})  # fmt: skip
    response = post_train(api, architecture, accelerator="nino")
    assert response.status_code == 400
    assert "NiNo cannot read cnn: Layer conv1 has a 7x7 kernel" in refusal_text(response)
    assert post_train(api, architecture, accelerator="none").status_code == 201


def test_nino_covering_part_of_a_model_runs_with_the_share_it_nowcasts(api, browser, owner):
    from webapp.jobs.kinds import get_kind

    coverage = {"supported": True, "reason": "", "nowcast": 9_408, "total": 11_689,
                "left": [{"name": "conv1.weight", "reason": "7x7 kernel"}]}  # fmt: skip
    architecture = inspected(zoo_architecture(owner, "cnn"), nino=coverage)
    verdict = get_kind("train").preview(architecture, owner, train_form(accelerator="nino"))
    assert verdict.ok
    assert any("NiNo nowcasts 9,408 of 11,689 parameters (80%)" in w for w in verdict.warnings)
    assert post_train(api, architecture, accelerator="nino").status_code == 201
    page = browser.get(f"/architectures/{architecture.pk}/").content.decode()
    assert "nowcasts 9,408 of 11,689 parameters (80%)" in page  # what it supports, by the form


# ----------------------------------------------------------------------------- the form


def test_the_train_form_starts_on_a_data_set_the_model_reads(browser, owner):
    from webapp.jobs.kinds.train import TrainForm

    mlp = zoo_architecture(owner, "mlp", MLP_1D)  # 40 inputs: MNIST-1D, not Fashion-MNIST
    form = TrainForm(owner=owner, architecture=mlp)
    assert form["dataset"].value() == "builtin:mnist1d"
    cnn = inspected(zoo_architecture(owner, "cnn"))
    assert TrainForm(owner=owner, architecture=cnn)["dataset"].value() == "builtin:fashion_mnist"


def test_the_train_form_starts_on_the_plain_optimizer_where_nino_cannot_read_the_model(owner):
    from webapp.jobs.kinds.train import TrainForm

    form = TrainForm(owner=owner, architecture=resnet18(owner))
    assert form["accelerator"].value() == "none" and form["compare"].value() is False
    readable = TrainForm(owner=owner, architecture=inspected(zoo_architecture(owner, "cnn")))
    assert readable["accelerator"].value() == "nino"


def test_the_page_shows_every_help_text_and_the_refusal_next_to_a_disabled_button(
    browser, owner
):
    from webapp.jobs.kinds.train import TrainForm

    architecture = resnet18(owner)
    page = browser.get(f"/architectures/{architecture.pk}/").content.decode()
    for field in TrainForm(owner=owner).fields.values():
        if field.help_text:
            assert str(field.help_text) in page
    assert "This job cannot run:" in page and "disabled" in page
    assert "What resnet18 supports" in page and "7x7 kernel" in page


def test_the_live_check_answers_the_form_as_it_is_filled_in(browser, owner):
    architecture = inspected(zoo_architecture(owner, "cnn"))
    url = f"/architectures/{architecture.pk}/train/checks/"
    refused = browser.get(url, train_form(dataset="builtin:mnist1d")).content.decode()
    assert "This job cannot run:" in refused and "inputs shaped 40" in refused
    fine = browser.get(url, train_form()).content.decode()
    assert "This job cannot run:" not in fine and "Fashion-MNIST fits" in fine


def test_a_rejected_form_comes_back_after_the_redirect_with_its_data_and_errors(browser, owner):
    architecture = inspected(zoo_architecture(owner, "cnn"))
    page = f"/architectures/{architecture.pk}/"
    response = browser.post(f"{page}train/", train_form(steps="0", targets="lots"))
    assert response.status_code == 303 and response.url == f"{page}#train"
    assert not Job.objects.exists()
    shown = browser.get(page).content.decode()
    assert 'value="lots"' in shown and "targets:" in shown  # the data and the reason kept
    assert browser.get(page).status_code == 200 and not Job.objects.exists()


def test_an_outsider_can_neither_submit_nor_check_nor_see_someone_elses_form(
    client, owner, outsider
):
    architecture = resnet18(owner)
    client.force_login(outsider)
    page = f"/architectures/{architecture.pk}/"
    assert client.post(f"{page}train/", train_form()).status_code == 404
    assert client.get(f"{page}train/checks/", train_form()).status_code == 404
    assert client.get(page).status_code == 404
    assert not Job.objects.exists()


def test_an_outsider_cannot_train_someone_elses_model_through_the_api(outsider_api, owner):
    response = post_train(outsider_api, resnet18(owner))
    assert response.status_code == 400 and "architecture" in response.json()
    assert not Job.objects.exists()


# ----------------------------------------------------------------------------- GHN claims


def test_ours_on_a_3_channel_resnet18_warns_that_it_is_outside_its_domain(owner):
    from webapp.jobs.checks import check_predict

    verdict = check_predict(resnet18(owner), {"ghn": "ours"}, owner)
    assert verdict.ok
    warning = " ".join(verdict.warnings)
    assert "Outside the domain of 'ours' (1×28×28 Fashion-MNIST images, 10 classes)" in warning
    assert "3-channel inputs (it saw 1)" in warning and "1,000 classes (it saw 10)" in warning
    inside = check_predict(inspected(zoo_architecture(owner, "cnn_residual"),
                                     layers={"Conv2d": 5, "BatchNorm2d": 5, "Linear": 1}),
                           {"ghn": "ours"}, owner)  # fmt: skip
    assert inside.ok and not inside.warnings


def test_a_model_without_batchnorm_is_told_what_ours_measured_on_such_nets(owner):
    from webapp.jobs.checks import check_predict

    verdict = check_predict(inspected(zoo_architecture(owner, "cnn")), {"ghn": "ours"}, owner)
    assert any("has no BatchNorm; 'ours' measured 14.2%" in w for w in verdict.warnings)


def test_the_predict_button_has_the_domain_and_measured_accuracy_beside_it(browser, owner):
    architecture = resnet18(owner)
    page = browser.get(f"/architectures/{architecture.pk}/").content.decode()
    assert "Domain and measured accuracy" in page
    assert "meta-trained on Fashion-MNIST (1×28×28 images, 10 classes)" in page
    assert "58.1%" in page and "10.2%" in page and "bench/README.md" in page
    assert "Outside the domain of &#x27;ours&#x27;" in page


def test_the_predict_form_measures_accuracy_by_default_when_a_built_in_data_set_fits(owner):
    from webapp.jobs.kinds.predict import PredictForm

    cnn = PredictForm(owner=owner, architecture=inspected(zoo_architecture(owner, "cnn")))
    assert cnn["evaluate_on"].value() == "fashion_mnist"
    assert PredictForm(owner=owner, architecture=resnet18(owner))["evaluate_on"].value() == ""


def test_measuring_a_prediction_on_a_data_set_the_model_cannot_read_is_refused(api, owner):
    body = {"kind": "predict", "architecture": resnet18(owner).pk,
            "parameters": {"ghn": "ours", "evaluate_on": "fashion_mnist"}}  # fmt: skip
    response = api.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 400
    assert refusal_text(response).startswith("Measuring accuracy: resnet18 takes 3-channel")


def test_a_prediction_worse_than_random_is_called_so_and_never_strong(browser, owner):
    architecture = inspected(zoo_architecture(owner, "cnn"))
    job = Job.objects.create(owner=owner, kind="predict", architecture=architecture,
                             parameters={"ghn": "ours"}, status=Job.Status.SUCCEEDED,
                             result={"ghn": "ours", "accuracy_predicted": 0.076,
                                     "accuracy_random": 0.096, "evaluated_on": "fashion_mnist",
                                     "calibration_images": 512})  # fmt: skip
    page = browser.get(f"/jobs/{job.pk}/").content.decode()
    assert "worse than random initialisation" in page
    assert "strong" not in page.lower().replace("<strong>", "").replace("</strong>", "")
    job.result = {**job.result, "accuracy_predicted": 0.581, "accuracy_random": 0.102}
    job.save()
    page = browser.get(f"/jobs/{job.pk}/").content.decode()
    assert "above random initialisation" in page and "worse than random" not in page


def _language_model(vocab: int, *, reads_bytes: bool):
    from webapp.jobs.checks import ModelFacts

    return ModelFacts(
        name="tiny-lm", inspected=True, input_shape=[64], output_shape=[64, vocab],
        language_model=True, nino={}, ghn={}, layers={}, zoo_name="", zoo_family="",
        zoo_args={}, reads_bytes=reads_bytes,
    )  # fmt: skip


def test_a_hugging_face_config_with_256_ids_trains_on_bytes_of_a_text_with_more_characters():
    from webapp.jobs.checks import DataFacts, check_data

    text = DataFacts(label="notes.txt", text=True, input_shape=None, num_classes=300)
    verdict = check_data(_language_model(260, reads_bytes=True), text)
    assert not verdict.refusals and "UTF-8 bytes" in " ".join(verdict.notes)
    refused = check_data(_language_model(260, reads_bytes=False), text)
    assert "300 distinct characters" in refused.refusals[0]
