"""The Regions output: box normalisation, top-1 attributes, the obj36 record, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lxmert.detection import Regions


def _regions(**overrides) -> Regions:
    values = dict(
        boxes=torch.tensor([[0.0, 0.0, 200.0, 100.0], [50.0, 25.0, 150.0, 75.0], [-1.0, 0.0, 201.0, 100.5]]),
        features=torch.arange(6, dtype=torch.float32).reshape(3, 2),
        object_ids=torch.tensor([4, 0, 2]),
        object_conf=torch.tensor([0.9, 0.5, 0.1]),
        attr_probs=torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.2, 0.2, 0.6]]),
        image_height=100,
        image_width=200,
        num_real=2,
    )
    return Regions(**{**values, **overrides})


def test_normalized_boxes_divide_by_width_and_height_and_clip() -> None:
    expected = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.25, 0.25, 0.75, 0.75], [0.0, 0.0, 1.0, 1.0]])
    assert torch.equal(_regions().normalized_boxes, expected)


def test_top1_attribute_and_its_confidence() -> None:
    regions = _regions()
    assert regions.attr_ids.tolist() == [1, 0, 2]
    assert regions.attr_conf.tolist() == pytest.approx([0.7, 0.5, 0.6])


def test_record_has_the_obj36_columns_and_dtypes() -> None:
    record = _regions().to_record("img_7")
    assert list(record) == [
        "img_id", "img_h", "img_w", "objects_id", "objects_conf", "attrs_id", "attrs_conf", "num_boxes",
        "boxes", "features",
    ]  # fmt: skip
    assert (record["img_id"], record["img_h"], record["img_w"], record["num_boxes"]) == ("img_7", 100, 200, 3)
    assert record["objects_id"].dtype == np.int64 and record["attrs_id"].dtype == np.int64
    assert record["boxes"].dtype == np.float32 and record["boxes"].shape == (3, 4)
    assert record["features"].dtype == np.float32 and record["features"].shape == (3, 2)
    assert record["attrs_id"].tolist() == [1, 0, 2]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(features=torch.zeros(2, 2)), "features has 2 rows"),
        (dict(boxes=torch.zeros(3, 5)), r"boxes must be \(R, 4\)"),
        (dict(num_real=4), "num_real 4"),
        (dict(image_width=0), "image size"),
    ],
)
def test_inconsistent_fields_are_rejected(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _regions(**overrides)


def test_first_keeps_the_best_rows_and_counts_only_the_real_ones_among_them() -> None:
    regions = _regions()
    first = regions.first(1)
    assert len(first) == 1 and first.num_real == 1
    assert torch.equal(first.boxes, regions.boxes[:1]) and torch.equal(
        first.attr_probs, regions.attr_probs[:1]
    )
    assert (first.image_height, first.image_width) == (100, 200)
    assert regions.first(3).num_real == 2  # the third row is fill
    assert len(regions.first(0)) == 1 and len(regions.first(99)) == 3  # clamped to [1, R]
