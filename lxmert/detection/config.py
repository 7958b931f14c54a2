"""Detector configuration: a dataclass whose defaults are bottom-up-attention's (BUTD) Visual Genome detector.

The defaults describe the Caffe detector that produced LXMERT's features (Anderson et al. 2018; the authors'
``generate_tsv.py`` and its ``test.prototxt``), exactly as its published weights need it (``network="caffe"``,
:mod:`lxmert.detection.butd`): ResNet-101 C4 with Caffe's max-pool and the stride on the 1x1 convolutions,
BGR input minus the Caffe pixel means, images resized to a 600-pixel shorter side (at most 1000), RPN with a
512-channel hidden layer and 300 proposals at test time, RoIPool 14x14 then res5 mean-pooled to 2048-d,
1600 objects and 400 attributes, per-class NMS at 0.3, 36 regions kept with a 0.2 confidence threshold.

Presets: ``vg`` is these defaults (the published weights; inference only). ``butd`` is the same architecture
on torchvision's Faster R-CNN components (``network="torchvision"``: RoIAlign, the stride on the 3x3
convolution, torchvision's max-pool and resize, RGB input), which can be trained. ``small`` is the detector for
the synthetic world, small enough to train on a 2-core CPU; its 256-d RoI feature is what the tiny LXMERT takes
as ``visual_feat_dim``.

Every field is checked by type and range (:data:`FIELD_RULES`): a saved detector's config is untrusted input.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxmert.config_rules import Bool, ConfigError, Float, Int, Items, OneOf, Rule, check_fields
from lxmert.fileio import atomic_write_text, read_json_object

BACKBONES = ("resnet101_c4", "small")
NETWORKS = ("caffe", "torchvision")
REGION_SELECTIONS = ("per_class", "max_class", "per_class_proposals")

# What the torchvision network does, and what a saved config written before these fields existed meant.
TORCHVISION_NETWORK: dict[str, Any] = dict(
    network="torchvision",
    caffe_maxpool=False,
    stride_in_1x1=False,
    roi_pooler="roi_align",
    channel_order="RGB",
    rpn_hidden_dim=0,
    region_selection="per_class",
)

# Bounds far above BUTD's sizes (1600 objects, 400 attributes, 2048-d features, 600/1000-pixel sides, 12000 RPN
# proposals, 36 regions) and far below what would exhaust memory.
_SIZE = Int(1, 1 << 16)
_COUNT = Int(1, 1 << 20)
_FRACTION = Float(0.0, 1.0)
FIELD_RULES: dict[str, Rule] = {
    "network": OneOf(NETWORKS),
    "caffe_maxpool": Bool(),
    "stride_in_1x1": Bool(),
    "roi_pooler": OneOf(("roi_pool", "roi_align")),
    "channel_order": OneOf(("RGB", "BGR")),
    "rpn_hidden_dim": Int(
        0, 1 << 14
    ),  # 0: the RPN head's conv keeps the feature map's channels (torchvision)
    "region_selection": OneOf(REGION_SELECTIONS),
    "min_regions": Int(0, 4096),  # 0: num_regions
    "backbone": OneOf(BACKBONES),
    "small_channels": Items(Int(1, 4096), 1, 16),
    "feature_dim": _SIZE,
    "num_classes": Int(1, 1 << 17),
    "num_attributes": Int(1, 1 << 17),
    "min_size": Int(1, 1 << 14),
    "max_size": Int(1, 1 << 14),
    "pixel_mean": Items(Float(0.0, 1.0), 3, 3),
    "pixel_std": Items(Float(0.0, 1.0, above_low=True), 3, 3),
    "anchor_sizes": Items(Int(1, 1 << 14), 1, 32),
    "anchor_ratios": Items(Float(0.0, 100.0, above_low=True), 1, 32),
    "rpn_pre_nms_top_n_train": _COUNT,
    "rpn_post_nms_top_n_train": _COUNT,
    "rpn_pre_nms_top_n_test": _COUNT,
    "rpn_post_nms_top_n_test": _COUNT,
    "rpn_nms_threshold": _FRACTION,
    "rpn_fg_iou_threshold": _FRACTION,
    "rpn_bg_iou_threshold": _FRACTION,
    "rpn_batch_size_per_image": _COUNT,
    "rpn_positive_fraction": _FRACTION,
    "roi_output_size": Int(1, 64),
    "roi_sampling_ratio": Int(0, 64),  # 0: adaptive, as torchvision's roi_align
    "roi_batch_size_per_image": _COUNT,
    "roi_positive_fraction": _FRACTION,
    "roi_fg_iou_threshold": _FRACTION,
    "roi_bg_iou_threshold": _FRACTION,
    "class_embed_dim": _SIZE,
    "attr_hidden_dim": _SIZE,
    "num_regions": Int(1, 4096),
    "conf_threshold": _FRACTION,
    "nms_threshold": _FRACTION,
    "max_image_pixels": Int(1, 1 << 32),
    "max_image_side": Int(1, 1 << 16),
}


@dataclass
class DetectorConfig:
    # "caffe": the exact BUTD network the published Visual Genome weights need (lxmert.detection.butd;
    # inference only, detectron2 weight names). "torchvision": built from torchvision's Faster R-CNN
    # components (lxmert.detection.frcnn), trainable; it takes only the TORCHVISION_NETWORK values below.
    network: str = "caffe"
    # Stem max-pool: Caffe's 3x3/2 without padding, rounding the output size up (detectron2's MAX_POOL).
    caffe_maxpool: bool = True
    # The stride of a downsampling bottleneck on its first 1x1 convolution (MSRA/Caffe ResNet), not the 3x3.
    stride_in_1x1: bool = True
    # "roi_pool" (Caffe's RoIPool, max over integer bins) or "roi_align".
    roi_pooler: str = "roi_pool"
    # Channel order the first convolution expects; pixel_mean and pixel_std are given in this order.
    channel_order: str = "BGR"
    # RPN hidden channels (BUTD: 512); 0 means as many as the backbone's output (torchvision's RPNHead).
    rpn_hidden_dim: int = 512
    # "per_class": the authors' generate_tsv rule (lxmert.detection.selection). "max_class": the rule of
    # py-bottom-up-attention's extraction scripts and of the transformers LXMERT demo: NMS across classes on each
    # proposal's best-class box, the threshold raised by 0.1 from nms_threshold until min_regions survive.
    # "per_class_proposals": the per_class rule on the RPN proposals themselves, NMS and the stored box alike, as
    # the Caffe generate_tsv that wrote the authors' obj36 files (caffe network only).
    region_selection: str = "per_class"
    # Fewest regions per image; 0 means num_regions (LXMERT's fixed 36). The original model keeps 10-100.
    min_regions: int = 0
    # "resnet101_c4" (BUTD): res2-res4 backbone (stride 16), res5 on each 14x14 RoI, then mean-pooled.
    # "small": a few residual conv blocks (stride 8) and a two-layer MLP on 7x7 RoIs.
    backbone: str = "resnet101_c4"
    # Channels of the small backbone's stem and stages; unused by resnet101_c4.
    small_channels: tuple[int, ...] = (32, 64, 128)
    # Size of the RoI feature of each region: LXMERT's visual_feat_dim (2048 = res5 output channels).
    feature_dim: int = 2048
    # Vocabulary sizes, background / "no attribute" excluded: the model adds index 0 for each.
    num_classes: int = 1600
    num_attributes: int = 400
    # Input transform: shorter side resized to min_size unless the longer would exceed max_size.
    min_size: int = 600
    max_size: int = 1000
    # Mean and std on a 0..1 scale, in channel_order: Caffe subtracts BGR means (102.98, 115.95, 122.77) and
    # never divides.
    pixel_mean: tuple[float, float, float] = (102.9801 / 255, 115.9465 / 255, 122.7717 / 255)
    pixel_std: tuple[float, float, float] = (1 / 255, 1 / 255, 1 / 255)
    # RPN: Caffe scales 4, 8, 16, 32 at stride 16 and ratios 0.5, 1, 2 (12 anchors per position).
    anchor_sizes: tuple[int, ...] = (64, 128, 256, 512)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_top_n_train: int = 12000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 6000
    rpn_post_nms_top_n_test: int = 300
    rpn_nms_threshold: float = 0.7
    rpn_fg_iou_threshold: float = 0.7
    rpn_bg_iou_threshold: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    # RoI head: pooled size (res5 halves 14 to 7), sampling during training (detectron2 defaults).
    roi_output_size: int = 14
    roi_sampling_ratio: int = 0
    roi_batch_size_per_image: int = 512
    roi_positive_fraction: float = 0.25
    roi_fg_iou_threshold: float = 0.5
    roi_bg_iou_threshold: float = 0.5
    # Attribute head (BUTD): [RoI feature; class embedding] -> attr_hidden_dim -> ReLU -> attributes + 1.
    class_embed_dim: int = 256
    attr_hidden_dim: int = 512
    # Region selection as in the authors' extractor: MIN_BOXES = MAX_BOXES = 36, conf_thresh 0.2, NMS 0.3.
    num_regions: int = 36
    conf_threshold: float = 0.2
    nms_threshold: float = 0.3
    # Image guards: refuse more pixels than Pillow's own decompression-bomb limit; downscale longer sides
    # above this.
    max_image_pixels: int = 89_478_485
    max_image_side: int = 4096

    def __post_init__(self) -> None:
        """Raises ConfigError naming the first field of the wrong type or out of range."""
        check_fields(self, FIELD_RULES)
        if self.network == "torchvision":
            differing = {k: getattr(self, k) for k, v in TORCHVISION_NETWORK.items() if getattr(self, k) != v}
            if differing:
                raise ConfigError(f"network='torchvision' cannot take {differing}; use network='caffe'")
        elif self.backbone != "resnet101_c4":
            raise ConfigError(f"network='caffe' is ResNet-101 C4 only, got backbone {self.backbone!r}")
        if self.min_regions > self.num_regions:
            raise ConfigError(
                f"min_regions must lie in [0, num_regions={self.num_regions}], got {self.min_regions}"
            )
        if self.backbone == "resnet101_c4" and self.feature_dim != 2048:
            raise ConfigError(
                f"resnet101_c4 pools 2048-d res5 features; feature_dim {self.feature_dim} cannot change"
            )
        # JSON round-trips tuples as lists; keep one type so that configs compare equal.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                setattr(self, field.name, tuple(value))

    @property
    def fewest_regions(self) -> int:
        """The smallest number of regions an image gets (``min_regions``, or ``num_regions`` when 0)."""
        return self.min_regions or self.num_regions

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DetectorConfig:
        """A config from saved values; one saved before ``network`` existed is a torchvision network."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"DetectorConfig has no fields {unknown}")
        if "network" not in values:
            values = {**TORCHVISION_NETWORK, **values}
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_json())

    @classmethod
    def from_json_file(cls, path: str | Path) -> DetectorConfig:
        """Read a detector's ``config.json``.

        Raises:
            ValueError: naming the file, when it is not a UTF-8 JSON object, has unknown fields, or a field of
                the wrong type or out of range (then the field is named too).
        """
        values = read_json_object(path)
        try:
            return cls.from_dict(values)
        except ValueError as err:
            raise type(err)(f"{path}: {err}") from err

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DetectorConfig:
        """A registered preset (``vg``, ``butd``, ``small``) with optional field overrides."""
        if name not in PRESETS:
            raise KeyError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


PRESETS: dict[str, dict[str, Any]] = {
    "vg": {},
    "butd": dict(TORCHVISION_NETWORK, pixel_mean=(122.7717 / 255, 115.9465 / 255, 102.9801 / 255)),
    # The synthetic world: 256x256 scenes of flat-coloured shapes 26-66 px wide, kept at native resolution.
    "small": dict(
        TORCHVISION_NETWORK,
        backbone="small",
        small_channels=(24, 48, 96),
        feature_dim=256,
        min_size=256,
        max_size=512,
        pixel_mean=(0.5, 0.5, 0.5),
        pixel_std=(0.25, 0.25, 0.25),
        anchor_sizes=(24, 40, 64, 96),
        rpn_pre_nms_top_n_train=1000,
        rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_test=200,
        roi_output_size=7,
        roi_sampling_ratio=2,
        roi_batch_size_per_image=64,
        class_embed_dim=64,
        attr_hidden_dim=128,
    ),
}

__all__ = [
    "BACKBONES",
    "DetectorConfig",
    "FIELD_RULES",
    "NETWORKS",
    "PRESETS",
    "REGION_SELECTIONS",
    "TORCHVISION_NETWORK",
]
