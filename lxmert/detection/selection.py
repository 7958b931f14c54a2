"""Choosing a fixed number of regions from a detector's proposals, the way the authors' extractor does.

bottom-up-attention's ``generate_tsv.py`` (used for LXMERT's obj36 files) scores every proposal by the best
class probability that survives per-class NMS (``max_conf``), keeps proposals with ``max_conf >= conf_thresh``
and, when fewer than MIN_BOXES remain, takes the top MIN_BOXES by ``max_conf`` anyway; more than MAX_BOXES are
cut to the top MAX_BOXES. LXMERT sets MIN_BOXES = MAX_BOXES = 36, so every image gets exactly 36 real boxes:
weaker proposals fill the count, never zero rows (the original model keeps 10 to 100). The object label and confidence of a row are the argmax and
max of its foreground probabilities.

Two differences from the Caffe script, both as in py-bottom-up-attention's detectron2 port: NMS runs on each
class's regressed boxes rather than on the raw proposals, and a row's box is the regressed box of its label
(``DetectorConfig.region_selection="per_class_proposals"`` passes the proposals as every class's box instead, which
is the Caffe script exactly).
Ties in ``max_conf`` (proposals suppressed in every class have 0) are broken by the best foreground
probability, where the Caffe script leaves them in arbitrary order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import nms


@dataclass
class RegionChoice:
    """The chosen proposals of one image, best first.

    Attributes:
        indices: (R,) int64 rows of the proposal tensors.
        labels: (R,) int64 object class per row, counting background as 0 (so 1..C).
        scores: (R,) float probability of that class.
        boxes: (R, 4) the regressed box of that class.
        num_real: how many leading rows passed NMS and the confidence threshold.
    """

    indices: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    boxes: torch.Tensor
    num_real: int


def select_regions(
    class_probs: torch.Tensor,
    class_boxes: torch.Tensor,
    *,
    num_regions: int,
    conf_threshold: float,
    nms_threshold: float,
    min_regions: int | None = None,
) -> RegionChoice:
    """Pick ``min_regions`` to ``num_regions`` proposals by the authors' rule (module docstring).

    Args:
        class_probs: (P, C + 1) softmax over background (column 0) and C classes, one row per proposal.
        class_boxes: (P, C + 1, 4) the box regressed for each class.
        num_regions: the most rows to return (MAX_BOXES).
        min_regions: the fewest rows to return (MIN_BOXES); None means ``num_regions``.
        conf_threshold: a proposal is a detection when its post-NMS best probability reaches this.
        nms_threshold: IoU above which a lower-scoring box of the same class is suppressed.

    Raises:
        ValueError: fewer than ``num_regions`` proposals, or mismatched shapes.
    """
    num_proposals, num_columns = class_probs.shape
    if class_boxes.shape != (num_proposals, num_columns, 4):
        raise ValueError(
            f"class_boxes {tuple(class_boxes.shape)} does not match class_probs {tuple(class_probs.shape)}"
        )
    fewest = num_regions if min_regions is None else min_regions
    if num_proposals < fewest:
        raise ValueError(f"{num_proposals} proposals cannot fill {fewest} regions")
    foreground = class_probs[:, 1:]  # (P, C)
    max_conf = foreground.new_zeros(num_proposals)
    # One NMS per class on its own column: what batched_nms does with these inputs, without its search of the
    # flattened P x C arrays for each class, which costs ten times the NMS itself for 1600 classes on a CPU.
    for column in range(foreground.shape[1]):
        scores = foreground[:, column]
        kept = nms(class_boxes[:, column + 1], scores, nms_threshold)
        max_conf[kept] = torch.maximum(max_conf[kept], scores[kept])

    best_prob, best_class = foreground.max(dim=1)
    # Two stable sorts give a lexicographic order: max_conf first, best_prob breaking its ties.
    order = best_prob.argsort(descending=True, stable=True)
    order = order[max_conf[order].argsort(descending=True, stable=True)]
    num_real = int((max_conf >= conf_threshold).sum().clamp(max=num_regions))
    chosen = order[: max(num_real, fewest)]
    labels = best_class[chosen] + 1
    return RegionChoice(
        indices=chosen,
        labels=labels,
        scores=best_prob[chosen],
        boxes=class_boxes[chosen, labels],
        num_real=num_real,
    )


__all__ = ["RegionChoice", "select_regions"]
