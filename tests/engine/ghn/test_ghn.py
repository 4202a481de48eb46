"""GHN-3: golden parity with the published code, parameter prediction, safe conversion."""

import gzip
import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.paths import GOLDEN
from workers.ghn import (
    GHN3,
    GHN3Config,
    GHNFileError,
    convert_official,
    decoder_key,
    fit_shape,
    infer_config,
    load_ghn,
    node_shapes,
    normalise,
    predict_parameters,
)
from workers.graphs.arch.graph import architecture_graph
from workers.zoo.build import build_model

GOLDEN_DIR = GOLDEN

# Golden records checked in the default run (about a second each) and in the slow run (the
# big ViT and VGG tensors take several seconds to tile). Perturbed records exist for the first 3.
PERTURBED_RECORDS = ["resnet18", "squeezenet1_0", "mobilenet_v3_small"]
FAST_RECORDS = [
    ("golden_ghn3.pt", "resnet18"),
    ("golden_ghn3.pt", "squeezenet1_0"),
    ("golden_ghn3.pt", "mobilenet_v3_small"),
    ("golden_ghn3.pt", "convnext_tiny"),
    ("golden_ghn3_extra.pt", "resnet50"),
    ("golden_ghn3_extra.pt", "densenet121"),
]
SLOW_RECORDS = [("golden_ghn3.pt", "vit_b_16_msa"), ("golden_ghn3.pt", "vgg19_bn")]
INTERMEDIATES = ["x_shape_enc", "x_after_struct_embed", "x_gnn_layer0", "x_gnn_layer1", "x_final"]

_cache: dict[str, dict] = {}


@pytest.fixture(autouse=True)
def _one_thread():
    """The machines running the suite are shared; one thread also keeps results repeatable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def golden(file: str = "golden_ghn3.pt") -> dict:
    """A golden file, loaded once; skips when the shared folder is absent."""
    path = GOLDEN_DIR / file
    if not path.exists():
        pytest.skip(f"golden file {path} is not available on this machine")
    if file not in _cache:
        _cache[file] = torch.load(path, weights_only=True)
    return _cache[file]


def golden_ghn(overrides: dict | None = None) -> GHN3:
    main = golden()
    ghn = GHN3.from_checkpoint({"config": main["config"], "state_dict": main["state_dict"]})
    if overrides:
        ghn.load_state_dict(overrides, strict=False)
    return ghn.eval()


def predict_as_golden(ghn: GHN3, arch: str, record: dict | None = None):
    """Build and predict as the golden harness did (seeds included, for the ViT class row)."""
    torch.manual_seed(0)
    model = build_model(arch, {})
    torch.manual_seed(0)
    report = predict_parameters(ghn, model, record=record)
    return model, report


def param_errors(model: nn.Module, expected: dict) -> dict[str, float]:
    """Worst deviations from the golden parameter statistics, per statistic.

    sum/sumsq are relative to 1 + |reference|; the value lists are absolute.
    """
    params = dict(model.named_parameters())
    worst: dict[str, float] = {}
    for name, stats in expected.items():
        p = params[name].detach().double()
        assert list(p.shape) == list(stats["shape"]), name
        if "excl_cls_token" in stats:  # the class-token row is freshly random; compare the rest
            stats, p = stats["excl_cls_token"], p[:, 1:]
        flat = p.flatten()
        errs = {
            "sum": abs(flat.sum().item() - stats["sum"]) / (1 + abs(stats["sum"])),
            "sumsq": abs((flat * flat).sum().item() - stats["sumsq"]) / (1 + abs(stats["sumsq"])),
            "first8": (flat[:8] - torch.tensor(stats["first8"]).double()).abs().max().item(),
        }
        if "last8" in stats:
            errs["last8"] = (flat[-8:] - torch.tensor(stats["last8"]).double()).abs().max().item()
        if "sample" in stats:
            sample = flat[torch.tensor(stats["sample_idx"])]
            errs["sample"] = (sample - torch.tensor(stats["sample"]).double()).abs().max().item()
        for key, value in errs.items():
            worst[key] = max(worst.get(key, 0.0), value)
    return worst


def check_record(ghn: GHN3, rec: dict) -> None:
    """Intermediates, decoder calls, keys and predicted parameters of one golden record."""
    record: dict = {}
    model, report = predict_as_golden(ghn, rec["arch"], record)

    for name in INTERMEDIATES:
        torch.testing.assert_close(record[name], rec[name], atol=1e-5, rtol=0)
    if "edge_bias" in rec:
        torch.testing.assert_close(record["edge_bias"], rec["edge_bias"], atol=1e-5, rtol=0)
    else:
        torch.testing.assert_close(record["edge_bias"][0], rec["edge_bias_row0"], atol=1e-5, rtol=0)

    keys = [list(report.decoder_keys[i]) if i in report.decoder_keys else None
            for i in range(rec["graph"]["n_nodes"])]  # fmt: skip
    assert keys == rec["decoder_key"]
    assert [(list(k), n) for k, n in report.groups] == [
        (g["key"], g["nodes"]) for g in rec["decoder_groups"]
    ]
    check_decoder_calls(ghn, record["x_final"], rec)

    assert sorted(report.predicted) == sorted(rec["params"])
    assert sorted(report.not_predicted) == sorted(p["name"] for p in rec["not_predicted"])
    worst = param_errors(model, rec["params"])
    assert worst["sum"] < 1e-5 and worst["sumsq"] < 1e-5, worst
    assert max(worst["first8"], worst["last8"], worst["sample"]) < 1e-6, worst


@torch.no_grad()
def check_decoder_calls(ghn: GHN3, x: torch.Tensor, rec: dict) -> None:
    """Each raw decoder output (before tiling) against the golden call, group by group.

    The classifier bias makes two calls: the 1-D decoder, then ``bias_class`` on its output.
    """
    groups = iter(rec["decoder_groups"])
    for call in rec["decoder_calls"]:
        if call["module"] != "bias_class":
            group = next(groups)
        xs = x[group["nodes"]]
        key = call["max_shape_arg"]
        if call["module"] == "bias_class":
            out = ghn.decode_vector(xs, classifier_bias=True)
        elif call["module"] == "decoder_1d":
            out = ghn.decoder_1d(xs).reshape(len(xs), -1)
        elif call["class_pred"]:
            out = ghn.decode_classifier(xs, group["key"][1])
        else:
            out = ghn.decode_conv(xs, key[0], key[1], (key[2], key[3]))
        assert list(out.shape) == call["out_shape"]
        assert len(xs) == call["n_nodes"]
        out = out.double()
        assert abs(out.sum().item() - call["sum"]) < 1e-5 * (1 + abs(call["sum"]))
        assert abs((out * out).sum().item() - call["sumsq"]) < 1e-5 * (1 + abs(call["sumsq"]))
        torch.testing.assert_close(
            out.flatten()[:8], torch.tensor(call["first8"]).double(), atol=1e-6, rtol=0
        )


# --- loading the published layout -------------------------------------------------------------


def test_golden_state_dict_loads_strictly_with_the_golden_config() -> None:
    main = golden()
    ghn = GHN3(main["config"])
    ours = ghn.state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {
        k: tuple(v.shape) for k, v in main["state_dict"].items()
    }
    ghn.load_state_dict(main["state_dict"], strict=True)
    assert infer_config(main["state_dict"]).to_dict() == main["config"]


def test_legacy_top_level_embedding_keys_load_into_the_first_layer() -> None:
    main = golden()
    legacy = {
        (k.removeprefix("gnn.0.") if "centrality" in k or "input_dist" in k else k): v
        for k, v in main["state_dict"].items()
    }
    assert "centrality_embed_in.weight" in legacy
    assert infer_config(legacy).pretrained
    ghn = GHN3.from_checkpoint({"state_dict": legacy})  # config inferred
    assert torch.equal(ghn.gnn[0].centrality_embed_in.weight, legacy["centrality_embed_in.weight"])


def test_ghn2_configs_are_refused_clearly() -> None:
    with pytest.raises(NotImplementedError, match="GHN-2"):
        GHN3(GHN3Config(hid=32, max_shape=(32, 32, 16, 16), is_ghn2=True))


# --- pieces against the reference's rules -----------------------------------------------------


def test_shape_indices_equal_the_golden_ones_for_every_model() -> None:
    ghn = GHN3(golden()["config"])
    files = [("golden_ghn3.pt", r) for r in golden()["models"]]
    files += [("golden_ghn3_extra.pt", r) for r in golden("golden_ghn3_extra.pt")["models"]]
    for file, name in files:
        rec = golden(file)["models"][name]
        ours = torch.tensor([ghn.shape_enc.indices(s) for s in rec["shape_enc_sz"]])
        assert torch.equal(ours, rec["shape_ind"]), name


def test_channel_and_spatial_lookups_follow_the_published_tables() -> None:
    enc = GHN3(GHN3Config(hid=32, max_shape=(32, 32, 16, 16))).shape_enc
    values = enc.channel_values
    assert len(values) == 391
    for c, expected in [(2, 1), (5, 8), (12, 8), (60, 56), (63, 64), (1001, 1000), (3, 3)]:
        assert values[enc.channel_index(c)] == expected, c
    assert enc.channel_index(10**5) == enc.channel_index(8192) == 390
    assert enc.spatial_values == [1, 3, 5, 7, 9, 11, 13, 14, 15, 16]
    for s, expected in [(2, 3), (4, 3), (6, 5), (14, 14), (100, 16)]:
        assert enc.spatial_values[enc.spatial_index(s)] == expected, s
    assert enc.indices(None) == [391, 391, 10, 10]
    enc11 = GHN3(GHN3Config(hid=32, max_shape=(32, 32, 11, 11))).shape_enc
    assert enc11.spatial_values == [1, 3, 5, 7, 9, 11, 14, 16]


def test_decoder_keys_snap_channels_as_the_reference_does() -> None:
    ms = (32, 32, 16, 16)
    assert decoder_key((64, 3, 7, 7), ms) == (32, 4, 7, 7)
    assert decoder_key((8, 6, 3, 3), ms) == (8, 8, 3, 3)
    assert decoder_key((12, 24, 1, 1), ms) == (32, 32, 1, 1)
    assert decoder_key((96,), ms) == (32, 0)
    assert decoder_key((1000,), ms, last_bias=True) == (32, -1)
    assert decoder_key((1000, 512), ms, last_weight=True) == (32, 32)
    assert decoder_key((1, 197, 768), ms) == (1, 768, 14, 14)


def test_tiling_is_periodic_and_spatial_windows_are_centred() -> None:
    pred = torch.arange(2 * 3 * 5 * 5, dtype=torch.float).reshape(2, 3, 5, 5)
    out = fit_shape(pred, (5, 7, 3, 3))
    assert out.shape == (5, 7, 3, 3)
    assert torch.equal(out[4, 6], pred[0, 0, 1:4, 1:4])  # channels r mod 2, c mod 3
    assert torch.equal(fit_shape(torch.arange(4.0), (10,)), torch.arange(4.0).repeat(3)[:10])
    assert torch.equal(fit_shape(pred, (2, 3)), pred[:, :, 2, 2])


def test_normalisation_depends_on_the_tensor_type() -> None:
    w = torch.ones(8, 4, 3, 3)
    assert torch.allclose(normalise(w, False), torch.full_like(w, (2 / 36) ** 0.5))
    dw = torch.ones(8, 1, 3, 3)
    assert torch.allclose(normalise(dw, False), torch.full_like(dw, (1 / 9) ** 0.5))
    pos = torch.ones(1, 197, 768)
    assert torch.equal(normalise(pos, False), pos)
    v = torch.tensor([0.0, 100.0])
    assert torch.allclose(normalise(v, False), torch.tensor([1.0, 2.0]))
    assert torch.allclose(normalise(v, True), torch.tensor([0.0, 1.0]))


def test_kernels_larger_than_the_decoder_are_interpolated() -> None:
    ghn = golden_ghn()
    out = ghn.decode_conv(torch.randn(1, 32), 32, 32, (21, 21))
    assert out.shape == (1, 32, 32, 21, 21)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 21), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)
    )
    report = predict_parameters(ghn, model)
    assert "0.weight" in report.predicted
    assert torch.isfinite(model[0].weight).all()
    # only one side larger than the decoder's grid: resized to fit as well
    model = nn.Sequential(nn.Conv2d(3, 8, (1, 21)), nn.Flatten(), nn.LazyLinear(4))
    model(torch.randn(1, 3, 8, 32))
    report = predict_parameters(ghn, model, architecture_graph(model, torch.randn(2, 3, 8, 32)))
    assert "0.weight" in report.predicted and model[0].weight.shape == (8, 3, 1, 21)


# --- golden parity ----------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "name"), FAST_RECORDS)
def test_predictions_match_the_published_ghn3(file: str, name: str) -> None:
    check_record(golden_ghn(), golden(file)["models"][name])


@pytest.mark.slow
@pytest.mark.parametrize(("file", "name"), SLOW_RECORDS)
def test_predictions_match_the_published_ghn3_on_bigger_models(file: str, name: str) -> None:
    rec = golden(file)["models"][name]
    check_record(golden_ghn(), rec)
    if name == "vit_b_16_msa":  # with the golden seeds even the random class-token row agrees
        model, _ = predict_as_golden(golden_ghn(), rec["arch"])
        row = model.encoder.pos_embedding.detach().flatten()[:8].double()
        expected = torch.tensor(rec["params"]["encoder.pos_embedding"]["first8"]).double()
        torch.testing.assert_close(row, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", PERTURBED_RECORDS)
def test_predictions_match_with_non_constant_norms_and_biases(name: str) -> None:
    perturbed = golden()["perturbed"]
    ghn = golden_ghn(perturbed["overrides"])
    expected = perturbed["models"][name]
    record: dict = {}
    model, _ = predict_as_golden(ghn, golden()["models"][name]["arch"], record)
    torch.testing.assert_close(record["x_final"], expected["x_final"], atol=1e-5, rtol=0)
    worst = param_errors(model, expected["params"])
    assert worst["sum"] < 1e-5 and worst["sumsq"] < 1e-5 and worst["first8"] < 1e-6, worst


# --- writing into the model -------------------------------------------------------------------


class _Scaled(nn.Module):
    """A block with a parameter no GHN primitive owns (like ConvNeXt's layer_scale)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.scale = nn.Parameter(torch.full((8, 1, 1), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.conv(x)


def test_prediction_keeps_parameter_objects_buffers_and_unsupported_parameters() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), _Scaled(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    ).eval()  # fmt: skip
    ids = {name: id(p) for name, p in model.named_parameters()}
    running = model[1].running_mean.clone()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    report = predict_parameters(golden_ghn(), model)

    assert {name: id(p) for name, p in model.named_parameters()} == ids
    assert torch.equal(model[1].running_mean, running) and not model.training
    assert "3.scale" in report.not_predicted
    assert torch.equal(model[3].scale, before["3.scale"])
    assert set(report.predicted) == set(before) - {"3.scale"}
    for name in report.predicted:
        assert not torch.equal(dict(model.named_parameters())[name], before[name]), name
    assert report.n_params_predicted == report.n_params_total - 8
    bn_weight = model[1].weight
    assert ((bn_weight > 0) & (bn_weight < 2)).all()


def test_a_prebuilt_graph_gives_the_same_parameters() -> None:
    ghn = golden_ghn()
    model_a = build_model("squeezenet1_0", {})
    model_b = build_model("squeezenet1_0", {})
    graph = architecture_graph(model_a)
    predict_parameters(ghn, model_a, graph)
    predict_parameters(ghn, model_b)
    for (name, a), (_, b) in zip(
        model_a.named_parameters(), model_b.named_parameters(), strict=True
    ):
        assert torch.equal(a, b), name
    shapes = node_shapes(model_a, graph)
    assert shapes[3] == (1, 1, 3, 3)  # the first max pool


# --- converting official files ----------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 5])
def test_a_pickled_state_dict_converts_and_loads_weights_only(
    tmp_path: Path, protocol: int
) -> None:
    main = golden()
    src = tmp_path / "ghn.pkl"
    with src.open("wb") as f:
        pickle.dump(main["state_dict"], f, protocol=protocol)
    dst = tmp_path / "ghn.pt"
    result = convert_official(src, dst)
    assert result["config"] == main["config"]

    data = torch.load(dst, weights_only=True)
    assert set(data) == {"state_dict", "config"}
    ghn = load_ghn(str(dst))
    for key, value in main["state_dict"].items():
        assert torch.equal(ghn.state_dict()[key], value), key


def test_a_compressed_pickle_converts(tmp_path: Path) -> None:
    main = golden()
    src = tmp_path / "ghn.pkl.gz"
    with gzip.open(src, "wb") as f:
        pickle.dump(main["state_dict"], f)
    assert convert_official(src)["config"] == main["config"]


class _Malicious:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.pkl"
    with src.open("wb") as f:
        pickle.dump({"embed.weight": torch.zeros(2, 2), "x": _Malicious(marker)}, f)
    with pytest.raises(GHNFileError, match="system"):
        convert_official(src, tmp_path / "out.pt")
    assert not marker.exists()
    assert not (tmp_path / "out.pt").exists()


def test_anything_but_tensors_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "cls.pkl"
    with src.open("wb") as f:
        pickle.dump({"w": GHN3Config()}, f)  # a harmless class is still not a tensor
    with pytest.raises(GHNFileError, match="GHN3Config"):
        convert_official(src)
    src.write_bytes(b"not a pickle at all")
    with pytest.raises(GHNFileError):
        convert_official(src)
