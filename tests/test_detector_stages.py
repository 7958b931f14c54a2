"""benchmarks.detector_stages: every stage is timed, and the stages' FLOPs add up to the whole network's."""

from __future__ import annotations

import torch
from PIL import Image

from benchmarks.detector_stages import STAGES, stage_flops, stage_seconds
from benchmarks.mfu import count_flops
from lxmert.detection.images import LoadedImage, to_tensor
from tests.test_extract_precision import small_caffe_detector


def _image() -> LoadedImage:
    pixels = (torch.rand(90, 120, 3, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    image = Image.fromarray(pixels.numpy())
    return LoadedImage(image=image, original_size=image.size, name="noise")


def test_stage_flops_partition_the_networks_count_and_every_stage_is_timed() -> None:
    detector = small_caffe_detector()
    loaded = _image()
    flops = stage_flops(detector, loaded)
    assert set(flops) == set(STAGES)
    with torch.inference_mode():
        total = count_flops(lambda: detector.model([to_tensor(loaded.image)]))
    assert sum(flops.values()) == total > 0
    for stage in ("res1 (stem)", "res2", "res3", "res4", "RPN + proposal NMS", "res5", "attribute head"):
        assert flops[stage] > 0, stage
    assert flops["res5"] > flops["res4"]  # res5 runs on every proposal

    seconds = stage_seconds(detector, loaded, "fp32")
    assert set(seconds) == set(STAGES)
    assert all(wall >= 0 and cpu >= 0 for wall, cpu in seconds.values()), seconds
