"""A saved detector read without building it, and regions cached per image bytes and per weights."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import torch
from PIL import Image
from test_detection_model import tiny_detector

from lxmert.detection.files import (
    WEIGHTS_FILE,
    cached_regions_path,
    check_saved_detector,
    load_cached_regions,
    read_detector_config,
    save_cached_regions,
)


def png_bytes(seed: int) -> bytes:
    image = Image.new("RGB", (64, 48), (40 * seed % 255, 90, 160))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def saved(tmp_path):
    detector = tiny_detector()
    detector.save_pretrained(tmp_path / "detector")
    return detector, tmp_path / "detector"


def detect(detector, data: bytes):
    return detector.detect([detector.load_image(Image.open(io.BytesIO(data)))])[0]


def test_cached_regions_read_back_exactly(saved):
    detector, directory = saved
    data = png_bytes(1)
    regions = detect(detector, data)
    save_cached_regions(directory, data, regions)
    back = load_cached_regions(directory, data)
    assert back is not None
    for name in ("boxes", "features", "object_ids", "object_conf", "attr_probs"):
        assert torch.equal(getattr(back, name), getattr(regions, name)), name
    assert (back.image_height, back.image_width, back.num_real) == (48, 64, regions.num_real)


def test_other_bytes_have_no_cached_regions(saved):
    detector, directory = saved
    save_cached_regions(directory, png_bytes(1), detect(detector, png_bytes(1)))
    assert load_cached_regions(directory, png_bytes(2)) is None


def test_regions_of_other_weights_are_not_served(saved):
    detector, directory = saved
    data = png_bytes(1)
    save_cached_regions(directory, data, detect(detector, data))
    tiny_detector(seed=1).save_pretrained(directory)  # retrained in place: the cache file stays behind
    assert load_cached_regions(directory, data) is None


def test_a_damaged_cache_file_counts_as_absent(saved):
    detector, directory = saved
    data = png_bytes(1)
    path = save_cached_regions(directory, data, detect(detector, data))
    path.write_bytes(path.read_bytes()[:100])
    assert load_cached_regions(directory, data) is None
    assert cached_regions_path(directory, data) == path


def test_the_config_reads_without_torchvision(saved):
    _, directory = saved
    code = (
        "import sys; from lxmert.detection.files import read_detector_config; "
        f"print(read_detector_config({str(directory)!r}).num_regions); "
        "assert 'torchvision' not in sys.modules, 'torchvision was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == read_detector_config(directory).num_regions


def test_a_missing_file_is_named(saved):
    _, directory = saved
    (directory / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE):
        check_saved_detector(directory)
