"""Feature drift of reduced-precision extraction: the caffe network under autocast against float32.

    python -m benchmarks.extraction_drift                          # bf16 on this CPU, the five COCO photos
    python -m benchmarks.extraction_drift --device cuda --precisions bf16,fp16

The detector is the parity tests' BUTD network with the seeded random weights (``tests/butd_layouts.py``, 1600
classes, 400 attributes, 60 proposals), on the photos of ``tests/data/coco/``. Per photo and precision, two things
are compared with the float32 run:

- *same regions*: the float32 run's proposals pooled again under autocast (backbone, RoIPool and res5 in reduced
  precision), so the numbers are the arithmetic's drift alone: max abs difference of the 2048-d features and the
  largest relative difference ``|f - f32| / |f32|`` (L2 norms) of a region;
- *extracted regions*: what ``training.extract --precision`` stores. A float32 region is matched when the reduced
  precision run has a region of the same object label with every box coordinate within 1 px; over the matched
  ones: the largest box difference (px), how many keep their attribute label, and feature differences as above.
  Also how many of the 36 rows keep their place and label: rows are sorted by score, so near-ties reorder them.
  A region whose class score sits near a tie, or near a threshold, can change; random weights make more
  near-ties than trained ones (their attribute scores, for one, are nearly uniform over 401 columns).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lxmert.config_cli import add_dataclass_arguments, command_parser, dataclass_from_args
from lxmert.detection import Detector
from lxmert.detection.images import to_tensor
from lxmert.fileio import atomic_write_text
from tests.butd_layouts import golden_detector
from training.detection.extraction import PRECISIONS

PHOTOS = Path(__file__).resolve().parents[1] / "tests" / "data" / "coco"


def relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """The largest row-wise ``|a - e| / |e|`` (L2 norms)."""
    if not len(expected):
        return 0.0
    return float(((actual - expected).norm(dim=-1) / expected.norm(dim=-1).clamp(min=1e-12)).max())


def same_region_drift(detector: Detector, image: torch.Tensor, precision: str) -> dict[str, float]:
    """Features of float32's proposals, pooled under ``precision`` against float32 (see the module docstring)."""
    model = detector.model
    with torch.inference_mode():
        stages = model.stages(image)
        with detector.autocast(precision):
            features = model.backbone(stages["inputs"])
            pooled = model.roi_heads.pooled_features(features, stages["proposals"])
    return {
        "same_regions_feature_max_abs": float((pooled - stages["pooled"]).abs().max()),
        "same_regions_feature_max_rel": relative(pooled, stages["pooled"]),
    }


def extracted_drift(detector: Detector, photo: Path, precision: str) -> dict[str, float]:
    """Regions as ``training.extract`` stores them, under ``precision`` against float32."""
    loaded = detector.load_image(photo)
    expected = detector.detect([loaded])[0]
    with detector.autocast(precision):
        actual = detector.detect([loaded])[0]
    # Each float32 region's counterpart: the closest box (largest coordinate difference) of the same label.
    box_diff = (expected.boxes[:, None] - actual.boxes[None]).abs().amax(dim=2)
    box_diff = box_diff.masked_fill(expected.object_ids[:, None] != actual.object_ids[None], float("inf"))
    closest, partner = box_diff.min(dim=1)
    matched = closest <= 1.0
    ours, theirs = expected.features[matched], actual.features[partner[matched]]
    same_attribute = expected.attr_probs[matched].argmax(1) == actual.attr_probs[partner[matched]].argmax(1)
    return {
        "rows": len(expected.boxes),
        "rows_in_same_order_with_same_label": int((actual.object_ids == expected.object_ids).sum()),
        "rows_matched": int(matched.sum()),
        "matched_same_attribute": int(same_attribute.sum()),
        "matched_box_max_px": float(closest[matched].max()) if matched.any() else 0.0,
        "matched_feature_max_abs": float((ours - theirs).abs().max()) if matched.any() else 0.0,
        "matched_feature_max_rel": relative(theirs, ours),
        "feature_abs_scale": float(expected.features.abs().max()),
    }


@dataclass
class DriftConfig:
    """The flags of ``python -m benchmarks.extraction_drift``."""

    device: str = field(default="cpu", metadata={"help": "cpu, cuda or cuda:N"})
    precisions: str = field(default="bf16", metadata={"help": "comma-separated: bf16, fp16"})
    photos: str = field(default=str(PHOTOS), metadata={"help": "folder of .jpg photos"})
    num_threads: int = field(default=2, metadata={"help": "torch CPU threads"})
    out: str = field(default="", metadata={"help": "also write the results as JSON here"})

    @property
    def precision_list(self) -> list[str]:
        return self.precisions.split(",")


def parse_args(argv: list[str] | None = None) -> DriftConfig:
    """The config of a command line; an unknown precision is a usage error."""
    parser = command_parser("python -m benchmarks.extraction_drift", __doc__)
    add_dataclass_arguments(parser, DriftConfig, "extraction drift")
    cfg = dataclass_from_args(DriftConfig, parser.parse_args(argv))
    unknown = sorted(set(cfg.precision_list) - set(PRECISIONS) - {"fp32"})
    if unknown:
        parser.error(f"unknown precisions {unknown}; choose from {sorted(PRECISIONS)}")
    return cfg


def main(argv: list[str] | None = None) -> list[dict]:
    cfg = parse_args(argv)
    torch.set_num_threads(cfg.num_threads)
    precisions = cfg.precision_list
    with tempfile.TemporaryDirectory() as scratch:
        detector = golden_detector(scratch).to(cfg.device)
    results = []
    for photo in sorted(Path(cfg.photos).glob("*.jpg")):
        image = to_tensor(detector.load_image(photo).image).to(cfg.device)
        for precision in precisions:
            result = {"photo": photo.name, "precision": precision, "device": str(detector.device)}
            result |= same_region_drift(detector, image, precision)
            result |= extracted_drift(detector, photo, precision)
            results.append(result)
            print(json.dumps(result))
    for precision in precisions:
        rows = [r for r in results if r["precision"] == precision]

        def total(key: str, rows: list[dict] = rows) -> int:
            return sum(r[key] for r in rows)

        print(
            f"{precision} on {rows[0]['device']} over {len(rows)} photos: same regions: features max abs "
            f"{max(r['same_regions_feature_max_abs'] for r in rows):.3g}, max rel "
            f"{max(r['same_regions_feature_max_rel'] for r in rows):.3g}; extracted: "
            f"{total('rows_matched')}/{total('rows')} float32 regions have one of the same label within 1 px "
            f"(boxes within {max(r['matched_box_max_px'] for r in rows):.3g} px, same attribute "
            f"{total('matched_same_attribute')}, features max abs "
            f"{max(r['matched_feature_max_abs'] for r in rows):.3g} of largest |feature| "
            f"{max(r['feature_abs_scale'] for r in rows):.3g}, max rel "
            f"{max(r['matched_feature_max_rel'] for r in rows):.3g}); "
            f"{total('rows_in_same_order_with_same_label')} rows keep their place and label; "
            f"load average {os.getloadavg()[0]:.1f}"
        )
    if cfg.out:
        atomic_write_text(cfg.out, json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
