"""The prediction page in headless Chromium against the real `denselab serve`: draw, upload, random image.

Screenshots of the page (desktop and a 360 px phone) land in the test's temporary folder, or in
$DENSELAB_TEST_ARTIFACTS when that is set, for a person to look at.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import CHROMIUM, CHROMIUM_ARGS, unused_port
from denselab.data.dataset import CLASS_NAMES

FASHION_NAMES = list(CLASS_NAMES["fashion-mnist"])
UPLOAD_INDEX = 0  # an ankle boot, on a black border, so the dark-on-light copy is clearly "paper"
WAIT_MS = 30_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing; install Debian's chromium to run the browser test")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs Playwright (pip install playwright)")


@pytest.fixture
def server_url(trained_dir, tmp_path):
    """`denselab serve` on a free port, as a user starts it; stopped after the test."""
    port = unused_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "denselab", "serve", str(trained_dir / "model.keras"), "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"denselab serve exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"denselab serve did not answer /health within 120 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def page(server_url):
    """A Chromium tab showing the page; fails the test on any script error or request leaving the server."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1000, "height": 800})
            script_errors, foreign_requests = [], []
            tab.on("pageerror", lambda error: script_errors.append(str(error)))
            tab.on("console", lambda message: message.type == "error" and script_errors.append(message.text))
            tab.on("request", lambda request: request.url.startswith(server_url)
                   or foreign_requests.append(request.url))
            tab.goto(server_url + "/")
            yield tab
            assert script_errors == []
            assert foreign_requests == [], "the page must be self-contained"
        finally:
            browser.close()


def predictions_shown(page) -> int:
    return page.evaluate("Number(document.body.dataset.predictions)")


def wait_for_new_prediction(page, before: int) -> None:
    page.wait_for_function("before => Number(document.body.dataset.predictions) > before",
                           arg=before, timeout=WAIT_MS)


def seen_pixels(page) -> np.ndarray:
    """The 28x28 preview canvas, read back as gray values."""
    rgba = page.evaluate("""() => {
        const canvas = document.getElementById("seen");
        return Array.from(canvas.getContext("2d").getImageData(0, 0, 28, 28).data);
    }""")
    return np.array(rgba, dtype=np.uint8).reshape(28, 28, 4)[:, :, 0]


def assert_results_shown(page) -> None:
    # One snapshot in one JavaScript call: while drawing, a newer answer can arrive between
    # two separate reads and change the bars under the test (seen: a flaky mismatch).
    shown = page.evaluate("""() => ({
        rows: document.querySelectorAll("#bars .bar-row").length,
        names: Array.from(document.querySelectorAll("#bars .bar-row .name"), e => e.innerText),
        percentages: Array.from(document.querySelectorAll("#bars .bar-row .pct"), e => e.innerText),
        top: document.getElementById("top").innerText,
        topRow: (document.querySelector("#bars .bar-row.top .name") || {}).innerText,
        error: document.getElementById("error").innerText,
    })""")
    assert shown["rows"] == 10 and shown["names"] == FASHION_NAMES
    percentages = [float(text.rstrip("%")) for text in shown["percentages"]]
    assert sum(percentages) == pytest.approx(100, abs=1)
    top_name, top_percent = shown["top"].split(" — ")
    assert top_name in FASHION_NAMES
    assert float(top_percent.rstrip("%")) == pytest.approx(max(percentages), abs=0.05)
    assert shown["topRow"] == top_name
    assert shown["error"] == ""


def test_draw_upload_and_random_image(page, fashion, tmp_path):
    # Draw: a zigzag stroke with the mouse, as a person would.
    box = page.locator("#draw").bounding_box()
    assert (box["width"], box["height"]) == (280, 280)
    before = predictions_shown(page)
    page.mouse.move(box["x"] + 60, box["y"] + 50)
    page.mouse.down()
    for step in range(1, 13):
        page.mouse.move(box["x"] + 60 + 14 * step, box["y"] + 50 + (150 if step % 2 else 20), steps=3)
    page.mouse.up()
    wait_for_new_prediction(page, before)
    assert_results_shown(page)
    assert seen_pixels(page).max() > 128, "the stroke should reach the model as light pixels"

    # Upload: a test image 4x larger and dark-on-light, as a photo of a drawing would be.
    # The server inverts it and shrinks it by averaging 4x4 blocks, so the model sees the original.
    original = fashion.test_images[UPLOAD_INDEX]
    upload_path = tmp_path / "boot.png"
    Image.fromarray(255 - original).resize((112, 112), Image.Resampling.NEAREST).save(upload_path)
    before = predictions_shown(page)
    page.set_input_files("#upload", str(upload_path))
    wait_for_new_prediction(page, before)
    assert_results_shown(page)
    np.testing.assert_array_equal(seen_pixels(page), original)
    assert page.inner_text("#truth") == ""

    # Random test image: its pixels go to the model unchanged and the true label is shown.
    before = predictions_shown(page)
    page.click("#random")
    wait_for_new_prediction(page, before)
    page.wait_for_selector("#truth[data-index]", timeout=WAIT_MS)
    assert_results_shown(page)
    index = int(page.get_attribute("#truth", "data-index"))
    true_name = FASHION_NAMES[int(fashion.test_labels[index])]
    assert page.inner_text("#truth").startswith(f"True label: {true_name}")
    np.testing.assert_array_equal(seen_pixels(page), fashion.test_images[index])

    artifacts = Path(os.environ.get("DENSELAB_TEST_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / "serve-page.png"), full_page=True)
    page.set_viewport_size({"width": 360, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth") <= 360, "nothing may stick out sideways"
    page.screenshot(path=str(artifacts / "serve-page-phone.png"), full_page=True)
