"""The add-a-model page offers Hugging Face configs, with the optional weights shown only then."""

from __future__ import annotations

import json

from tests.browser.conftest import screenshot

GPT2 = {"model_type": "gpt2", "n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 256,
        "n_positions": 64}  # fmt: skip


def test_a_person_adds_a_gpt2_config_on_the_page_and_lands_on_its_page(page, tmp_path):
    page.goto(page.base + "/architectures/new/")
    weights = page.locator(".source-weights")
    assert not weights.is_visible()  # the zoo is picked first: no weights field
    page.get_by_label("Hugging Face config (config.json)").check()
    assert weights.is_visible()
    config = tmp_path / "config.json"
    config.write_text(json.dumps(GPT2))
    page.set_input_files("input[name=file]", str(config))
    page.fill("input[name=name]", "tiny gpt-2")
    screenshot(page, "hf_config_new")
    page.get_by_role("button", name="Add only").click()
    page.wait_for_load_state()
    assert "/architectures/" in page.url and "tiny gpt-2" in page.content()
    assert "35,712" in page.content()  # the exact count, known before any inspection
    screenshot(page, "hf_config_detail")
