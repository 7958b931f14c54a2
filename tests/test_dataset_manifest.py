"""``dataset.json``: a dataset's photos, feature store and questions, confined to its directory; the stored regions
as the detector's Regions; and the per-question scores of the tasks' own metrics."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
from dataset_sample import PHOTOS, QUESTIONS, build_dataset

from lxmert.data.dataset import (
    DatasetError,
    image_file,
    load_questions,
    questions_by_image,
    read_dataset,
    vocabularies,
)
from lxmert.data.metrics import datum_score, label_score, nlvr2_correct
from lxmert.data.store import FeatureStore
from lxmert.data.tsv import iter_tsv
from lxmert.detection import Regions

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return build_dataset(tmp_path_factory.mktemp("datasets") / "coco")


def rewrite(root: Path, **fields) -> None:
    values = json.loads((root / "dataset.json").read_text())
    for key, value in fields.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    (root / "dataset.json").write_text(json.dumps(values))


def test_reads_the_sample_with_every_path_resolved_inside(sample):
    dataset = read_dataset(sample)
    assert dataset.root == sample.resolve()
    assert dataset.name == "COCO sample"
    assert dataset.images == sample.resolve() / "images"
    assert dataset.features == sample.resolve() / "features"
    assert dataset.questions == sample.resolve() / "questions.json"
    assert dataset.task == "vqa"
    objects, attributes = vocabularies(dataset)  # Visual Genome's unless the manifest names others
    assert (len(objects), len(attributes)) == (1600, 400)
    assert FeatureStore(dataset.features).ids == list(PHOTOS)


def test_questions_are_grouped_by_image_in_file_order(sample):
    grouped = questions_by_image(load_questions(read_dataset(sample)), "vqa")
    assert {k: [q["sent"] for q in v] for k, v in grouped.items()} == {
        photo: [q["sent"] for q in QUESTIONS if q["img_id"] == photo] for photo in PHOTOS
    }


def test_an_nlvr2_statement_is_listed_under_both_its_images():
    items = [
        {"identifier": "dev-1-0-0", "img0": "a", "img1": "b", "sent": "s1", "uid": "u", "label": 1},
        {"identifier": "dev-2-0-0", "img0": "b", "img1": "b", "sent": "s2", "uid": "u", "label": 0},
    ]
    grouped = questions_by_image(items, "nlvr2")
    assert {k: [q["sent"] for q in v] for k, v in grouped.items()} == {"a": ["s1"], "b": ["s1", "s2"]}


def test_image_file_finds_the_photo_and_names_a_missing_one(sample):
    dataset = read_dataset(sample)
    assert image_file(dataset, PHOTOS[1]) == sample.resolve() / "images" / f"{PHOTOS[1]}.jpg"
    with pytest.raises(FileNotFoundError, match="nothere"):
        image_file(dataset, "nothere")


def test_a_photo_outside_the_dataset_is_not_used(tmp_path):
    root = build_dataset(tmp_path / "d", questions=[])
    outside = tmp_path / "outside.jpg"
    outside.write_bytes((DATA / "coco" / f"{PHOTOS[0]}.jpg").read_bytes())
    with pytest.raises(FileNotFoundError):
        image_file(read_dataset(root), "../../outside")  # a store's id cannot walk out of the dataset
    (root / "images" / f"{PHOTOS[0]}.jpg").unlink()
    os.symlink(outside, root / "images" / f"{PHOTOS[0]}.jpg")
    with pytest.raises(FileNotFoundError):
        image_file(read_dataset(root), PHOTOS[0])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"format": "lxmert-model-set"}, "not a lxmert-dataset version 1"),
        ({"colour": "red"}, "unknown fields"),
        ({"images": None}, "lacks the field 'images'"),
        ({"task": None}, "questions and task go together"),
        ({"task": "vqa2"}, "task must be one of"),
        ({"images": "/etc"}, "images must be relative"),
        ({"features": "../elsewhere"}, "features leads outside"),
        ({"images": "nowhere"}, "images 'nowhere' does not exist"),
        ({"images": "questions.json"}, "is not a directory"),
        ({"name": ""}, "name must be a non-empty string"),
    ],
)
def test_a_bad_manifest_is_refused_naming_the_field(tmp_path, fields, message):
    root = build_dataset(tmp_path / "d")
    rewrite(root, **fields)
    with pytest.raises(DatasetError, match=message) as caught:
        read_dataset(root)
    assert "dataset.json" in str(caught.value)


def test_a_missing_or_broken_manifest_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="dataset.json"):
        read_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_dataset(tmp_path)


def test_symlinks_out_of_the_dataset_are_refused(tmp_path):
    root = build_dataset(tmp_path / "d", questions=[])
    elsewhere = tmp_path / "elsewhere"
    (root / "images").rename(elsewhere)
    os.symlink(elsewhere, root / "images")
    with pytest.raises(DatasetError, match="images leads outside"):
        read_dataset(root)


def test_a_store_file_symlinked_out_of_the_dataset_is_refused(tmp_path):
    root = build_dataset(tmp_path / "d", questions=[])
    features = root / "features" / "features.bin"
    outside = tmp_path / "features.bin"
    features.rename(outside)
    os.symlink(outside, features)
    with pytest.raises(DatasetError, match="features.bin leads outside"):
        read_dataset(root)


def test_stored_rows_become_regions_that_give_the_authors_row_back(sample, tmp_path):
    tsv = tmp_path / "row.tsv"
    tsv.write_bytes(gzip.decompress((DATA / "obj36" / f"{PHOTOS[1]}.tsv.gz").read_bytes()))
    authors = next(iter_tsv(tsv))
    regions = Regions.from_record(FeatureStore(sample / "features").get(PHOTOS[1]), num_attributes=400)
    assert (len(regions), regions.num_real) == (36, 36)
    assert (regions.image_width, regions.image_height) == (500, 333)
    assert regions.attr_probs.shape == (36, 400)
    record = regions.to_record(PHOTOS[1])
    for column in ("objects_id", "attrs_id"):
        np.testing.assert_array_equal(record[column], authors[column])
    for column in ("objects_conf", "attrs_conf", "boxes", "features"):
        np.testing.assert_allclose(record[column], authors[column], rtol=0, atol=1e-6)


def test_regions_refuse_attribute_ids_outside_the_vocabulary(sample):
    row = FeatureStore(sample / "features").get(PHOTOS[0])
    with pytest.raises(ValueError, match="outside a vocabulary of 10"):
        Regions.from_record(row, num_attributes=10)


def test_per_question_scores_are_the_tasks_own_metrics():
    vqa = {"label": {"cat": 1.0, "kitten": 0.3}}
    assert datum_score("vqa", vqa, "kitten") == pytest.approx(0.3)  # one annotator of ten: soft score 0.3
    assert datum_score("vqa", vqa, "dog") == 0.0
    gqa = {"label": {"left": 1.0}}
    assert (datum_score("gqa", gqa, "left"), datum_score("gqa", gqa, "right")) == (1.0, 0.0)
    assert label_score({}, "left") == 0.0  # an unlabelled (test-split) datum credits nothing
    nlvr2 = {"label": 1}
    assert nlvr2_correct(nlvr2, "True") and not nlvr2_correct(nlvr2, False)
    assert (datum_score("nlvr2", nlvr2, True), datum_score("nlvr2", nlvr2, 0)) == (1.0, 0.0)
    with pytest.raises(ValueError, match="unknown task"):
        datum_score("vqa2", vqa, "cat")
