"""inspect_model for catalog models, exported programs and sandboxed Python sources."""

import io
import json
import os
import time
import zipfile
from pathlib import Path

import pytest
import torch

from workers.errors import Cancelled, ModelError
from workers.pipelines.inspect import ModelSpec, inspect_model
from workers.zoo.build import build_model, example_input

GOOD_SOURCE = """
import torch
from torch import nn

print("user code may print whatever it likes")
INPUT_SHAPE = (3, 16, 16)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = self.conv(x)
        return self.fc((y + y.relu()).mean((2, 3)))


def build_model():
    return Net()
"""
GOOD_PARAMS = 3 * 8 * 9 + 8 + 8 * 4 + 4


class Recorder:
    """Progress callback that records calls and can cancel after a number of them."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.calls: list[tuple[float, str]] = []
        self.cancel_after = cancel_after

    def __call__(self, fraction: float, message: str) -> None:
        self.calls.append((fraction, message))
        if self.cancel_after is not None and len(self.calls) > self.cancel_after:
            raise Cancelled()


def _source(tmp_path: Path, text: str, name: str = "model.py") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ----------------------------------------------------------------------------- zoo


def test_zoo_model():
    progress = Recorder()
    result = inspect_model(ModelSpec("zoo", "resnet18"), progress)
    assert result.num_params == 11_689_512
    assert result.num_tensors == 62
    assert result.input_shape == [3, 224, 224]
    assert result.layers == {"BatchNorm2d": 20, "Conv2d": 20, "Linear": 1}
    assert result.device == "cpu"
    assert result.graph["method"] == "fx"
    assert sum(n["type"] == "Conv2d" for n in result.graph["nodes"]) == 20
    fractions = [f for f, _ in progress.calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    json.dumps(result.to_json())


def test_zoo_arguments_and_shape_override():
    spec = ModelSpec("zoo", "cnn", args={"in_channels": 3}, input_shape=[3, 32, 32])
    result = inspect_model(spec)
    assert result.input_shape == [3, 32, 32]
    assert result.num_params == 14_378 + 2 * 9 * 16
    result = inspect_model(ModelSpec("zoo", "transformer"))
    assert result.num_params == 29_400 and result.input_shape == [128]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ModelSpec("zoo", "nope"), "Unknown model"),
        (ModelSpec("zoo", "resnet18", args={"weights": "DEFAULT"}), "Pretrained"),
        (ModelSpec("zoo", "resnet18", input_shape=[3, -1]), "input shape"),
        (ModelSpec("onnx", path="x"), "Unknown model source"),
        (ModelSpec("python", path="/nonexistent/model.py"), "missing"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(ModelError, match=message):
        inspect_model(spec)


def test_zoo_falls_back_to_a_real_device(monkeypatch):
    import workers.graphs.module.graph as mg

    real = mg.module_graph

    def meta_fails(model, example, **kwargs):
        if example.device.type == "meta":
            raise NotImplementedError("no data on meta")
        return real(model, example, **kwargs)

    monkeypatch.setattr(mg, "module_graph", meta_fails)
    progress = Recorder()
    result = inspect_model(ModelSpec("zoo", "cnn"), progress)
    assert result.num_params == 14_378
    assert result.graph["method"] == "fx"
    fractions = [f for f, _ in progress.calls]
    assert fractions == sorted(fractions)


def test_zoo_cancellation_propagates():
    with pytest.raises(Cancelled):
        inspect_model(ModelSpec("zoo", "resnet18"), Recorder(cancel_after=1))


# ----------------------------------------------------------------------------- export


@pytest.fixture(scope="module")
def exported_cnn(tmp_path_factory) -> str:
    model, x = build_model("cnn"), example_input("cnn")
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = tmp_path_factory.mktemp("export") / "cnn.pt2"
    torch.export.save(ep, path)
    return str(path)


def test_exported_program(exported_cnn):
    result = inspect_model(ModelSpec("export", path=exported_cnn))
    zoo = inspect_model(ModelSpec("zoo", "cnn"))
    assert result.num_params == zoo.num_params == 14_378
    assert result.tensors == zoo.tensors
    assert result.layers == zoo.layers == {"Conv2d": 3, "Linear": 1}
    assert result.input_shape == [1, 28, 28]
    graph = result.graph
    assert graph["method"] == "export"
    assert [n["type"] for n in graph["nodes"]] == [n["type"] for n in zoo.graph["nodes"]]
    assert graph["edges"] == zoo.graph["edges"]
    batch_dim = graph["nodes"][0]["out_shape"][0]
    assert isinstance(batch_dim, str)  # the dynamic dimension stays symbolic


def test_exported_resnet18(tmp_path):
    model, x = build_model("resnet18"), example_input("resnet18", batch=1)
    path = tmp_path / "resnet18.pt2"
    torch.export.save(torch.export.export(model, (x,)), path)
    result = inspect_model(ModelSpec("export", path=str(path)))
    assert result.num_params == 11_689_512  # parameters only, BatchNorm buffers excluded
    assert result.num_tensors == 62
    assert result.layers == {"BatchNorm2d": 20, "Conv2d": 20, "Linear": 1}
    types = [n["type"] for n in result.graph["nodes"]]
    assert types.count("Conv2d") == 20 and types.count("add") == 8


def test_truncated_archive(exported_cnn, tmp_path):
    data = Path(exported_cnn).read_bytes()
    path = tmp_path / "truncated.pt2"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated or corrupt"):
        inspect_model(ModelSpec("export", path=str(path)))


def _rewrite(src: str, dst: Path, replace: dict[str, bytes]) -> str:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            suffix = next((k for k in replace if name.endswith(k)), None)
            zout.writestr(name, replace[suffix] if suffix else zin.read(name))
        for extra, data in replace.items():
            if extra.startswith("+"):
                zout.writestr(zin.namelist()[0].split("/")[0] + "/" + extra[1:], data)
    return str(dst)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_example_inputs_are_never_unpickled(exported_cnn, tmp_path):
    # torch.export.load retries a failed weights_only load with weights_only=False, so this
    # payload would run if the archive reached it.
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save((_Exploit(marker),), buffer)
    replace = {"sample_inputs/model.pt": buffer.getvalue()}
    path = _rewrite(exported_cnn, tmp_path / "evil.pt2", replace)
    with pytest.raises(ModelError, match="posix.system, which would need full unpickling"):
        inspect_model(ModelSpec("export", path=path))
    assert not marker.exists()


def test_malicious_shape_expression_is_refused(exported_cnn, tmp_path):
    with zipfile.ZipFile(exported_cnn) as z:
        name = next(n for n in z.namelist() if n.endswith("models/model.json"))
        text = z.read(name).decode()
    assert '"expr_str": "Symbol(' in text
    payload = "__import__('os').system('true') + Symbol("
    evil = text.replace('"expr_str": "Symbol(', f'"expr_str": "{payload}', 1)
    path = _rewrite(exported_cnn, tmp_path / "expr.pt2", {"models/model.json": evil.encode()})
    with pytest.raises(ModelError, match="symbolic shape expression"):
        inspect_model(ModelSpec("export", path=path))


def test_compiled_code_is_refused(exported_cnn, tmp_path):
    replace = {"+data/aotinductor/model/x.so": b"\x7fELF"}
    path = _rewrite(exported_cnn, tmp_path / "aoti.pt2", replace)
    with pytest.raises(ModelError, match="AOTInductor"):
        inspect_model(ModelSpec("export", path=path))


# ----------------------------------------------------------------------------- python


def test_python_source(tmp_path):
    progress = Recorder()
    result = inspect_model(ModelSpec("python", path=_source(tmp_path, GOOD_SOURCE)), progress)
    assert result.num_params == GOOD_PARAMS
    assert result.input_shape == [3, 16, 16]
    assert result.layers == {"Conv2d": 1, "Linear": 1}
    types = [n["type"] for n in result.graph["nodes"]]
    assert types == ["input", "Conv2d", "relu", "add", "mean", "Linear", "output"]
    assert progress.calls[-1] == (1.0, "done")


def test_python_source_runs_in_a_separate_process_in_a_temp_dir(tmp_path):
    # User code can write nowhere but its own work dir (see test_sandbox_isolation.py), so it
    # reports what it saw through its error message.
    source = (
        "import json, os\n"
        "open('marker.txt', 'w').write('written at import')\n"
        "seen = {'pid': os.getpid(), 'cwd': os.getcwd(), 'env': sorted(os.environ)}\n"
        "raise RuntimeError('seen ' + json.dumps(seen))\n"
    )
    with pytest.raises(ModelError) as caught:
        inspect_model(ModelSpec("python", path=_source(tmp_path, source)))
    seen = json.loads(str(caught.value).split("seen ", 1)[1])
    assert seen["pid"] != os.getpid()
    assert seen["cwd"] != os.getcwd()
    assert Path(seen["cwd"]).name.startswith("weightspace-sandbox-")
    assert not Path(seen["cwd"]).exists()  # cleaned up afterwards
    assert not Path("marker.txt").exists()
    assert set(seen["env"]) <= {
        "PATH",
        "PYTHONPATH",
        "HOME",
        "TMPDIR",
        "CUDA_VISIBLE_DEVICES",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "PYTHONDONTWRITEBYTECODE",
        "LC_CTYPE",
    }


def test_python_time_limit(tmp_path):
    start = time.monotonic()
    with pytest.raises(ModelError, match="ran longer than 3 s"):
        inspect_model(
            ModelSpec("python", path=_source(tmp_path, "while True:\n    pass\n")),
            python_time_limit_s=3,
        )
    assert time.monotonic() - start < 10


def test_python_memory_limit(tmp_path):
    source = "INPUT_SHAPE = (4,)\nhog = bytearray(8 << 30)\n"
    with pytest.raises(ModelError, match="used more than 4096 MB"):
        inspect_model(ModelSpec("python", path=_source(tmp_path, source)))


def test_python_cancellation_kills_the_sandbox(tmp_path):
    path = _source(tmp_path, "while True:\n    pass\n")
    start = time.monotonic()
    with pytest.raises(Cancelled):
        inspect_model(ModelSpec("python", path=path), Recorder(cancel_after=2))
    assert time.monotonic() - start < 15
    assert _processes_running(path, wait_s=10) == []


def _processes_running(path: str, wait_s: float) -> list[int]:
    """Live (not zombie) processes whose command line names ``path``, after up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if path.encode() in cmdline and state != "Z":
                found.append(int(proc.name))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "INPUT_SHAPE = (4,)\ndef build_model():\n    return undefined\n",
            "NameError: name 'undefined' is not defined",
        ),
        ("INPUT_SHAPE = (4,)\n", "must define a function build_model"),
        (
            "import torch\ndef build_model():\n    return torch.nn.Linear(4, 4)\n",
            "must define INPUT_SHAPE",
        ),
        (
            "INPUT_SHAPE = (4,)\ndef build_model():\n    return 42\n",
            "must return a torch.nn.Module",
        ),
        ("def broken(:\n", "SyntaxError"),
    ],
)
def test_python_source_errors(tmp_path, source, message):
    with pytest.raises(ModelError, match=message):
        inspect_model(ModelSpec("python", path=_source(tmp_path, source)))
