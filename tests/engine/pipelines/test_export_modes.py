"""An uploaded ``.pt2`` trains: ``torch.export``'s module refuses ``train()``/``eval()``, the
model builder gives them back (batch statistics while training, running ones in evaluation)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from workers.pipelines.inputs import model_builder


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.bn(self.conv(x)).mean((2, 3))))


def test_an_exported_module_switches_modes_like_the_original_even_when_copied(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(8, 1, 8, 8)
    path = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(Net(), (x,)), path)  # exported in train mode
    model = copy.deepcopy(model_builder("export", path=str(path))())  # each run trains a copy
    model.eval()
    assert not model.training
    assert torch.equal(model(x), model(x))  # no dropout, running statistics
    before = model.bn.running_mean.clone()
    model.train()
    assert model.training and not torch.equal(model(x), model(x))  # dropout is back
    assert not torch.equal(model.bn.running_mean, before)  # batch statistics are tracked
    again = copy.deepcopy(model).eval()
    assert torch.equal(again(x), again(x))


def test_inspecting_an_uploaded_pt2_resnet_reads_its_parameter_graph_on_its_own_input(tmp_path):
    # The exported program accepts only 1-channel 28×28 images: the traced parameter graph
    # must read the data flow on the program's example, not on a guessed 3-channel image.
    from tests.e2e.test_train_kinds import resnet_pt2
    from workers.pipelines.inspect import inspect_exported

    path = tmp_path / "upload.pt2"
    path.write_bytes(resnet_pt2(tmp_path))
    summary = inspect_exported(str(path)).param_graph
    assert summary["supported"], summary.get("reason")
    assert summary["coverage"]["nowcast"] == summary["coverage"]["total"]
