"""Faster R-CNN with a bottom-up-attention attribute head, built from torchvision's detection components.

Layout (Ren et al. 2015; Anderson et al. 2018, "bottom-up attention"):

    images -> GeneralizedRCNNTransform (normalise, resize, pad) -> backbone -> RPN -> RoIAlign -> box head
           -> RoI feature (the region's visual feature for LXMERT)
           -> class logits (C + 1), per-class box deltas, and attribute logits from [feature; class embedding]

torchvision supplies the transform, anchors, RPN, RoIAlign, box coding, matching and sampling; this file adds
the backbones, the attribute head and its loss, and the authors' fixed-count region selection at inference.

Backbones (``DetectorConfig.backbone``):

- ``resnet101_c4``: the BUTD detector. torchvision's ResNet-101 with frozen batch norm; conv1..layer3
  (res2-res4, stride 16, 1024 channels) run on the image, layer4 (res5) runs on each 14x14 RoI and is
  mean-pooled to 2048-d. Built with ``weights=None``: nothing is downloaded.
- ``small``: for the synthetic world. A stride-2 stem and residual stages (stride 8 in all), the last one
  dilated so that a position sees a whole shape; a two-layer MLP on 7x7 RoIs gives the region feature.

This is ``DetectorConfig(network="torchvision")``, for training. Deviations from BUTD's Caffe model: RoIAlign
instead of RoIPool; torchvision's ResNet puts the stride on the 3x3 convolution (Caffe's on the 1x1); torchvision's
max-pool and resize; the attribute head embeds the best *foreground* class at inference (the one the region is
labelled with), where Caffe embeds the argmax including background; RGB input. The published Visual Genome
weights need the exact model, ``network="caffe"`` (:mod:`lxmert.detection.butd`).

Training returns a dict of named losses (``loss_objectness``, ``loss_rpn_box_reg``, ``loss_classifier``,
``loss_box_reg``, ``loss_attribute``); inference returns, per image, the regions ``selection.py`` picks.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet101
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.models.resnet import BasicBlock
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign
from torchvision.ops import boxes as box_ops

from lxmert.detection.config import DetectorConfig
from lxmert.detection.selection import select_regions


class SmallBackbone(nn.Sequential):
    """Stride-8 residual conv net: a stride-2 stem, stride-2 stages, and a dilated last stage."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        if len(channels) < 2:
            raise ValueError(f"small_channels needs a stem and at least one stage, got {channels}")
        layers: list[nn.Module] = [
            nn.Conv2d(3, channels[0], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        ]
        for in_ch, out_ch in zip(channels[:-1], channels[1:], strict=True):
            downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=2, bias=False), nn.BatchNorm2d(out_ch)
            )
            layers.append(BasicBlock(in_ch, out_ch, stride=2, downsample=downsample))
        # Dilation widens the receptive field (to ~100 px at stride 8) without another downsampling.
        last = channels[-1]
        layers.append(_dilated_block(last, dilation=2))
        super().__init__(*layers)
        self.out_channels = last


def _dilated_block(channels: int, dilation: int) -> BasicBlock:
    # torchvision's BasicBlock refuses dilation > 1 in its constructor; its convolutions accept it.
    block = BasicBlock(channels, channels)
    for conv in (block.conv1, block.conv2):
        conv.dilation, conv.padding = (dilation, dilation), (dilation, dilation)
    return block


class MLPBoxHead(nn.Sequential):
    """Flatten a pooled RoI and apply two ReLU layers: the region feature (non-negative, like res5's)."""

    def __init__(self, in_features: int, feature_dim: int) -> None:
        super().__init__(
            nn.Flatten(),
            nn.Linear(in_features, feature_dim),
            nn.ReLU(inplace=True),
            nn.Linear(feature_dim, feature_dim),
            nn.ReLU(inplace=True),
        )


class Res5BoxHead(nn.Module):
    """res5 on each pooled RoI, then the spatial mean (BUTD's ``pool5_flat``, 2048-d)."""

    def __init__(self, res5: nn.Module) -> None:
        super().__init__()
        self.res5 = res5

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.res5(pooled).mean(dim=(2, 3))  # (P, 2048, 7, 7) -> (P, 2048)


class AttributePredictor(nn.Module):
    """Class scores, per-class box deltas, and BUTD's attribute classifier.

    The attribute classifier sees the RoI feature concatenated with an embedding of the object class (the
    ground-truth class in training, the predicted one at inference), so that "red" can depend on what is red.
    """

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        num_class_columns = config.num_classes + 1  # background is column 0
        self.cls_score = nn.Linear(config.feature_dim, num_class_columns)
        self.bbox_pred = nn.Linear(config.feature_dim, num_class_columns * 4)
        self.cls_embed = nn.Embedding(num_class_columns, config.class_embed_dim)
        self.attr_linear1 = nn.Linear(config.feature_dim + config.class_embed_dim, config.attr_hidden_dim)
        # Column 0 of the attribute scores is "no attribute", as background is for classes.
        self.attr_linear2 = nn.Linear(config.attr_hidden_dim, config.num_attributes + 1)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        for layer in (self.cls_score, self.bbox_pred):
            nn.init.zeros_(layer.bias)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, D) features -> class logits (P, C + 1) and box deltas (P, 4 (C + 1))."""
        return self.cls_score(features), self.bbox_pred(features)

    def attribute_logits(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(P, D) features and (P,) class indices (background = 0) -> attribute logits (P, A + 1)."""
        joint = torch.cat([features, self.cls_embed(labels)], dim=1)
        return self.attr_linear2(F.relu(self.attr_linear1(joint)))


def attribute_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BUTD's attribute loss: softmax cross-entropy averaged over each region's attributes, then over regions.

    Args:
        logits: (N, A + 1) attribute logits of foreground regions.
        targets: (N, K) attribute indices (0 = no attribute), padded with -1.
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0  # a batch without foreground: zero, still connected to the graph
    valid = targets >= 0  # (N, K)
    log_probs = F.log_softmax(logits, dim=1).gather(1, targets.clamp(min=0))  # (N, K)
    per_region = -(log_probs * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1)
    return per_region.mean()


class AttributeRoIHeads(RoIHeads):
    """torchvision's RoIHeads plus an attribute loss in training and fixed-count regions at inference."""

    def __init__(self, config: DetectorConfig, box_roi_pool: nn.Module, box_head: nn.Module) -> None:
        super().__init__(
            box_roi_pool=box_roi_pool,
            box_head=box_head,
            box_predictor=AttributePredictor(config),
            fg_iou_thresh=config.roi_fg_iou_threshold,
            bg_iou_thresh=config.roi_bg_iou_threshold,
            batch_size_per_image=config.roi_batch_size_per_image,
            positive_fraction=config.roi_positive_fraction,
            bbox_reg_weights=None,  # torchvision's (10, 10, 5, 5), as in Caffe's normalised targets
            # torchvision's own post-processing is replaced by select_regions, which reads self.config.
            score_thresh=config.conf_threshold,
            nms_thresh=config.nms_threshold,
            detections_per_img=config.num_regions,
        )
        self.config = config

    def forward(  # type: ignore[override]
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        if self.training:
            return [], self._losses(features, proposals, image_shapes, targets)
        return self._regions(features, proposals, image_shapes), {}

    def _losses(self, features, proposals, image_shapes, targets) -> dict[str, torch.Tensor]:
        if targets is None:
            raise ValueError("training needs targets with boxes, labels and attributes")
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        region_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))  # (P, D)
        class_logits, box_deltas = self.box_predictor(region_features)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_deltas, labels, regression_targets)

        labels_all = torch.cat(labels)  # (P,)
        foreground = labels_all > 0
        gt_attributes = _matched_attributes(targets, matched_idxs)
        attr_logits = self.box_predictor.attribute_logits(region_features[foreground], labels_all[foreground])
        return {
            "loss_classifier": loss_classifier,
            "loss_box_reg": loss_box_reg,
            "loss_attribute": attribute_loss(attr_logits, gt_attributes[foreground]),
        }

    def _regions(self, features, proposals, image_shapes) -> list[dict[str, torch.Tensor]]:
        proposals = [
            _fill_proposals(boxes, size, self.config.num_regions)
            for boxes, size in zip(proposals, image_shapes, strict=True)
        ]
        region_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))  # (P, D)
        class_logits, box_deltas = self.box_predictor(region_features)
        class_boxes = self.box_coder.decode(box_deltas, proposals)  # (P, C + 1, 4)
        class_probs = F.softmax(class_logits, dim=-1)

        results = []
        start = 0
        for boxes, size in zip(proposals, image_shapes, strict=True):
            rows = slice(start, start + boxes.shape[0])
            start += boxes.shape[0]
            choice = select_regions(
                class_probs[rows],
                box_ops.clip_boxes_to_image(class_boxes[rows], size),
                num_regions=self.config.num_regions,
                conf_threshold=self.config.conf_threshold,
                nms_threshold=self.config.nms_threshold,
                min_regions=self.config.fewest_regions,
            )
            chosen_features = region_features[rows][choice.indices]
            attr_logits = self.box_predictor.attribute_logits(chosen_features, choice.labels)
            # Softmax over "no attribute" + A, then column 0 dropped, as the Caffe extractor does.
            attr_probs = F.softmax(attr_logits, dim=-1)[:, 1:]
            results.append(
                {
                    "boxes": choice.boxes,
                    "features": chosen_features,
                    "object_ids": choice.labels - 1,
                    "object_conf": choice.scores,
                    "attr_probs": attr_probs,
                    "num_real": torch.tensor(choice.num_real),
                }
            )
        return results


def _matched_attributes(targets: list[dict[str, torch.Tensor]], matched: list[torch.Tensor]) -> torch.Tensor:
    """(P, K) attributes of the ground-truth box each sampled RoI matched, -1 padded to the widest K."""
    per_image = []
    for target, rows in zip(targets, matched, strict=True):
        attributes = target["attributes"]
        # An image without objects has only background RoIs; their (ignored) rows still need a value.
        per_image.append(attributes[rows] if len(attributes) else attributes.new_full((len(rows), 1), -1))
    width = max(a.shape[1] for a in per_image)
    return torch.cat([F.pad(a, (0, width - a.shape[1]), value=-1) for a in per_image])


def _fill_proposals(boxes: torch.Tensor, image_size: tuple[int, int], count: int) -> torch.Tensor:
    """Append whole-image and grid boxes (1x1, 2x2, 3x3, ...) until there are ``count`` proposals.

    The RPN returns fewer than ``count`` only for degenerate inputs (very thin images); the extra boxes are
    real boxes whose features and scores are computed like any other, so the fixed count needs no empty rows.
    """
    missing = count - boxes.shape[0]
    if missing <= 0:
        return boxes
    height, width = image_size
    grid = []
    cells = 1
    while len(grid) < missing:
        for row in range(cells):
            for col in range(cells):
                grid.append([col * width / cells, row * height / cells, (col + 1) * width / cells,
                             (row + 1) * height / cells])  # fmt: skip
        cells += 1
    return torch.cat([boxes, boxes.new_tensor(grid[:missing])])


def _build_parts(config: DetectorConfig) -> tuple[nn.Module, nn.Module, nn.Module]:
    """Backbone, RoI pooler and box head for ``config.backbone``."""
    pool = MultiScaleRoIAlign(
        ["0"], output_size=config.roi_output_size, sampling_ratio=config.roi_sampling_ratio
    )
    if config.backbone == "resnet101_c4":
        resnet = resnet101(weights=None, norm_layer=FrozenBatchNorm2d)
        backbone = nn.Sequential(
            OrderedDict(
                (name, getattr(resnet, name))
                for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")
            )
        )
        backbone.out_channels = 1024
        return backbone, pool, Res5BoxHead(resnet.layer4)
    backbone = SmallBackbone(config.small_channels)
    head = MLPBoxHead(backbone.out_channels * config.roi_output_size**2, config.feature_dim)
    return backbone, pool, head


class FasterRCNNWithAttributes(GeneralizedRCNN):
    """Faster R-CNN + attribute head. ``forward(images, targets)``: losses in training, regions in eval.

    Args of forward:
        images: list of (3, H, W) float RGB tensors in [0, 1], any sizes.
        targets: training only; per image ``boxes`` (N, 4) pixel x1y1x2y2, ``labels`` (N,) in 1..C and
            ``attributes`` (N, K) in 0..A (0 = none) padded with -1.

    Returns:
        Training: dict of named losses. Eval: per image a dict with ``boxes`` (R, 4) in input pixels,
        ``features`` (R, D), ``object_ids`` (R,) in 0..C-1, ``object_conf`` (R,), ``attr_probs`` (R, A),
        ``num_real`` (scalar).
    """

    def __init__(self, config: DetectorConfig) -> None:
        backbone, pool, box_head = _build_parts(config)
        anchors = AnchorGenerator(
            sizes=(tuple(config.anchor_sizes),), aspect_ratios=(tuple(config.anchor_ratios),)
        )
        rpn = RegionProposalNetwork(
            anchor_generator=anchors,
            head=RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0]),
            fg_iou_thresh=config.rpn_fg_iou_threshold,
            bg_iou_thresh=config.rpn_bg_iou_threshold,
            batch_size_per_image=config.rpn_batch_size_per_image,
            positive_fraction=config.rpn_positive_fraction,
            pre_nms_top_n={
                "training": config.rpn_pre_nms_top_n_train,
                "testing": config.rpn_pre_nms_top_n_test,
            },
            post_nms_top_n={
                "training": config.rpn_post_nms_top_n_train,
                "testing": config.rpn_post_nms_top_n_test,
            },
            nms_thresh=config.rpn_nms_threshold,
        )
        transform = GeneralizedRCNNTransform(
            min_size=config.min_size,
            max_size=config.max_size,
            image_mean=list(config.pixel_mean),
            image_std=list(config.pixel_std),
        )
        super().__init__(backbone, rpn, AttributeRoIHeads(config, pool, box_head), transform)
        self.config = config


__all__ = ["AttributePredictor", "AttributeRoIHeads", "FasterRCNNWithAttributes", "attribute_loss"]
