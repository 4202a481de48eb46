"""What an inspection stores for the checks before queueing (``Architecture.summary``): one
example's output shape, the input dtype, NiNo readiness and GHN readiness — from a real
inspect task run in-process, for a classifier, a torchvision net, a language model and an
uploaded ``.pt2`` archive (inspected in the sandbox)."""

from __future__ import annotations

import pytest

from tests.conftest import export_bytes, upload
from tests.factories import zoo_architecture
from webapp.architectures.models import create_from_upload
from webapp.jobs.checks import check_train
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def inspect(owner, architecture):
    from workers.tasks import inspect as task

    job = Job.objects.create(owner=owner, kind="inspect", architecture=architecture)
    task.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    architecture.refresh_from_db()
    return architecture, job


def test_inspecting_the_fm16_cnn_stores_its_output_width_and_that_nino_and_a_ghn_read_it(owner):
    architecture, job = inspect(owner, zoo_architecture(owner, "cnn"))
    summary = architecture.summary
    assert summary["output_shape"] == [10] and summary["input_dtype"] == "float32"
    assert summary["nino"]["supported"] is True and summary["ghn"]["supported"] is True
    assert job.result["output_shape"] == [10]
    verdict = check_train(architecture, {"dataset": "fashion_mnist", "accelerator": "nino"}, owner)
    assert verdict.ok and not verdict.warnings


def test_inspecting_resnet18_stores_its_1000_class_head_and_what_nino_cannot_read(owner):
    architecture, _ = inspect(owner, zoo_architecture(owner, "resnet18"))
    summary = architecture.summary
    assert architecture.input_shape == [3, 224, 224] and summary["output_shape"] == [1000]
    nino = summary["nino"]
    verdict = check_train(architecture, {"dataset": "fashion_mnist", "accelerator": "nino"}, owner)
    if "total" in nino:  # the parameter graph counts its coverage: the share is told
        assert 0 <= nino["nowcast"] <= nino["total"] == architecture.num_params
        said = " ".join(verdict.refusals + verdict.warnings + verdict.notes)
        assert f"{nino['total']:,} parameters" in said or "any parameter" in said
    else:
        assert nino["supported"] is False and "7x7" in nino["reason"]
        assert any("NiNo cannot read resnet18" in r for r in verdict.refusals)
    assert any("1-channel 28×28 images" in r for r in verdict.refusals)
    assert any("1,000 outputs" in r for r in verdict.refusals)


def test_inspecting_a_language_model_stores_token_ids_in_and_a_vocabulary_out(owner):
    architecture, _ = inspect(owner, zoo_architecture(owner, "transformer"))
    summary = architecture.summary
    assert summary["input_dtype"] == "int64" and summary["output_shape"] == [128, 96]
    refused = check_train(architecture, {"dataset": "fashion_mnist", "accelerator": "none"}, owner)
    assert any("language model reading token ids" in r for r in refused.refusals)
    fine = check_train(architecture, {"dataset": "shakespeare", "accelerator": "none"}, owner)
    assert fine.ok


def test_an_uploaded_archive_inspected_in_the_sandbox_stores_its_output_shape(owner, tmp_path):
    archive = upload("cnn.pt2", export_bytes(tmp_path))
    architecture = create_from_upload(owner, "", "export", archive)
    architecture, _ = inspect(owner, architecture)
    assert architecture.summary["output_shape"] == [10]
    assert architecture.summary["input_dtype"] == "float32"


def test_the_output_shape_of_an_exported_program_is_read_from_its_example(tmp_path):
    import torch

    from workers.pipelines.inspect import output_shape

    path = tmp_path / "cnn.pt2"
    path.write_bytes(export_bytes(tmp_path))
    program = torch.export.load(path)
    args, kwargs = program.example_inputs
    assert output_shape(program.module(), args, kwargs) == [10]


def test_a_tampered_output_shape_from_the_sandbox_is_dropped_not_trusted():
    from workers.pipelines.inspect import InspectionResult

    document = {"num_params": 1, "num_tensors": 1, "tensors": [], "layers": {},
                "input_shape": [1], "graph": {"nodes": []}, "arch_graph": {},
                "param_graph": {}, "device": "cpu", "output_shape": ["<script>"],
                "input_dtype": "evil"}  # fmt: skip
    result = InspectionResult.from_json(document)
    assert result.output_shape is None and result.input_dtype == "float32"
