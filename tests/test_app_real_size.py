"""Every page of the app on stand-ins of the real LXMERT at its real sizes, from each published layout.

The model set (tests/real_size_set.py) holds one random VQA model at the published sizes (9/5/5, 768, 2048-d
regions, 3,129 answers) three ways: a transformers directory, the authors' task ``.pth``, and a hub id read from a
``huggingface_hub`` cache; its detector is the Visual Genome ResNet-101 C4 (1600 objects, 400 attributes), made
small in image size. They are built once per session. One app session drives every page with each of the three, on a
COCO photo (the gallery's one sample, detected) and in dataset mode (the authors' stored obj36 regions of COCO photos,
tests/dataset_sample.py); integrated gradients and the comparison of two checkpoints, the slow parts, run once. The
three layouts hold the same weights, so each input must get the same answers from each.
"""

from __future__ import annotations

import ctypes
import gc
import shutil
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants
import pytest
from app_harness import answer_headlines, assert_clean, parse_headline, start_app
from dataset_sample import PHOTOS, build_dataset
from real_size_set import NUM_REGIONS, VQA_REPO, answers, build_apart
from streamlit.testing.v1 import AppTest

from app import loading
from app.config import DATASETS_ENV
from lxmert.detection.files import OBJECTS_FILE, VG_VOCAB_DIR, read_vocab

pytest.importorskip("transformers")

PHOTO = Path(__file__).resolve().parent / "data" / "coco" / f"{PHOTOS[0]}.jpg"
PAGES = ("ask", "regions", "attention", "masked_word", "masked_object", "attributions", "compare")
CHECKPOINTS = ("default/transformers", "default/authors", "default/hub")
TIMEOUT = 600
OBJECTS = set(read_vocab(VG_VOCAB_DIR / OBJECTS_FILE))


@pytest.fixture(scope="session")
def real_size(tmp_path_factory) -> Iterator[Path]:
    """``assets/`` (the real-size set as the default, the COCO photo as the gallery), ``datasets/`` and
    ``hf-cache/``."""
    work = tmp_path_factory.mktemp("real-size")
    build_apart(work / "assets" / "default", work / "hf-cache")
    (work / "assets" / "samples").mkdir()
    shutil.copy(PHOTO, work / "assets" / "samples")
    build_dataset(work / "datasets" / "coco")
    yield work
    shutil.rmtree(work, ignore_errors=True)  # 1.3 GB, which pytest would keep for three sessions


def start(real_size: Path, monkeypatch, hub_cache: Path) -> AppTest:
    """The app on the real-size set, hub ids read from ``hub_cache``."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    loading.problem.clear()  # the checks are cached for a minute: this cache's, not another test's
    assets = real_size / "assets"
    return start_app(
        assets, monkeypatch, checkpoints=assets, env={DATASETS_ENV: real_size / "datasets"}, timeout=TIMEOUT
    )


@pytest.fixture
def app(real_size, monkeypatch) -> AppTest:
    yield start(real_size, monkeypatch, real_size / "hf-cache")
    free_models()


def free_models() -> None:
    """Drop the loaded checkpoints and hand their memory back (glibc keeps freed heap pages otherwise): one base
    model at a time, on a machine shared with other jobs."""
    loading.load_model.clear()
    gc.collect()
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc's; other C libraries may lack it
    if trim is not None:
        trim(0)


def every_page(app: AppTest, checkpoint: str, source: str) -> list[str]:
    """Open every page (the comparison of two checkpoints only once: a minute on a loaded CPU); returns what the ask
    page shows as the answer."""
    shown: list[str] = []
    first = checkpoint == CHECKPOINTS[0] and source == "photo"
    for page in PAGES if first else PAGES[:-1]:
        app.switch_page(f"app_pages/{page}.py").run()
        where = (checkpoint, source, page)
        assert_clean(app, where)
        if page == "ask":
            shown = answer_headlines(app)
            assert shown and shown[0].removeprefix("### Answer: **").split("**")[0] in answers(), where
        elif page == "regions":
            table = app.dataframe[0].value
            assert len(table) == (NUM_REGIONS if source == "photo" else 36), where
            assert set(table["object"]) <= OBJECTS, where
        elif page not in ("masked_word", "masked_object"):  # a VQA model has no masked heads: a notice only
            assert app.get("plotly_chart"), f"{where} drew no figure"
        if page == "attributions" and first:
            app.session_state["ig_steps"] = 8  # the page's default is 32: seconds more
            app.selectbox(key="attribution_method").set_value("ig").run()
            assert_clean(app, (*where, "ig"))
            assert any(m.label == "Words: Σ attribution" for m in app.metric), where
            assert not app.get("progress"), "the progress bar is removed once integrated gradients are done"
    return shown


@pytest.mark.slow  # builds and loads a 200M-parameter model three times, and a ResNet-101
def test_every_page_runs_on_real_size_stand_ins_from_each_layout_on_a_photo_and_in_dataset_mode(app):
    assert_clean(app, "start")
    picker = app.sidebar.selectbox(key="checkpoint")
    assert picker.options == list(CHECKPOINTS)  # none marked as unable to run: sizes and files agree
    answered: dict[str, dict[str, list[str]]] = {}
    for checkpoint in CHECKPOINTS:
        free_models()  # one base model at a time (the comparison loads a second)
        app.sidebar.radio(key="source").set_value("Gallery").run()
        app.sidebar.selectbox(key="checkpoint").set_value(checkpoint).run()
        assert_clean(app, checkpoint)
        photo = every_page(app, checkpoint, "photo")
        app.sidebar.radio(key="source").set_value("Dataset").run()
        dataset = every_page(app, checkpoint, "dataset")
        answered[checkpoint] = {"photo": photo, "dataset": dataset}
    first = answered[CHECKPOINTS[0]]
    for checkpoint in CHECKPOINTS[1:]:
        for source, shown in answered[checkpoint].items():
            expected = [parse_headline(line) for line in first[source]]
            got = [parse_headline(line) for line in shown]
            # The same weights through three loaders: the same answers; a probability shown to 0.1 points may
            # round the other way when the arithmetic differs in its last bits.
            assert [a for a, _ in got] == [a for a, _ in expected], (checkpoint, source)
            assert all(abs(p - q) <= 0.1 + 1e-9 for (_, p), (_, q) in zip(got, expected, strict=True)), (
                checkpoint,
                source,
                shown,
                first[source],
            )


@pytest.mark.slow
def test_a_hub_checkpoint_missing_from_the_cache_is_listed_as_unable_to_run_with_the_download_command(
    real_size, monkeypatch
):
    empty = real_size / "empty-hf-cache"
    app = start(real_size, monkeypatch, empty)
    loading.problem.clear()
    assert not app.exception, [e.value for e in app.exception]
    assert app.sidebar.selectbox(key="checkpoint").options == [
        *CHECKPOINTS[:2],
        "default/hub (cannot run here)",
    ]
    reasons = " ".join(c.value for c in app.sidebar.caption)
    assert VQA_REPO in reasons and "python -m lxmert.hub download vqa --to DIR" in reasons, reasons
    assert not empty.exists()  # never downloaded
    app.sidebar.selectbox(key="checkpoint").set_value("default/hub").run()
    assert any("default/hub" in e.value and "download vqa" in e.value for e in app.error)
