"""Extraction speed: seconds per image of the detector, end to end (image on disk -> Regions) and model only.

    python -m benchmarks.extraction_speed --detector runs/detector --images 64 --batch-sizes 1,8
    python -m benchmarks.extraction_speed --preset vg --photos tests/data/coco --images 5 --batch-sizes 1 \
        --precisions fp32,bf16         # BUTD R101-C4 (the caffe network), random weights, 600 px
    python -m benchmarks.extraction_speed --preset vg --photos tests/data/coco --images 3 --batch-sizes 1 \
        --precisions fp32,bf16 --cpu-only --stages      # and where the time goes, stage by stage

Images are synthetic-world scenes written as PNG to a temporary folder, or with ``--photos`` the photos of a
folder (taken in name order, repeated up to ``--images``). For every device (the CPU, and the GPU when one is
present), precision (``training.extract --precision``) and batch size, one warm-up batch runs first; then all images
are timed, once through ``Detector.__call__`` on the files (decoding and image checks included) and once through
``Detector.detect`` on images already loaded. Random weights give the same cost as trained ones up to the number of
proposals that survive NMS, so ``--preset`` measures a layout without a trained checkpoint; ``vg`` (the published
weights' network) resizes every image to a 600-pixel shorter side and has the Visual Genome vocabularies.
``--stages`` then times the caffe network on the CPU stage by stage on the first image, with each stage's FLOPs and
fraction of the CPU's measured peak (:mod:`benchmarks.detector_stages`).
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks.detector_stages import profile
from lxmert.config_cli import add_dataclass_arguments, command_parser, dataclass_from_args
from lxmert.detection import PRESETS, Detector, DetectorConfig
from lxmert.detection.convert import VG_VOCAB_DIR
from lxmert.detection.detector import build_network
from lxmert.detection.files import ATTRIBUTES_FILE, OBJECTS_FILE, read_vocab
from lxmert.detection.images import LoadedImage
from lxmert.errors import run_cli
from lxmert.fileio import atomic_write_text
from training.detection.extraction import PRECISIONS
from training.world.scenes import ATTRIBUTE_LABELS, OBJECT_LABELS, render_scene, sample_scene


def build_detector(directory: str, preset: str) -> Detector:
    """The saved detector at ``directory``, or a random-weight ``preset``: the caffe network with the Visual
    Genome vocabularies, the torchvision ones with the world's."""
    if directory:
        return Detector.from_pretrained(directory)
    torch.manual_seed(0)
    if DetectorConfig.preset(preset).network == "caffe":
        objects, attributes = (
            read_vocab(VG_VOCAB_DIR / OBJECTS_FILE),
            read_vocab(VG_VOCAB_DIR / ATTRIBUTES_FILE),
        )
    else:
        objects, attributes = list(OBJECT_LABELS), list(ATTRIBUTE_LABELS)
    config = DetectorConfig.preset(preset, num_classes=len(objects), num_attributes=len(attributes))
    return Detector(build_network(config), objects, attributes)


def write_scenes(folder: Path, count: int, size: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = folder / f"scene_{index:04d}.png"
        render_scene(sample_scene(rng, size=size)).save(path)
        paths.append(path)
    return paths


def seconds_per_image(
    run: Callable[[Sequence], object], items: Sequence, batch_size: int, device: str
) -> tuple[float, float]:
    """Wall time and this process's CPU time per item of running ``run`` over ``items`` in batches.

    One warm-up batch runs first. CPU time is the number to compare on a shared machine: wall time there
    depends on what else runs (the load average is reported beside it).
    """

    def synchronize() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    run(items[:batch_size])
    synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    for offset in range(0, len(items), batch_size):
        run(items[offset : offset + batch_size])
    synchronize()
    return (time.perf_counter() - wall) / len(items), (time.process_time() - cpu) / len(items)


def stage_profile(detector: Detector, loaded: LoadedImage, precisions: list[str], repeats: int) -> list[dict]:
    """The stage-by-stage rows of :func:`benchmarks.detector_stages.profile` on the CPU, for the precisions this
    detector runs there; none for the torchvision network, whose modules are not the caffe network's."""
    if detector.config.network != "caffe":
        print(f"--stages: the caffe network only, not network={detector.config.network!r}")
        return []
    detector.to("cpu")
    runnable = []
    for precision in precisions:
        refusal = detector.precision_refusal(precision)
        if refusal:
            print(f"--stages {precision}: not measured ({refusal})")
        else:
            runnable.append(precision)
    return [{"device": "cpu", **row} for row in profile(detector, loaded, runnable, repeats)]


def photo_files(folder: str) -> list[Path]:
    """The files of ``folder``, in name order."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file())


@dataclass
class ExtractionSpeedConfig:
    """The flags of ``python -m benchmarks.extraction_speed``."""

    detector: str = field(
        default="", metadata={"help": "saved detector directory (empty: random weights of --preset)"}
    )
    preset: str = field(
        default="small", metadata={"help": "layout when --detector is empty", "choices": sorted(PRESETS)}
    )
    images: int = field(default=32, metadata={"help": "images timed per setting"})
    photos: str = field(default="", metadata={"help": "time the images of this folder instead of scenes"})
    precisions: str = field(
        default="fp32", metadata={"help": f"comma-separated, of {list(PRECISIONS)} (caffe network only)"}
    )
    image_size: int = field(default=256, metadata={"help": "side of the square synthetic scenes"})
    batch_sizes: str = field(default="1,8", metadata={"help": "comma-separated batch sizes"})
    num_threads: int = field(default=2, metadata={"help": "torch CPU threads"})
    cpu_only: bool = field(default=False, metadata={"help": "skip the GPU even when one is present"})
    seed: int = field(default=0, metadata={"help": "seed of the scenes"})
    out: str = field(default="", metadata={"help": "also write the results as JSON here"})
    stages: bool = field(
        default=False,
        metadata={
            "help": "also time the caffe network stage by stage on the CPU (benchmarks.detector_stages)"
        },
    )
    stage_repeats: int = field(default=3, metadata={"help": "runs per precision of --stages (medians)"})

    @property
    def precision_list(self) -> list[str]:
        return self.precisions.split(",")

    @property
    def batch_size_list(self) -> list[int]:
        return [int(b) for b in self.batch_sizes.split(",")]


def parse_args(argv: list[str] | None = None) -> ExtractionSpeedConfig:
    """The config of a command line; an unknown precision or an empty ``--photos`` folder is a usage error."""
    parser = command_parser("python -m benchmarks.extraction_speed", __doc__)
    add_dataclass_arguments(parser, ExtractionSpeedConfig, "extraction speed")
    cfg = dataclass_from_args(ExtractionSpeedConfig, parser.parse_args(argv))
    unknown = sorted(set(cfg.precision_list) - set(PRECISIONS))
    if unknown:
        parser.error(f"unknown precisions {unknown}; choose from {list(PRECISIONS)}")
    if cfg.photos and not photo_files(cfg.photos):
        parser.error(f"{cfg.photos} holds no files")
    return cfg


def main(argv: list[str] | None = None) -> list[dict]:
    cfg = parse_args(argv)
    torch.set_num_threads(cfg.num_threads)

    detector = build_detector(cfg.detector, cfg.preset)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not cfg.cpu_only else [])
    batch_sizes, precisions = cfg.batch_size_list, cfg.precision_list
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        if cfg.photos:
            photos = photo_files(cfg.photos)
            paths = [photos[index % len(photos)] for index in range(cfg.images)]
        else:
            paths = write_scenes(Path(scratch), cfg.images, cfg.image_size, cfg.seed)
        loaded = [detector.load_image(path) for path in paths]
        for device in devices:
            detector.to(device)
            name = (
                torch.cuda.get_device_name()
                if device == "cuda"
                else platform.processor() or platform.machine()
            )
            for precision, batch_size in itertools.product(precisions, batch_sizes):
                try:
                    context = detector.autocast(precision)
                except ValueError as err:
                    print(f"{device:>4} ({name}) {precision}: not measured ({err})")
                    continue
                load_average = os.getloadavg()[0]
                with context:
                    end_to_end, end_to_end_cpu = seconds_per_image(detector, paths, batch_size, device)
                    model_only, model_only_cpu = seconds_per_image(
                        detector.detect, loaded, batch_size, device
                    )
                results.append(
                    {
                        "device": device,
                        "device_name": name,
                        "threads": torch.get_num_threads(),
                        "precision": precision,
                        "batch_size": batch_size,
                        "images": cfg.images,
                        "image_size": "photos" if cfg.photos else cfg.image_size,
                        "network": detector.config.network,
                        "backbone": detector.config.backbone,
                        "min_size": detector.config.min_size,
                        "regions": detector.config.num_regions,
                        "seconds_per_image_end_to_end": round(end_to_end, 5),
                        "seconds_per_image_model_only": round(model_only, 5),
                        "cpu_seconds_per_image_end_to_end": round(end_to_end_cpu, 5),
                        "cpu_seconds_per_image_model_only": round(model_only_cpu, 5),
                        "load_average": round(load_average, 2),
                    }
                )
                print(
                    f"{device:>4} ({name}) {detector.config.network} {detector.config.backbone} {precision} "
                    f"batch {batch_size:>2}: end to end {end_to_end * 1000:7.1f} ms/image wall "
                    f"({1 / end_to_end:6.2f} images/s), {end_to_end_cpu * 1000:7.1f} ms CPU; model only "
                    f"{model_only * 1000:7.1f} ms wall ({1 / model_only:6.2f} images/s), "
                    f"{model_only_cpu * 1000:7.1f} ms CPU; load average {load_average:.1f}"
                )
    if cfg.stages:
        results += stage_profile(detector, loaded[0], precisions, cfg.stage_repeats)
    if cfg.out:
        atomic_write_text(cfg.out, json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    run_cli(main)  # a refused or unreadable file: one line, no traceback
