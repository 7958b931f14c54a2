"""What the detector returns for one image: a fixed number of regions, named as in obj36 files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class Regions:
    """The R regions of one image (R = ``num_regions``, 36 in the paper).

    Rows are ordered by selection score, best first. The first ``num_real`` rows are detections (they survived
    per-class NMS with a confidence of at least the threshold); the rest fill the fixed count the way the
    authors' extractor does, with the next best proposals: real boxes with real features, only less confident.

    Attributes:
        boxes: (R, 4) float32 pixel (x1, y1, x2, y2) in the original image.
        features: (R, D) float32 RoI features (D = 2048 for BUTD, else the detector's ``feature_dim``).
        object_ids: (R,) int64 index into the objects vocabulary (background excluded).
        object_conf: (R,) float32 probability of that object.
        attr_probs: (R, A) float32 attribute probabilities (softmax over "no attribute" + A, then dropped).
        image_height: original image height in pixels.
        image_width: original image width in pixels.
        num_real: how many leading rows are detections rather than fill.
    """

    boxes: torch.Tensor
    features: torch.Tensor
    object_ids: torch.Tensor
    object_conf: torch.Tensor
    attr_probs: torch.Tensor
    image_height: int
    image_width: int
    num_real: int

    def __post_init__(self) -> None:
        count = self.boxes.shape[0]
        if self.boxes.shape != (count, 4):
            raise ValueError(f"boxes must be (R, 4), got {tuple(self.boxes.shape)}")
        for name in ("features", "object_ids", "object_conf", "attr_probs"):
            if getattr(self, name).shape[0] != count:
                raise ValueError(f"{name} has {getattr(self, name).shape[0]} rows, boxes has {count}")
        if not 0 <= self.num_real <= count:
            raise ValueError(f"num_real {self.num_real} outside [0, {count}]")
        if self.image_height < 1 or self.image_width < 1:
            raise ValueError(f"image size must be positive, got {self.image_width}x{self.image_height}")

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def first(self, count: int) -> Regions:
        """The ``count`` best regions (at least one, at most all): rows are ordered best first."""
        count = max(1, min(count, len(self)))
        return Regions(
            boxes=self.boxes[:count],
            features=self.features[:count],
            object_ids=self.object_ids[:count],
            object_conf=self.object_conf[:count],
            attr_probs=self.attr_probs[:count],
            image_height=self.image_height,
            image_width=self.image_width,
            num_real=min(self.num_real, count),
        )

    @property
    def normalized_boxes(self) -> torch.Tensor:
        """(R, 4) boxes divided by (w, h, w, h) and clipped to [0, 1]: LXMERT's ``visual_pos``."""
        size = self.boxes.new_tensor(
            [self.image_width, self.image_height, self.image_width, self.image_height]
        )
        return (self.boxes / size).clamp_(0.0, 1.0)

    @property
    def attr_ids(self) -> torch.Tensor:
        """(R,) int64 top-1 attribute per region (the one attribute the feature files keep)."""
        return self.attr_probs.argmax(dim=-1)

    @property
    def attr_conf(self) -> torch.Tensor:
        """(R,) float32 probability of the top-1 attribute."""
        return self.attr_probs.max(dim=-1).values

    @classmethod
    def from_record(cls, record: dict[str, Any], num_attributes: int) -> Regions:
        """The regions of one obj36 row (a TSV row or ``FeatureStore.get``), the inverse of :meth:`to_record`.

        A row keeps only each region's top attribute and its confidence, so ``attr_probs`` holds that confidence
        at that attribute and zeros elsewhere: ``attr_ids`` and ``attr_conf`` give the row's values back (where
        the confidence is positive, as in the authors' rows). Every row counts as a detection (``num_real`` = its
        box count): the file does not say which rows were fill.

        Args:
            record: ``img_h``, ``img_w``, ``boxes`` (pixels), ``features``, ``objects_id``, ``objects_conf``,
                ``attrs_id`` and ``attrs_conf``.
            num_attributes: the size of the attribute vocabulary the ids index (400 for Visual Genome).

        Raises:
            ValueError: an attribute id outside ``[0, num_attributes)``, or columns that disagree in length.
        """
        attrs = torch.tensor(np.asarray(record["attrs_id"]), dtype=torch.int64)
        if attrs.numel() and (attrs.min() < 0 or attrs.max() >= num_attributes):
            raise ValueError(
                f"image {record.get('img_id', '?')}: attribute ids {attrs.min()}..{attrs.max()} outside "
                f"a vocabulary of {num_attributes}"
            )
        attr_probs = torch.zeros(len(attrs), num_attributes)
        attr_probs[torch.arange(len(attrs)), attrs] = torch.tensor(
            np.asarray(record["attrs_conf"]), dtype=torch.float32
        )
        return cls(
            boxes=torch.tensor(np.asarray(record["boxes"]), dtype=torch.float32),
            features=torch.tensor(np.asarray(record["features"]), dtype=torch.float32),
            object_ids=torch.tensor(np.asarray(record["objects_id"]), dtype=torch.int64),
            object_conf=torch.tensor(np.asarray(record["objects_conf"]), dtype=torch.float32),
            attr_probs=attr_probs,
            image_height=int(record["img_h"]),
            image_width=int(record["img_w"]),
            num_real=len(attrs),
        )

    def to_record(self, img_id: str) -> dict[str, Any]:
        """One row of the authors' obj36 feature file: TSV column names, numpy arrays in the TSV dtypes."""
        return {
            "img_id": img_id,
            "img_h": self.image_height,
            "img_w": self.image_width,
            "objects_id": self.object_ids.numpy().astype(np.int64),
            "objects_conf": self.object_conf.numpy().astype(np.float32),
            "attrs_id": self.attr_ids.numpy().astype(np.int64),
            "attrs_conf": self.attr_conf.numpy().astype(np.float32),
            "num_boxes": len(self),
            "boxes": self.boxes.numpy().astype(np.float32),
            "features": self.features.numpy().astype(np.float32),
        }


__all__ = ["Regions"]
