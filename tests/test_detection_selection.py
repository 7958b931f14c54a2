"""Fixed-count region selection: the authors' max_conf / MIN_BOXES rule, by hand and vs a transcription."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import nms

from lxmert.detection.selection import select_regions


def _caffe_reference(probs: np.ndarray, boxes: np.ndarray, num_regions: int, conf: float, iou: float):
    """bottom-up-attention's generate_tsv.py loop, transcribed (per-class boxes, ties broken by best prob)."""
    max_conf = np.zeros(probs.shape[0])
    for cls_ind in range(1, probs.shape[1]):
        cls_scores = probs[:, cls_ind]
        keep = nms(torch.from_numpy(boxes[:, cls_ind]), torch.from_numpy(cls_scores), iou).numpy()
        max_conf[keep] = np.where(cls_scores[keep] > max_conf[keep], cls_scores[keep], max_conf[keep])
    best = probs[:, 1:].max(axis=1)
    order = sorted(range(len(max_conf)), key=lambda i: (-max_conf[i], -best[i]))
    keep_boxes = order[:num_regions]  # MIN_BOXES = MAX_BOXES
    return keep_boxes, int(min((max_conf >= conf).sum(), num_regions))


def test_hand_case_keeps_detections_first_then_fills_with_weaker_boxes() -> None:
    # Two classes. Proposals 0 and 1 are near-duplicates of class 1 (1 is suppressed); 2 is a clear class-2
    # box; 3 and 4 are weak. With 4 regions wanted and 2 real detections, 2 rows must be fill.
    boxes_one = torch.tensor(
        [[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60], [20, 0, 30, 10], [0, 20, 10, 30.0]]
    )
    class_boxes = boxes_one[:, None, :].repeat(1, 3, 1)  # same box for every class
    probs = torch.tensor(
        [
            [0.05, 0.90, 0.05],
            [0.10, 0.85, 0.05],
            [0.20, 0.10, 0.70],
            [0.85, 0.10, 0.05],
            [0.80, 0.05, 0.15],
        ]
    )
    choice = select_regions(probs, class_boxes, num_regions=4, conf_threshold=0.2, nms_threshold=0.3)
    # max_conf: 0.90, 0.05 (class 1 suppressed; class 2 kept), 0.70, 0.10, 0.15
    assert choice.indices.tolist() == [0, 2, 4, 3]
    assert choice.num_real == 2
    assert choice.labels.tolist() == [1, 2, 2, 1]
    assert choice.scores.tolist() == pytest.approx([0.90, 0.70, 0.15, 0.10])
    assert torch.equal(choice.boxes, boxes_one[[0, 2, 4, 3]])


def test_boxes_are_those_of_the_label_class() -> None:
    class_boxes = torch.tensor([[[0, 0, 1, 1], [0, 0, 5, 5], [0, 0, 9, 9.0]]])
    choice = select_regions(torch.tensor([[0.1, 0.2, 0.7]]), class_boxes, num_regions=1, conf_threshold=0.2,
                            nms_threshold=0.3)  # fmt: skip
    assert choice.labels.tolist() == [2]
    assert choice.boxes.tolist() == [[0, 0, 9, 9]]


def test_more_detections_than_regions_are_cut_to_the_best() -> None:
    boxes = torch.tensor([[i * 20.0, 0, i * 20 + 10, 10] for i in range(6)])  # disjoint: nothing suppressed
    probs = torch.tensor([[0.1, 0.9 - 0.1 * i] for i in range(6)])
    choice = select_regions(probs, boxes[:, None].repeat(1, 2, 1), num_regions=3, conf_threshold=0.2,
                            nms_threshold=0.3)  # fmt: skip
    assert choice.indices.tolist() == [0, 1, 2]
    assert choice.num_real == 3


@pytest.mark.parametrize("seed", range(3))
def test_matches_a_transcription_of_the_authors_loop(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    num_proposals, num_classes, num_regions = 60, 6, 20
    corners = torch.rand(num_proposals, num_classes + 1, 2, generator=generator) * 80
    sizes = torch.rand(num_proposals, num_classes + 1, 2, generator=generator) * 40 + 5
    class_boxes = torch.cat([corners, corners + sizes], dim=-1)
    probs = torch.softmax(torch.randn(num_proposals, num_classes + 1, generator=generator) * 3, dim=-1)
    choice = select_regions(
        probs, class_boxes, num_regions=num_regions, conf_threshold=0.2, nms_threshold=0.3
    )
    keep, num_real = _caffe_reference(probs.numpy(), class_boxes.numpy(), num_regions, 0.2, 0.3)
    assert choice.indices.tolist() == keep
    assert choice.num_real == num_real
    assert choice.labels.tolist() == (probs[keep, 1:].argmax(dim=1) + 1).tolist()


def test_too_few_proposals_is_an_error() -> None:
    with pytest.raises(ValueError, match="3 proposals cannot fill 4"):
        select_regions(
            torch.rand(3, 2), torch.rand(3, 2, 4), num_regions=4, conf_threshold=0.2, nms_threshold=0.3
        )
