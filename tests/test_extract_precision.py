"""Reduced-precision extraction: autocast runs the caffe network's layers, boxes and scores stay float32."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from lxmert.detection import Detector, DetectorConfig
from lxmert.detection.butd import ConvNorm
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


def _conv_norm(seed: int) -> ConvNorm:
    """A 3x3 ConvNorm with a non-trivial frozen norm (gain, shift and statistics away from the identity)."""
    generator = torch.Generator().manual_seed(seed)
    layer = ConvNorm(8, 16, 3, padding=1).eval()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.2)
        for name, low, high in (("weight", 0.5, 1.5), ("running_var", 0.5, 2.0)):
            getattr(layer.norm, name).copy_(torch.empty(16).uniform_(low, high, generator=generator))
        for name in ("bias", "running_mean"):
            getattr(layer.norm, name).copy_(torch.randn(16, generator=generator))
    return layer


def _by_hand(layer: ConvNorm, x: torch.Tensor) -> torch.Tensor:
    """Convolution, then (x - mean) / sqrt(var + eps) * gain + shift, written out."""
    norm = layer.norm
    out = F.conv2d(x, layer.weight, None, 1, 1)
    view = (1, -1, 1, 1)
    return (out - norm.running_mean.view(view)) / (
        norm.running_var.view(view) + norm.eps
    ).sqrt() * norm.weight.view(view) + norm.bias.view(view)


def test_conv_norm_in_float32_is_the_convolution_then_the_norm() -> None:
    layer = _conv_norm(0)
    x = torch.randn(2, 8, 9, 7, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), _by_hand(layer, x), atol=1e-5, rtol=1e-5)
        assert torch.equal(layer.widened(x), layer(x))


@pytest.mark.skipif(not BF16_CPU, reason="this CPU has no native bfloat16 (AVX512-BF16)")
def test_conv_norm_under_bf16_folds_the_norm_or_widens_it_and_follows_new_weights() -> None:
    layer = _conv_norm(0)
    x = torch.randn(2, 8, 9, 7, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = _by_hand(layer, x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            folded, widened = layer(x), layer.widened(x)
    assert folded.dtype == torch.bfloat16 and widened.dtype == torch.float32
    assert folded.is_contiguous(memory_format=torch.channels_last)
    scale = expected.abs().max()
    for reduced in (folded, widened):
        # bf16 keeps 8 significant bits: the inputs, weights and outputs each round by at most 2**-9 relative.
        error = (reduced.float() - expected).abs().max() / scale
        assert 0 < error < 0.02, error
    # New weights and statistics, loaded or edited in place, replace the converted ones.
    other = _conv_norm(5)
    layer.load_state_dict(other.state_dict())
    with torch.no_grad():
        layer.norm.running_var.mul_(4.0)
        other.norm.running_var.mul_(4.0)
    with torch.inference_mode():
        expected = _by_hand(other, x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            for reduced in (layer(x), layer.widened(x)):
                assert (reduced.float() - expected).abs().max() / expected.abs().max() < 0.02
