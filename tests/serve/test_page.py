"""The page at / in real headless browsers, Chromium and Firefox (tests/serve/browsers.py): upload an
image (picked or dropped), read the drawn detections and the table, filter by score and class without
a new request, give the API key a server asks for, and save a screenshot of the page. One server for
the module; each browser starts once.

Each browser skips with its reason where it, its driver or selenium is missing (tools/install_browser.sh
installs the browsers); with DETECT_REQUIRE_BROWSER=1 (CI) it fails instead. DETECT_SCREENSHOT=PATH
keeps Chromium's screenshot there (the README's docs/serve_page.png); DETECT_SERVE_CHECKPOINT=CKPT
serves that checkpoint instead of the tiny random one (a trained model makes a readable screenshot).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from detect.serve.app import ServeSettings, create_app
from detect.serve.model import load_served_model
from tests.serve.browsers import BROWSERS, missing, start
from tests.serve.conftest import serving

SCORE_FLOOR = 0.05  # the page's request (static/app.js)
WAIT_S = 30
SCREENSHOT_BOXES = 6


@pytest.fixture(scope="module", params=BROWSERS)
def browser(request):
    lacking = missing(request.param)
    if lacking:
        reason = f"the {request.param} page test needs {', '.join(lacking)}: see tools/install_browser.sh"
        if os.environ.get("DETECT_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    driver = start(request.param)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page_url(served_model):
    """The server's URL; DETECT_SERVE_CHECKPOINT serves that checkpoint instead of the tiny SSD."""
    path = os.environ.get("DETECT_SERVE_CHECKPOINT")
    model = load_served_model(Path(path), device="cpu") if path else served_model
    with serving(create_app(model, ServeSettings())) as url:
        yield url


def shapes_image(folder: Path) -> Path:
    from detect.data.synthetic import draw_image, encode_jpeg

    image_bgr = draw_image(np.random.default_rng(2), 320)[0]  # five shapes
    path = folder / "shapes.jpg"
    path.write_bytes(encode_jpeg(image_bgr))
    return path


def test_page_draws_filters_and_tabulates_detections(browser, page_url, tmp_path):
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)
    model = httpx.get(f"{page_url}/v1/model").json()
    browser.get(page_url + "/")
    wait.until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#classes input[type=checkbox]")) == len(model["classes"]))
    assert model["name"] in browser.find_element(By.ID, "model").text
    assert model["arch"] in browser.find_element(By.ID, "model").text
    assert all(name in browser.find_element(By.ID, "model").text for name in model["classes"])

    image = shapes_image(tmp_path)
    browser.find_element(By.ID, "file").send_keys(str(image))
    wait.until(lambda d: "showing" in d.find_element(By.ID, "status").text)
    with image.open("rb") as stream:
        answer = httpx.post(
            f"{page_url}/v1/detect?score_threshold={SCORE_FLOOR}", files={"files": ("shapes.jpg", stream)})
    found = answer.json()["images"][0]["detections"]
    assert found, "the model found nothing to draw"

    def shown() -> tuple[int, list[tuple[str, float]]]:
        drawn = int(browser.find_element(By.ID, "view").get_attribute("data-drawn"))
        rows = browser.find_elements(By.CSS_SELECTOR, "#detections tbody tr")
        cells = [row.find_elements(By.TAG_NAME, "td") for row in rows]
        return drawn, [(row_cells[1].text, float(row_cells[2].text)) for row_cells in cells]

    def expected(min_score: float, hidden: set[str] = frozenset()) -> list[tuple[str, float]]:
        return [(d["class_name"], round(d["score"], 3)) for d in found
                if d["score"] >= min_score and d["class_name"] not in hidden]

    drawn, rows = shown()
    assert same(rows, expected(0.5)) and drawn == len(rows)
    canvas_size = browser.execute_script("const c = document.getElementById('view'); return [c.width, c.height];")
    assert canvas_size == [320, 320]

    slider = browser.find_element(By.ID, "score")
    slider.send_keys(Keys.HOME)  # score 0: everything the server sent
    drawn, rows = shown()
    assert same(rows, expected(0.0)) and drawn == len(found)
    everything_drawn = browser.execute_script("return document.getElementById('view').toDataURL();")
    slider.send_keys(Keys.END)  # score 1: nothing (scores stay below 1)
    drawn, rows = shown()
    assert same(rows, expected(1.0)) and drawn == len(rows)
    nothing_drawn = browser.execute_script("return document.getElementById('view').toDataURL();")
    assert everything_drawn != nothing_drawn  # the boxes are pixels on the canvas

    slider.send_keys(Keys.HOME)
    hidden = found[0]["class_name"]
    browser.find_element(By.CSS_SELECTOR, f'#classes input[data-class="{hidden}"]').click()
    drawn, rows = shown()
    assert same(rows, expected(0.0, {hidden})) and hidden not in [name for name, _ in rows]
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-requests") == "1"  # filtered here

    browser.find_element(By.CSS_SELECTOR, f'#classes input[data-class="{hidden}"]').click()
    # For the screenshot: a slider value that shows the best few detections (a weak model scores low).
    best_few = int(sorted((d["score"] for d in found), reverse=True)[:SCREENSHOT_BOXES][-1] * 100) / 100
    browser.execute_script("const s = document.getElementById('score'); s.value = arguments[0];"
                           "s.dispatchEvent(new Event('input'));", best_few)
    assert same(shown()[1], expected(best_few))
    readme_shot = os.environ.get("DETECT_SCREENSHOT") if browser.name == "chrome" else None
    _save_screenshot(browser, Path(readme_shot or tmp_path / f"serve_page_{browser.name}.png"))


def test_page_shows_the_servers_error_for_a_bad_file(browser, page_url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page_url + "/")
    text_file = tmp_path / "notes.png"
    text_file.write_text("not an image")
    browser.find_element(By.ID, "file").send_keys(str(text_file))
    WebDriverWait(browser, WAIT_S).until(lambda d: "415" in d.find_element(By.ID, "status").text)
    assert "not an image" in browser.find_element(By.ID, "status").text


def test_page_takes_a_dropped_image(browser, page_url, tmp_path):
    """An image dropped on the page (a drop event carrying a file, as a drag from the desktop ends) is
    sent and drawn, as a picked one."""
    import base64

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    data = base64.b64encode(shapes_image(tmp_path).read_bytes()).decode("ascii")
    browser.get(page_url + "/")
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#classes input[type=checkbox]"))
    browser.execute_script(
        "const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));"
        "const files = new DataTransfer(); files.items.add(new File([bytes], 'dropped.jpg', {type: 'image/jpeg'}));"
        "const drop = document.getElementById('drop');"
        "for (const type of ['dragenter', 'dragover', 'drop'])"
        "  drop.dispatchEvent(new DragEvent(type, {dataTransfer: files, bubbles: true, cancelable: true}));", data)
    WebDriverWait(browser, WAIT_S).until(lambda d: "dropped.jpg: showing" in d.find_element(By.ID, "status").text)
    drawn = int(browser.find_element(By.ID, "view").get_attribute("data-drawn"))
    assert drawn == len(browser.find_elements(By.CSS_SELECTOR, "#detections tbody tr"))
    size = browser.execute_script("const c = document.getElementById('view'); return [c.width, c.height];")
    assert size == [320, 320]
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-requests") == "1"


def test_page_asks_for_the_api_key_of_a_server_that_needs_one(browser, served_model, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)
    with serving(create_app(served_model, ServeSettings(api_key="page-key"))) as url:
        browser.get(url + "/")
        wait.until(lambda d: "needs an API key" in d.find_element(By.ID, "status").text)
        key = browser.find_element(By.ID, "api-key")
        key.send_keys("page-key", Keys.TAB)  # leaving the field fires its change event
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#classes input[type=checkbox]")) == 3)
        assert served_model.name in browser.find_element(By.ID, "model").text
        browser.find_element(By.ID, "file").send_keys(str(shapes_image(tmp_path)))
        wait.until(lambda d: "shapes.jpg: showing" in d.find_element(By.ID, "status").text)


@pytest.mark.parametrize("byte_order", ["II", "MM"])
def test_page_draws_a_turned_jpeg_in_its_stored_pixels(browser, page_url, tmp_path, byte_order):
    """A JPEG whose EXIF orientation says "turn a quarter to show" (a phone photo) is drawn as stored,
    the frame of the server's boxes, although browsers turn such images whenever they decode them."""
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    blue, red = (20, 40, 220), (220, 30, 30)
    stored = Image.new("RGB", (240, 160), red)
    stored.paste(blue, (0, 0, 80, 160))  # the left third
    path = tmp_path / "turned.jpg"
    stored.save(path, "JPEG", exif=exif_orientation(6, byte_order), quality=95)  # 6: turn a quarter clockwise

    browser.get(page_url + "/")
    browser.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(browser, WAIT_S).until(lambda d: "showing" in d.find_element(By.ID, "status").text)
    browser.find_element(By.ID, "score").send_keys(Keys.END)  # no boxes over the pixels read below
    width, height, left, right = browser.execute_script(
        "const c = document.getElementById('view'); const context = c.getContext('2d');"
        "const at = (x, y) => Array.from(context.getImageData(x, y, 1, 1).data.slice(0, 3));"
        "return [c.width, c.height, at(20, 80), at(200, 80)];")
    assert (width, height) == stored.size
    assert np.allclose(left, blue, atol=30) and np.allclose(right, red, atol=30)


def exif_orientation(value: int, byte_order: str) -> bytes:
    """An EXIF block holding only the orientation tag (0x0112, one SHORT), in TIFF byte order "II"
    (little-endian) or "MM" (big-endian)."""
    order = "<" if byte_order == "II" else ">"
    directory = struct.pack(order + "HHHIHH", 1, 0x0112, 3, 1, value, 0) + struct.pack(order + "I", 0)
    return b"Exif\0\0" + byte_order.encode() + struct.pack(order + "HI", 42, 8) + directory


def same(rows: list[tuple[str, float]], wanted: list[tuple[str, float]]) -> bool:
    """The table's (class, score) rows are the wanted ones, in order (scores to the table's 3 decimals)."""
    return [name for name, _ in rows] == [name for name, _ in wanted] and np.allclose(
        [score for _, score in rows], [score for _, score in wanted], atol=1e-3)


def _save_screenshot(browser, path: Path) -> None:
    """A PNG of the page, quantised to 8-bit colour so that it stays small in the repository."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".raw.png")
    assert browser.save_screenshot(str(raw))
    with Image.open(raw) as shot:
        shot.convert("RGB").quantize(colors=128).save(path, optimize=True)
    raw.unlink()
    assert path.stat().st_size > 0
