"""The app on a detector directory made by ``python -m lxmert.detection.convert`` from the published layout.

The detectron2 ``.pkl`` holds seeded random weights of the real Visual Genome detector (tests/butd_layouts.py:
ResNet-101 C4, 1600 objects, 400 attributes, 2048-d features), converted by the command a user runs, with the
image sizes and proposal count made small so that a CPU test runs it in seconds. The models beside it take its
2048-d features. Every page must draw on a COCO photo, and the regions carry Visual Genome names.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from app_harness import assert_clean, open_page, start_app
from app_toy_assets import build_assets
from real_size_set import NUM_REGIONS, detector_dir

from lxmert.detection import Detector
from lxmert.detection.convert import VG_VOCAB_DIR
from lxmert.detection.files import read_vocab

PHOTO = Path(__file__).resolve().parent / "data" / "coco" / "COCO_train2014_000000573195.jpg"
PAGES = ("regions", "ask", "attention", "masked_word", "masked_object", "attributions")


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("vg")
    detector = Detector.from_pretrained(detector_dir(work))
    return build_assets(work / "assets", detector=detector, world="real")


@pytest.mark.slow  # builds a ResNet-101 and runs it on a photo
def test_every_page_draws_on_a_photo_with_the_converted_vg_detector(assets, monkeypatch):
    app = start_app(assets, monkeypatch, timeout=300)
    app.sidebar.radio(key="source").set_value("Upload").run()
    app.sidebar.file_uploader[0].set_value((PHOTO.name, PHOTO.read_bytes(), "image/jpeg")).run()
    vg_objects = set(read_vocab(VG_VOCAB_DIR / "objects_vocab.txt"))
    for page in PAGES:
        assert_clean(open_page(app, page), page)
        if page == "regions":
            table = app.dataframe[0].value
            assert len(table) == NUM_REGIONS
            labels = {str(v) for column in table.columns for v in table[column] if isinstance(v, str)}
            assert labels & vg_objects, f"no Visual Genome object name among the region labels: {labels}"
