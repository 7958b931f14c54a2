"""The caffe network's parts on hand-made cases, its config, and the Detector interface around it."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lxmert.data.store import FeatureStore
from lxmert.detection import Detector, DetectorConfig
from lxmert.detection.butd import CaffeFasterRCNN, cell_anchors, resized_size, select_max_class
from lxmert.detection.detector import build_network
from lxmert.detection.files import read_detector_config, read_vocab
from lxmert.detection.selection import select_regions
from training.detection.extraction import ExtractConfig, extract

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def test_defaults_are_the_published_weights_and_old_configs_stay_torchvision(tmp_path: Path) -> None:
    config = DetectorConfig()
    assert (config.network, config.caffe_maxpool, config.stride_in_1x1) == ("caffe", True, True)
    assert (config.roi_pooler, config.channel_order, config.rpn_hidden_dim) == ("roi_pool", "BGR", 512)
    assert [round(m * 255, 4) for m in config.pixel_mean] == [102.9801, 115.9465, 122.7717]
    # The shipped world detector's config predates these fields: it must still build the torchvision network.
    shipped = read_detector_config(ASSETS / "default" / "detector")
    assert shipped.network == "torchvision" and shipped.roi_pooler == "roi_align"
    values = json.loads((ASSETS / "default" / "detector" / "config.json").read_text())
    assert "network" not in values
    assert DetectorConfig.preset("butd").network == "torchvision" and DetectorConfig.preset("vg") == config
    with pytest.raises(ValueError, match="network='torchvision' cannot take .*caffe_maxpool"):
        DetectorConfig.preset("butd", caffe_maxpool=True)
    with pytest.raises(ValueError, match="ResNet-101 C4 only"):
        DetectorConfig(backbone="small")
    with pytest.raises(ValueError, match="min_regions"):
        DetectorConfig(num_regions=36, min_regions=37)


def test_resize_rounds_like_detectron2() -> None:
    assert resized_size(480, 640, 600, 1000) == (600, 800)
    assert resized_size(427, 640, 600, 1000) == (600, 899)  # 640 * 600 / 427 = 899.3
    assert resized_size(640, 427, 600, 1000) == (899, 600)
    assert resized_size(100, 1000, 600, 1000) == (100, 1000)  # longer side capped: 6000 -> 1000, 600 -> 100
    assert resized_size(333, 1000, 600, 1000) == (
        333,
        1000,
    )  # 1801.8 -> 1000: scale 0.555, 600 * 0.555 = 333.0


def test_cell_anchors_are_size_major_and_unrounded() -> None:
    anchors = cell_anchors((64, 128), (0.5, 1.0, 2.0))
    assert anchors.shape == (6, 4)
    width = math.sqrt(64 * 64 / 0.5)  # 90.51: torchvision would round it to 91
    torch.testing.assert_close(anchors[0], torch.tensor([-width / 2, -width / 4, width / 2, width / 4]))
    torch.testing.assert_close(anchors[1], torch.tensor([-32.0, -32.0, 32.0, 32.0]))
    torch.testing.assert_close(anchors[4], torch.tensor([-64.0, -64.0, 64.0, 64.0]))


def test_max_class_selection_raises_the_nms_threshold_until_enough_survive() -> None:
    # Boxes 0 and 1 overlap with IoU 0.45 (area 110 each, intersection 68.3): suppressed at 0.3 and 0.4, kept at 0.5.
    boxes = torch.tensor([[0.0, 0.0, 10.0, 11.0], [0.0, 4.172, 10.0, 15.172], [50.0, 50.0, 60.0, 60.0]])
    iou = 10 * (11 - 4.172) / (2 * 110 - 10 * (11 - 4.172))
    assert 0.4 < iou < 0.5
    probs = torch.tensor([[0.7, 0.1], [0.05, 0.6], [0.1, 0.15]])  # best classes 0, 1, 1
    class_boxes = boxes[:, None, :].expand(3, 2, 4)
    rows, labels, scores, chosen, num_real = select_max_class(
        probs, class_boxes, num_regions=3, min_regions=2, conf_threshold=0.2, nms_threshold=0.3
    )
    assert rows.tolist() == [0, 2] and labels.tolist() == [0, 1] and num_real == 1
    rows, labels, scores, chosen, num_real = select_max_class(
        probs, class_boxes, num_regions=3, min_regions=3, conf_threshold=0.2, nms_threshold=0.3
    )
    assert rows.tolist() == [0, 1, 2] and labels.tolist() == [0, 1, 1] and num_real == 2
    assert torch.equal(chosen, boxes[[0, 1, 2]]) and torch.allclose(scores, torch.tensor([0.7, 0.6, 0.15]))


def test_per_class_selection_keeps_between_min_and_max_regions() -> None:
    # Four disjoint boxes of one class: probabilities 0.9, 0.5, 0.1, 0.05; threshold 0.2 passes two.
    probs = torch.tensor([[0.1, 0.9], [0.5, 0.5], [0.9, 0.1], [0.95, 0.05]])
    boxes = torch.tensor([[0.0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5], [6, 6, 7, 7]])
    class_boxes = boxes[:, None, :].expand(4, 2, 4)
    kwargs = dict(num_regions=4, conf_threshold=0.2, nms_threshold=0.3)
    assert select_regions(probs, class_boxes, min_regions=1, **kwargs).indices.tolist() == [0, 1]
    assert select_regions(probs, class_boxes, min_regions=3, **kwargs).indices.tolist() == [0, 1, 2]
    assert (
        len(select_regions(probs, class_boxes, **kwargs).indices) == 4
    )  # min_regions None: exactly num_regions


def test_vg_vocabularies_ship_with_display_names_first() -> None:
    objects, attributes = (
        read_vocab(ASSETS / "vg" / "objects_vocab.txt"),
        read_vocab(ASSETS / "vg" / "attributes_vocab.txt"),
    )
    assert len(objects) == 1600 and len(attributes) == 400
    assert attributes[0] == "gray"  # the file's line is "gray,grey"
    assert "cat" in objects and "brown" in attributes and all(name and "," not in name for name in objects)


@pytest.mark.slow  # builds and saves a 65M-parameter ResNet-101 detector
def test_detector_runs_the_caffe_network_round_trips_and_extracts(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = DetectorConfig(min_size=64, max_size=96, rpn_post_nms_top_n_test=12, num_regions=4)
    detector = Detector(
        CaffeFasterRCNN(config), [f"o{i}" for i in range(1600)], [f"a{i}" for i in range(400)]
    )
    image = Image.new("RGB", (120, 80), (200, 30, 30))
    regions = detector([image])[0]
    assert len(regions) == 4 and regions.features.shape == (4, 2048) and regions.attr_probs.shape == (4, 400)
    assert (regions.boxes >= 0).all() and (regions.boxes[:, [0, 2]] <= 120).all()
    assert (regions.boxes[:, [1, 3]] <= 80).all()
    detector.save_pretrained(tmp_path / "detector")
    again = Detector.from_pretrained(tmp_path / "detector")
    assert isinstance(again.model, CaffeFasterRCNN)
    torch.testing.assert_close(again([image])[0].features, regions.features)
    with pytest.raises(RuntimeError, match="inference only"):
        again.model.train()([torch.zeros(3, 8, 8)])

    (tmp_path / "photos").mkdir()
    image.save(tmp_path / "photos" / "red.png")
    summary = extract(
        ExtractConfig(
            images=str(tmp_path / "photos"), out=str(tmp_path / "store"), detector=str(tmp_path / "detector")
        )
    )
    assert summary.written == 1 and summary.finalized
    row = FeatureStore(tmp_path / "store").get_row(0)
    np.testing.assert_allclose(row["features"], regions.features.numpy(), atol=1e-5)

    # The same directory on detectron2's components, where it is installed, stores the same features.
    if importlib.util.find_spec("detectron2") is not None:
        photos, store = str(tmp_path / "photos"), str(tmp_path / "store_d2")
        extract(
            ExtractConfig(images=photos, out=store, detector=str(tmp_path / "detector"), backend="detectron2")
        )
        np.testing.assert_allclose(FeatureStore(store).get_row(0)["features"], row["features"], atol=1e-4)


def test_backends_are_checked_and_a_missing_detectron2_says_how_to_install_it(monkeypatch) -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        build_network(DetectorConfig(), backend="caffe2")
    with pytest.raises(ValueError, match="runs network='caffe' only"):
        build_network(DetectorConfig.preset("small"), backend="detectron2")
    monkeypatch.setitem(sys.modules, "detectron2", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "lxmert.detection.detectron2_backend", None)
    with pytest.raises(ImportError, match="facebookresearch/detectron2"):
        build_network(DetectorConfig(), backend="detectron2")


@pytest.mark.parametrize("selection", ["per_class", "max_class"])
def test_regions_read_background_last_and_scale_boxes_back(selection: str) -> None:
    config = DetectorConfig(num_classes=2, num_attributes=3, num_regions=2, region_selection=selection)
    model = CaffeFasterRCNN(config)
    # Three disjoint proposals; columns are class 0, class 1, background (detectron2's layout).
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.05, 0.05, 0.9], [0.7, 0.1, 0.2]])
    boxes = torch.tensor([[0.0, 0, 4, 4], [5, 5, 9, 9], [10, 0, 14, 4]])[:, None, :].expand(3, 2, 4)
    stages = {
        "inputs": torch.zeros(1, 3, 10, 20),
        "pooled": torch.arange(3.0)[:, None].expand(3, 2048),
        "class_probs": probs,
        "class_boxes": boxes,
        "attr_probs": torch.eye(3),
    }
    out = model.regions(stages, (20, 40))  # the original image is twice the resized one
    assert out["object_ids"].tolist() == [0, 1], "row 2 (0.7, class 0), then row 0 (0.6, class 1)"
    torch.testing.assert_close(out["object_conf"], torch.tensor([0.7, 0.6]))
    torch.testing.assert_close(out["boxes"], torch.tensor([[20.0, 0, 28, 8], [0, 0, 8, 8]]))
    assert out["features"][:, 0].tolist() == [2.0, 0.0] and int(out["num_real"]) == 2
    torch.testing.assert_close(out["attr_probs"], torch.eye(3)[[2, 0]])


@pytest.mark.parametrize(
    ("selection", "num_real", "third_box"),
    [("per_class", 3, [10.0, 10, 18, 18]), ("per_class_proposals", 2, [0.0, 0, 8, 8.4])],
)
def test_the_authors_caffe_rule_suppresses_and_stores_the_proposals(
    selection: str, num_real: int, third_box: list[float]
) -> None:
    config = DetectorConfig(num_classes=2, num_attributes=3, num_regions=3, region_selection=selection)
    model = CaffeFasterRCNN(config)
    # Proposal 1 nearly covers proposal 0 (IoU 0.95), but its regressed boxes moved away to (5, 5, 9, 9): on the
    # regressed boxes it survives both classes' NMS; on the proposals, as in the Caffe script, it survives neither.
    proposals = torch.tensor([[0.0, 0, 4, 4], [0, 0, 4, 4.2], [10, 0, 14, 4]])
    regressed = proposals.clone()
    regressed[1] = torch.tensor([5.0, 5, 9, 9])
    stages = {
        "inputs": torch.zeros(1, 3, 10, 20),
        "proposals": proposals,
        "pooled": torch.arange(3.0)[:, None].expand(3, 2048),
        "class_probs": torch.tensor([[0.6, 0.1, 0.3], [0.5, 0.05, 0.45], [0.1, 0.7, 0.2]]),
        "class_boxes": regressed[:, None, :].expand(3, 2, 4),
        "attr_probs": torch.eye(3),
    }
    out = model.regions(stages, (20, 40))
    assert out["object_ids"].tolist() == [1, 0, 0] and out["features"][:, 0].tolist() == [2.0, 0.0, 1.0]
    assert int(out["num_real"]) == num_real
    torch.testing.assert_close(out["boxes"], torch.tensor([[20.0, 0, 28, 8], [0, 0, 8, 8], third_box]))
