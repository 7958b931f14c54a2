"""AppTest of every page on the embedded default model in ``assets/default`` (skipped until it is there).

The tiny random assets of ``test_app_pages.py`` test the plumbing; this runs the shipped detector and checkpoints,
as a fresh clone opens them, and checks the answer against ``analysis`` called from a script.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest
import torch
from app_harness import assert_clean, first_answer, open_page, start_app
from PIL import Image
from streamlit.testing.v1 import AppTest

from analysis.forward import predict_answers
from analysis.inputs import example_from_regions
from app.state import image_files, read_sample
from lxmert.checkpoints import load_checkpoint
from lxmert.detection import Detector, Regions
from lxmert.detection.files import load_cached_regions

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"
PAGES = (
    "ask",
    "regions",
    "attention",
    "masked_word",
    "masked_object",
    "attributions",
    "compare",
    "intervene",
)

pytestmark = pytest.mark.skipif(
    not (ASSETS / "default" / "detector" / "config.json").is_file()
    or not (ASSETS / "default" / "model").is_dir(),
    reason="the default model is not in assets/default yet",
)


@pytest.fixture
def app(monkeypatch) -> AppTest:
    return start_app(None, monkeypatch, timeout=300)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_draws_on_the_default_model(app, page):
    assert_clean(open_page(app, page))
    assert app.get("plotly_chart")


@pytest.mark.slow
def test_the_probe_page_finds_colour_in_the_default_models_region_states(app):
    """The shipped samples' detections carry a colour the probe reads far above the majority baseline."""
    open_page(app, "probe")
    app.button(key="probe_run").click().run()
    assert_clean(app)
    app.selectbox(key="probe_label").set_value("colour").run()
    table = app.dataframe[0].value  # the probes
    regions = table[table["stream"] == "regions"]
    assert (regions["probe accuracy"] > regions["majority"] + 0.5).all()


def test_the_first_answer_is_the_one_analysis_gives(app):
    sample = image_files(ASSETS / "samples")[0]
    text = app.sidebar.text_input(key="text").value
    assert app.sidebar.selectbox(key="sample").value == sample
    detector = Detector.from_pretrained(ASSETS / "default" / "detector")
    loaded = load_checkpoint(ASSETS / "default" / "model")
    example = example_from_regions(loaded.tokenizer, text, detector([sample])[0])
    expected = predict_answers(loaded.model, example, 1, loaded.answers.label2ans)[0]
    answer, probability = first_answer(app)
    assert answer == expected.answer
    # Half the display's rounding step, plus the app's use of the cached regions: the probabilities they give and
    # those of regions detected here differ by at most 5.4e-5 points over every sample.
    assert probability == pytest.approx(100 * expected.probability, abs=0.05 + 1e-3)
    assert text in (read_sample(str(sample)).suggestions or (text,))


# How far a fresh detection may stray from the cached one: about 10x the largest difference measured between the
# regions cached on the machine that built the assets and those detected on another (boxes 4.6e-5 px, features
# 3.6e-5 of values up to 18, object confidences 6.6e-6, attribute probabilities 1.8e-6; 1 thread, 2 threads and
# 2 threads beside a busy process gave identical results there). Anything that changes what the app shows (other
# weights, another decode) moves them by orders of magnitude more.
REGION_TOLERANCE = {"boxes": 5e-4, "features": 4e-4, "object_conf": 7e-5, "attr_probs": 2e-5}


def same_region(first: Regions, i: int, second: Regions, j: int) -> bool:
    """Whether row ``i`` of ``first`` and row ``j`` of ``second`` are one region: the same object, every value
    within :data:`REGION_TOLERANCE`."""
    if first.object_ids[i] != second.object_ids[j]:
        return False
    return all(
        (getattr(first, name)[i] - getattr(second, name)[j]).abs().max() <= tolerance
        for name, tolerance in REGION_TOLERANCE.items()
    )


def assert_same_regions(cached: Regions, fresh: Regions, name: str) -> None:
    """The same regions, row by row, up to what a near-tie may legitimately change.

    Rows are ranked by score; two rows whose scores tie within the confidence tolerance may come out in either
    order, and two proposals tied for the last place may swap which one is kept. Every other difference fails.
    """
    assert (cached.image_width, cached.image_height, cached.num_real, len(cached)) == (
        fresh.image_width,
        fresh.image_height,
        fresh.num_real,
        len(fresh),
    ), name
    tie = REGION_TOLERANCE["object_conf"]
    conf = cached.object_conf
    unmatched = list(range(len(fresh)))
    left_over = []
    for i in range(len(cached)):
        matches = [j for j in unmatched if same_region(cached, i, fresh, j)]
        if not matches:
            left_over.append(i)
            continue
        j = min(matches, key=lambda k: abs(k - i))
        unmatched.remove(j)
        assert abs(conf[i] - conf[j]) <= tie, f"{name}: row {i} moved to {j} without a tie in score"
    for i, j in zip(left_over, unmatched, strict=True):
        tied = [conf[i], fresh.object_conf[j]]
        assert all(abs(c - conf[-1]) <= tie for c in tied), (
            f"{name}: row {i} differs and is not tied for last"
        )


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
        assert_same_regions(cached, fresh, sample.name)


def test_region_comparison_fails_on_a_real_difference():
    """The tolerances above let through no difference the app would show (so the comparison can fail)."""
    directory = ASSETS / "default" / "detector"
    sample = image_files(ASSETS / "samples")[0]
    cached = load_cached_regions(directory, sample.read_bytes())
    assert_same_regions(cached, cached, sample.name)
    for name, change in (
        ("boxes", lambda r: r.boxes.add(torch.tensor([0.0, 0.0, 0.01, 0.0]))),  # a hundredth of a pixel
        ("features", lambda r: r.features.mul(1.001)),
        ("object_ids", lambda r: r.object_ids.roll(1)),
        ("object_conf", lambda r: r.object_conf.mul(0.999)),
    ):
        with pytest.raises(AssertionError):
            assert_same_regions(cached, dataclasses.replace(cached, **{name: change(cached)}), name)
    last = len(cached) - 1
    with pytest.raises(AssertionError):  # the best and the worst row are no tie
        assert_same_regions(cached, rows(cached, [last, *range(1, last), 0]), "first and last swapped")
    tied = dataclasses.replace(cached, object_conf=cached.object_conf.clone())
    tied.object_conf[1] = tied.object_conf[0]
    assert_same_regions(tied, rows(tied, [1, 0, *range(2, len(cached))]), "a tie swapped")


def rows(regions: Regions, order: list[int]) -> Regions:
    """``regions`` with its rows in ``order``."""
    return dataclasses.replace(
        regions, **{name: getattr(regions, name)[order] for name in (*REGION_TOLERANCE, "object_ids")}
    )


def test_the_card_shows_the_scores_the_shipped_model_records(app):
    """The GQA accuracy that the README quotes for the shipped model (0.602) is in its meta.json under the one
    schema export writes, and the Ask page's checkpoint card shows it."""
    meta = json.loads((ASSETS / "default" / "model" / "meta.json").read_text())
    accuracy = meta["scores"]["valid"]["accuracy"]
    assert accuracy == pytest.approx(0.602, abs=5e-4)
    card = [m.value for m in app.markdown if m.value.startswith("Scores on validation")]
    assert card and f"accuracy **{accuracy:.4g}**" in card[0], [m.value for m in app.markdown]
