"""Faster R-CNN with attributes: losses, gradients, fixed-count outputs, BUTD layout, save/load, images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from lxmert.detection import Detector, DetectorConfig, FasterRCNNWithAttributes, UnreadableImageError
from lxmert.detection.frcnn import attribute_loss


def tiny_config(**overrides) -> DetectorConfig:
    values = dict(
        small_channels=(8, 16),
        feature_dim=32,
        num_classes=3,
        num_attributes=4,
        min_size=64,
        max_size=128,
        anchor_sizes=(16, 32),
        rpn_pre_nms_top_n_test=200,
        rpn_post_nms_top_n_test=50,
        rpn_pre_nms_top_n_train=200,
        rpn_post_nms_top_n_train=50,
        roi_batch_size_per_image=32,
        class_embed_dim=8,
        attr_hidden_dim=16,
        num_regions=10,
    )
    return DetectorConfig.preset("small", **{**values, **overrides})


def tiny_detector(seed: int = 0, **overrides) -> Detector:
    torch.manual_seed(seed)
    config = tiny_config(**overrides)
    return Detector(
        FasterRCNNWithAttributes(config),
        [f"object{i}" for i in range(config.num_classes)],
        [f"attribute{i}" for i in range(config.num_attributes)],
    )


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {
            "boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0], [30.0, 30.0, 60.0, 60.0]]),
            "labels": torch.tensor([1, 3]),
            "attributes": torch.tensor([[1, 3], [4, -1]]),
        },
        {  # an image with nothing in it
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),
            "attributes": torch.zeros(0, 1, dtype=torch.int64),
        },
    ]


def test_training_returns_finite_named_losses_and_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    model = FasterRCNNWithAttributes(tiny_config()).train()
    losses = model([torch.rand(3, 64, 64), torch.rand(3, 64, 64)], _targets())
    assert set(losses) == {
        "loss_objectness",
        "loss_rpn_box_reg",
        "loss_classifier",
        "loss_box_reg",
        "loss_attribute",
    }
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without a gradient: {missing}"


def test_attribute_loss_averages_over_each_regions_attributes() -> None:
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3], [0.2, 0.2, 0.6]]))
    targets = torch.tensor([[1, 2], [2, -1]])
    expected = (
        (-torch.log(torch.tensor(0.6)) - torch.log(torch.tensor(0.3))) / 2 - torch.log(torch.tensor(0.6))
    ) / 2
    assert attribute_loss(logits, targets) == pytest.approx(expected.item(), rel=1e-6)
    assert attribute_loss(logits[:0], targets[:0]) == 0.0


def test_inference_returns_exactly_num_regions_rows_inside_the_image() -> None:
    detector = tiny_detector()
    regions = detector(
        [Image.new("RGB", (90, 60), (30, 120, 200)), Image.new("RGB", (40, 70), (200, 20, 20))]
    )
    for region, (width, height) in zip(regions, [(90, 60), (40, 70)], strict=True):
        assert len(region) == 10
        assert region.features.shape == (10, 32) and region.attr_probs.shape == (10, 4)
        assert (region.image_width, region.image_height) == (width, height)
        assert (region.boxes[:, 0] >= 0).all() and (region.boxes[:, 2] <= width + 1e-4).all()
        assert (region.boxes[:, 1] >= 0).all() and (region.boxes[:, 3] <= height + 1e-4).all()
        assert region.normalized_boxes.min() >= 0 and region.normalized_boxes.max() <= 1
        assert region.object_ids.max() < 3 and region.attr_ids.max() < 4
        assert 0 <= region.num_real <= 10
        assert torch.isfinite(region.features).all()


def test_image_with_nothing_in_it_gets_fill_regions_not_zero_rows() -> None:
    detector = tiny_detector()
    predictor = detector.model.roi_heads.box_predictor
    with torch.no_grad():  # a classifier certain that everything is background
        predictor.cls_score.weight.zero_()
        predictor.cls_score.bias.copy_(torch.tensor([10.0, 0.0, 0.0, 0.0]))
    regions = detector([Image.new("RGB", (64, 64), (128, 128, 128))])[0]
    assert regions.num_real == 0
    assert len(regions) == 10
    widths = regions.boxes[:, 2] - regions.boxes[:, 0]
    heights = regions.boxes[:, 3] - regions.boxes[:, 1]
    assert (widths > 0).all() and (heights > 0).all(), "fill rows must be real boxes"
    assert len({tuple(b) for b in regions.boxes.tolist()}) > 1, "fill rows must be distinct proposals"


def test_too_few_proposals_are_topped_up_with_grid_boxes() -> None:
    detector = tiny_detector(rpn_post_nms_top_n_test=3, num_regions=8)
    with torch.no_grad():  # no box regression: regions keep their proposals' boxes
        detector.model.roi_heads.box_predictor.bbox_pred.weight.zero_()
    regions = detector([Image.new("RGB", (64, 64), (10, 200, 10))])[0]
    assert len(regions) == 8
    assert any(box == [0.0, 0.0, 64.0, 64.0] for box in regions.boxes.tolist()), (
        "the whole-image box is one of them"
    )


def test_an_images_regions_do_not_depend_on_its_batch_mates() -> None:
    detector = tiny_detector()
    generator = torch.Generator().manual_seed(1)
    sizes = [
        (64, 64),
        (64, 64),
        (48, 80),
        (64, 64),
        (30, 50),
    ]  # (H, W): padding a batch would touch the odd ones
    images = [
        Image.fromarray((torch.rand(h, w, 3, generator=generator) * 255).byte().numpy()) for h, w in sizes
    ]
    batched = detector(images)
    for image, together in zip(images, batched, strict=True):
        alone = detector([image])[0]
        torch.testing.assert_close(alone.features, together.features, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(alone.boxes, together.boxes, atol=1e-4, rtol=1e-5)
        assert alone.num_real == together.num_real
        assert torch.equal(alone.object_ids, together.object_ids)


def test_downscaled_input_reports_boxes_in_original_pixels(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (400, 200), (250, 250, 0)).save(path)
    detector = tiny_detector(max_image_side=100)
    regions = detector([path])[0]
    assert (regions.image_width, regions.image_height) == (400, 200)
    assert regions.boxes[:, 2].max() <= 400 + 1e-3 and regions.boxes[:, 3].max() <= 200 + 1e-3
    assert regions.boxes[:, 2].max() > 100, "boxes must be scaled back from the 100x50 working copy"


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(UnreadableImageError, match="broken.jpg"):
        tiny_detector()([path])


@pytest.mark.parametrize("half", [False, True])
def test_save_and_load_round_trip(tmp_path: Path, half: bool) -> None:
    detector = tiny_detector()
    detector.save_pretrained(tmp_path / "detector", half=half)
    assert sorted(p.name for p in (tmp_path / "detector").iterdir()) == [
        "attributes_vocab.txt", "config.json", "model.safetensors", "objects_vocab.txt",
    ]  # fmt: skip
    loaded = Detector.from_pretrained(tmp_path / "detector")
    assert loaded.config == detector.config
    assert (
        loaded.objects_vocab == detector.objects_vocab
        and loaded.attributes_vocab == detector.attributes_vocab
    )
    image = Image.new("RGB", (64, 48), (200, 100, 50))
    expected, actual = detector([image])[0], loaded([image])[0]
    if half:
        # This random detector's scores nearly tie, so fp16 weights change which boxes it keeps (so do 1 and 2
        # threads: boxes summing to 1187 and 1097 px here), and its features strayed up to 2.2e-2. The round
        # trip is checked where it is exact: every weight comes back as the fp16 rounding of the original.
        original = detector.model.state_dict()
        for name, value in loaded.model.state_dict().items():
            rounded = original[name].half().float() if value.is_floating_point() else original[name]
            assert value.dtype == original[name].dtype and torch.equal(value, rounded), name
        assert torch.isfinite(actual.features).all() and actual.features.shape == expected.features.shape
    else:  # the same weights and the same computation in one process: bit-identical (measured at 1 and 2 threads)
        assert torch.equal(actual.features, expected.features)
        assert torch.equal(actual.boxes, expected.boxes)


def test_loading_reports_what_is_missing_or_wrong(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        Detector.from_pretrained(tmp_path)
    detector = tiny_detector()
    detector.save_pretrained(tmp_path / "d")
    (tmp_path / "d" / "config.json").write_text(tiny_config(feature_dim=16).to_json())
    with pytest.raises(ValueError, match="does not fit"):
        Detector.from_pretrained(tmp_path / "d")


def test_vocabulary_sizes_must_match_the_config() -> None:
    with pytest.raises(ValueError, match="2 object names for num_classes=3"):
        Detector(FasterRCNNWithAttributes(tiny_config()), ["a", "b"], ["w", "x", "y", "z"])


def test_config_json_round_trip_and_validation(tmp_path: Path) -> None:
    config = DetectorConfig.preset("small", num_classes=10)
    config.to_json_file(tmp_path / "c.json")
    assert DetectorConfig.from_json_file(tmp_path / "c.json") == config
    with pytest.raises(ValueError, match="no fields"):
        DetectorConfig.from_dict({"num_classes": 3, "colour": "red"})
    with pytest.raises(ValueError, match="2048"):
        DetectorConfig(feature_dim=256)
    with pytest.raises(ValueError, match="backbone"):
        DetectorConfig(backbone="vgg16")


@pytest.mark.slow  # builds a 60M-parameter ResNet-101 detector
def test_butd_resnet101_c4_layout_builds_without_downloads_and_has_the_paper_shapes() -> None:
    torch.manual_seed(0)
    # A tiny input and two regions: the res5 head costs ~0.8 GFLOP per region.
    config = DetectorConfig.preset(
        "butd", min_size=64, max_size=64, rpn_pre_nms_top_n_test=20, rpn_post_nms_top_n_test=2, num_regions=2
    )
    model = FasterRCNNWithAttributes(config).eval()
    predictor = model.roi_heads.box_predictor
    assert predictor.cls_score.out_features == 1601 and predictor.bbox_pred.out_features == 1601 * 4
    assert predictor.cls_embed.embedding_dim == 256
    assert predictor.attr_linear1.in_features == 2048 + 256 and predictor.attr_linear1.out_features == 512
    assert predictor.attr_linear2.out_features == 401
    assert model.backbone.out_channels == 1024
    assert model.roi_heads.box_roi_pool.output_size == (14, 14)
    with torch.inference_mode():
        features = model.backbone(torch.zeros(1, 3, 64, 64))
        assert features.shape == (1, 1024, 4, 4), "res4 is stride 16"
        output = model([torch.rand(3, 64, 48)])[0]
    assert output["features"].shape == (2, 2048)
    assert output["boxes"].shape == (2, 4)
    assert output["attr_probs"].shape == (2, 400)
    assert output["object_ids"].max() < 1600
