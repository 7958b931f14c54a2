"""Object detection for LXMERT: Faster R-CNN with attributes, robust image input, fixed-count regions.

from lxmert.detection import Detector
detector = Detector.from_pretrained("assets/detector")
regions = detector(["photo.jpg"])[0]  # Regions: boxes, features, object/attribute labels, num_real
"""

from lxmert.detection.config import PRESETS, DetectorConfig
from lxmert.detection.detector import Detector
from lxmert.detection.frcnn import FasterRCNNWithAttributes
from lxmert.detection.images import (
    ImageError,
    ImageTooLargeError,
    LoadedImage,
    UnreadableImageError,
    load_image,
)
from lxmert.detection.regions import Regions
from lxmert.detection.selection import RegionChoice, select_regions

__all__ = [
    "PRESETS",
    "Detector",
    "DetectorConfig",
    "FasterRCNNWithAttributes",
    "ImageError",
    "ImageTooLargeError",
    "LoadedImage",
    "RegionChoice",
    "Regions",
    "UnreadableImageError",
    "load_image",
    "select_regions",
]
