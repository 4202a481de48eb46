"""The data set pages in a real browser: the upload page explains the formats, an image-folder
zip uploaded through it shows its classes, counts, shape and thumbnails, and a refused one
names the file."""

from __future__ import annotations

from tests.browser.conftest import screenshot
from tests.image_zips import class_folders, image_bytes, zip_bytes
from webapp.datasets.models import Dataset


def test_a_person_uploads_class_folders_through_the_page_and_sees_the_classes(page, tmp_path):
    members = class_folders({"circle": 6, "square": 9, "triangle": 5}, mode="RGB", size=(24, 24))
    members["square/small.png"] = image_bytes("png", (12, 12), "L")
    path = tmp_path / "shapes.zip"
    path.write_bytes(zip_bytes(members))
    page.goto(page.base + "/datasets/new/")
    assert page.get_by_role("heading", name="Image folders .zip").is_visible()
    assert "train/" in page.locator("#format-images").inner_text()
    screenshot(page, "datasets_upload_page")
    page.set_input_files("input[type=file]", str(path))
    page.fill("input[name=name]", "shapes")
    page.get_by_role("button", name="Upload").click()
    page.wait_for_url("**/datasets/*/")
    assert page.get_by_test_id("input-shape").inner_text() == "3×24×24"
    assert page.get_by_test_id("class-count").inner_text() == "3"
    rows = page.get_by_test_id("class-row")
    assert rows.count() == 3
    assert rows.nth(1).inner_text().split("\t")[:4] == ["1", "square", "9", "1"]
    assert "1 image of another size will be stretched" in page.content()
    # Thumbnails are the uploaded images themselves, decoded by the browser.
    first = page.locator(".class-table img").first
    first.wait_for()
    page.wait_for_function("() => [...document.querySelectorAll('.class-table img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")  # fmt: skip
    assert first.evaluate("i => i.naturalWidth") == 24
    screenshot(page, "datasets_image_folder_detail")
    assert Dataset.objects.get().summary["class_names"] == ["circle", "square", "triangle"]


def test_a_refused_zip_names_the_file_on_the_page(page, tmp_path):
    path = tmp_path / "bad.zip"
    path.write_bytes(zip_bytes(class_folders({"only": 4})))
    page.goto(page.base + "/datasets/new/")
    page.set_input_files("input[type=file]", str(path))
    page.get_by_role("button", name="Upload").click()
    alert = page.get_by_role("alert")
    assert "has 1 class ('only'); at least 2 class folders with images are needed" in (
        alert.inner_text()
    )
    alert.scroll_into_view_if_needed()
    screenshot(page, "datasets_refused")
    assert not Dataset.objects.exists()
