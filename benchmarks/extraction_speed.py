"""Extraction speed: seconds per image of the detector, end to end (image on disk -> Regions) and model only.

    python -m benchmarks.extraction_speed --detector runs/detector --images 64 --batch-sizes 1,8
    python -m benchmarks.extraction_speed --preset vg --photos tests/data/coco --images 5 --batch-sizes 1 \
        --precisions float32,bfloat16         # BUTD R101-C4 (the caffe network), random weights, 600 px

Images are synthetic-world scenes written as PNG to a temporary folder, or with ``--photos`` the photos of a
folder (taken in name order, repeated up to ``--images``). For every device (the CPU, and the GPU when one is
present), precision (``training.extract --precision``) and batch size, one warm-up batch runs first; then all images
are timed, once through ``Detector.__call__`` on the files (decoding and image checks included) and once through
``Detector.detect`` on images already loaded. Random weights give the same cost as trained ones up to the number of
proposals that survive NMS, so ``--preset`` measures a layout without a trained checkpoint; ``vg`` (the published
weights' network) resizes every image to a 600-pixel shorter side and has the Visual Genome vocabularies.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from lxmert.detection import PRESETS, Detector, DetectorConfig
from lxmert.detection.convert import VG_VOCAB_DIR
from lxmert.detection.detector import build_network
from lxmert.detection.files import ATTRIBUTES_FILE, OBJECTS_FILE, read_vocab
from training.detection.extraction import PRECISIONS, precision_context
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


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.extraction_speed", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--detector", default="", help="saved detector directory (empty: random weights of --preset)"
    )
    parser.add_argument(
        "--preset", default="small", choices=sorted(PRESETS), help="layout when --detector is empty"
    )
    parser.add_argument("--images", type=int, default=32, help="images timed per setting")
    parser.add_argument("--photos", default="", help="time the images of this folder instead of scenes")
    parser.add_argument(
        "--precisions", default="float32", help=f"comma-separated, of {list(PRECISIONS)} (caffe network only)"
    )
    parser.add_argument("--image-size", type=int, default=256, help="side of the square synthetic scenes")
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--num-threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--cpu-only", action="store_true", help="skip the GPU even when one is present")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenes")
    parser.add_argument("--out", default="", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.num_threads)

    detector = build_detector(args.detector, args.preset)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu_only else [])
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    precisions = args.precisions.split(",")
    unknown = sorted(set(precisions) - set(PRECISIONS))
    if unknown:
        parser.error(f"unknown precisions {unknown}; choose from {list(PRECISIONS)}")
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        if args.photos:
            photos = sorted(p for p in Path(args.photos).iterdir() if p.is_file())
            if not photos:
                parser.error(f"{args.photos} holds no files")
            paths = [photos[index % len(photos)] for index in range(args.images)]
        else:
            paths = write_scenes(Path(scratch), args.images, args.image_size, args.seed)
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
                    context = precision_context(detector, precision)
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
                        "images": args.images,
                        "image_size": "photos" if args.photos else args.image_size,
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
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
