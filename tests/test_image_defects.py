"""The image defects of issue 22, one test each: thin images, EXIF read twice, non-UTF-8 names, lost batches."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lxmert.data.store import FeatureStore
from lxmert.detection import Detector, ImageError, load_image
from lxmert.detection.images import ImageTooLargeError, UnreadableImageError, decode_bytes
from training.detection.extraction import ORIGINAL_NAMES, ExtractConfig, extract

SHIPPED_DETECTOR = Path(__file__).resolve().parents[1] / "assets" / "default" / "detector"


def _good_images(folder: Path, count: int) -> None:
    generator = np.random.default_rng(1)
    for index in range(count):
        Image.fromarray(generator.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(
            folder / f"good{index}.png"
        )


@pytest.mark.parametrize("size", [(1, 5000), (5000, 1), (2, 1025)])
def test_thin_images_are_refused_with_their_ratio_not_crashed_on(size: tuple[int, int]) -> None:
    detector = Detector.from_pretrained(SHIPPED_DETECTOR)  # max_size 512: 1:256 still leaves two pixels
    ratio = max(size) / min(size)
    with pytest.raises(ImageError, match=f"1:{ratio:.0f}") as caught:
        detector([Image.new("RGB", size, (90, 90, 90))])
    assert "aspect ratio" in str(caught.value)


def test_the_thinnest_allowed_image_is_detected() -> None:
    detector = Detector.from_pretrained(SHIPPED_DETECTOR)
    for size in [(2, 512), (512, 2), (17, 4352), (1, 1)]:  # 1:256 exactly; 17x4352 is downscaled to 16x4096
        regions = detector([Image.new("RGB", size, (90, 90, 90))])[0]
        assert (regions.image_width, regions.image_height) == size
        assert len(regions) == detector.config.num_regions


def test_garbage_exif_is_read_once_and_not_carried_along() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 200, 30)).save(buffer, "JPEG", exif=b"Exif\x00\x00garbage garbage")
    loaded = load_image(Image.open(io.BytesIO(buffer.getvalue())))
    assert loaded.image.size == (32, 24)
    assert "exif" not in loaded.image.info
    again = load_image(loaded.image)  # what the app did with the decoded upload
    assert again.image.size == (32, 24)


def test_errors_name_what_the_caller_calls_the_image() -> None:
    with pytest.raises(ImageError, match=r"^upload\.png: "):
        load_image(b"not an image", name="upload.png")


def test_extract_stores_names_that_are_not_utf8_and_keeps_the_original(
    tmp_path: Path, detector_dir: Path
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    _good_images(images, 2)
    odd = os.fsencode(images) + b"/caf\xe9.png"  # Latin-1 "é": not valid UTF-8
    Image.new("RGB", (40, 30), (5, 90, 200)).save(odd.decode("utf-8", "surrogateescape"))
    summary = extract(
        ExtractConfig(images=str(images), out=str(tmp_path / "store"), detector=str(detector_dir))
    )
    assert summary.finalized and summary.written == 3 and not summary.skipped
    store = FeatureStore(tmp_path / "store")
    assert sorted(store.ids) == ["caf\\xe9", "good0", "good1"]
    assert store.get("caf\\xe9")["img_w"] == 40
    assert summary.renamed == {"caf\\xe9": "caf\udce9.png"}
    names = json.loads((tmp_path / "store" / ORIGINAL_NAMES).read_text(encoding="ascii"))
    assert names == summary.renamed
    assert os.fsencode(images / names["caf\\xe9"]) == odd  # the original name, losslessly


def test_extract_skips_a_thin_image_and_keeps_the_rest_of_its_batch(
    tmp_path: Path, detector_dir: Path
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    _good_images(images, 3)
    Image.new("L", (1, 5000), 128).save(images / "line.png")
    cfg = ExtractConfig(
        images=str(images), out=str(tmp_path / "store"), detector=str(detector_dir), batch_size=8
    )
    summary = extract(cfg)
    assert summary.written == 3 and list(summary.skipped) == ["line"]
    assert "1:5000" in summary.skipped["line"]
    assert summary.finalized
    assert sorted(FeatureStore(tmp_path / "store").ids) == ["good0", "good1", "good2"]
    rerun = extract(cfg)  # the finished store stays finished; the thin image is reported again
    assert rerun.written == 0 and rerun.already_present == 3 and list(rerun.skipped) == ["line"]


def test_extract_skips_an_image_the_detector_fails_on_and_keeps_the_batch(
    tmp_path: Path, detector_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    _good_images(images, 3)
    Image.new("RGB", (77, 33), (1, 2, 3)).save(images / "cursed.png")
    detect = Detector.detect

    def fail_on_cursed(self, loaded, **kwargs):
        if any(image.original_size == (77, 33) for image in loaded):
            raise RuntimeError("something inside the model broke")
        return detect(self, loaded, **kwargs)

    monkeypatch.setattr(Detector, "detect", fail_on_cursed)
    summary = extract(
        ExtractConfig(images=str(images), out=str(tmp_path / "store"), detector=str(detector_dir))
    )
    assert summary.written == 3 and list(summary.skipped) == ["cursed"]
    assert "RuntimeError: something inside the model broke" in summary.skipped["cursed"]
    assert summary.finalized  # a skipped file does not hold the store back; a rerun tries it again
    assert sorted(FeatureStore(tmp_path / "store").ids) == ["good0", "good1", "good2"]


def _png_claiming(path: Path, width: int, height: int) -> None:
    """A 1x1 greyscale PNG whose header claims ``width`` x ``height``: decoding it would fail, checking it not."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x00\x00")
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_the_byte_budget_is_checked_from_the_header_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "claims.png"
    _png_claiming(path, 3000, 2000)  # 16-bit greyscale: 2 bytes a pixel
    # By hand: 6e6 pixels x 2 bytes decoded, no downscale, 16 bytes a pixel of conversions.
    assert decode_bytes("I;16", (3000, 2000), (3000, 2000)) == 6_000_000 * (2 + 16)
    with pytest.raises(ImageTooLargeError, match=r"claims\.png: 3000x2000 in mode I;16 needs about 103 MiB"):
        load_image(path, max_bytes=100 << 20)
    with pytest.raises(UnreadableImageError):  # within the budget it is decoded, and found truncated
        load_image(path, max_bytes=104 << 20)


def test_the_estimate_counts_the_copies_made_when_downscaling() -> None:
    # 16-bit: decoded, then the resize's intermediate (4096 x 9400), both 2 bytes a pixel, then conversions.
    assert (
        decode_bytes("I;16", (9400, 9400), (4096, 4096)) == 2 * 9400 * 9400 + 2 * 4096 * 9400 + 16 * 4096**2
    )
    # RGBA: decoded, premultiplied copy, intermediate, 4 bytes a pixel each.
    assert (
        decode_bytes("RGBA", (9400, 9400), (4096, 4096)) == 4 * (2 * 9400 * 9400 + 4096 * 9400) + 16 * 4096**2
    )
    # Palette: 1 byte decoded, converted to RGBA (4), premultiplied (4); the larger intermediate is 8000 x 52.
    assert (
        decode_bytes("P", (8000, 100), (4096, 52))
        == 8000 * 100 * (1 + 4 + 4) + 4 * 8000 * 52 + 16 * 4096 * 52
    )


def test_the_app_keeps_a_display_copy_and_draws_boxes_in_its_pixels() -> None:
    from app import loading  # streamlit's caches work without a running app (in memory)

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (1500, 3000, 3), dtype=np.uint8)).save(
        buffer, "PNG"
    )
    scene = loading.detect(str(SHIPPED_DETECTOR), "cpu", buffer.getvalue(), "wide.png")
    assert scene.image.size == (1024, 512)  # the display copy (DISPLAY_SIDE), not scaled back up to 3000
    assert (scene.regions.image_width, scene.regions.image_height) == (
        3000,
        1500,
    )  # boxes: the original's pixels
    np.testing.assert_allclose(scene.image_boxes, scene.regions.boxes.numpy() * 1024 / 3000, rtol=1e-6)
    assert scene.regions.boxes[:, 2].max() > 1024  # so the mapping above is not trivially true
