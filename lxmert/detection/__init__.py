"""Object detection for LXMERT: Faster R-CNN with attributes, robust image input, fixed-count regions.

from lxmert.detection import Detector
detector = Detector.from_pretrained("assets/detector")
regions = detector(["photo.jpg"])[0]  # Regions: boxes, features, object/attribute labels, num_real

The published Visual Genome detector (bottom-up attention) becomes such a directory with
``python -m lxmert.detection.convert faster_rcnn_from_caffe_attr.pkl --out runs/vg-detector``.

The network and region selection import torchvision, which takes seconds; they load on first use, so that code
reading only regions, images or configs (the app with cached regions, analysis scripts) starts without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lxmert.detection.config import PRESETS, DetectorConfig
from lxmert.detection.images import (
    ImageError,
    ImageShapeError,
    ImageTooLargeError,
    LoadedImage,
    UnreadableImageError,
    load_image,
)
from lxmert.detection.regions import Regions

if TYPE_CHECKING:
    from lxmert.detection.butd import CaffeFasterRCNN
    from lxmert.detection.detector import Detector
    from lxmert.detection.frcnn import FasterRCNNWithAttributes
    from lxmert.detection.selection import RegionChoice, select_regions

_NEEDS_TORCHVISION = {
    "CaffeFasterRCNN": "lxmert.detection.butd",
    "Detector": "lxmert.detection.detector",
    "FasterRCNNWithAttributes": "lxmert.detection.frcnn",
    "RegionChoice": "lxmert.detection.selection",
    "select_regions": "lxmert.detection.selection",
}


def __getattr__(name: str) -> Any:
    if name in _NEEDS_TORCHVISION:
        return getattr(importlib.import_module(_NEEDS_TORCHVISION[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PRESETS",
    "CaffeFasterRCNN",
    "Detector",
    "DetectorConfig",
    "FasterRCNNWithAttributes",
    "ImageError",
    "ImageShapeError",
    "ImageTooLargeError",
    "LoadedImage",
    "RegionChoice",
    "Regions",
    "UnreadableImageError",
    "load_image",
    "select_regions",
]
