"""The NLVR2 oracle: statements read from their text and checked on ground-truth objects."""

import json

import numpy as np
import pytest

from lxmert.data.task_files import load_nlvr2
from training.experiments.nlvr2_oracle import (
    SeenObject,
    annotated_objects,
    detected_objects,
    kind_predictions,
    oracle_predictions,
    oracle_scores,
    scene_kind,
)
from training.world.generate import WorldConfig, build_world


def test_the_oracle_checks_each_sentence_on_the_two_images_objects():
    objects = {
        "a": [SeenObject("star", "red", "small", "solid"), SeenObject("star", "blue", "large", "dotted")],
        "b": [SeenObject("star", "red", "medium", "solid")],
    }
    items = [
        {"identifier": "valid-0-0-0", "img0": "a", "img1": "b", "sent": "Both images contain a red object."},
        {"identifier": "valid-0-1-0", "img0": "a", "img1": "b", "sent": "Exactly one image contains a blue object."},
        {"identifier": "valid-1-0-0", "img0": "b", "img1": "a", "sent": "The left image has more stars than the right image."},
        {"identifier": "valid-1-1-0", "img0": "a", "img1": "b", "sent": "The two images have the same number of red objects."},
        {"identifier": "valid-2-0-0", "img0": "a", "img1": "b", "sent": "Neither image contains a heart."},
    ]  # fmt: skip
    assert oracle_predictions(items, objects) == {
        "valid-0-0-0": True,
        "valid-0-1-0": True,
        "valid-1-0-0": False,  # one star on the left, two on the right
        "valid-1-1-0": True,
        "valid-2-0-0": True,
    }
    with pytest.raises(ValueError, match="not a statement"):
        oracle_predictions([{**items[0], "sent": "The images are nice."}], objects)


def test_detections_count_as_objects_from_the_confidence_threshold_up():
    row = {"objects_id": np.array([0, 1, 1, 2]), "objects_conf": np.array([0.9, 0.5, 0.2, 0.49])}
    found = detected_objects(row, ["circle", "square", "star"], threshold=0.5)
    assert [o.shape for o in found] == ["circle", "square"]
    left, right = found, detected_objects(row, ["circle", "square", "star"], threshold=0.1)
    items = [
        {"identifier": "valid-0-0-0", "img0": "l", "img1": "r", "sent": "Exactly one image contains a star."}
    ]
    assert oracle_predictions(items, {"l": left, "r": right}) == {"valid-0-0-0": True}


def test_annotations_become_objects_with_their_attributes():
    annotation = {"img_id": "x", "objects": [{"label": "heart", "attributes": ["pink", "small", "striped"]}]}
    assert annotated_objects(annotation) == [SeenObject("heart", "pink", "small", "striped")]


def test_a_generated_worlds_labels_follow_from_its_sentences_and_scenes(tmp_path):
    # The oracle never sees how a statement was made, so a perfect score says the text settles every label.
    out = tmp_path / "w"
    config = WorldConfig(
        out=str(out), images=80, seed=5, nlvr2_fraction=0.8, image_size=64, nlvr2_valid_fraction=0.5,
        nlvr2_test_fraction=0.1, min_vqa_answer_count=1, workers=1,
    )  # fmt: skip
    build_world(config, progress=False)
    labels = [d["label"] for d in json.loads((out / "nlvr2/train.json").read_text())]
    assert 0.3 < sum(labels) / len(labels) < 0.7
    for split in ("train", "valid"):
        scores, pairs = oracle_scores(out, split)
        assert scores == {"accuracy": 1.0, "consistency": 1.0} and pairs == len(
            load_nlvr2(out / f"nlvr2/{split}.json")
        )


def test_an_images_kind_is_the_one_whose_shapes_and_colours_its_objects_take_most():
    # Of 5 kinds, kind 1 favours square and star, orange and pink; kind 0 circle and hexagon, red and purple.
    objects = [SeenObject("square", "orange", "", ""), SeenObject("star", "red", "", ""),
               SeenObject("circle", "pink", "", "")]  # fmt: skip
    assert scene_kind(objects, 5) == 1  # kind 1: 4 matches, kind 0: 2
    assert scene_kind(objects[1:2], 5) == 0  # star (kind 1) and red (kind 0) tie: the first kind


def test_the_kind_baseline_is_the_training_majority_for_the_sentence_and_the_two_kinds():
    kind_of = {"a": 0, "b": 1, "c": 1, "d": 0}

    def item(ident, sent, img0, img1, label=0):
        return {"identifier": ident, "sent": sent, "img0": img0, "img1": img1, "label": label}

    train = [
        item("t1", "A", "a", "b", 1), item("t2", "A", "d", "c", 1), item("t3", "A", "a", "c", 0),  # kinds 0, 1
        item("t4", "A", "b", "c", 0),  # kinds 1, 1
        item("t5", "B", "a", "d", 0), item("t6", "B", "d", "a", 0),  # kinds 0, 0 only
        item("t7", "D", "a", "d", 1), item("t8", "D", "d", "a", 0),  # a tie
    ]  # fmt: skip
    valid = [item("v1", "A", "d", "b"), item("v2", "A", "c", "b"), item("v3", "B", "b", "c"),
             item("v4", "C", "a", "b"), item("v5", "D", "a", "a")]  # fmt: skip
    assert kind_predictions(train, valid, kind_of) == {
        "v1": True,  # 2 of 3 training pairs of kinds (0, 1) say true
        "v2": False,  # the one pair of kinds (1, 1)
        "v3": False,  # kinds (1, 1) unseen for B: B's majority
        "v4": True,  # C unseen
        "v5": True,  # a tie counts as true
    }
