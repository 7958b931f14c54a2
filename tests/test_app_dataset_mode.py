"""Dataset mode: the authors' stored regions of real COCO photos feed every page instead of the detector, and the
dataset's questions are listed with their ground truth beside the model's answer and its score.

The dataset is the authors' obj36 rows of two COCO photos (tests/dataset_sample.py) under ``<assets>/datasets``.
The models are tiny and random but read 2048-d features and name Visual Genome's 1600 objects and 400 attributes,
as the real ones do; answers and scores are checked against ``analysis`` run on the authors' TSV rows directly.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from app_harness import assert_clean, assert_no_exception, open_page, start_app
from app_toy_assets import build_assets, toy_detector
from dataset_sample import PHOTOS, QUESTIONS, build_dataset
from PIL import Image
from streamlit.testing.v1 import AppTest

from analysis.forward import predict_answers
from analysis.inputs import example_from_regions
from app.config import DATASETS_ENV
from app.datasets import stored_scene
from lxmert.checkpoints import load_checkpoint
from lxmert.data.tsv import iter_tsv
from lxmert.detection import Detector, Regions
from lxmert.detection.files import ATTRIBUTES_FILE, OBJECTS_FILE, VG_VOCAB_DIR, read_vocab

DATA = Path(__file__).resolve().parent / "data"
PAGES = (
    "regions",
    "ask",
    "attention",
    "masked_word",
    "masked_object",
    "attributions",
    "compare",
    "intervene",
)
OBJECTS = read_vocab(VG_VOCAB_DIR / OBJECTS_FILE)
ATTRIBUTES = read_vocab(VG_VOCAB_DIR / ATTRIBUTES_FILE)


def vg_detector(feature_dim: int = 2048) -> Detector:
    """A small random detector with the Visual Genome vocabularies and the real feature size; dataset mode never
    runs it (the app reads only its config), but the models beside it take its sizes."""
    return toy_detector(OBJECTS, ATTRIBUTES, feature_dim)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    root = build_assets(tmp_path_factory.mktemp("assets"), detector=vg_detector())
    build_dataset(root / "datasets" / "coco")
    return root


def start(assets: Path, monkeypatch, datasets: Path | None = None) -> AppTest:
    """The app on ``assets`` with the input source "Dataset"; datasets from ``datasets`` (default:
    ``<assets>/datasets``)."""
    app = start_app(assets, monkeypatch, env={DATASETS_ENV: None if datasets is None else str(datasets)})
    app.sidebar.radio(key="source").set_value("Dataset").run()
    return app


@pytest.fixture
def app(assets, monkeypatch) -> AppTest:
    return start(assets, monkeypatch)


def authors_row(photo: str, tmp_path: Path) -> dict:
    """The authors' obj36 row of a photo, read from the TSV line itself (not from the store the app reads)."""
    tsv = tmp_path / f"{photo}.tsv"
    tsv.write_bytes(gzip.decompress((DATA / "obj36" / f"{photo}.tsv.gz").read_bytes()))
    return next(iter_tsv(tsv))


def test_dataset_mode_picks_the_first_image_with_all_36_stored_regions(app):
    assert_clean(app)
    assert app.sidebar.selectbox(key="dataset").value == "coco"
    assert app.sidebar.selectbox(key="dataset_image").value == PHOTOS[0]
    assert app.sidebar.slider(key="num_regions").value == 36  # the store's count, not the detector's 8
    assert app.sidebar.text_input(key="text").value == QUESTIONS[0]["sent"]  # its first question, pre-filled


def test_regions_page_shows_the_authors_boxes_and_vg_labels(app, tmp_path):
    open_page(app, "regions")
    assert_clean(app)
    row = authors_row(PHOTOS[0], tmp_path)
    table = app.dataframe[0].value
    assert len(table) == 36
    assert list(table["object"]) == [OBJECTS[i] for i in row["objects_id"]]
    assert list(table["attribute"]) == [ATTRIBUTES[i] for i in row["attrs_id"]]
    assert list(table["box (x1, y1, x2, y2)"]) == [", ".join(f"{v:.0f}" for v in box) for box in row["boxes"]]
    figure = json.loads(app.get("plotly_chart")[0].proto.spec)
    text = json.dumps(figure)
    first = f"0 {ATTRIBUTES[row['attrs_id'][0]]} {OBJECTS[row['objects_id'][0]]}"
    assert first in text, f"{first!r} is not drawn on the photo"
    assert any(
        "not detected" in i.value and "2048-d" in i.value for i in app.info
    )  # says where they come from


def test_an_image_picked_from_the_thumbnails_becomes_the_input(app):
    app.button(key=f"dataset_pick_{PHOTOS[1]}").click().run()
    assert_clean(app)
    assert app.sidebar.selectbox(key="dataset_image").value == PHOTOS[1]
    assert app.sidebar.text_input(key="text").value == next(
        q["sent"] for q in QUESTIONS if q["img_id"] == PHOTOS[1]
    )
    open_page(app, "regions")
    assert len(app.dataframe[0].value) == 36


def test_ask_lists_the_questions_with_ground_truth_model_answer_and_score(app, assets, tmp_path):
    open_page(app, "ask")
    assert_clean(app)
    table = next(d.value for d in app.dataframe if "ground truth" in d.value.columns)
    loaded = load_checkpoint(assets / "default" / "model")
    regions = Regions.from_record(authors_row(PHOTOS[0], tmp_path), len(ATTRIBUTES))
    expected_scores = []
    questions = [q for q in QUESTIONS if q["img_id"] == PHOTOS[0]]
    assert list(table["question"]) == [q["sent"] for q in questions]
    for (_, shown), question in zip(table.iterrows(), questions, strict=True):
        example = example_from_regions(loaded.tokenizer, question["sent"], regions)
        with torch.no_grad():
            answer = predict_answers(loaded.model, example, 1, loaded.answers.label2ans)[0].answer
        score = question["label"].get(answer, 0.0)  # the VQA soft score the file's label gives the answer
        expected_scores.append(score)
        assert shown["model's answer"] == answer
        assert shown["score"] == pytest.approx(score)
    assert table["ground truth"][0] == "cat (1), kitten (0.3)"
    assert table["score"][2] > 0  # that question credits every answer of the toy model
    mean = next(m for m in app.metric if m.label.startswith("Mean over"))
    assert float(mean.value) == pytest.approx(sum(expected_scores) / len(expected_scores), abs=0.005)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_draws_on_the_stored_regions(app, page):
    open_page(app, page)
    assert_clean(app)
    assert app.get("plotly_chart"), f"page {page} drew no figure"


def test_probe_reads_the_dataset_images_and_questions(app):
    open_page(app, "probe")
    assert_clean(app)
    assert any("questions** from the dataset" in m.value for m in app.markdown)
    app.button(key="probe_run").click().run()
    assert_no_exception(app)
    # Two photos are too few to hold one out for every label: what is drawn is drawn, the rest is named.
    assert app.get("plotly_chart") or any("Not drawn" in c.value for c in app.caption)


def test_a_checkpoint_for_other_features_gets_a_message_naming_both_sizes(tmp_path, monkeypatch):
    toy = build_assets(tmp_path / "toy")  # the synthetic detector's 32-d features
    build_dataset(toy / "datasets" / "coco")
    app = start(toy, monkeypatch)
    open_page(app, "ask")
    assert_no_exception(app)
    message = " ".join(e.value for e in app.error)
    assert "32-d" in message and "2048-d" in message, message


def test_unusable_datasets_are_named_and_the_others_still_listed(assets, tmp_path, monkeypatch):
    datasets = tmp_path / "datasets"
    build_dataset(datasets / "good", questions=[])
    broken = datasets / "broken"
    broken.mkdir()
    (broken / "dataset.json").write_text(json.dumps({"format": "lxmert-dataset", "version": 1}))
    outside = build_dataset(tmp_path / "outside", questions=[])
    os.symlink(outside, datasets / "linked")
    app = start(assets, monkeypatch, datasets)
    assert_no_exception(app)
    assert app.sidebar.selectbox(key="dataset").options == ["good"]  # the symlink out is not followed
    warning = " ".join(w.value for w in app.sidebar.warning)
    assert "broken" in warning and "lacks the field 'images'" in warning
    assert "linked" in warning and "leads outside" in warning


def test_without_datasets_the_source_says_where_to_put_one(tmp_path, monkeypatch, assets):
    app = start(assets, monkeypatch, tmp_path / "none")
    assert not app.exception
    assert any("dataset.json" in i.value for i in app.sidebar.info)


def test_a_large_store_takes_the_image_id_typed(assets, monkeypatch):
    monkeypatch.setattr("app.dataset_mode.MAX_LISTED", 1)  # the sample's two images count as many
    app = start(assets, monkeypatch)
    assert app.sidebar.text_input(key="dataset_image").value == PHOTOS[0]
    app.sidebar.text_input(key="dataset_image").set_value(PHOTOS[1]).run()
    assert_clean(app)
    open_page(app, "regions")
    assert list(app.dataframe[0].value["object"])[:3] == ["sky", "tree", "tree"]  # the authors' first regions
    app.sidebar.text_input(key="dataset_image").set_value("COCO_nothere").run()
    assert not app.exception
    assert any("COCO_nothere" in w.value for w in app.sidebar.warning)


GQA = [
    {"question_id": "g1", "img_id": PHOTOS[0], "sent": "What animal is it?", "label": {"cat": 1.0}},
    {"question_id": "g2", "img_id": PHOTOS[0], "sent": "Is it red?", "label": {"no": 1.0}},
]
NLVR2 = [
    {
        "identifier": "dev-1-0-0",
        "img0": PHOTOS[0],
        "img1": PHOTOS[1],
        "sent": "One image shows a cat.",
        "uid": "u1",
        "label": 1,
    },
]


@pytest.mark.parametrize(("task", "items"), [("gqa", GQA), ("nlvr2", NLVR2)])
def test_gqa_and_nlvr2_questions_are_listed_with_their_own_ground_truth(tmp_path, monkeypatch, task, items):
    assets = build_assets(tmp_path / "assets", detector=vg_detector())
    build_dataset(assets / "datasets" / "coco", questions=items, task=task)
    app = start(assets, monkeypatch)
    open_page(app, "ask")
    assert_clean(app)
    table = next(d.value for d in app.dataframe if "ground truth" in d.value.columns)
    assert list(table["question"]) == [q["sent"] for q in items]
    if task == "gqa":
        assert list(table["ground truth"]) == ["cat", "no"]
        for answer, score, item in zip(table["model's answer"], table["score"], items, strict=True):
            assert score == (1.0 if answer in item["label"] else 0.0)  # exact match
    else:
        assert list(table["ground truth"]) == ["true"]
        assert list(table["model's answer"]) == ["—"]  # a pair task: no one-image answer is invented


def test_a_rescaled_photo_gets_the_stored_boxes_scaled_onto_it(tmp_path):
    root = build_dataset(tmp_path / "d", questions=[])
    photo = root / "images" / f"{PHOTOS[1]}.jpg"  # 500x333
    Image.open(photo).resize((250, 167)).save(photo)
    scene = stored_scene(str(root), PHOTOS[1], None)
    row = authors_row(PHOTOS[1], tmp_path)
    assert scene.image.size == (250, 167)
    np.testing.assert_allclose(
        scene.image_boxes, row["boxes"] * np.array([0.5, 167 / 333, 0.5, 167 / 333]), atol=1e-3
    )


def test_a_photo_of_another_shape_is_refused_naming_both_sizes(tmp_path):
    root = build_dataset(tmp_path / "d", questions=[])
    photo = root / "images" / f"{PHOTOS[1]}.jpg"
    Image.open(photo).crop((0, 0, 400, 333)).save(photo)
    with pytest.raises(ValueError, match="400x333 but the feature store records 500x333"):
        stored_scene(str(root), PHOTOS[1], None)
