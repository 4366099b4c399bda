"""A study's report.html as a person sees it, in headless Chromium at 1280 and 800 px.

Measured on the element boxes, not the pixels: a number that wraps has text boxes on more
than one line. Screenshots land in the test's temporary folder, or in
$DENSELAB_TEST_ARTIFACTS when that is set, for a person to look at.
"""

import os
from pathlib import Path

import pytest

from conftest import CHROMIUM, CHROMIUM_ARGS
from denselab.study.run import run_study
from denselab.reports.study import build_report, write_report
from denselab.runs.store import RunStore
from denselab.study.file import parse_study

# The exercise's longest variant name and a deeper model, on a slice of the real data.
STUDY = """
name = "page"
seeds = 2

[defaults]
hidden = [20]
epochs = 1

[[variants]]
name = "base"
reason = "The starting model."

[[variants]]
name = "unnormalized"
hidden = [64, 32]
normalization = "none"
reason = "A deeper model on raw pixels."

[[questions]]
question = "A deeper model on raw pixels"
baseline = "base"
variant = "unnormalized"
"""
# Every cell whose text has a digit, with the number of distinct lines its text boxes sit on.
WRAPPED_NUMBERS = """() => [...document.querySelectorAll('td, th')]
    .filter(cell => /[0-9]/.test(cell.textContent))
    .map(cell => {
        const range = document.createRange();
        range.selectNodeContents(cell);
        const lines = new Set([...range.getClientRects()].map(box => Math.round(box.top)));
        return [cell.textContent, lines.size];
    })
    .filter(([text, lines]) => lines > 1)"""


@pytest.fixture(scope="module")
def report_file(fashion, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report-page")
    study = parse_study(STUDY, "page.toml")
    small = fashion.subset(train=2000, test=500)
    with RunStore(root / "runs.sqlite") as store:
        outcome = run_study(study, store, root / "models", {"fashion-mnist": small})
    return write_report(build_report(study, outcome.runs, small), root / "report") / "report.html"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing; `make test` installs Debian's chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_report(browser, report_file: Path, width: int):
    page = browser.new_page(viewport={"width": width, "height": 900})
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(report_file.as_uri())
    return page, requests


@pytest.mark.parametrize("width", [1280, 800])
def test_no_table_cell_wraps_a_number(browser, report_file, width, tmp_path):
    page, requests = open_report(browser, report_file, width)
    cells = page.evaluate("() => [...document.querySelectorAll('td')].map(cell => cell.textContent)")
    assert any("±" in cell for cell in cells) and "✓ ✓" in cells  # the tables are there
    # The boards' note says what TFLM itself was counted at, and that it was measured.
    from denselab.deploy.tflm_runtime import tflm_runtimes
    text = page.inner_text("body")
    for core, tflm in tflm_runtimes().items():  # each board is judged on its own core's figures
        assert f"{core}: {tflm.code_bytes:,} and {tflm.ram_bytes:,} bytes" in text
    assert "the larger of TFLM's reference and CMSIS-NN builds" in text and "esp32: not checked here" in text
    assert page.evaluate(WRAPPED_NUMBERS) == []
    # Self-contained: the page asked for nothing but itself and its embedded images.
    assert all(url.startswith(("file://", "data:")) for url in requests), requests
    artifacts = Path(os.environ.get("DENSELAB_TEST_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / f"report-{width}.png"), full_page=True)
    page.close()


def test_the_answers_stand_beside_their_forest_plot_on_a_wide_page_and_under_it_on_a_narrow_one(browser, report_file):
    for width, beside in ((1280, True), (800, False)):
        page, _ = open_report(browser, report_file, width)
        figure = page.locator(".answers figure img").bounding_box()
        answers = page.locator(".answers ul").bounding_box()
        assert figure["width"] > 300 and answers["height"] > 0
        if beside:
            assert answers["x"] >= figure["x"] + figure["width"]
        else:
            assert answers["y"] >= figure["y"] + figure["height"]
        assert page.locator(".answers li b").first.text_content() == "A deeper model on raw pixels"
        page.close()
