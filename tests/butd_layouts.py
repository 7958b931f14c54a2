"""The published BUTD Visual Genome detector's weight layouts, filled with random weights from a seed.

``detectron2_weights`` lists the tensors of py-bottom-up-attention's ``faster_rcnn_from_caffe_attr.pkl`` by their
detectron2 names and shapes, written out here from detectron2's R101-C4 layout (not read from the project's
network, so that a test that loads them checks the network against an independent list). ``demo_state_dict`` is
the same weights as the transformers LXMERT demo's ``pytorch_model.bin`` holds them: plus a
``num_batches_tracked`` per batch norm and the RPN's cell anchors.

The scales keep a randomly initialised ResNet-101 numerically tame and make it detect: frozen batch norm with
small gains on each block's last convolution (so the residual stream grows slowly), and class scores with a wide
spread plus a large bias on a few classes, so that some regions pass the 0.2 confidence threshold. The golden
fixtures in tests/data/butd_parity/ were made from ``detectron2_weights(seed=GOLDEN_SEED)``.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import torch

from lxmert.detection import Detector
from lxmert.detection.convert import VG_VOCAB_DIR
from lxmert.detection.detector import build_network
from lxmert.detection.files import read_vocab
from lxmert.detection.weights import config_for, load_butd_weights, read_tensors

GOLDEN_SEED = 19
BLOCKS = (3, 4, 23, 3)
ANCHOR_SIZES = (64, 128, 256, 512)
ANCHOR_RATIOS = (0.5, 1.0, 2.0)


def _conv_norm(
    rng: np.random.Generator, out: dict, name: str, shape: tuple[int, ...], gain: float, scale: float = 1.0
) -> None:
    fan_in = int(np.prod(shape[1:]))
    channels = shape[0]
    out[f"{name}.weight"] = rng.normal(0, scale * math.sqrt(2.0 / fan_in), shape).astype(np.float32)
    out[f"{name}.norm.weight"] = (gain * rng.uniform(0.5, 1.0, channels)).astype(np.float32)
    out[f"{name}.norm.bias"] = rng.normal(0, 0.1, channels).astype(np.float32)
    out[f"{name}.norm.running_mean"] = rng.normal(0, 0.1, channels).astype(np.float32)
    out[f"{name}.norm.running_var"] = rng.uniform(0.5, 1.5, channels).astype(np.float32)


def _stage(rng: np.random.Generator, out: dict, prefix: str, index: int) -> None:
    bottleneck = 64 * 2**index
    out_channels = 4 * bottleneck
    in_channels = 64 if index == 0 else out_channels // 2
    for block in range(BLOCKS[index]):
        name = f"{prefix}.{block}"
        block_in = in_channels if block == 0 else out_channels
        if block == 0:
            _conv_norm(rng, out, f"{name}.shortcut", (out_channels, block_in, 1, 1), 1.0)
        _conv_norm(rng, out, f"{name}.conv1", (bottleneck, block_in, 1, 1), 1.0)
        _conv_norm(rng, out, f"{name}.conv2", (bottleneck, bottleneck, 3, 3), 1.0)
        _conv_norm(rng, out, f"{name}.conv3", (out_channels, bottleneck, 1, 1), 0.2)


def _linear(rng: np.random.Generator, out: dict, name: str, shape: tuple[int, ...], std: float) -> None:
    out[f"{name}.weight"] = rng.normal(0, std, shape).astype(np.float32)
    out[f"{name}.bias"] = rng.normal(0, 0.1, shape[0]).astype(np.float32)


def detectron2_weights(
    seed: int = GOLDEN_SEED, num_classes: int = 1600, num_attributes: int = 400
) -> dict[str, np.ndarray]:
    """Every tensor of the detectron2 checkpoint (``model`` dict), float32 numpy, random from ``seed``."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    # Caffe's input is raw pixels minus the means (about +-60): the stem brings them to unit scale.
    _conv_norm(rng, out, "backbone.stem.conv1", (64, 3, 7, 7), 1.0, scale=1 / 60)
    for index in range(3):
        _stage(rng, out, f"backbone.res{index + 2}", index)
    anchors = len(ANCHOR_SIZES) * len(ANCHOR_RATIOS)
    _linear(rng, out, "proposal_generator.rpn_head.conv", (512, 1024, 3, 3), math.sqrt(2.0 / (1024 * 9)))
    _linear(rng, out, "proposal_generator.rpn_head.objectness_logits", (anchors, 512, 1, 1), 0.1)
    _linear(rng, out, "proposal_generator.rpn_head.anchor_deltas", (anchors * 4, 512, 1, 1), 0.01)
    _stage(rng, out, "roi_heads.res5", 3)
    _linear(rng, out, "roi_heads.box_predictor.cls_score", (num_classes + 1, 2048), 0.08)
    # A few classes far more likely than the rest, so that random weights still make confident detections.
    favoured = rng.choice(num_classes, size=8, replace=False)
    out["roi_heads.box_predictor.cls_score.bias"][favoured] += 5.5
    _linear(rng, out, "roi_heads.box_predictor.bbox_pred", (num_classes * 4, 2048), 0.01)
    out["roi_heads.box_predictor.cls_embedding.weight"] = rng.normal(0, 1.0, (num_classes + 1, 256)).astype(
        np.float32
    )
    _linear(rng, out, "roi_heads.box_predictor.fc_attr", (512, 2048 + 256), math.sqrt(2.0 / 2304))
    _linear(rng, out, "roi_heads.box_predictor.attr_score", (num_attributes + 1, 512), 0.2)
    return out


def reference_cell_anchors() -> np.ndarray:
    """(12, 4) anchors as detectron2's DefaultAnchorGenerator makes them: size-major, centred, unrounded."""
    rows = []
    for size in ANCHOR_SIZES:
        for ratio in ANCHOR_RATIOS:
            width = math.sqrt(size * size / ratio)
            height = ratio * width
            rows.append([-width / 2, -height / 2, width / 2, height / 2])
    return np.array(rows, dtype=np.float32)


def demo_state_dict(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The same weights under the transformers demo's names (its ``utils.load_frcnn_pkl_from_url`` plus anchors)."""
    state = {}
    for name, value in weights.items():
        state[name] = torch.from_numpy(value.copy())
        if name.endswith("running_var"):
            state[name.replace("running_var", "num_batches_tracked")] = torch.tensor([0])
    state["proposal_generator.anchor_generator.cell_anchors.0"] = torch.from_numpy(reference_cell_anchors())
    return state


def write_layout(folder: Path, layout: str, weights: dict[str, np.ndarray]) -> Path:
    """``weights`` written in ``folder`` as a published file: ``pkl`` (py-bottom-up-attention's
    ``faster_rcnn_from_caffe_attr.pkl``) or ``bin`` (the transformers demo's ``pytorch_model.bin``)."""
    if layout == "pkl":
        path = Path(folder) / "faster_rcnn_from_caffe_attr.pkl"
        path.write_bytes(pickle.dumps({"model": weights, "__author__": "test"}))
    elif layout == "bin":
        path = Path(folder) / "pytorch_model.bin"
        torch.save(demo_state_dict(weights), path)
    else:
        raise ValueError(f"layout must be 'pkl' or 'bin', got {layout!r}")
    return path


def golden_detector(folder: Path, backend: str = "torch", layout: str = "pkl") -> Detector:
    """The detector of the golden run: GOLDEN_SEED's weights read from a file of ``layout`` written in ``folder``.

    Its settings are the golden run's: 60 RPN proposals (CPU time) and py-bottom-up-attention's fixed-number NMS.
    """
    path = write_layout(folder, layout, detectron2_weights(GOLDEN_SEED))
    tensors = read_tensors(path)
    config = config_for(tensors, rpn_post_nms_top_n_test=60, region_selection="max_class")
    model = build_network(config, backend)
    load_butd_weights(model, tensors, str(path))
    names = read_vocab(VG_VOCAB_DIR / "objects_vocab.txt"), read_vocab(VG_VOCAB_DIR / "attributes_vocab.txt")
    return Detector(model, *names)
