"""``python -m training.extract``: detect regions in a folder of images into a feature store (and obj36 TSV).

    python -m training.extract --images photos/ --out runs/features               # the shipped detector
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

Many processes, on one node or several, share the work under ``torchrun`` (CPU processes meet over gloo, GPU ones
over nccl, each on ``cuda:LOCAL_RANK``)::

    torchrun --nproc-per-node 8 -m training.extract --images coco/ --out runs/coco_features \
        --detector runs/vg-detector --precision bf16

Process ``r`` of ``W`` takes every ``W``-th image of the sorted list from the ``r``-th on, and writes them to its
own store ``OUT/shards/rank-r-of-W`` (as resumable as the single store). When every process is done, rank 0 copies
the shards' rows into ``OUT`` in image-id order, so the store is the one a single process would have written (same
ids, rows and order); then it deletes the shards. Every step commits as it goes: rerunning the same command after a
crash, at any point, finishes the job without extracting an image twice. Rerunning with another number of
processes extracts again what the old shards held but did not merge yet. On several nodes ``OUT`` must be a folder
every node sees. ``--max-images`` counts per process.

``--precision bf16`` (CPUs with native bf16, GPUs) or ``fp16`` (GPUs) runs the convolutions and linear
layers of the caffe network under autocast (``Detector.autocast``); boxes, scores and the averaged features are computed in float32 from
their outputs. ``python -m benchmarks.extraction_drift`` measures what that changes against float32.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from PIL import Image
from tqdm import tqdm

from lxmert.config_cli import parse_config
from lxmert.data.store import FEATURE_DTYPES, MANIFEST, FeatureStore, FeatureStoreWriter, committed_ids
from lxmert.data.tsv import write_tsv
from lxmert.detection import Detector, ImageError
from lxmert.detection.detector import BACKENDS
from lxmert.fileio import atomic_write_bytes
from training.engine import distributed
from training.tasks.default_layout import DETECTOR

logger = logging.getLogger(__name__)

ORIGINAL_NAMES = "original_names.json"
SHARDS = "shards"
PRECISIONS = ("fp32", "bf16", "fp16")  # what Detector.autocast runs the caffe network in
# A process that finished its share waits this long for the slowest one (torch's default is minutes).
SHARD_WAIT = timedelta(hours=48)
MERGE_COMMIT_ROWS = 256  # rows copied from the shards per commit (a commit syncs every file of the store)


@dataclass
class ExtractConfig:
    images: str = field(metadata={"help": "folder of images (searched recursively) or a world directory"})
    out: str = field(metadata={"help": "feature store directory (created, or resumed if it exists)"})
    detector: str = field(
        default=DETECTOR,
        metadata={"help": "saved detector directory (default: the shipped synthetic-world one)"},
    )
    tsv: str = field(default="", metadata={"help": "also write the obj36 TSV to this path (empty: no TSV)"})
    batch_size: int = field(default=8, metadata={"help": "images per detector call"})
    max_images: int = field(
        default=0, metadata={"help": "try at most this many images not yet in the store, then stop (0: all)"}
    )
    feature_dtype: str = field(
        default="float32", metadata={"help": "dtype of the stored features", "choices": list(FEATURE_DTYPES)}
    )
    device: str = field(
        default="auto",
        metadata={"help": "auto (cuda:LOCAL_RANK when there is a GPU, else cpu), cpu, cuda[:N]"},
    )
    precision: str = field(
        default="fp32",
        metadata={
            "help": "what the caffe network computes in: fp32, bf16 (CPU with bf16, GPU), fp16 (GPU)",
            "choices": list(PRECISIONS),
        },
    )
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
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")


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


def shard_dir(out: str | Path, rank: int, world_size: int) -> Path:
    """The store process ``rank`` of ``world_size`` writes its share to."""
    return Path(out) / SHARDS / f"rank-{rank:05d}-of-{world_size:05d}"


def extract(cfg: ExtractConfig) -> ExtractionSummary:
    """Run the detector over ``cfg.images`` into the store at ``cfg.out``; see the module docstring.

    Under torchrun every process calls this; each returns the summary of the whole run.
    """
    joined = int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized()
    place = distributed.init_distributed(cfg.device, timeout=SHARD_WAIT)
    finished = False
    try:
        torch.set_num_threads(cfg.num_threads)
        detector = Detector.from_pretrained(cfg.detector, device=place.device, backend=cfg.backend)
        detector.autocast(cfg.precision)  # refused here, before any image, where it cannot run
        images = list_images(cfg.images)
        renamed = _write_original_names(cfg, images) if place.is_main else {}
        if place.world_size == 1:
            summary = _extract_single(cfg, detector, images, renamed)
        else:
            summary = _extract_sharded(cfg, detector, images, renamed, place.rank, place.world_size)
        finished = True
        return summary
    finally:
        if joined:
            # After a failure here the other processes may never reach the barrier: leave without waiting.
            distributed.cleanup(wait=finished)


def _writer(
    cfg: ExtractConfig, detector: Detector, path: str | Path, commit_every: int = 0
) -> FeatureStoreWriter:
    return FeatureStoreWriter(
        path,
        num_boxes=detector.config.num_regions,
        feature_dim=detector.config.feature_dim,
        feature_dtype=cfg.feature_dtype,
        commit_every=commit_every or cfg.batch_size,
    )


def _write_original_names(cfg: ExtractConfig, images: list[tuple[str, Path]]) -> dict[str, str]:
    root = list_root(cfg.images)
    renamed = {
        img_id: path.relative_to(root).as_posix()
        for img_id, path in images
        if img_id != path.relative_to(root).with_suffix("").as_posix()
    }
    if renamed:
        # ensure_ascii keeps undecodable bytes as \\udcXX escapes: the file's name is kept losslessly
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(Path(cfg.out) / ORIGINAL_NAMES, json.dumps(renamed, indent=1).encode())
    return renamed


def _extract_single(
    cfg: ExtractConfig,
    detector: Detector,
    images: list[tuple[str, Path]],
    renamed: dict[str, str],
) -> ExtractionSummary:
    if (Path(cfg.out) / SHARDS).exists():
        logger.warning(
            "%s holds shards of an unfinished torchrun extraction; one process does not read them (rerun under "
            "torchrun with the same number of processes to merge them) and extracts their images again",
            Path(cfg.out) / SHARDS,
        )
    writer = _writer(cfg, detector, cfg.out)
    pending = [(img_id, path) for img_id, path in images if not writer.has(img_id)]
    already_present = len(images) - len(pending)
    written, skipped = _extract_into(cfg, detector, pending, writer)
    remaining = sum(1 for img_id, _ in images if not writer.has(img_id) and img_id not in skipped)
    finalized = remaining == 0
    if finalized:
        _finish(cfg, writer)
    return ExtractionSummary(written, already_present, skipped, remaining, finalized, renamed)


def _extract_sharded(
    cfg: ExtractConfig,
    detector: Detector,
    images: list[tuple[str, Path]],
    renamed: dict[str, str],
    rank: int,
    world_size: int,
) -> ExtractionSummary:
    """This process's share into its shard; then rank 0 merges every shard into ``cfg.out``."""
    # Rank 0 creates (or checks and resumes) the merged store before anyone reads which rows it holds.
    merged = _writer(cfg, detector, cfg.out, commit_every=MERGE_COMMIT_ROWS) if rank == 0 else None
    distributed.barrier()
    in_merged = set(committed_ids(cfg.out))
    shard = _writer(cfg, detector, shard_dir(cfg.out, rank, world_size))
    share = [(img_id, path) for img_id, path in images[rank::world_size] if img_id not in in_merged]
    pending = [(img_id, path) for img_id, path in share if not shard.has(img_id)]
    written, skipped = _extract_into(cfg, detector, pending, shard)
    shard.finalize()  # readable by rank 0; a rerun reopens and resumes it all the same
    counts = distributed.all_gather_object((written, len(images[rank::world_size]) - len(pending), skipped))
    written = sum(count[0] for count in counts)
    already_present = sum(count[1] for count in counts)
    skipped = {img_id: reason for count in counts for img_id, reason in count[2].items()}
    remaining = 0
    if merged is not None:
        remaining = _merge_shards(cfg, merged, images, skipped, world_size)
    remaining = distributed.broadcast_object(remaining)
    return ExtractionSummary(written, already_present, skipped, remaining, remaining == 0, renamed)


def _merge_shards(
    cfg: ExtractConfig,
    merged: FeatureStoreWriter,
    images: list[tuple[str, Path]],
    skipped: dict[str, str],
    world_size: int,
) -> int:
    """Copy the shards' rows into ``merged`` in image-id order, finalize it if complete, delete the shards.

    Returns:
        How many images are neither in the merged store nor skipped (left for a rerun).
    """
    shards = [FeatureStore(shard_dir(cfg.out, rank, world_size)) for rank in range(world_size)]
    for img_id, _ in tqdm(images, desc="merge", unit="image", dynamic_ncols=True, mininterval=10):
        if merged.has(img_id):
            continue
        for store in shards:
            row = store.row_of(img_id)
            if row is not None:
                merged.add(store.get_row(row))
                break
    merged.commit()
    # Every shard row is committed in the merged store: the shards are spent. Each manifest goes first, so that a
    # crash while deleting leaves a folder the next run starts afresh, never a store missing some of its files.
    for rank in range(world_size):
        (shard_dir(cfg.out, rank, world_size) / MANIFEST).unlink()
    shutil.rmtree(Path(cfg.out) / SHARDS)
    remaining = sum(1 for img_id, _ in images if not merged.has(img_id) and img_id not in skipped)
    if remaining == 0:
        _finish(cfg, merged)
    return remaining


def _finish(cfg: ExtractConfig, writer: FeatureStoreWriter) -> None:
    """Finalize the complete store and write the TSV if one is asked for."""
    store = writer.finalize()
    if cfg.tsv:
        write_tsv(cfg.tsv, (store.get_row(row) for row in range(len(store))))


def _extract_into(
    cfg: ExtractConfig,
    detector: Detector,
    pending: list[tuple[str, Path]],
    writer: FeatureStoreWriter,
) -> tuple[int, dict[str, str]]:
    """Detect ``pending`` (up to ``cfg.max_images`` of them) into ``writer``, committing every batch.

    Returns:
        How many images were written, and the skipped ones (id -> reason).
    """
    if cfg.max_images:
        pending = pending[: cfg.max_images]
    paths = dict(pending)
    skipped: dict[str, str] = {}
    written = 0
    for batch_items in _batches(pending, cfg.batch_size):
        batch = []
        for img_id, path in batch_items:
            try:
                batch.append((img_id, detector.load_image(path)))
            except ImageError as err:
                skipped[img_id] = _skip(str(err))
        detected = _detected(detector, batch, skipped, cfg.precision)
        for img_id, record in detected:
            try:
                writer.add(record)
                written += 1
            except ValueError as err:  # the store refuses the row
                skipped[img_id] = _skip(f"{paths[img_id]}: {err}")
        writer.commit()  # the batch is on disk before the next one starts
    return written, skipped


def _batches(items: list, size: int) -> Iterator[list]:
    for start in tqdm(range(0, len(items), size), desc="extract", unit="batch", dynamic_ncols=True):
        yield items[start : start + size]


def _detected(
    detector: Detector, batch: list, skipped: dict[str, str], precision: str
) -> list[tuple[str, dict]]:
    """(image id, store record) of each loaded image. If the batch fails, its images go one at a time, and one
    that fails alone is skipped with its error: one bad image never costs the others."""
    try:
        return _records(batch, detector.detect([loaded for _, loaded in batch], precision=precision))
    except Exception as err:  # whatever the model raises, the run goes on; the culprit is named and counted
        if len(batch) > 1:
            return [record for item in batch for record in _detected(detector, [item], skipped, precision)]
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
    cfg = parse_config(
        ExtractConfig, argv, prog="python -m training.extract", doc=__doc__, title="extraction"
    )
    summary = extract(cfg)
    if int(os.environ.get("RANK", 0)) != 0:
        return summary  # rank 0 reports for the whole run
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
