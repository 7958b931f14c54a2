"""Dataset mode in a real browser: the authors' boxes and Visual Genome labels of a COCO photo, from a dataset's
feature store, on the *Image & regions* and *Ask* pages (Playwright on Debian's headless Chromium).

The server, the browser and the page helpers are those of ``tests/test_app_browser.py``; the assets are tiny random
models that read 2048-d features (``tests/test_app_dataset_mode.py``) beside the sample dataset of
``tests/dataset_sample.py``. ``LXMERT_SCREENSHOTS=1`` writes ``docs/screenshots/dataset_regions.png`` and
``dataset_ask.png``; otherwise the screenshots go to a temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
# Skipped with it where Chromium or Playwright is missing.
pytest.importorskip("test_app_browser")

from app_toy_assets import build_assets  # noqa: E402
from dataset_sample import PHOTOS, QUESTIONS, build_dataset  # noqa: E402
from test_app_browser import (  # noqa: E402, F401 - fixtures used by name
    RUN_S,
    SCREENSHOTS,
    SCREENSHOTS_ENV,
    VIEWPORT,
    browser,
    go_to,
    screenshot,
    server,
    wait_until_idle,
)
from test_app_dataset_mode import vg_detector  # noqa: E402


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    root = build_assets(tmp_path_factory.mktemp("assets"), detector=vg_detector())
    build_dataset(root / "datasets" / "coco")
    return root


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    directory = (
        SCREENSHOTS if os.environ.get(SCREENSHOTS_ENV) == "1" else tmp_path_factory.mktemp("screenshots")
    )
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def test_dataset_mode_draws_the_authors_regions_and_lists_the_questions(server, browser, screenshots):  # noqa: F811
    url = server[0]
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url)
    wait_until_idle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Dataset", exact=True).click()
    wait_until_idle(page)
    sidebar.get_by_text(PHOTOS[0], exact=True).first.wait_for(timeout=RUN_S)

    go_to(page, "Image & regions")
    assert page.locator('[data-testid="stException"]').count() == 0
    page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').first.wait_for(timeout=RUN_S)
    page.get_by_text("36 detections + 0 fill proposals").first.wait_for(timeout=RUN_S)
    screenshot(page, screenshots / "dataset_regions.png")

    go_to(page, "Ask")
    assert page.locator('[data-testid="stException"]').count() == 0
    page.get_by_text("The dataset's questions on this image").wait_for(timeout=RUN_S)
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=RUN_S)
    # The table is drawn on a canvas; its first question is the one pre-filled in the sidebar.
    assert sidebar.get_by_label("Question or sentence", exact=True).input_value() == QUESTIONS[0]["sent"]
    screenshot(page, screenshots / "dataset_ask.png")
    page.close()
