"""The bottom-up-attention (BUTD) Faster R-CNN exactly as its published Visual Genome weights need it.

This is ``DetectorConfig(network="caffe")``: the network of py-bottom-up-attention's
``faster_rcnn_R_101_C4_attr_caffemaxpool.yaml`` and of the transformers LXMERT demo's ``modeling_frcnn.py``,
inference only. Its module names are detectron2's, so a detectron2 checkpoint's keys are its state dict keys
(:mod:`lxmert.detection.weights`). What differs from torchvision's Faster R-CNN (:mod:`lxmert.detection.frcnn`),
each of which changes the features the real weights give:

- input: 8-bit BGR minus the Caffe pixel means, never divided; the shorter side resized to ``min_size`` (the
  longer at most ``max_size``) with sizes rounded half up and bilinear interpolation without antialiasing,
  no padding to a multiple of 32;
- backbone: Caffe's stem max-pool (no padding, ceil mode) and the stride on each stage's first 1x1 convolution;
  batch norm frozen into its running statistics;
- RPN: a 512-channel hidden layer, anchors centred on the grid points without rounding, in detectron2's order
  (size-major), detectron2's proposal selection (top ``rpn_pre_nms_top_n_test`` by logit, clipped, empty boxes
  dropped, NMS, top ``rpn_post_nms_top_n_test``);
- RoI head: RoIPool 14x14 at stride 16, res5, mean-pooled to 2048-d; box deltas per foreground class with
  weights (10, 10, 5, 5), clipped to the resized image; background is the *last* class column and "no attribute"
  the last attribute column (detectron2's layout); the attribute head embeds the arg-max class of the logits,
  background included.

Boxes are reported in the pixels of the image given (scaled back from the resized copy, after clipping there).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import FrozenBatchNorm2d, nms, roi_align, roi_pool
from torchvision.ops import boxes as box_ops

from lxmert.detection.config import DetectorConfig
from lxmert.detection.selection import select_regions

# ResNet-101: blocks per stage res2..res5.
_RESNET101_BLOCKS = (3, 4, 23, 3)
_STRIDE = 16  # res4
# detectron2 clamps dw, dh so that no box grows more than 1000/16 times.
_SCALE_CLAMP = math.log(1000.0 / 16)
_NORM_TENSORS = ("weight", "bias", "running_mean", "running_var")


class ConvNorm(nn.Conv2d):
    """A bias-free convolution followed by frozen batch norm, named as detectron2 names them (``.norm``).

    In float32 the two run as written, so the parity tests compare the reference's own arithmetic. Under autocast
    the convolution runs in the reduced precision with weights converted once (reused until a weight or a
    statistic changes) and stored channels-last, the layout oneDNN's bf16 kernels run fastest in; and the norm,
    a fixed per-channel affine, is either folded into it (:meth:`forward`: one convolution with a bias, its output
    in the reduced precision) or applied in float32 to its output (:meth:`widened`). Before, autocast cast the
    weights on every call and every layer's output went to float32 for the norm and back for the next
    convolution: the casts and element-wise passes took about as long as the convolutions.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, **kwargs) -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias=False, **kwargs)
        self.norm = FrozenBatchNorm2d(out_channels)
        self._reduced: dict[
            tuple[torch.dtype, bool], tuple[tuple, torch.Tensor, torch.Tensor, torch.Tensor]
        ] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_autocast_enabled(x.device.type):
            return self.norm(super().forward(x))
        weight, _, bias = self.reduced(torch.get_autocast_dtype(x.device.type), folded=True)
        return self._convolve(x, weight, bias)

    def widened(self, x: torch.Tensor) -> torch.Tensor:
        """Under autocast, the reduced-precision convolution followed by the norm in float32, which returns
        float32; otherwise the same as calling the module. For convolutions whose output joins a float32 sum."""
        if not torch.is_autocast_enabled(x.device.type):
            return self(x)
        weight, scale, bias = self.reduced(torch.get_autocast_dtype(x.device.type), folded=False)
        return torch.addcmul(bias, self._convolve(x, weight, None), scale)

    def _convolve(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.conv2d(
            x.to(weight.dtype), weight, bias, self.stride, self.padding, self.dilation, self.groups
        )

    def reduced(self, dtype: torch.dtype, *, folded: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The convolution's weight in ``dtype`` (channels-last), and the norm's (1, C, 1, 1) scale and bias.

        ``folded``: the weight times the scale, and the bias in ``dtype`` (the scale is then not needed);
        otherwise the weight alone, and the scale and bias in float32.
        """
        tensors = (self.weight, *(getattr(self.norm, name) for name in _NORM_TENSORS))
        # A new device, loaded weights or an edited statistic change a pointer or a version counter.
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        cached = self._reduced.get((dtype, folded))
        if cached is None or cached[0] != key:
            with torch.no_grad():
                norm = self.norm
                scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
                bias = norm.bias - norm.running_mean * scale
                weight = self.weight * scale.view(-1, 1, 1, 1) if folded else self.weight
                cached = (
                    key,
                    weight.to(dtype, memory_format=torch.channels_last),
                    scale.view(1, -1, 1, 1),
                    bias.to(dtype) if folded else bias.view(1, -1, 1, 1),
                )
            self._reduced[(dtype, folded)] = cached
        return cached[1], cached[2], cached[3]


class Bottleneck(nn.Module):
    """ResNet bottleneck; ``stride_in_1x1`` puts a downsampling stride on conv1 (MSRA) instead of conv2."""

    def __init__(
        self, in_channels: int, bottleneck: int, out_channels: int, stride: int, stride_in_1x1: bool
    ) -> None:
        super().__init__()
        self.shortcut = (
            ConvNorm(in_channels, out_channels, 1, stride=stride) if in_channels != out_channels else None
        )
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvNorm(in_channels, bottleneck, 1, stride=stride_1x1)
        self.conv2 = ConvNorm(bottleneck, bottleneck, 3, stride=stride_3x3, padding=1)
        self.conv3 = ConvNorm(bottleneck, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        # Under autocast the residual sum, which the following blocks carry on, stays float32, as do the norms of
        # the two convolutions that join it: rounding the sum at each of the 33 blocks added a third to the bf16
        # features' drift, and folding those norms into bf16 convolutions a few percent more.
        out = self.conv3.widened(out)
        shortcut = x if self.shortcut is None else self.shortcut.widened(x)
        return F.relu_(out.add_(shortcut))  # out is this block's own tensor


def _stage(index: int, stride: int, stride_in_1x1: bool) -> nn.Sequential:
    """ResNet-101 stage res{index + 2}: 64 * 2**index bottleneck channels, four times as many out."""
    bottleneck = 64 * 2**index
    out_channels = 4 * bottleneck
    in_channels = 64 if index == 0 else out_channels // 2
    blocks = []
    for block in range(_RESNET101_BLOCKS[index]):
        blocks.append(
            Bottleneck(
                in_channels if block == 0 else out_channels,
                bottleneck,
                out_channels,
                stride if block == 0 else 1,
                stride_in_1x1,
            )
        )
    return nn.Sequential(*blocks)


class Stem(nn.Module):
    def __init__(self, caffe_maxpool: bool) -> None:
        super().__init__()
        self.conv1 = ConvNorm(3, 64, 7, stride=2, padding=3)
        self.caffe_maxpool = caffe_maxpool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        if self.caffe_maxpool:
            return F.max_pool2d(x, kernel_size=3, stride=2, padding=0, ceil_mode=True)
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class ResNetC4(nn.Module):
    """Stem and res2-res4: stride 16, 1024 channels."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.stem = Stem(config.caffe_maxpool)
        self.res2 = _stage(0, 1, config.stride_in_1x1)
        self.res3 = _stage(1, 2, config.stride_in_1x1)
        self.res4 = _stage(2, 2, config.stride_in_1x1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res4(self.res3(self.res2(self.stem(x))))


def cell_anchors(sizes: tuple[int, ...], ratios: tuple[float, ...]) -> torch.Tensor:
    """(len(sizes) * len(ratios), 4) anchors centred on 0, size-major, unrounded (detectron2's)."""
    anchors = []
    for size in sizes:
        for ratio in ratios:
            width = math.sqrt(size**2.0 / ratio)
            height = ratio * width
            anchors.append([-width / 2.0, -height / 2.0, width / 2.0, height / 2.0])
    return torch.tensor(anchors, dtype=torch.float32)


class RPNHead(nn.Module):
    def __init__(self, in_channels: int, hidden: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.objectness_logits = nn.Conv2d(hidden, num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(hidden, num_anchors * 4, 1)


class RPN(nn.Module):
    """Proposals for one image: detectron2's RPN at test time."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        anchors = cell_anchors(tuple(config.anchor_sizes), tuple(config.anchor_ratios))
        self.register_buffer("cell_anchors", anchors, persistent=False)
        self.rpn_head = RPNHead(1024, config.rpn_hidden_dim or 1024, anchors.shape[0])
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0), bbox_xform_clip=_SCALE_CLAMP)
        self.config = config

    def forward(
        self, features: torch.Tensor, image_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, C, H, W) features -> proposals (P, 4) in resized-image pixels and their logits (P,), best first."""
        hidden = F.relu(self.rpn_head.conv(features))
        # float(): under autocast (reduced-precision extraction) the convolutions may run in bf16/fp16; proposals
        # are decoded in float32, where a pixel coordinate keeps its sub-pixel precision.
        logits = self.rpn_head.objectness_logits(hidden)[0].float().permute(1, 2, 0).reshape(-1)  # (H W A,)
        height, width = features.shape[-2:]
        deltas = self.rpn_head.anchor_deltas(hidden)[0].float()  # (A 4, H, W)
        deltas = deltas.view(-1, 4, height, width).permute(2, 3, 0, 1).reshape(-1, 4)  # (H W A, 4)
        shift_y, shift_x = torch.meshgrid(
            torch.arange(0, height * _STRIDE, _STRIDE, dtype=torch.float32, device=features.device),
            torch.arange(0, width * _STRIDE, _STRIDE, dtype=torch.float32, device=features.device),
            indexing="ij",
        )
        shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 1, 4)
        anchors = (shifts + self.cell_anchors.view(1, -1, 4)).reshape(-1, 4)

        order = logits.argsort(descending=True)[: self.config.rpn_pre_nms_top_n_test]
        boxes = box_ops.clip_boxes_to_image(
            self.box_coder.decode_single(deltas[order], anchors[order]), image_size
        )
        logits = logits[order]
        nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, logits = boxes[nonempty], logits[nonempty]
        keep = nms(boxes, logits, self.config.rpn_nms_threshold)[: self.config.rpn_post_nms_top_n_test]
        return boxes[keep], logits[keep]


class BoxPredictor(nn.Module):
    """Class scores (background last), per-class box deltas, and the attribute head (BUTD's)."""

    def __init__(
        self, num_classes: int, num_attributes: int, class_embed_dim: int, attr_hidden_dim: int
    ) -> None:
        super().__init__()
        self.cls_score = nn.Linear(2048, num_classes + 1)
        self.bbox_pred = nn.Linear(2048, num_classes * 4)
        self.cls_embedding = nn.Embedding(num_classes + 1, class_embed_dim)
        self.fc_attr = nn.Linear(2048 + class_embed_dim, attr_hidden_dim)
        self.attr_score = nn.Linear(attr_hidden_dim, num_attributes + 1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(P, 2048) -> class logits (P, C + 1), box deltas (P, 4 C), attribute logits (P, A + 1)."""
        class_logits = self.cls_score(features)
        embedded = self.cls_embedding(class_logits.argmax(dim=-1))
        hidden = F.relu(self.fc_attr(torch.cat([features, embedded], dim=-1)))
        # float(): scores and box deltas leave in float32 even when autocast ran the layers in bf16/fp16.
        return class_logits.float(), self.bbox_pred(features).float(), self.attr_score(hidden).float()


class Res5ROIHeads(nn.Module):
    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.res5 = _stage(3, 2, config.stride_in_1x1)
        self.box_predictor = BoxPredictor(
            config.num_classes, config.num_attributes, config.class_embed_dim, config.attr_hidden_dim
        )
        self.config = config

    def pooled_features(self, features: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
        """(P, 2048): each proposal's 14x14 RoI through res5, then the spatial mean."""
        size, scale = self.config.roi_output_size, 1.0 / _STRIDE
        if self.config.roi_pooler == "roi_pool":
            pooled = roi_pool(features, [proposals], size, scale)
        else:
            pooled = roi_align(features, [proposals], size, scale, self.config.roi_sampling_ratio)
        return self.res5(pooled).float().mean(dim=(2, 3))  # float(): averaged in float32 under autocast too


class BUTDInference(nn.Module, ABC):
    """What every implementation of the BUTD network shares: input transform, region choice, and output.

    A subclass computes :meth:`stages` (the named intermediate results of one image) with its own components.

    Args of forward:
        images: list of (3, H, W) float RGB tensors in [0, 1] from 8-bit images (:func:`images.to_tensor`).

    Returns:
        Per image a dict with ``boxes`` (R, 4) in input pixels, ``features`` (R, 2048), ``object_ids`` (R,) in
        0..C-1, ``object_conf`` (R,), ``attr_probs`` (R, A) (softmax over A + "no attribute", which is then
        dropped, as the authors' extractor does), ``num_real`` (scalar).
    """

    def __init__(self, config: DetectorConfig) -> None:
        if config.network != "caffe":
            raise ValueError(f"{type(self).__name__} builds network='caffe', got {config.network!r}")
        super().__init__()
        self.config = config

    @abstractmethod
    def stages(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named intermediate results for one image; needs at least ``inputs`` (the model input, (1, 3, h, w)),
        ``pooled`` (P, 2048), ``class_probs`` (P, C + 1), ``class_boxes`` (P, C, 4), ``attr_probs`` (P, A)."""

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        if self.training:
            raise RuntimeError("the caffe network is inference only; train network='torchvision'")
        return [self.regions(self.stages(image), image.shape[-2:]) for image in images]

    def resized_pixels(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) RGB in [0, 1] -> (1, 3, h, w) resized 0..255 pixels in ``channel_order``."""
        # to_tensor divided 8-bit values by 255; rounding recovers them exactly, as the reference reads them.
        pixels = image.mul(255.0).round_()
        if self.config.channel_order == "BGR":
            pixels = pixels.flip(0)
        height, width = pixels.shape[-2:]
        new_height, new_width = resized_size(height, width, self.config.min_size, self.config.max_size)
        return F.interpolate(pixels[None], (new_height, new_width), mode="bilinear", align_corners=False)

    def pixel_statistics(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(3,) mean and std on the 0..255 scale, in ``channel_order``."""
        mean = torch.tensor(np.array(self.config.pixel_mean) * 255.0, dtype=torch.float32, device=device)
        std = torch.tensor(np.array(self.config.pixel_std) * 255.0, dtype=torch.float32, device=device)
        return mean, std

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) RGB in [0, 1] -> (1, 3, h, w) resized, channel-ordered, mean-subtracted model input."""
        mean, std = self.pixel_statistics(image.device)
        return (self.resized_pixels(image) - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)

    def regions(
        self, stages: dict[str, torch.Tensor], image_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """The chosen regions from :meth:`stages`, boxes in the pixels of the (height, width) image given."""
        chosen, labels, scores, boxes, num_real = self._select(stages)
        height, width = image_size
        resized_height, resized_width = stages["inputs"].shape[-2:]
        scale = boxes.new_tensor([width / resized_width, height / resized_height] * 2)
        return {
            "boxes": boxes * scale,
            "features": stages["pooled"][chosen],
            "object_ids": labels,
            "object_conf": scores,
            "attr_probs": stages["attr_probs"][chosen],
            "num_real": torch.tensor(num_real),
        }

    def _select(self, stages: dict[str, torch.Tensor]):
        """Chosen rows, their classes (0..C-1), scores, boxes, and how many are detections."""
        config = self.config
        class_probs, class_boxes = stages["class_probs"], stages["class_boxes"]
        if config.region_selection == "max_class":
            return select_max_class(
                class_probs[:, :-1],
                class_boxes,
                num_regions=config.num_regions,
                min_regions=config.fewest_regions,
                conf_threshold=config.conf_threshold,
                nms_threshold=config.nms_threshold,
            )
        if config.region_selection == "per_class_proposals":
            # The Caffe generate_tsv behind the authors' obj36 files: every class's NMS, and the row's box, use
            # the RPN proposal itself rather than the box regressed for the class.
            class_boxes = stages["proposals"][:, None, :].expand_as(class_boxes)
        # select_regions counts background as column 0 and reads each class's box at its column.
        choice = select_regions(
            torch.cat([class_probs[:, -1:], class_probs[:, :-1]], dim=1),
            torch.cat([class_boxes[:, :1], class_boxes], dim=1),
            num_regions=config.num_regions,
            min_regions=config.fewest_regions,
            conf_threshold=config.conf_threshold,
            nms_threshold=config.nms_threshold,
        )
        return choice.indices, choice.labels - 1, choice.scores, choice.boxes, choice.num_real


class CaffeFasterRCNN(BUTDInference):
    """BUTD's Faster R-CNN with attributes, for inference, in plain torch (detectron2's module names)."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__(config)
        self.backbone = ResNetC4(config)
        self.proposal_generator = RPN(config)
        self.roi_heads = Res5ROIHeads(config)
        self.box_coder = BoxCoder((10.0, 10.0, 5.0, 5.0), bbox_xform_clip=_SCALE_CLAMP)

    def stages(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every intermediate result for one image, named; ``forward`` uses these, tests compare them."""
        inputs = self.preprocess(image)
        size = (inputs.shape[-2], inputs.shape[-1])
        features = self.backbone(inputs)
        proposals, proposal_logits = self.proposal_generator(features, size)
        pooled = self.roi_heads.pooled_features(features, proposals)
        class_logits, box_deltas, attr_logits = self.roi_heads.box_predictor(pooled)
        class_boxes = self.box_coder.decode_single(box_deltas, proposals).view(len(proposals), -1, 4)
        return {
            "inputs": inputs,
            "features": features,
            "proposals": proposals,
            "proposal_logits": proposal_logits,
            "pooled": pooled,
            "class_probs": F.softmax(class_logits, dim=-1),
            "class_boxes": box_ops.clip_boxes_to_image(class_boxes, size),
            "attr_probs": F.softmax(attr_logits, dim=-1)[:, :-1],
        }


def select_max_class(
    probs: torch.Tensor,
    class_boxes: torch.Tensor,
    *,
    num_regions: int,
    min_regions: int,
    conf_threshold: float,
    nms_threshold: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """py-bottom-up-attention's fixed-number NMS: NMS across classes on each proposal's best-class box.

    The IoU threshold starts at ``nms_threshold`` and rises by 0.1 (``np.arange(t, 1.0, 0.1)``) until at least
    ``min_regions`` boxes survive; the best ``num_regions`` are kept. Rows come best first, so the first
    ``num_real`` (score at least ``conf_threshold``) are the confident ones.

    Args:
        probs: (P, C) foreground class probabilities.
        class_boxes: (P, C, 4) each class's box.
    """
    scores, classes = probs.max(dim=1)
    boxes = class_boxes[torch.arange(len(classes), device=classes.device), classes]
    for threshold in np.arange(nms_threshold, 1.0, 0.1):
        keep = nms(boxes, scores, float(threshold))[:num_regions]
        if len(keep) >= min_regions:
            break
    num_real = int((scores[keep] >= conf_threshold).sum())
    return keep, classes[keep], scores[keep], boxes[keep], num_real


def resized_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """detectron2's ResizeShortestEdge: shorter side to ``min_size``, longer at most ``max_size``, rounded."""
    scale = min_size * 1.0 / min(height, width)
    new_height, new_width = (min_size, scale * width) if height < width else (scale * height, min_size)
    if max(new_height, new_width) > max_size:
        scale = max_size * 1.0 / max(new_height, new_width)
        new_height, new_width = new_height * scale, new_width * scale
    return int(new_height + 0.5), int(new_width + 0.5)


__all__ = [
    "BUTDInference",
    "BoxPredictor",
    "CaffeFasterRCNN",
    "cell_anchors",
    "resized_size",
    "select_max_class",
]
