"""Reduced-precision extraction: autocast runs the caffe network's layers, boxes and scores stay float32."""

from __future__ import annotations

import contextlib

import pytest
import torch

from lxmert.detection import Detector, DetectorConfig
from lxmert.detection.detector import build_network
from lxmert.precision import cpu_has_bf16
from tests.test_detection_model import tiny_detector

BF16_CPU = cpu_has_bf16()


def small_caffe_detector() -> Detector:
    """The caffe network (ResNet-101 C4, default initialisation) on small inputs with few proposals and classes."""
    torch.manual_seed(0)
    config = DetectorConfig(
        min_size=96, max_size=128, rpn_post_nms_top_n_test=20, num_classes=5, num_attributes=3, num_regions=8
    )
    return Detector(build_network(config), [f"o{i}" for i in range(5)], [f"a{i}" for i in range(3)])


def test_reduced_precision_is_refused_where_its_drift_was_not_measured() -> None:
    assert isinstance(tiny_detector().autocast("fp32"), contextlib.nullcontext), "fp32 works everywhere"
    with pytest.raises(ValueError, match="caffe network"):
        tiny_detector().autocast("bf16")
    with pytest.raises(ValueError, match="caffe network"):
        tiny_detector().detect([], precision="bf16")
    with pytest.raises(ValueError, match="needs a GPU"):
        small_caffe_detector().autocast("fp16")


@pytest.mark.skipif(not BF16_CPU, reason="this CPU has no native bfloat16 (AVX512-BF16)")
def test_bf16_runs_the_layers_but_decodes_boxes_and_averages_features_in_float32() -> None:
    detector = small_caffe_detector()
    model = detector.model
    image = torch.rand(3, 80, 100, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        exact = model.stages(image)
        with detector.autocast("bf16"):
            reduced = model.stages(image)
            # The float32 run's proposals through bf16 layers: the arithmetic's drift, apart from selection.
            pooled = model.roi_heads.pooled_features(model.backbone(exact["inputs"]), exact["proposals"])
    for name in ("proposals", "proposal_logits", "pooled", "class_probs", "class_boxes", "attr_probs"):
        assert reduced[name].dtype == torch.float32, name
    assert pooled.dtype == torch.float32
    # bf16 keeps 8 significant bits (relative step 2**-8 = 0.4%); ResNet-101's 33 blocks accumulate a few steps.
    drift = (pooled - exact["pooled"]).norm(dim=1) / exact["pooled"].norm(dim=1)
    assert 0 < drift.max() < 0.02, drift.max()
