"""AppTest of every page on the embedded default model in ``assets/default`` (skipped until it is there).

The tiny random assets of ``test_app_pages.py`` test the plumbing; this runs the shipped detector and checkpoints,
as a fresh clone opens them, and checks the answer against ``analysis`` called from a script.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from analysis.forward import predict_answers
from analysis.inputs import example_from_regions
from app.config import ASSETS_ENV, CHECKPOINTS_ENV, DEVICE_ENV
from app.state import image_files, read_sample
from lxmert.checkpoints import load_checkpoint
from lxmert.detection import Detector
from lxmert.detection.files import load_cached_regions

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"
APP = REPO / "app" / "main.py"
PAGES = ("ask", "regions", "attention", "masked_word", "masked_object", "attributions", "compare")

pytestmark = pytest.mark.skipif(
    not (ASSETS / "default" / "detector" / "config.json").is_file()
    or not (ASSETS / "default" / "model").is_dir(),
    reason="the default model is not in assets/default yet",
)


@pytest.fixture
def app(monkeypatch) -> AppTest:
    for name in (ASSETS_ENV, CHECKPOINTS_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    return AppTest.from_file(str(APP), default_timeout=300).run()


@pytest.mark.parametrize("page", PAGES)
def test_every_page_draws_on_the_default_model(app, page):
    app.switch_page(f"app_pages/{page}.py").run()
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    assert app.get("plotly_chart")


def test_the_first_answer_is_the_one_analysis_gives(app):
    sample = image_files(ASSETS / "samples")[0]
    text = app.sidebar.text_input(key="text").value
    assert app.sidebar.selectbox(key="sample").value == sample
    detector = Detector.from_pretrained(ASSETS / "default" / "detector")
    loaded = load_checkpoint(ASSETS / "default" / "model")
    example = example_from_regions(loaded.tokenizer, text, detector([sample])[0])
    expected = predict_answers(loaded.model, example, 1, loaded.answers.label2ans)[0]
    headline = next(m.value for m in app.markdown if m.value.startswith("### Answer"))
    answer, probability = re.match(r"### Answer: \*\*(.+)\*\*\s+([\d.]+)% probability", headline).groups()
    assert answer == expected.answer
    assert float(probability) == pytest.approx(100 * expected.probability, abs=0.05)
    assert text in (read_sample(str(sample)).suggestions or (text,))


def test_every_sample_has_the_regions_the_shipped_detector_finds():
    """The cache that spares the app the detector holds, for each sample, what detecting it now gives."""
    directory = ASSETS / "default" / "detector"
    detector = Detector.from_pretrained(directory)
    samples = image_files(ASSETS / "samples") + image_files(ASSETS / "samples" / "scenes")
    assert samples
    for sample in samples:
        data = sample.read_bytes()
        cached = load_cached_regions(directory, data)
        assert cached is not None, f"{sample.name} has no cached regions for the shipped detector"
        fresh = detector.detect([detector.load_image(Image.open(io.BytesIO(data)))])[0]
        assert (cached.num_real, cached.image_width, cached.image_height) == (
            fresh.num_real,
            fresh.image_width,
            fresh.image_height,
        )
        for name in ("boxes", "features", "object_conf", "attr_probs"):
            torch.testing.assert_close(
                getattr(cached, name), getattr(fresh, name), msg=f"{sample.name} {name}"
            )
        assert torch.equal(cached.object_ids, fresh.object_ids), sample.name
