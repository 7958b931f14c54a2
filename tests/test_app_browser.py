"""The app in a real browser: ``streamlit run app/main.py`` driven by Playwright on Debian's headless Chromium.

It starts the server on a free port, uploads an image, asks a question, checks the answer against ``analysis`` and
that the attention figure rendered, and screenshots every page. It runs on the repository's ``assets/`` when the
default model is there, else on the tiny random assets. Screenshots go to a temporary directory, so a test run leaves
the tree as it was; ``LXMERT_SCREENSHOTS=1`` writes them to ``docs/screenshots/`` instead (the repository's assets
only), to refresh the docs. It times the path a visitor takes: server start → first answer on screen.

Skipped where ``/usr/bin/chromium`` or Playwright is missing; ``.ci/run`` installs Chromium. No browser is ever
downloaded.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Chromium is not installed at /usr/bin/chromium", allow_module_level=True)

from app_toy_assets import build_assets, scene_image  # noqa: E402

from analysis.forward import predict_answers  # noqa: E402
from analysis.inputs import example_from_regions  # noqa: E402
from lxmert.checkpoints import load_checkpoint  # noqa: E402
from lxmert.detection import Detector  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REPO_ASSETS = REPO / "assets"
SCREENSHOTS = REPO / "docs" / "screenshots"
SCREENSHOTS_ENV = "LXMERT_SCREENSHOTS"  # "1": refresh the docs' screenshots
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Page title in the navigation → screenshot name (the page's file name).
PAGES = {
    "Ask": "ask",
    "Image & regions": "regions",
    "Attention": "attention",
    "Masked word": "masked_word",
    "Masked object": "masked_object",
    "Attributions": "attributions",
    "Compare checkpoints": "compare",
    "Intervene": "intervene",
    "Probe": "probe",
}
# Two questions about the first sample (synth_000010: a medium blue dotted pentagon, a medium white striped arrow and
# three blue arrows). The shipped model answers the first as its ground truth says (medium) and the second wrongly
# (blue, for the white striped arrow): the screenshots show one answer to trust and one to explain.
QUESTION = "What size is the pentagon?"
WRONG_QUESTION = "What color is the striped object?"
TRUTH = {QUESTION: "medium", WRONG_QUESTION: "white"}
# Pages shot again after the wrong answer: the answer, and why the model gave it.
WRONG_PAGES = {"Ask": "ask_wrong", "Attributions": "attributions_wrong"}
VIEWPORT = {"width": 1440, "height": 1000}
SERVER_START_S = 120  # generous: CI machines are slow to import torch the first time
RUN_S = 120_000  # ms Playwright waits for one page run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def has_default_model(assets: Path) -> bool:
    return (assets / "default" / "detector" / "config.json").is_file() and (
        assets / "default" / "model"
    ).is_dir()


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    return REPO_ASSETS if has_default_model(REPO_ASSETS) else build_assets(tmp_path_factory.mktemp("assets"))


@pytest.fixture(scope="module")
def screenshots(assets, tmp_path_factory) -> Path:
    refresh = os.environ.get(SCREENSHOTS_ENV) == "1" and assets == REPO_ASSETS
    directory = SCREENSHOTS if refresh else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="module")
def server(assets):
    """A running app: (base URL, seconds from launch to healthy, launch time, process id)."""
    port = free_port()
    env = {**os.environ, "LXMERT_ASSETS_DIR": str(assets), "LXMERT_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"}
    env.pop("LXMERT_CHECKPOINTS_DIR", None)
    command = [
        sys.executable, "-m", "streamlit", "run", str(REPO / "app" / "main.py"),
        "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    launched = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"streamlit exited with {process.returncode}:\n{process.stdout.read()}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.perf_counter() - launched > SERVER_START_S:
                pytest.fail(f"streamlit did not answer its health check within {SERVER_START_S} s")
            time.sleep(0.2)
        yield url, time.perf_counter() - launched, launched, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def wait_until_idle(page) -> None:
    """Wait for the script run to finish (Streamlit marks its root with the script's state)."""
    page.wait_for_timeout(500)  # an interaction's rerun starts a moment after the event
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=RUN_S)


def click_and_wait(page, locator) -> None:
    locator.click()
    wait_until_idle(page)


def go_to(page, title: str) -> None:
    """Open a page from the navigation (same session, so the upload stays) and wait for its run to end."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title, level=1).wait_for(timeout=RUN_S)
    wait_until_idle(page)


def screenshot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main element, so the window grows to its height first."""
    height = page.evaluate(
        "() => { const main = document.querySelector('[data-testid=\"stMain\"]');"
        " return main ? main.scrollHeight : document.body.scrollHeight; }"
    )
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], int(height))})
    page.wait_for_timeout(1500)  # plotly redraws at the new size
    page.screenshot(path=str(path))
    page.set_viewport_size(VIEWPORT)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``), all its threads together."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def expected_answer(assets: Path, image: Path, question: str) -> str:
    detector = Detector.from_pretrained(assets / "default" / "detector")
    loaded = load_checkpoint(assets / "default" / "model")
    example = example_from_regions(loaded.tokenizer, question, detector([image])[0])
    return predict_answers(loaded.model, example, 1, loaded.answers.label2ans)[0].answer


def test_first_answer_then_upload_ask_and_every_page(server, browser, assets, screenshots, tmp_path):
    url, health_s, launched, pid = server
    page = browser.new_page(viewport=VIEWPORT)

    # A visitor opens the app (the Ask page): time from server launch until the first answer is on screen. The
    # server's CPU time says what that costs on an idle machine, whatever else shares the CPU.
    page.goto(url)
    page.get_by_text(re.compile(r"^Answer: ")).first.wait_for(timeout=RUN_S)
    first_answer_s = time.perf_counter() - launched
    print(
        f"\nserver healthy after {health_s:.1f} s; first answer visible {first_answer_s:.1f} s after launch; "
        f"server CPU time by then {cpu_seconds(pid):.1f} s; load average {os.getloadavg()[0]:.1f}"
    )

    # Upload an image and ask a question.
    image = tmp_path / "upload.png"
    if assets == REPO_ASSETS:
        shutil.copy(next(p for p in sorted((assets / "samples").glob("*.png"))), image)
    else:
        scene_image(11).save(image)
    wait_until_idle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Upload", exact=True).click()
    wait_until_idle(page)
    sidebar.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(image))
    wait_until_idle(page)
    answer = ask(page, assets, image, QUESTION)
    if assets == REPO_ASSETS:
        assert answer == TRUTH[QUESTION]

    for title, name in PAGES.items():
        go_to(page, title)
        assert page.locator('[data-testid="stException"]').count() == 0, f"{title} shows an exception"
        if title == "Attention":  # the words × regions map is a plotly heatmap, drawn in the browser
            page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot .heatmaplayer').first.wait_for(
                timeout=RUN_S
            )
        if title == "Intervene":  # one edit, so the screenshot shows before and after
            click_and_wait(page, page.get_by_text("Swap two regions' features", exact=True))
            click_and_wait(page, page.get_by_role("button", name="Apply this edit"))
            page.get_by_text("Change of language → vision attention").first.wait_for(timeout=RUN_S)
        if title == "Probe":
            click_and_wait(page, page.get_by_role("button", name="Probe every layer"))
            page.get_by_text("Which layer knows").first.wait_for(timeout=RUN_S)
        screenshot(page, screenshots / f"{name}.png")
        if title == "Attention":
            click_a_cell_of_the_map_then_a_box(page)
            click_first_head_of_the_grid(page)

    go_to(page, "Ask")
    answer = ask(page, assets, image, WRONG_QUESTION)
    if assets == REPO_ASSETS:
        assert answer != TRUTH[WRONG_QUESTION]
    for title, name in WRONG_PAGES.items():
        go_to(page, title)
        assert page.locator('[data-testid="stException"]').count() == 0, f"{title} shows an exception"
        screenshot(page, screenshots / f"{name}.png")
    page.close()


def ask(page, assets: Path, image: Path, question: str) -> str:
    """Type ``question`` in the sidebar and wait for the answer ``analysis`` gives on the same files; returns it."""
    box = page.locator('[data-testid="stSidebar"]').get_by_role("textbox", name="Question or sentence")
    box.fill(question)
    box.press("Enter")
    wait_until_idle(page)
    answer = expected_answer(assets, image, question)
    page.get_by_text(f"Answer: {answer}", exact=True).first.wait_for(timeout=RUN_S)  # Ask's headline
    return answer


def click_point(page, chart: int, tag: list) -> None:
    """Click the point of the ``chart``-th figure whose customdata starts with ``tag`` (e.g. ``["region", 3]``)."""
    figure = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').nth(chart)
    figure.scroll_into_view_if_needed()
    # Plotly binds each drawn point to its index and each trace group to its trace (d3's __data__).
    box = figure.evaluate(
        """(figure, tag) => {
            for (const point of figure.querySelectorAll('.scatterlayer .point')) {
                const trace = point.closest('.trace').__data__[0].trace;
                const data = (trace.customdata || [])[point.__data__.i];
                if (Array.isArray(data) && tag.every((value, k) => data[k] === value)) {
                    const r = point.getBoundingClientRect();
                    return {x: r.x + r.width / 2, y: r.y + r.height / 2};
                }
            }
            return null;
        }""",
        tag,
    )
    assert box is not None, f"figure {chart} has no point tagged {tag}"
    page.mouse.move(box["x"], box["y"])  # plotly picks the clicked point from the hover
    page.mouse.click(box["x"], box["y"])
    wait_until_idle(page)


def shown(page, label: str) -> str:
    """What the selectbox labelled ``label`` shows."""
    return page.get_by_role("combobox", name=label, exact=True).input_value()


def click_a_cell_of_the_map_then_a_box(page) -> None:
    """A click on the language → vision map's cell (word 1, region 2) selects that word and region in their
    dropdowns; a click on region 3's dot over the image selects region 3 and keeps the word."""
    click_point(page, 0, ["cell", 1, 2])
    assert shown(page, "Word").startswith("1 ") and shown(page, "Region").startswith("2 ")
    click_point(page, 1, ["region", 3])
    assert shown(page, "Word").startswith("1 ") and shown(page, "Region").startswith("3 ")


def click_first_head_of_the_grid(page) -> None:
    """A click on the head grid's first cell shows the language encoder's layer 1, head 1 in the map."""
    grid = page.locator('[data-testid="stPlotlyChart"]').last
    first = grid.locator(".scatterlayer .point").first
    first.scroll_into_view_if_needed()
    cell = first.bounding_box()
    page.mouse.click(cell["x"] + cell["width"] / 2, cell["y"] + cell["height"] / 2)
    wait_until_idle(page)
    title = "Language self-attention (language encoder), layer 1, head 1"
    page.get_by_text(title, exact=True).wait_for(timeout=RUN_S)
