"""``python -m training.extract``: detect regions in a folder of images into a feature store (and obj36 TSV).

    python -m training.extract --images photos/ --out runs/features --detector runs/detector
    python -m training.extract --images runs/world --out runs/world_features --tsv runs/world_obj36.tsv

``--images`` is a folder (searched recursively for any format Pillow opens) or a world directory (its
``images/``). An image's id is its path relative to the folder without the extension, so a world's images keep
the ids its annotations use. Images go through the detector in batches; each batch is committed to the store
before the next starts, so an interrupted run loses at most one batch, and rerunning the same command skips
every image already in the store (``FeatureStoreWriter.has``): no image is extracted twice or lost. Files that
cannot be read, or are larger than the detector's limit, are reported by name and skipped (a rerun tries them
again).

The store is finalised (made readable) only once every image is in it or was skipped; ``--max-images`` stops a
run early, leaving it resumable. The obj36 TSV, if asked for, is written from the finished store.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from lxmert.detection import Detector, ImageError
from lxmert.detection.detector import BACKENDS
from training.config_cli import add_dataclass_arguments, dataclass_from_args
from training.data.store import FEATURE_DTYPES, FeatureStoreWriter
from training.data.tsv import write_tsv

logger = logging.getLogger(__name__)


@dataclass
class ExtractConfig:
    images: str = field(metadata={"help": "folder of images (searched recursively) or a world directory"})
    out: str = field(metadata={"help": "feature store directory (created, or resumed if it exists)"})
    detector: str = field(default="runs/detector", metadata={"help": "saved detector directory"})
    tsv: str = field(default="", metadata={"help": "also write the obj36 TSV to this path (empty: no TSV)"})
    batch_size: int = field(default=8, metadata={"help": "images per detector call"})
    max_images: int = field(
        default=0, metadata={"help": "try at most this many images not yet in the store, then stop (0: all)"}
    )
    feature_dtype: str = field(
        default="float32", metadata={"help": "dtype of the stored features", "choices": list(FEATURE_DTYPES)}
    )
    device: str = field(default="cpu", metadata={"help": "torch device"})
    backend: str = field(
        default="torch",
        metadata={
            "help": "detector backend: torch, or detectron2 (network=caffe; needs detectron2)",
            "choices": list(BACKENDS),
        },
    )
    num_threads: int = field(default=2, metadata={"help": "torch CPU threads"})

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_images < 0 or self.num_threads < 1:
            raise ValueError("batch_size and num_threads must be >= 1 and max_images >= 0")


@dataclass
class ExtractionSummary:
    """What a run did. ``skipped`` maps image id to reason; ``remaining`` counts images left for a rerun."""

    written: int
    already_present: int
    skipped: dict[str, str]
    remaining: int
    finalized: bool


def list_images(folder: str | Path) -> list[tuple[str, Path]]:
    """(image id, path) of every file with an image extension under ``folder``, sorted by id.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: two files would get the same id (``a.png`` and ``a.jpg``).
    """
    root = Path(folder)
    if (root / "world.json").is_file():
        root = root / "images"
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of images")
    extensions = {ext for ext, kind in Image.registered_extensions().items() if kind in Image.OPEN}
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if not (path.is_file() and path.suffix.lower() in extensions):
            continue
        img_id = path.relative_to(root).with_suffix("").as_posix()
        if img_id in found:
            raise ValueError(f"{found[img_id]} and {path} would both get the image id {img_id!r}; rename one")
        found[img_id] = path
    return sorted(found.items())


def extract(cfg: ExtractConfig) -> ExtractionSummary:
    """Run the detector over ``cfg.images`` into the store at ``cfg.out``; see the module docstring."""
    torch.set_num_threads(cfg.num_threads)
    detector = Detector.from_pretrained(cfg.detector, device=cfg.device, backend=cfg.backend)
    images = list_images(cfg.images)
    writer = FeatureStoreWriter(
        cfg.out,
        num_boxes=detector.config.num_regions,
        feature_dim=detector.config.feature_dim,
        feature_dtype=cfg.feature_dtype,
        commit_every=cfg.batch_size,
    )
    pending = [(img_id, path) for img_id, path in images if not writer.has(img_id)]
    already_present = len(images) - len(pending)
    if cfg.max_images:
        pending = pending[: cfg.max_images]
    skipped: dict[str, str] = {}
    written = 0
    for start in tqdm(
        range(0, len(pending), cfg.batch_size), desc="extract", unit="batch", dynamic_ncols=True
    ):
        batch = []
        for img_id, path in pending[start : start + cfg.batch_size]:
            try:
                batch.append((img_id, detector.load_image(path)))
            except ImageError as err:
                logger.warning("skipping %s", err)
                skipped[img_id] = str(err)
        for (img_id, _), regions in zip(batch, detector.detect([loaded for _, loaded in batch]), strict=True):
            writer.add(regions.to_record(img_id))
        writer.commit()  # the batch is on disk before the next one starts
        written += len(batch)
    remaining = sum(1 for img_id, _ in images if not writer.has(img_id) and img_id not in skipped)
    finalized = remaining == 0
    if finalized:
        store = writer.finalize()
        if cfg.tsv:
            write_tsv(cfg.tsv, (store.get_row(row) for row in range(len(store))))
    return ExtractionSummary(written, already_present, skipped, remaining, finalized)


def main(argv: list[str] | None = None) -> ExtractionSummary:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = argparse.ArgumentParser(prog="python -m training.extract", description=__doc__.split("\n\n")[0])
    add_dataclass_arguments(parser, ExtractConfig, title="extraction")
    cfg = dataclass_from_args(ExtractConfig, parser.parse_args(argv))
    summary = extract(cfg)
    print(f"{summary.written} images extracted, {summary.already_present} already in {cfg.out}")
    for img_id, reason in summary.skipped.items():
        print(f"skipped {img_id}: {reason}")
    if summary.finalized:
        print(f"store {cfg.out} is complete" + (f"; TSV written to {cfg.tsv}" if cfg.tsv else ""))
    else:
        print(f"{summary.remaining} images left: rerun the same command to continue")
    return summary


if __name__ == "__main__":
    main()
