"""``network="caffe"`` on detectron2's own components: ResNet, RPN, ROIPooler, box decoding and NMS.

    detector = Detector.from_pretrained("runs/vg-detector", backend="detectron2")

Importable only where detectron2 is installed (it is not on the package index; install it the official way,
``pip install 'git+https://github.com/facebookresearch/detectron2.git'``, with torch already installed and a
compiler). Upstream detectron2 lacks two pieces of the bottom-up-attention model, registered here with its
registries: the Caffe max-pool stem (backbone ``build_caffe_resnet_backbone``) and the attribute head (ROI heads
``AttributeRes5ROIHeads``, with :class:`lxmert.detection.butd.BoxPredictor`). The network's state dict has
detectron2's names, as :class:`~lxmert.detection.butd.CaffeFasterRCNN`'s has, so both load the same weights; the
input transform and the choice of regions are shared (:class:`~lxmert.detection.butd.BUTDInference`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, get_cfg
from detectron2.modeling import BACKBONE_REGISTRY, ROI_HEADS_REGISTRY, build_model
from detectron2.modeling.backbone.resnet import BasicStem, build_resnet_backbone
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.roi_heads import Res5ROIHeads
from detectron2.structures import Boxes, ImageList

from lxmert.detection.butd import BoxPredictor, BUTDInference
from lxmert.detection.config import DetectorConfig


class CaffeMaxPoolStem(BasicStem):
    """detectron2's stem with Caffe's max-pool: no padding, output size rounded up."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=0, ceil_mode=True)


@BACKBONE_REGISTRY.register()
def build_caffe_resnet_backbone(cfg: CfgNode, input_shape):
    """detectron2's ResNet with :class:`CaffeMaxPoolStem` in place of its stem."""
    backbone = build_resnet_backbone(cfg, input_shape)
    stem = CaffeMaxPoolStem(input_shape.channels, cfg.MODEL.RESNETS.STEM_OUT_CHANNELS, cfg.MODEL.RESNETS.NORM)
    stem.load_state_dict(backbone.stem.state_dict())
    backbone.stem = stem
    return backbone


@ROI_HEADS_REGISTRY.register()
class AttributeRes5ROIHeads(Res5ROIHeads):
    """detectron2's Res5ROIHeads whose box predictor also scores attributes (BUTD's ``cls_embedding``,
    ``fc_attr``, ``attr_score``)."""

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape):
        values = super().from_config(cfg, input_shape)
        head = cfg.MODEL.ROI_BOX_HEAD
        values["box_predictor"] = BoxPredictor(
            cfg.MODEL.ROI_HEADS.NUM_CLASSES, head.NUM_ATTRIBUTES, head.CLASS_EMBED_DIM, head.ATTR_HIDDEN_DIM
        )
        return values


def detectron2_config(config: DetectorConfig) -> CfgNode:
    """py-bottom-up-attention's ``faster_rcnn_R_101_C4_attr_caffemaxpool.yaml`` as ``config`` sets it."""
    if not (config.caffe_maxpool and config.roi_pooler == "roi_pool"):
        raise ValueError("the detectron2 backend builds the Caffe max-pool and RoIPool model only")
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    cfg.MODEL.PIXEL_MEAN = [m * 255.0 for m in config.pixel_mean]
    cfg.MODEL.PIXEL_STD = [s * 255.0 for s in config.pixel_std]
    cfg.MODEL.BACKBONE.NAME = "build_caffe_resnet_backbone"
    cfg.MODEL.RESNETS.DEPTH = 101
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res4"]
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = config.stride_in_1x1
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [list(config.anchor_sizes)]
    cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [list(config.anchor_ratios)]
    cfg.MODEL.ANCHOR_GENERATOR.OFFSET = 0.0
    cfg.MODEL.RPN.IN_FEATURES = ["res4"]
    cfg.MODEL.RPN.CONV_DIMS = [config.rpn_hidden_dim or -1]
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = config.rpn_pre_nms_top_n_test
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = config.rpn_post_nms_top_n_test
    cfg.MODEL.RPN.NMS_THRESH = config.rpn_nms_threshold
    cfg.MODEL.PROPOSAL_GENERATOR.MIN_SIZE = 0
    cfg.MODEL.ROI_HEADS.NAME = "AttributeRes5ROIHeads"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["res4"]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = config.num_classes
    cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIPool"
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = config.roi_output_size
    cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
    cfg.MODEL.ROI_BOX_HEAD.NUM_ATTRIBUTES = config.num_attributes
    cfg.MODEL.ROI_BOX_HEAD.CLASS_EMBED_DIM = config.class_embed_dim
    cfg.MODEL.ROI_BOX_HEAD.ATTR_HIDDEN_DIM = config.attr_hidden_dim
    return cfg


class Detectron2FasterRCNN(BUTDInference):
    """The caffe network built by detectron2's ``build_model``; inference only, as CaffeFasterRCNN."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__(config)
        cfg = detectron2_config(config)
        model = build_model(cfg)
        # Its parts, not the model itself, so that the state dict names are detectron2's checkpoint names.
        self.backbone = model.backbone
        self.proposal_generator = model.proposal_generator
        self.roi_heads = model.roi_heads
        self.box2box_transform = Box2BoxTransform(weights=cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS)

    def stages(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        inputs = self.preprocess(image)
        size = (inputs.shape[-2], inputs.shape[-1])
        features = self.backbone(inputs)
        (proposals,), _ = self.proposal_generator(ImageList(inputs, [size]), features)
        boxes = proposals.proposal_boxes
        pooled = self.roi_heads._shared_roi_transform([features["res4"]], [boxes]).mean(dim=(2, 3))
        class_logits, box_deltas, attr_logits = self.roi_heads.box_predictor(pooled)
        class_boxes = Boxes(self.box2box_transform.apply_deltas(box_deltas, boxes.tensor).view(-1, 4))
        class_boxes.clip(size)
        return {
            "inputs": inputs,
            "features": features["res4"],
            "proposals": boxes.tensor,
            "proposal_logits": proposals.objectness_logits,
            "pooled": pooled,
            "class_probs": F.softmax(class_logits, dim=-1),
            "class_boxes": class_boxes.tensor.view(len(boxes), -1, 4),
            "attr_probs": F.softmax(attr_logits, dim=-1)[:, :-1],
        }


__all__ = ["AttributeRes5ROIHeads", "CaffeMaxPoolStem", "Detectron2FasterRCNN", "detectron2_config"]
