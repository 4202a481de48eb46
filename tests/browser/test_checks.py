"""The checks before queueing, in a real browser: the refusal is on the page next to a disabled
button before any job exists, it follows the form as it changes (htmx), every field shows its
help, no option text is cut by its select, and a refused POST comes back as a GET (a reload
never re-submits). Screenshots: ``checks_*``."""

from __future__ import annotations

from tests.browser.conftest import screenshot
from tests.factories import zoo_architecture
from webapp.jobs.models import Job

SEVEN_BY_SEVEN = "Layer conv1 has a 7x7 kernel (49 positions); at most 9 positions per edge."


def inspected(architecture, **facts):
    values = {"num_params": 14_378, "input_shape": [1, 28, 28],
              "layers": {"Conv2d": 3, "ReLU": 3, "Linear": 1}, "output_shape": [10],
              "input_dtype": "float32", "nino": {"supported": True, "reason": ""},
              "ghn": {"supported": True, "reason": ""}}  # fmt: skip
    values.update(facts)
    architecture.record_inspection(**values)
    return architecture


def resnet18(owner):
    return inspected(
        zoo_architecture(owner, "resnet18"), num_params=11_689_512, input_shape=[3, 224, 224],
        layers={"Conv2d": 20, "BatchNorm2d": 20, "Linear": 1}, output_shape=[1000],
        nino={"supported": False, "reason": SEVEN_BY_SEVEN},
    )  # fmt: skip


def test_the_refusal_is_shown_next_to_a_disabled_button_before_any_job_exists(page, owner):
    architecture = resnet18(owner)
    page.goto(f"{page.base}/architectures/{architecture.pk}/#train")
    refusal = page.locator("#verdict-train .verdict-refusals")
    assert refusal.is_visible()
    assert "resnet18 takes 3-channel 224×224 images" in refusal.inner_text()
    assert "1,000 outputs" in refusal.inner_text()
    assert page.locator("#verdict-train button").is_disabled()
    assert page.locator(".supports").first.is_visible()
    assert "7x7 kernel" in page.locator(".supports").first.inner_text()
    page.locator("#train").scroll_into_view_if_needed()
    screenshot(page, "checks_refusal")
    # Next to the Predict button: the GHN's domain, what it measured, and why resnet18 is
    # outside it.
    warning = page.locator("#verdict-predict .verdict-warnings")
    assert "Outside the domain of 'ours'" in warning.inner_text()
    assert "58.1%" in page.locator("#predict .ghn-domains").inner_text()
    page.locator("#predict").scroll_into_view_if_needed()
    screenshot(page, "checks_ghn_domain")
    assert not Job.objects.exists()


def test_the_verdict_follows_the_form_as_the_person_changes_it(page, owner):
    architecture = inspected(zoo_architecture(owner, "cnn"))
    page.goto(f"{page.base}/architectures/{architecture.pk}/#train")
    button = page.locator("#verdict-train button")
    assert button.is_enabled() and page.locator("#verdict-train .verdict-refusals").count() == 0
    page.select_option("#train select[name=dataset]", "builtin:mnist1d")
    refusal = page.locator("#verdict-train .verdict-refusals")
    refusal.wait_for(state="visible")
    assert "inputs shaped 40" in refusal.inner_text() and button.is_disabled()
    # The chosen option's description follows the select too.
    assert "MNIST-1D" in page.locator("#train small.describe").first.inner_text()
    screenshot(page, "checks_live")
    page.select_option("#train select[name=dataset]", "builtin:fashion_mnist")
    refusal.wait_for(state="detached")
    assert page.locator("#verdict-train button").is_enabled()
    assert not Job.objects.exists()


def test_every_field_shows_its_help_and_no_option_text_is_cut(page, owner):
    architecture = inspected(zoo_architecture(owner, "cnn"))
    page.goto(f"{page.base}/architectures/{architecture.pk}/")
    fields = page.locator(".job-form .job-field")
    assert fields.count() >= 11  # train's 9 and predict's 2
    for i in range(fields.count()):
        assert fields.nth(i).locator("small.help").is_visible()
    # Each option's text, in the select's own font, fits inside the select (arrow included).
    cut = page.evaluate(
        """() => {
          const canvas = document.createElement('canvas').getContext('2d');
          const cut = [];
          for (const select of document.querySelectorAll('.job-form select')) {
            const style = getComputedStyle(select);
            canvas.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
            const room = select.clientWidth - parseFloat(style.paddingLeft)
                         - parseFloat(style.paddingRight) - 20;
            for (const option of select.options) {
              const width = canvas.measureText(option.text).width;
              if (width > room) cut.push(`${select.name}: ${option.text} (${width} > ${room})`);
            }
          }
          return cut;
        }"""
    )
    assert cut == []
    page.locator("#predict").scroll_into_view_if_needed()
    screenshot(page, "checks_predict")
    page.locator("#train").scroll_into_view_if_needed()
    screenshot(page, "checks_form")


def test_a_refused_post_comes_back_as_the_page_and_a_reload_does_not_resubmit(page, owner):
    architecture = inspected(zoo_architecture(owner, "cnn"))
    url = f"{page.base}/architectures/{architecture.pk}/"
    page.goto(url + "#train")
    page.fill("#train input[name=steps]", "0")
    page.locator("#verdict-train button").click()
    page.wait_for_load_state()
    assert page.url == url + "#train"
    box = page.locator("#train .error-box").first
    assert box.is_visible() and "steps" in box.inner_text()
    assert page.locator("#train input[name=steps]").input_value() == "0"
    screenshot(page, "checks_rejected")
    page.reload()
    assert page.url == url + "#train" and not Job.objects.exists()
