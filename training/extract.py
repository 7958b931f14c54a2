"""``python -m training.extract``: detect regions in a folder of images into a feature store (and obj36 TSV).

    python -m training.extract --images photos/ --out runs/features --detector runs/detector
    python -m training.extract --images runs/world --out runs/world_features --tsv runs/world_obj36.tsv

``--images`` is a folder (searched recursively for any format Pillow opens) or a world directory (its
``images/``). An image's id is its path relative to the folder without the extension, so a world's images keep
the ids its annotations use. Images go through the detector in batches; each batch is committed to the store
before the next starts, so an interrupted run loses at most one batch, and rerunning the same command skips
every image already in the store (``FeatureStoreWriter.has``): no image is extracted twice or lost. A file that
fails (unreadable, above the detector's limits, too thin, or anything the detector or the store refuses) is
reported by name in one line, counted and skipped, and never costs the rest of its batch; a rerun tries it again.

A file name the store cannot hold as an id (bytes that are not UTF-8, a line break) gets an escaped id, ``\\xe9``
for such a byte, ``\\n`` for a line break; ``original_names.json`` in the store maps each such id to the file's
real relative path (JSON keeps the undecodable bytes as ``\\udcXX`` escapes: ``os.fsencode`` gives them back).

The store is finalised (made readable) only once every image is in it or was skipped; ``--max-images`` stops a
run early, leaving it resumable. The obj36 TSV, if asked for, is written from the finished store.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from lxmert.config_cli import add_dataclass_arguments, dataclass_from_args
from lxmert.data.store import FEATURE_DTYPES, FeatureStoreWriter
from lxmert.data.tsv import write_tsv
from lxmert.detection import Detector, ImageError
from lxmert.detection.detector import BACKENDS
from lxmert.fileio import atomic_write_bytes

logger = logging.getLogger(__name__)

ORIGINAL_NAMES = "original_names.json"


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
    """What a run did. ``skipped`` maps image id to a one-line reason naming the file; ``remaining`` counts images
    left for a rerun; ``renamed`` maps each escaped id to its file's relative path (see the module docstring)."""

    written: int
    already_present: int
    skipped: dict[str, str]
    remaining: int
    finalized: bool
    renamed: dict[str, str] = field(default_factory=dict)


def storable_id(name: str) -> str:
    """``name`` as an image id the store can hold: undecodable bytes as ``\\xNN``, line breaks as ``\\n``/``\\r``."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return text.replace("\r", "\\r").replace("\n", "\\n")


def list_root(folder: str | Path) -> Path:
    """The folder whose files are listed: ``folder`` itself, or a world directory's ``images/``."""
    root = Path(folder)
    return root / "images" if (root / "world.json").is_file() else root


def list_images(folder: str | Path) -> list[tuple[str, Path]]:
    """(image id, path) of every file with an image extension under ``folder``, sorted by id.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: two files would get the same id (``a.png`` and ``a.jpg``).
    """
    root = list_root(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of images")
    extensions = {ext for ext, kind in Image.registered_extensions().items() if kind in Image.OPEN}
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if not (path.is_file() and path.suffix.lower() in extensions):
            continue
        img_id = storable_id(path.relative_to(root).with_suffix("").as_posix())
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
    root = list_root(cfg.images)
    renamed = {
        img_id: path.relative_to(root).as_posix()
        for img_id, path in images
        if img_id != path.relative_to(root).with_suffix("").as_posix()
    }
    if renamed:
        # ensure_ascii keeps undecodable bytes as \\udcXX escapes: the file's name is kept losslessly
        atomic_write_bytes(Path(cfg.out) / ORIGINAL_NAMES, json.dumps(renamed, indent=1).encode())
    pending = [(img_id, path) for img_id, path in images if not writer.has(img_id)]
    already_present = len(images) - len(pending)
    if cfg.max_images:
        pending = pending[: cfg.max_images]
    paths = dict(pending)
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
                skipped[img_id] = _skip(str(err))
        for img_id, record in _detected(detector, batch, skipped):
            try:
                writer.add(record)
                written += 1
            except ValueError as err:  # the store refuses the row
                skipped[img_id] = _skip(f"{paths[img_id]}: {err}")
        writer.commit()  # the batch is on disk before the next one starts
    remaining = sum(1 for img_id, _ in images if not writer.has(img_id) and img_id not in skipped)
    finalized = remaining == 0
    if finalized:
        store = writer.finalize()
        if cfg.tsv:
            write_tsv(cfg.tsv, (store.get_row(row) for row in range(len(store))))
    return ExtractionSummary(written, already_present, skipped, remaining, finalized, renamed)


def _detected(detector: Detector, batch: list, skipped: dict[str, str]) -> list[tuple[str, dict]]:
    """(image id, store record) of each loaded image. If the batch fails, its images go one at a time, and one
    that fails alone is skipped with its error: one bad image never costs the others."""
    try:
        return _records(batch, detector.detect([loaded for _, loaded in batch]))
    except Exception as err:  # whatever the model raises, the run goes on; the culprit is named and counted
        if len(batch) > 1:
            return [record for item in batch for record in _detected(detector, [item], skipped)]
        img_id, loaded = batch[0]
        skipped[img_id] = _skip(f"{loaded.name}: detection failed ({type(err).__name__}: {err})")
        return []


def _records(batch: list, regions: list) -> list[tuple[str, dict]]:
    return [(img_id, found.to_record(img_id)) for (img_id, _), found in zip(batch, regions, strict=True)]


def _skip(reason: str) -> str:
    """One line for the log and the summary."""
    line = " ".join(reason.split())
    logger.warning("skipping %s", line)
    return line


def main(argv: list[str] | None = None) -> ExtractionSummary:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = argparse.ArgumentParser(prog="python -m training.extract", description=__doc__.split("\n\n")[0])
    add_dataclass_arguments(parser, ExtractConfig, title="extraction")
    cfg = dataclass_from_args(ExtractConfig, parser.parse_args(argv))
    summary = extract(cfg)
    print(
        f"{summary.written} images extracted, {summary.already_present} already in {cfg.out}, "
        f"{len(summary.skipped)} skipped"
    )
    for img_id, reason in summary.skipped.items():
        print(f"skipped {img_id}: {reason}")
    if summary.renamed:
        print(f"{len(summary.renamed)} file names stored as escaped ids; {ORIGINAL_NAMES} maps them back")
    if summary.finalized:
        print(f"store {cfg.out} is complete" + (f"; TSV written to {cfg.tsv}" if cfg.tsv else ""))
    else:
        print(f"{summary.remaining} images left: rerun the same command to continue")
    return summary


if __name__ == "__main__":
    main()
