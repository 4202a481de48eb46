"""The architecture page's graph viewer, in Chromium: resnet18 inspected in-process (the
artifacts the inspect task stores), and a generated 10,000-node module graph."""

from __future__ import annotations

import json
import re
import time

from tests.browser.conftest import screenshot
from tests.factories import queued_job, zoo_architecture
from tests.paths import bench_module

generated_graph = bench_module("graph_layout").generated_graph

READY = ".gv[data-state=ready]"


def inspected(owner, name: str = "resnet18", graph: dict | None = None):
    """The owner's zoo model with a succeeded inspect job holding what the task stores; with
    ``graph``, that module graph alone (no GHN or parameter graph)."""
    architecture = zoo_architecture(owner, name)
    if graph is None:
        from workers.pipelines.inspect import ModelSpec, inspect_model

        result = inspect_model(ModelSpec(source="zoo", name=name))
        documents = {
            "graph.json": result.graph,
            "arch_graph.json": result.arch_graph,
            "param_graph.json": result.param_graph,
            "tensors.json": result.tensors,
        }
    else:
        documents = {"graph.json": graph}
    job = queued_job(owner, architecture)
    job.claim("w")
    for artifact, document in documents.items():
        kind = "tensors" if artifact == "tensors.json" else "graph"
        job.save_artifact(kind, artifact, json.dumps(document).encode(), "application/json")
    job.succeed("ok")
    return architecture


def open_viewer(page, architecture, timeout: float = 30_000):
    page.goto(f"{page.base}/architectures/{architecture.pk}/#architecture-graph")
    page.wait_for_selector(READY, timeout=timeout)
    page.locator("#architecture-graph").scroll_into_view_if_needed()
    return page.locator(".gv")


def boxes(page) -> int:
    return int(page.get_attribute(".gv", "data-boxes"))


def click_node(page, key: str) -> None:
    # Bring the node to the middle of the stage (what a search jump does), then click it
    # with the mouse: pointer down and up through the viewer's own handlers.
    page.locator(".gv-stage").scroll_into_view_if_needed()
    page.evaluate("(key) => document.querySelector('.gv').viewer.centerOn(key)", key)
    box = page.locator(f'g.node[data-key="{key}"]').bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def node_key(page, label_or_path: str) -> str:
    """The box key of the node whose module path is ``label_or_path``."""
    return page.evaluate(
        """(path) => {
            const v = document.querySelector('.gv').viewer;
            const node = v.view.nodes.find((n) => n.path === path);
            return v.scene.keyOfNode[node.id];
        }""",
        label_or_path,
    )


def test_a_person_sees_resnet18s_skip_and_downsample_edges_with_arrowheads(page, owner):
    viewer = open_viewer(page, inspected(owner))
    assert page.get_attribute(".gv", "data-renderer") == "svg"
    assert boxes(page) == 70  # the module graph, as the inspect job counted it
    skips = page.locator("path.edge.skip")
    branches = page.locator("path.edge.branch")
    # Five identity shortcuts (one per block without a downsample), three downsample paths.
    assert skips.count() == 5
    assert branches.count() == 9
    for index in range(skips.count()):
        assert skips.nth(index).get_attribute("marker-end") == "url(#gv-arrow-skip)"
    assert page.locator("marker#gv-arrow-skip path").count() == 1
    assert page.locator("path.edge.main[marker-end='url(#gv-arrow-main)']").count() == 63
    labels = viewer.locator("g.node text").all_text_contents()
    assert "Conv 64×3×7×7" in labels and "BatchNorm 64" in labels and "Add" in labels
    assert "Linear 1000×512" in labels
    assert screenshot(page, "graph_resnet18").exists()


def test_zooming_and_dragging_change_the_drawing_transform(page, owner):
    open_viewer(page, inspected(owner))
    viewport = page.locator("g.gv-viewport")
    before = viewport.get_attribute("transform")
    page.click(".gv-zoom-in")
    zoomed = viewport.get_attribute("transform")
    assert zoomed != before and "scale(1.25)" in zoomed
    assert page.inner_text(".gv-scale") == "125%"
    stage = page.locator(".gv-stage").bounding_box()
    page.mouse.move(stage["x"] + 40, stage["y"] + 40)
    page.mouse.wheel(0, 400)  # wheel down zooms out around the cursor
    page.wait_for_function("document.querySelector('.gv-scale').textContent !== '125%'")
    assert int(page.inner_text(".gv-scale").rstrip("%")) < 125
    wheeled = viewport.get_attribute("transform")
    page.mouse.move(stage["x"] + 20, stage["y"] + 300)
    page.mouse.down()
    page.mouse.move(stage["x"] + 220, stage["y"] + 200, steps=5)
    page.mouse.up()
    assert viewport.get_attribute("transform") != wheeled
    dragged = viewport.get_attribute("transform")
    page.focus(".gv-stage")
    page.keyboard.press("ArrowLeft")  # the keyboard pans too
    assert viewport.get_attribute("transform") != dragged
    page.click(".gv-fit")
    fitted = float(re.search(r"scale\(([\d.]+)\)", viewport.get_attribute("transform")).group(1))
    assert fitted < 0.5  # the whole 70-node column fits in the stage


def test_search_by_name_regex_and_op_highlights_and_jumps(page, owner):
    open_viewer(page, inspected(owner))
    page.fill(".gv-search", "downsample")
    assert page.inner_text(".gv-count") == "6 matches"  # conv and bn of three downsamples
    assert page.locator("g.node.hit").count() == 6
    page.press(".gv-search", "Enter")
    assert page.inner_text(".gv-count") == "1 of 6"
    assert page.locator("g.node.current").count() == 1
    assert page.locator(".gv-panel .gv-path").inner_text() == "layer2.0.downsample.0"
    page.click(".gv-next")
    assert page.locator(".gv-panel .gv-path").inner_text() == "layer2.0.downsample.1"
    page.click(".gv-prev")
    page.click(".gv-prev")  # wraps around to the last match
    assert page.inner_text(".gv-count") == "6 of 6"
    page.select_option(".gv-mode", "regex")
    page.fill(".gv-search", r"layer[34]\.0\.conv1$")
    assert page.inner_text(".gv-count") == "2 matches"
    page.fill(".gv-search", "layer[")
    assert page.inner_text(".gv-count") == "Not a valid regular expression"
    page.select_option(".gv-mode", "op")
    page.fill(".gv-search", "add")
    assert page.inner_text(".gv-count") == "8 matches"
    assert screenshot(page, "graph_search").exists()


def test_a_person_folds_a_resnet_stage_into_one_box_and_opens_it_again(page, owner):
    open_viewer(page, inspected(owner))
    click_node(page, node_key(page, "layer1.0.conv1"))
    page.click(".gv-fold-btn[data-path=layer1]")
    page.wait_for_selector('g.node.box[data-key="g:layer1"]')
    page.wait_for_selector(READY)
    assert boxes(page) == 70 - 14 + 1  # two blocks of seven nodes became one box
    box = page.locator('g.node.box[data-key="g:layer1"]')
    assert "14 nodes" in box.text_content()
    assert "Module (folded)" in page.inner_text(".gv-panel")
    assert screenshot(page, "graph_folded_stage").exists()
    click_node(page, "g:layer1")  # a click on a folded box opens it
    page.wait_for_function("document.querySelector('.gv').dataset.boxes === '70'")
    page.wait_for_selector(READY)
    assert page.locator('g.node[data-key="g:layer1"]').count() == 0
    page.select_option(".gv-depth", "1")  # fold every top-level module
    page.wait_for_function("document.querySelector('.gv').dataset.boxes !== '70'")
    page.wait_for_selector(READY)
    assert page.locator("g.node.box").count() == 4  # layer1 … layer4
    assert boxes(page) == 12


def test_the_properties_panel_shows_module_path_shapes_counts_and_ghn_primitive(page, owner):
    architecture = inspected(owner)
    stored = architecture.latest_inspection().artifacts.get(name="param_graph.json").read_json()
    read = {row["name"] for row in stored.get("by_parameter", [])} if stored["supported"] else set()
    open_viewer(page, architecture)
    click_node(page, node_key(page, "layer2.0.downsample.0"))
    panel = page.locator(".gv-panel")
    assert panel.locator("h3").inner_text() == "Conv 128×64×1×1"
    assert panel.locator(".gv-path").inner_text() == "layer2.0.downsample.0"
    text = panel.inner_text()
    assert "128×64×1×1" in text and "8,192" in text and "conv" in text
    assert "2×128×28×28" in text  # output shape of the example batch
    # Whether NiNo's parameter graph holds the tensor, as the stored summary says.
    assert ("in graph" if "layer2.0.downsample.0.weight" in read else "not read") in text
    assert screenshot(page, "graph_properties").exists()


def test_the_ghn_view_is_a_toggle_away_and_explains_its_different_count(page, owner):
    open_viewer(page, inspected(owner))
    buttons = page.locator(".gv-view")
    assert buttons.nth(0).inner_text().startswith("Module graph · 70 nodes, 77 edges")
    assert buttons.nth(1).inner_text().startswith("GHN graph · 53 nodes, 60 edges")
    buttons.nth(1).click()
    page.wait_for_function("document.querySelector('.gv').dataset.boxes === '53'")
    page.wait_for_selector(READY)
    assert "activations are folded" in page.inner_text(".gv-about")
    assert buttons.nth(1).get_attribute("aria-pressed") == "true"


def test_the_fm16_cnn_parameter_graph_shows_blocks_and_draws_every_neuron(page, owner):
    architecture = inspected(owner, "cnn")
    page.goto(f"{page.base}/architectures/{architecture.pk}/")
    blocks = page.locator(".pg-block")
    assert blocks.count() == 5  # input, three convolutions, the classifier
    assert "16 neurons" in blocks.nth(1).inner_text()
    assert "32 incoming edges" in blocks.nth(1).inner_text()  # 16 weights + 16 bias edges
    page.click(".pg-draw summary")
    page.wait_for_selector(".pg-canvas[data-neurons]")
    # 1 input + 16 + 32 + 32 + 10 neurons and 4 bias nodes: the 95 nodes NiNo reads.
    assert page.get_attribute(".pg-canvas", "data-neurons") == "95"
    assert page.locator(".pg-canvas line.pg-edge").count() == 1962
    page.locator(".pg-draw").scroll_into_view_if_needed()
    assert screenshot(page, "graph_param_cnn").exists()


def test_a_10000_node_graph_opens_folded_and_unfolds_without_freezing_the_page(page, owner):
    architecture = inspected(owner, "mlp", graph=generated_graph(10_000))
    open_viewer(page, architecture, timeout=60_000)
    opened = boxes(page)
    assert 100 < opened <= 800  # one box per decoder layer
    page.select_option(".gv-depth", "all")
    page.wait_for_selector(".gv[data-state=laying-out]")
    # The layout runs in a worker: the page answers a click meanwhile, within a second.
    started = time.perf_counter()
    page.click(".gv-zoom-in")
    page.wait_for_function("document.querySelector('.gv-scale').textContent !== '100%'")
    assert time.perf_counter() - started < 1.0
    assert page.get_attribute(".gv", "data-state") == "laying-out"
    page.wait_for_selector(READY, timeout=180_000)
    assert boxes(page) == 9_987
    assert page.get_attribute(".gv", "data-renderer") == "canvas"
    page.fill(".gv-search", "model.layers.700.mlp.down_proj")
    page.press(".gv-search", "Enter")
    assert page.locator(".gv-panel .gv-path").inner_text() == "model.layers.700.mlp.down_proj"
    assert screenshot(page, "graph_10k").exists()


def test_the_viewer_json_is_the_owners_alone(owner, outsider_browser):
    architecture = zoo_architecture(owner, "cnn")
    job = queued_job(owner, architecture)
    job.claim("w")
    job.save_artifact("graph", "graph.json", json.dumps({"nodes": []}).encode(), "x/json")
    job.succeed("ok")
    response = outsider_browser.get(f"/architectures/{architecture.pk}/viewer.json")
    assert response.status_code == 404


def test_the_properties_panel_shows_weight_statistics_of_an_attached_checkpoint(page, owner):
    import torch

    from tests.conftest import safetensors_bytes, upload
    from webapp.checkpoints.models import create_checkpoint
    from workers.zoo.build import build_model

    architecture = inspected(owner, "cnn")
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in build_model("cnn").state_dict().items()}
    weight = state["features.0.weight"]
    create_checkpoint(owner, "init", upload("init.safetensors", safetensors_bytes(state)),
                      architecture=architecture)  # fmt: skip
    open_viewer(page, architecture)
    click_node(page, node_key(page, "features.0"))
    cell = page.locator(".gv-panel .gv-stats").first.inner_text()
    assert cell.startswith("weight: μ ") and f"{weight.max().item():.3g}" in cell
    assert screenshot(page, "graph_weight_stats").exists()
