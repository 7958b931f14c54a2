"""Detector evaluation: AP on hand-computed rankings, matching rules, attribute accuracy on matched boxes."""

from __future__ import annotations

import numpy as np
import pytest

from training.detection.evaluation import (
    ImageDetections,
    ImageTruth,
    average_precision,
    evaluate,
    match_image,
)


def test_average_precision_hand_computed() -> None:
    # Ranked TP, FP, TP, FP with 3 ground-truth boxes: precision 1 up to recall 1/3, 2/3 up to recall 2/3.
    ap = average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([True, False, True, False]), num_truth=3)
    assert ap == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3)


def test_average_precision_ignores_input_order_and_handles_extremes() -> None:
    assert average_precision(np.array([0.1, 0.9]), np.array([False, True]), 1) == pytest.approx(1.0)
    assert average_precision(np.array([0.9, 0.1]), np.array([False, True]), 1) == pytest.approx(0.5)
    assert average_precision(np.zeros(0), np.zeros(0, dtype=bool), 2) == 0.0
    with pytest.raises(ValueError, match="ground truth"):
        average_precision(np.zeros(0), np.zeros(0, dtype=bool), 0)


def _truth() -> ImageTruth:
    return ImageTruth(
        boxes=np.array([[0, 0, 10, 10], [20, 20, 40, 40]], dtype=float),
        labels=np.array([0, 1]),
        attributes=[[0, 3], [1, 2]],  # colour ids 0..1, size ids 2..3
    )


def test_matching_needs_the_class_and_the_overlap_and_takes_each_box_once() -> None:
    detections = ImageDetections(
        boxes=np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], dtype=float),
        labels=np.array([0, 0, 1, 1]),
        scores=np.array([0.9, 0.8, 0.7, 0.6]),
        attr_probs=np.zeros((4, 4)),
    )
    # duplicate -> -1; wrong class -> -1; IoU 100/400 = 0.25 -> -1
    assert match_image(_truth(), detections, 0.5).tolist() == [0, -1, -1, -1]


def test_evaluate_reports_ap_and_attribute_accuracy_per_factor() -> None:
    attr_probs = np.array(
        [
            [0.6, 0.1, 0.05, 0.25],  # colour 0 right, size 3 right, top-1 (0) in truth
            [0.5, 0.2, 0.2, 0.1],  # colour 1 wrong (0), size 2 right, top-1 (0) not in truth {1, 2}
        ]
    )
    detections = ImageDetections(
        boxes=np.array([[0, 0, 10, 10], [20, 20, 40, 41]], dtype=float),
        labels=np.array([0, 1]),
        scores=np.array([0.9, 0.8]),
        attr_probs=attr_probs,
    )
    report = evaluate(
        [(_truth(), detections)], ["circle", "square", "star"], {"colour": [0, 1], "size": [2, 3]}
    )
    assert report.ap == {"circle": 1.0, "square": 1.0}  # "star" has no ground truth, so no AP
    assert report.mean_ap == 1.0
    assert (report.num_truth, report.num_matched) == (2, 2)
    assert report.factor_accuracy == {"colour": 0.5, "size": 1.0}
    assert report.attribute_accuracy == pytest.approx(3 / 4)
    assert report.top1_attribute_accuracy == 0.5
    assert "circle" in report.format() and "top-1" in report.format()


def test_missed_boxes_lower_ap_but_not_attribute_accuracy() -> None:
    detections = ImageDetections(
        boxes=np.array([[0, 0, 10, 10]], dtype=float),
        labels=np.array([0]),
        scores=np.array([0.9]),
        attr_probs=np.array([[0.9, 0.0, 0.0, 0.1]]),
    )
    report = evaluate([(_truth(), detections)], ["circle", "square"], {"colour": [0, 1], "size": [2, 3]})
    assert report.ap == {"circle": 1.0, "square": 0.0}
    assert report.factor_accuracy == {"colour": 1.0, "size": 1.0}
    assert report.num_matched == 1
