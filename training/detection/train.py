"""``python -m training.detector``: train the Faster R-CNN with attributes on a synthetic world, evaluate it.

    python -m training.world --out runs/world --images 3000 --seed 0
    python -m training.detector --world runs/world --out runs/detector            # train, save, evaluate
    python -m training.detector --world runs/world --out runs/detector --resume   # after an interruption
    python -m training.detector --world runs/world --out runs/detector --eval-only

Training reads the world's detection ground truth (``annotations/<split>.json``: pixel boxes, ``label_id``,
``attr_ids``) and images; classes are the world's shapes, attributes its colours, sizes and fills, each object
having one of each. The attribute head is trained as in bottom-up attention: a softmax over all attributes
whose loss is averaged over an object's ground-truth attributes (``lxmert.detection.frcnn.attribute_loss``).

The loop is plain: batch -> dict of losses -> sum -> backward -> clip -> AdamW step -> warmup + cosine
schedule. A non-finite loss stops the run. Every ``checkpoint_every`` steps the model, optimiser, schedule,
step and RNG state go to ``<work_dir>/checkpoint.pt`` (atomically); ``--resume`` continues from there and,
because the batch order is a function of (seed, step), a resumed run sees the same batches as an uninterrupted
one. At the end the detector is saved to ``--out`` (``Detector.save_pretrained``) and evaluated on
``--eval-split``: box AP@0.5 per class and attribute accuracy on matched boxes (``training.detection.evaluation``);
the report is printed and written as JSON to ``<work_dir>/eval_<split>.json``. The checkpoint holds tensors and
plain containers only and is read back with ``weights_only=True``: no code runs from it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lxmert.checkpoints import read_torch_file
from lxmert.config_cli import parse_config
from lxmert.detection import PRESETS, Detector, DetectorConfig, FasterRCNNWithAttributes, Regions, load_image
from lxmert.detection.files import read_vocab
from lxmert.detection.images import to_tensor
from lxmert.errors import UnreadableFileError
from lxmert.fileio import (
    atomic_write,
    atomic_write_text,
    read_json,
    read_json_object,
    remove_stale_temp_files,
)
from training.detection.evaluation import DetectionReport, ImageDetections, ImageTruth, evaluate
from training.world.scenes import COLOURS, FILLS, SIZES

CHECKPOINT = "checkpoint.pt"


@dataclass
class DetectorTrainConfig:
    world: str = field(
        default="runs/world", metadata={"help": "world directory written by python -m training.world"}
    )
    out: str = field(default="runs/detector", metadata={"help": "where the trained detector is saved"})
    work_dir: str = field(
        default="runs/detector-train", metadata={"help": "checkpoint, log and evaluation reports"}
    )
    preset: str = field(
        default="small",
        metadata={"help": "detector architecture (DetectorConfig preset)", "choices": sorted(PRESETS)},
    )
    detector_config: str = field(
        default="",
        metadata={"help": "JSON file of DetectorConfig fields that override the preset (empty: none)"},
    )
    train_splits: str = field(
        default="train,nominival", metadata={"help": "comma-separated world splits to train on"}
    )
    eval_split: str = field(default="test", metadata={"help": "held-out world split to evaluate on"})
    steps: int = field(default=3000, metadata={"help": "optimisation steps"})
    stop_after: int = field(
        default=0,
        metadata={
            "help": "stop and save after this many steps while the learning-rate schedule still spans "
            "--steps (a time-boxed run; 0: run all --steps)"
        },
    )
    batch_size: int = field(default=4, metadata={"help": "images per step"})
    lr: float = field(default=1e-3, metadata={"help": "peak AdamW learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=100, metadata={"help": "linear warmup steps before the cosine decay"})
    grad_clip: float = field(default=10.0, metadata={"help": "gradient norm clip"})
    checkpoint_every: int = field(default=200, metadata={"help": "steps between checkpoints"})
    log_every: int = field(default=25, metadata={"help": "steps between lines in <work_dir>/log.jsonl"})
    seed: int = field(default=0, metadata={"help": "seed of the initialisation and of the batch order"})
    num_threads: int = field(default=2, metadata={"help": "torch CPU threads"})
    device: str = field(default="cpu", metadata={"help": "torch device"})
    resume: bool = field(
        default=False,
        metadata={"help": "continue from <work_dir>/checkpoint.pt if there is one (else start from step 0)"},
    )
    eval_only: bool = field(default=False, metadata={"help": "only evaluate the detector saved at --out"})
    eval_images: int = field(
        default=0, metadata={"help": "evaluate on the first N images of the split (0: all)"}
    )
    eval_batch_size: int = field(default=8, metadata={"help": "images per detector call during evaluation"})
    half: bool = field(default=True, metadata={"help": "save the detector's weights in fp16"})

    def __post_init__(self) -> None:
        for name in (
            "steps",
            "batch_size",
            "checkpoint_every",
            "log_every",
            "num_threads",
            "eval_batch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


class WorldDetections:
    """Detection ground truth of some world splits: images and their boxes, classes and attributes.

    Args:
        world: the world directory.
        splits: split names with an ``annotations/<split>.json``.
    """

    def __init__(self, world: str | Path, splits: list[str]) -> None:
        self.world = Path(world)
        self.entries: list[dict[str, Any]] = []
        for split in splits:
            path = self.world / "annotations" / f"{split}.json"
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: is {self.world} a world with a {split!r} split?")
            self.entries.extend(read_json(path))
        if not self.entries:
            raise ValueError(f"no annotated images in splits {splits} of {self.world}")

    def __len__(self) -> int:
        return len(self.entries)

    def image_path(self, index: int) -> Path:
        return self.world / "images" / f"{self.entries[index]['img_id']}.png"

    def target(self, index: int) -> dict[str, torch.Tensor]:
        """Targets in the model's convention: labels and attributes shifted by one (0: background / none)."""
        objects = self.entries[index]["objects"]
        return {
            "boxes": torch.tensor([o["box"] for o in objects], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([o["label_id"] + 1 for o in objects], dtype=torch.int64),
            "attributes": _pad([[a + 1 for a in o["attr_ids"]] for o in objects]),
        }

    def truth(self, index: int) -> ImageTruth:
        objects = self.entries[index]["objects"]
        return ImageTruth(
            boxes=np.array([o["box"] for o in objects], dtype=np.float64).reshape(-1, 4),
            labels=np.array([o["label_id"] for o in objects], dtype=np.int64),
            attributes=[list(o["attr_ids"]) for o in objects],
        )


def _pad(rows: list[list[int]]) -> torch.Tensor:
    width = max((len(r) for r in rows), default=1)
    return torch.tensor([r + [-1] * (width - len(r)) for r in rows], dtype=torch.int64).reshape(
        len(rows), width
    )


def batch_indices(num_items: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The items of batch ``step``: consecutive slices of a per-epoch permutation seeded by (seed, epoch).

    A function of the step alone, so a resumed run draws exactly the batches the interrupted one would have.
    """
    per_epoch = max(1, num_items // batch_size)
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return order[position * batch_size : (position + 1) * batch_size].tolist()


def world_vocabularies(world: str | Path) -> tuple[list[str], list[str]]:
    world = Path(world)
    return read_vocab(world / "objects_vocab.txt"), read_vocab(world / "attributes_vocab.txt")


def attribute_groups(attributes_vocab: list[str]) -> dict[str, list[int]]:
    """The world's attribute factors as id lists: colour, size and fill."""
    return {
        name: [attributes_vocab.index(value) for value in values]
        for name, values in (("colour", COLOURS), ("size", SIZES), ("fill", FILLS))
    }


def _learning_rate_factor(cfg: DetectorTrainConfig) -> Any:
    def factor(step: int) -> float:
        warmup = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        progress = min(1.0, step / cfg.steps)
        return warmup * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


CHECKPOINT_KEYS = {"model", "optimizer", "schedule", "torch_rng", "step", "detector_config"}


def _read_checkpoint(path: Path, device: str) -> dict[str, Any]:
    try:
        state = read_torch_file(path, map_location=device)
        if not isinstance(state, dict) or not CHECKPOINT_KEYS <= state.keys():
            raise UnreadableFileError(path, "not a detector training checkpoint")
    except UnreadableFileError as err:
        raise UnreadableFileError(path, f"{err.reason}; remove it or start a new --work-dir") from err
    return state


def train(cfg: DetectorTrainConfig) -> Detector:
    """Train from scratch (or resume) and save the detector to ``cfg.out``; returns it."""
    torch.set_num_threads(cfg.num_threads)
    work_dir = Path(cfg.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    for directory in (work_dir, Path(cfg.out)):  # what a killed run's writes left
        remove_stale_temp_files(directory)
    objects_vocab, attributes_vocab = world_vocabularies(cfg.world)
    data = WorldDetections(cfg.world, cfg.train_splits.split(","))
    overrides = read_json_object(cfg.detector_config) if cfg.detector_config else {}
    detector_config = DetectorConfig.preset(
        cfg.preset, **overrides, num_classes=len(objects_vocab), num_attributes=len(attributes_vocab)
    )
    torch.manual_seed(cfg.seed)
    model = FasterRCNNWithAttributes(detector_config).to(cfg.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _learning_rate_factor(cfg))
    start = 0
    checkpoint_path = work_dir / CHECKPOINT
    if cfg.resume and not checkpoint_path.is_file():
        print(f"--resume: no checkpoint at {checkpoint_path} yet, starting from step 0")
    elif cfg.resume:
        state = _read_checkpoint(checkpoint_path, cfg.device)
        if state["detector_config"] != detector_config.to_dict():
            raise ValueError(
                f"{checkpoint_path} was trained with another detector config; start a new work_dir"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"].cpu())
        start = state["step"]

    model.train()
    log_path = work_dir / "log.jsonl"
    with (
        open(log_path, "a") as log,
        tqdm(total=cfg.steps, initial=start, desc="detector", dynamic_ncols=True) as bar,
    ):
        last = min(cfg.steps, cfg.stop_after) if cfg.stop_after else cfg.steps
        for step in range(start, last):
            items = batch_indices(len(data), cfg.batch_size, cfg.seed, step)
            images = [to_tensor(load_image(data.image_path(i)).image).to(cfg.device) for i in items]
            targets = [{k: v.to(cfg.device) for k, v in data.target(i).items()} for i in items]
            losses = model(images, targets)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"step {step}: non-finite loss { ({k: v.item() for k, v in losses.items()}) }"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if (step + 1) % cfg.log_every == 0:
                record = {"step": step + 1, "loss": loss.item(), "lr": schedule.get_last_lr()[0]}
                log.write(json.dumps(record | {k: round(v.item(), 5) for k, v in losses.items()}) + "\n")
                log.flush()
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == last:
                checkpoint = {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "step": step + 1,
                    "detector_config": detector_config.to_dict(),
                    "train_config": dataclasses.asdict(cfg),
                }
                atomic_write(checkpoint_path, lambda f, c=checkpoint: torch.save(c, f))
    detector = Detector(model, objects_vocab, attributes_vocab)
    detector.save_pretrained(cfg.out, half=cfg.half)
    return detector


def detections_of(regions_list: list[Regions]) -> Iterator[ImageDetections]:
    """The real detections (the first ``num_real`` rows) of each image's regions."""
    for regions in regions_list:
        real = slice(0, regions.num_real)
        yield ImageDetections(
            boxes=regions.boxes[real].numpy(),
            labels=regions.object_ids[real].numpy(),
            scores=regions.object_conf[real].numpy(),
            attr_probs=regions.attr_probs[real].numpy(),
        )


def evaluate_detector(detector: Detector, cfg: DetectorTrainConfig) -> DetectionReport:
    """Run the detector on the evaluation split and score its real detections against the ground truth."""
    data = WorldDetections(cfg.world, [cfg.eval_split])
    count = len(data) if cfg.eval_images == 0 else min(cfg.eval_images, len(data))
    pairs = []
    for start in tqdm(
        range(0, count, cfg.eval_batch_size), desc=f"eval {cfg.eval_split}", dynamic_ncols=True
    ):
        items = range(start, min(start + cfg.eval_batch_size, count))
        regions = detector([data.image_path(i) for i in items])
        pairs.extend(zip((data.truth(i) for i in items), detections_of(regions), strict=True))
    return evaluate(pairs, detector.objects_vocab, attribute_groups(detector.attributes_vocab))


def main(argv: list[str] | None = None) -> DetectionReport:
    cfg = parse_config(
        DetectorTrainConfig, argv, prog="python -m training.detector", doc=__doc__, title="detector training"
    )
    torch.set_num_threads(cfg.num_threads)
    if not cfg.eval_only:
        train(cfg)
    # Evaluate what is shipped: the saved (possibly fp16) weights, loaded back.
    detector = Detector.from_pretrained(cfg.out, device=cfg.device)
    report = evaluate_detector(detector, cfg)
    print(report.format())
    Path(cfg.work_dir).mkdir(parents=True, exist_ok=True)
    payload = dataclasses.asdict(report) | {
        "mean_ap": report.mean_ap,
        "detector": cfg.out,
        "split": cfg.eval_split,
    }
    atomic_write_text(
        Path(cfg.work_dir) / f"eval_{cfg.eval_split}.json", json.dumps(payload, indent=2) + "\n"
    )
    return report
