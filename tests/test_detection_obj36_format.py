"""``training.extract --tsv`` with the caffe network writes the authors' obj36 rows, field by field.

tests/data/obj36/COCO_train2014_000000573195.tsv.gz is the authors' own row for that photo, unchanged, from
``../shared/data/coco-obj36-sample/train2014_obj36.tsv`` (the Caffe detector with the real weights). The project's
row comes from random weights (``butd_layouts.golden_detector``), so values are not compared; what is: the column
count and order, the image id and size, the number of boxes, each array's dtype, byte length and shape, the box
convention (absolute pixels x1, y1, x2, y2 inside the image), the id ranges, probabilities in [0, 1], and
non-negative features. Both rows must also read back through ``lxmert.data.tsv.iter_tsv``.

Three differences found, and left as they are: the authors' sample ends lines with ``\\n`` where ``write_tsv``
writes csv's ``\\r\\n`` (csv readers take both); Caffe clips boxes to the last pixel of the resized image
(x2 at most 499.5 on a 500-pixel-wide photo) where detectron2 and this network clip to its edge (at most 500); and
the authors' script (airsplay/lxmert, ``data/mscoco_imgfeat/extract_coco_image.py``) stores each region's RPN
proposal and runs the per-class NMS on the proposals, where this network, as py-bottom-up-attention and the
transformers demo, runs NMS on the boxes regressed from the proposals and stores its label's regressed box
(:mod:`lxmert.detection.selection`); ``region_selection="per_class_proposals"`` does as the authors' script
(``tests/test_detection_butd.py`` holds it on a hand-worked case). Features are pooled from the proposal in all of
them. Values are not compared here, so these differences are written down, not tested.
"""

from __future__ import annotations

import base64
import gzip
from pathlib import Path

import numpy as np
import pytest
from butd_layouts import golden_detector
from PIL import Image

from lxmert.data.tsv import FIELDNAMES, iter_tsv
from training.detection.extraction import ExtractConfig, extract

DATA = Path(__file__).parent / "data"
PHOTO = DATA / "coco" / "COCO_train2014_000000573195.jpg"
DTYPES = {
    "objects_id": np.int64,
    "objects_conf": np.float32,
    "attrs_id": np.int64,
    "attrs_conf": np.float32,
    "boxes": np.float32,
    "features": np.float32,
}


def _fields(line: bytes) -> dict[str, bytes]:
    values = line.rstrip(b"\r\n").split(b"\t")
    assert len(values) == len(FIELDNAMES), f"{len(values)} columns"
    return dict(zip(FIELDNAMES, values, strict=True))


def _check_row(row: dict[str, bytes], width: int, height: int) -> dict[str, np.ndarray]:
    """Decode one raw row by the obj36 conventions, checking them; returns the arrays."""
    num_boxes = int(row["num_boxes"])
    arrays = {name: np.frombuffer(base64.b64decode(row[name]), dtype=dtype) for name, dtype in DTYPES.items()}
    for name in ("objects_id", "objects_conf", "attrs_id", "attrs_conf"):
        assert arrays[name].shape == (num_boxes,), name
    boxes = arrays["boxes"].reshape(num_boxes, 4)
    features = arrays["features"].reshape(num_boxes, 2048)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all(), "boxes start inside the image"
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all(), "boxes end inside the image"
    assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all(), "x1 <= x2, y1 <= y2"
    assert boxes[:, 2].max() > width / 2 and boxes[:, 3].max() > height / 2, "absolute pixels, not 0..1"
    assert ((arrays["objects_id"] >= 0) & (arrays["objects_id"] < 1600)).all()
    assert ((arrays["attrs_id"] >= 0) & (arrays["attrs_id"] < 400)).all()
    for name in ("objects_conf", "attrs_conf"):
        assert ((arrays[name] >= 0) & (arrays[name] <= 1)).all(), name
    assert (features >= 0).all(), "res5 features are post-ReLU means"
    return arrays


@pytest.mark.slow  # writes a 260 MB detector directory and runs ResNet-101 at 600 px
def test_extract_tsv_rows_have_the_authors_fields_order_dtypes_and_box_convention(tmp_path: Path) -> None:
    authors = gzip.decompress((DATA / "obj36" / f"{PHOTO.stem}.tsv.gz").read_bytes())
    golden_detector(tmp_path).save_pretrained(tmp_path / "detector")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / PHOTO.name).write_bytes(PHOTO.read_bytes())
    summary = extract(
        ExtractConfig(
            images=str(tmp_path / "photos"),
            out=str(tmp_path / "store"),
            detector=str(tmp_path / "detector"),
            tsv=str(tmp_path / "ours.tsv"),
        )
    )
    assert summary.finalized
    ours = (tmp_path / "ours.tsv").read_bytes()
    assert ours.count(b"\n") == authors.count(b"\n") == 1

    theirs_row, our_row = _fields(authors), _fields(ours)
    width, height = Image.open(PHOTO).size
    for name in ("img_id", "img_h", "img_w", "num_boxes"):
        assert our_row[name] == theirs_row[name], name
    assert (int(theirs_row["img_h"]), int(theirs_row["img_w"])) == (height, width)
    for name in DTYPES:
        assert len(our_row[name]) == len(theirs_row[name]), f"{name}: base64 length"
    _check_row(theirs_row, width, height)
    _check_row(our_row, width, height)

    (tmp_path / "theirs.tsv").write_bytes(authors)
    for path in (tmp_path / "theirs.tsv", tmp_path / "ours.tsv"):
        (row,) = list(iter_tsv(path))
        assert row["features"].shape == (36, 2048) and row["features"].dtype == np.float32
        assert row["boxes"].shape == (36, 4) and row["objects_id"].dtype == np.int64
