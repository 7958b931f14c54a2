"""Regions drawn to be read: number badges that never overlap, labels and attributes where they can be read, and
every value of a ranking printed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from app import render
from app.loading import Scene
from app.panels import region_details
from lxmert.detection import Regions
from lxmert.detection.files import read_attribute_kinds, write_attribute_kinds


def overlapping(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two (x1, y1, x2, y2) rectangles share more than an edge."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def assert_apart(rects: np.ndarray) -> None:
    for (i, a), (j, b) in itertools.combinations(enumerate(rects), 2):
        assert not overlapping(a, b), f"badges {i} {a} and {j} {b} overlap"


def test_a_free_badge_sits_just_above_the_top_left_corner_of_its_box():
    rects = render.place_badges(np.array([[30, 30, 60, 60]]), np.array([[10, 8]]), 100, 100)
    np.testing.assert_allclose(rects, [[30, 22, 40, 30]])


def test_badges_of_boxes_on_one_spot_never_overlap_and_stay_on_the_image():
    rng = np.random.default_rng(0)
    corners = rng.uniform(40, 45, size=(12, 2))
    boxes = np.concatenate([corners, corners + 20], axis=1)
    rects = render.place_badges(boxes, np.full((12, 2), [14.0, 9.0]), 100, 100)
    assert_apart(rects)
    assert (rects[:, :2] >= 0).all() and (rects[:, 2] <= 100).all() and (rects[:, 3] <= 100).all()
    # The first box's badge is where a lone box's would be; the others are as near their box as space allows.
    np.testing.assert_allclose(rects[0], [boxes[0, 0], boxes[0, 1] - 9, boxes[0, 0] + 14, boxes[0, 1]])


def test_badges_that_find_no_room_on_the_image_go_to_a_column_beside_it():
    boxes = np.array([[0, 0, 20, 10]] * 3, dtype=float)
    rects = render.place_badges(boxes, np.full((3, 2), [20.0, 10.0]), 20, 10)
    np.testing.assert_allclose(rects, [[0, 0, 20, 10], [20, 0, 40, 10], [20, 10, 40, 20]])


def annotation_rects(figure, image: Image.Image) -> np.ndarray:
    """Each badge's rectangle in image pixels, read back from the figure's annotations."""
    scale = render._pixels_per_unit(image)
    return np.array(
        [
            [a.x, a.y, a.x + (a.width + 2) / scale, a.y + (a.height + 2) / scale]
            for a in figure.layout.annotations
        ]
    )


def test_seven_overlapping_detections_get_seven_readable_badges_and_legend_entries():
    image = Image.new("RGB", (256, 256), (255, 255, 255))
    boxes = np.array([[100 + 3 * i, 100 + 2 * i, 150 + 3 * i, 140 + 2 * i] for i in range(9)], dtype=float)
    labels = [f"{i} large blue solid arrow" for i in range(9)]
    figure = render.detections_figure(
        image, boxes, labels, np.full((9, 2), 0.9), num_labelled=7, details=[f"d{i}" for i in range(9)]
    )
    assert [a.text for a in figure.layout.annotations] == [f"<b>{i}</b>" for i in range(7)]
    assert_apart(annotation_rects(figure, image))
    np.testing.assert_allclose(
        annotation_rects(figure, image), render.badge_rectangles(image, boxes[:7], [str(i) for i in range(7)])
    )
    legend = [t.name for t in figure.data if getattr(t, "showlegend", False)]
    assert legend == [render.FILL_LEGEND] + [f"{label} (0.90)" for label in labels[:7]]
    hovers = {t.text for t in figure.data[1:]}
    assert {f"d{i}" for i in range(7)} <= hovers and "d8<br>(fill proposal)" in hovers


def test_a_badge_away_from_its_box_gets_a_leader_line():
    image = Image.new("RGB", (300, 300), (255, 255, 255))
    boxes = np.array([[100, 100, 130, 130]] * 40, dtype=float)  # forty badges for one small spot
    figure = render.detections_figure(image, boxes, [str(i) for i in range(40)], np.ones(40))
    rects = annotation_rects(figure, image)
    assert_apart(rects)
    away = [r for r in rects if not (r[0] <= 130 and 100 <= r[2] and r[1] <= 130 and 100 <= r[3])]
    assert away and len(figure.layout.shapes) == len(away)


def test_scored_regions_number_the_top_boxes_and_list_them_with_their_scores():
    image = Image.new("RGB", (10, 10), (255, 255, 255))
    boxes = np.array([[0, 0, 4, 4], [5, 5, 9, 9], [1, 1, 3, 3]], dtype=float)
    labels = ["0 red circle", "1 blue square", "2 red star"]
    scored = render.region_scores_figure(image, boxes, np.array([0.1, 0.7, 0.4]), labels, title="t", top_k=2)
    assert [a.text for a in scored.layout.annotations] == ["<b>1</b>", "<b>2</b>"]
    legend = [t.name for t in scored.data if getattr(t, "showlegend", False)]
    assert legend == [
        render.OTHER_LEGEND.format(k=2),
        "2 red star: 0.4",
        "1 blue square: 0.7",
    ]  # in trace order
    assert scored.layout.legend.traceorder == "reversed"  # listed strongest first
    assert_apart(annotation_rects(scored, image))


def test_every_bar_of_a_ranking_prints_its_value_with_room_for_it():
    probabilities = [0.9, 0.05, 0.004, 0.0]
    figure = render.ranking_figure(["a", "b", "c", "d"], probabilities, title="t")
    bar = figure.data[0]
    assert list(bar.text) == ["90.0%", "5.0%", "0.4%", "0.0%"]
    assert bar.textposition == "outside" and bar.cliponaxis is False and bar.constraintext == "none"
    assert figure.layout.xaxis.range[1] >= 1.2 * max(probabilities)


VOCAB = ["red", "blue", "small", "large"]


def toy_scene(tmp_path, kinds: dict | None) -> Scene:
    attr_probs = torch.tensor([[0.30, 0.05, 0.10, 0.35], [0.02, 0.40, 0.33, 0.01]])
    regions = Regions(
        boxes=torch.tensor([[0.0, 0.0, 4.0, 4.0], [2.0, 2.0, 8.0, 8.0]]),
        features=torch.zeros(2, 3),
        object_ids=torch.tensor([0, 1]),
        object_conf=torch.tensor([0.9, 0.1]),
        attr_probs=attr_probs,
        image_height=10,
        image_width=10,
        num_real=1,
    )
    return Scene(Image.new("RGB", (10, 10)), regions, ["circle", "star"], VOCAB, kinds or {})


def test_labels_and_hover_group_attributes_by_kind(tmp_path):
    scene = toy_scene(tmp_path, {"size": ["small", "large"], "colour": ["red", "blue"]})
    assert scene.labels == ["0 large red circle", "1 small blue star"]
    first, second = region_details(scene)
    assert "object: circle 0.90<br>size: large 0.35 · small 0.10<br>colour: red 0.30 · blue 0.05" in first
    assert second.endswith("fill proposal: below the detector's confidence threshold")


def test_without_kinds_a_region_lists_its_best_attributes(tmp_path):
    scene = toy_scene(tmp_path, None)
    assert scene.labels == ["0 large circle", "1 blue star"]
    assert "attributes: large 0.35 · red 0.30 · small 0.10 · blue 0.05" in region_details(scene)[0]


def test_attribute_kinds_are_read_back_and_a_wrong_table_is_refused_unwritten(tmp_path):
    (tmp_path / "attributes_vocab.txt").write_text("\n".join(VOCAB) + "\n")
    assert read_attribute_kinds(tmp_path) == {}
    write_attribute_kinds(tmp_path, {"colour": ("red", "blue"), "size": ["small", "large"]})
    assert read_attribute_kinds(tmp_path) == {"colour": ["red", "blue"], "size": ["small", "large"]}
    with pytest.raises(ValueError, match=r"attribute_kinds.json: kind 'shape' names \['round'\]"):
        write_attribute_kinds(tmp_path, {"shape": ["round"]})
    with pytest.raises(ValueError, match="repeats"):
        write_attribute_kinds(tmp_path, {"a": ["red"], "b": ["red"]})
    assert read_attribute_kinds(tmp_path)["colour"] == ["red", "blue"]  # the good table is still there
