"""Detector evaluation: box AP at an IoU threshold per class, and attribute accuracy on matched boxes.

Box AP (PASCAL VOC 2010+ "all-point" AP): per class, detections of all images are ranked by score; a detection
is a true positive when some not-yet-matched ground-truth box of its class overlaps it with IoU >= the
threshold (the best such box is taken, as in COCO); AP is the area under the precision-recall curve after
making precision monotone. Classes without ground truth have no AP and are left out of the mean.

Attribute accuracy is measured on the true positives only (so it does not double-count detection errors), in
two ways:

- per factor: attributes form groups (the world's colour, size and fill); for each group the prediction is the
  group member with the highest probability, compared with the ground-truth member. ``attribute_accuracy`` is
  the mean over all (box, factor) pairs;
- top-1: whether the single most probable attribute, the one an obj36 file stores, is one of the box's
  ground-truth attributes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou


@dataclass
class ImageTruth:
    """Ground truth of one image: ``boxes`` (N, 4) pixels, ``labels`` (N,) class ids, attributes per box."""

    boxes: np.ndarray
    labels: np.ndarray
    attributes: list[list[int]]


@dataclass
class ImageDetections:
    """Detections of one image: ``boxes`` (M, 4), ``labels`` (M,), ``scores`` (M,), ``attr_probs`` (M, A)."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    attr_probs: np.ndarray


@dataclass
class DetectionReport:
    """Evaluation results. ``ap`` maps class name to AP (classes with ground truth only)."""

    iou_threshold: float
    ap: dict[str, float]
    num_truth: int
    num_matched: int
    factor_accuracy: dict[str, float]
    attribute_accuracy: float
    top1_attribute_accuracy: float

    @property
    def mean_ap(self) -> float:
        return float(np.mean(list(self.ap.values()))) if self.ap else float("nan")

    def format(self) -> str:
        """A human-readable table of every number."""
        lines = [f"box AP@{self.iou_threshold:g} per class:"]
        lines += [f"  {name:<12} {value:.4f}" for name, value in self.ap.items()]
        lines += [
            f"  {'mean':<12} {self.mean_ap:.4f}",
            f"matched boxes: {self.num_matched} of {self.num_truth} ground-truth boxes",
            "attribute accuracy on matched boxes:",
        ]
        lines += [f"  {name:<12} {value:.4f}" for name, value in self.factor_accuracy.items()]
        lines += [
            f"  {'all factors':<12} {self.attribute_accuracy:.4f}",
            f"  {'top-1 in gt':<12} {self.top1_attribute_accuracy:.4f}",
        ]
        return "\n".join(lines)


def average_precision(scores: np.ndarray, is_true: np.ndarray, num_truth: int) -> float:
    """All-point interpolated AP of ranked detections.

    Args:
        scores: (M,) detection scores.
        is_true: (M,) whether each detection is a true positive.
        num_truth: ground-truth boxes of the class (recall's denominator).
    """
    if num_truth == 0:
        raise ValueError("AP is undefined without ground truth")
    order = np.argsort(-scores, kind="stable")
    hits = is_true[order].astype(np.float64)
    true_positives = np.cumsum(hits)
    recall = true_positives / num_truth
    precision = true_positives / np.arange(1, len(hits) + 1)
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at this recall or beyond
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def match_image(truth: ImageTruth, detections: ImageDetections, iou_threshold: float) -> np.ndarray:
    """(M,) index of the ground-truth box each detection matches, or -1 (same class, greedy by score)."""
    matched = np.full(len(detections.labels), -1, dtype=np.int64)
    if len(truth.labels) == 0 or len(detections.labels) == 0:
        return matched
    iou = box_iou(
        torch.as_tensor(detections.boxes, dtype=torch.float64),
        torch.as_tensor(truth.boxes, dtype=torch.float64),
    ).numpy()
    iou[detections.labels[:, None] != truth.labels[None, :]] = -1.0
    taken = np.zeros(len(truth.labels), dtype=bool)
    for det in np.argsort(-detections.scores, kind="stable"):
        candidates = np.where(taken, -1.0, iou[det])
        best = int(candidates.argmax())
        if candidates[best] >= iou_threshold:
            matched[det] = best
            taken[best] = True
    return matched


def evaluate(
    pairs: Iterable[tuple[ImageTruth, ImageDetections]],
    class_names: Sequence[str],
    attribute_groups: Mapping[str, Sequence[int]],
    iou_threshold: float = 0.5,
) -> DetectionReport:
    """Box AP per class and attribute accuracy over (truth, detections) pairs, one pair per image.

    Args:
        pairs: ground truth and detections of each image; class ids index ``class_names``.
        class_names: object vocabulary.
        attribute_groups: factor name -> attribute ids of that factor (e.g. colour -> the colour ids).
        iou_threshold: IoU for a detection to count as finding a box.
    """
    scores: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    hits: list[np.ndarray] = []
    truth_per_class = np.zeros(len(class_names), dtype=np.int64)
    factor_hits = {name: [] for name in attribute_groups}
    top1_hits: list[bool] = []
    for truth, detections in pairs:
        truth_per_class += np.bincount(truth.labels, minlength=len(class_names))
        matched = match_image(truth, detections, iou_threshold)
        scores.append(detections.scores)
        labels.append(detections.labels)
        hits.append(matched >= 0)
        for det in np.flatnonzero(matched >= 0):
            true_attributes = set(truth.attributes[matched[det]])
            probs = detections.attr_probs[det]
            top1_hits.append(int(probs.argmax()) in true_attributes)
            for name, members in attribute_groups.items():
                wanted = true_attributes.intersection(members)
                if wanted:
                    members = np.asarray(members)
                    factor_hits[name].append(int(members[probs[members].argmax()]) in wanted)
    scores_all, labels_all, hits_all = (
        np.concatenate(x) if x else np.zeros(0) for x in (scores, labels, hits)
    )
    ap = {
        name: average_precision(
            scores_all[labels_all == cls], hits_all[labels_all == cls], int(truth_per_class[cls])
        )
        for cls, name in enumerate(class_names)
        if truth_per_class[cls] > 0
    }
    all_factor_hits = [hit for group in factor_hits.values() for hit in group]
    return DetectionReport(
        iou_threshold=iou_threshold,
        ap=ap,
        num_truth=int(truth_per_class.sum()),
        num_matched=int(hits_all.sum()),
        factor_accuracy={name: _mean(group) for name, group in factor_hits.items()},
        attribute_accuracy=_mean(all_factor_hits),
        top1_attribute_accuracy=_mean(top1_hits),
    )


def _mean(values: Sequence[bool]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


__all__ = ["DetectionReport", "ImageDetections", "ImageTruth", "average_precision", "evaluate", "match_image"]
