"""Robust image input: odd modes, EXIF rotation, colour order, damaged files, bombs, downscaling."""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lxmert.detection.images import (
    ImageTooLargeError,
    UnreadableImageError,
    load_image,
    to_rgb,
    to_tensor,
)


def _pixel(image: Image.Image, xy: tuple[int, int] = (0, 0)) -> tuple[int, ...]:
    return tuple(image.getpixel(xy))


def test_rgb_order_is_kept_from_file_to_tensor(tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    Image.new("RGB", (4, 3), (255, 0, 0)).save(path)
    tensor = to_tensor(load_image(path).image)
    assert tensor.shape == (3, 3, 4)
    assert tensor[0].min() == 1.0 and tensor[1:].max() == 0.0, "channel 0 must be red (no BGR flip)"


def test_transparent_pixels_become_white_not_their_hidden_colour() -> None:
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))  # fully transparent black
    rgba.putpixel((1, 0), (10, 20, 30, 255))  # opaque
    rgb = to_rgb(rgba)
    assert rgb.mode == "RGB"
    assert _pixel(rgb, (0, 0)) == (255, 255, 255)
    assert _pixel(rgb, (1, 0)) == (10, 20, 30)
    half = to_rgb(Image.new("LA", (1, 1), (0, 128)))  # black at ~50% over white
    assert abs(_pixel(half)[0] - 127) <= 1


def test_palette_with_transparency_is_composited() -> None:
    palette = Image.new("P", (1, 1), 0)
    palette.putpalette([0, 0, 0, 200, 0, 0])
    palette.info["transparency"] = 0
    assert _pixel(to_rgb(palette)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("L", 77, (77, 77, 77)),
        ("1", 1, (255, 255, 255)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),  # no cyan, full magenta and yellow: red
        ("YCbCr", (76, 85, 255), (254, 0, 0)),  # JPEG's YCbCr for red, within rounding
        ("HSV", (0, 255, 255), (255, 0, 0)),
    ],
)
def test_common_modes_convert_to_rgb(mode: str, value, expected: tuple[int, int, int]) -> None:
    rgb = to_rgb(Image.new(mode, (1, 1), value))
    assert rgb.mode == "RGB"
    assert np.abs(np.subtract(_pixel(rgb), expected)).max() <= 1


def test_sixteen_bit_greyscale_is_rescaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)  # a 16-bit greyscale PNG
    loaded = load_image(path).image
    assert [loaded.getpixel((x, 0))[0] for x in range(3)] == [0, 100, 255]


def test_wide_integer_and_float_modes() -> None:
    wide = Image.fromarray(np.array([[0, 65535]], dtype=np.int32), mode="I")
    assert [to_rgb(wide).getpixel((x, 0))[0] for x in range(2)] == [0, 255]
    narrow = Image.fromarray(np.array([[0, 200]], dtype=np.int32), mode="I")  # already 8-bit values
    assert [to_rgb(narrow).getpixel((x, 0))[0] for x in range(2)] == [0, 200]
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    assert [to_rgb(unit).getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the stored image's left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the left edge becomes the top
    path = tmp_path / "phone.png"
    stored.save(path, exif=exif)
    loaded = load_image(path)
    assert loaded.image.size == (20, 40)
    assert loaded.original_size == (20, 40)
    assert _pixel(loaded.image, (10, 2)) == (255, 0, 0)
    assert _pixel(loaded.image, (10, 37)) == (0, 0, 255)


def test_in_memory_image_is_not_modified() -> None:
    image = Image.new("RGBA", (300, 10), (1, 2, 3, 255))
    loaded = load_image(image, max_side=100)
    assert image.mode == "RGBA" and image.size == (300, 10)
    # The shorter side rounds up (3.3 -> 4): downscaling never makes an image thinner.
    assert loaded.image.size == (100, 4)


def test_corrupt_and_missing_files_are_named(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image at all")
    for path in (truncated, garbage, tmp_path / "missing.png"):
        with pytest.raises(UnreadableImageError, match=path.name):
            load_image(path)


def _png_with_header(path: Path, width: int, height: int) -> None:
    """A valid 1x1 PNG whose IHDR claims ``width`` x ``height`` instead (a decompression-bomb header)."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr_start = 8 + 8  # signature, then the chunk's length and type
    data[ihdr_start : ihdr_start + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr_start - 4 : ihdr_start + 13]))
    data[ihdr_start + 13 : ihdr_start + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(("width", "height"), [(12_000, 10_000), (100_000, 100_000)])
def test_huge_header_is_refused_before_decoding(tmp_path: Path, width: int, height: int) -> None:
    # The first is above our limit only, the second above Pillow's own hard limit too.
    path = tmp_path / "bomb.png"
    _png_with_header(path, width, height)
    assert path.stat().st_size < 200
    with pytest.raises(ImageTooLargeError, match="bomb.png"):
        load_image(path)


def test_custom_pixel_limit(tmp_path: Path) -> None:
    path = tmp_path / "medium.png"
    Image.new("RGB", (100, 100)).save(path)
    with pytest.raises(ImageTooLargeError, match="10,000 pixels"):
        load_image(path, max_pixels=9_999)
    assert load_image(path, max_pixels=10_000).image.size == (100, 100)


def test_long_side_is_downscaled_with_a_message(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "wide.png"
    Image.new("RGB", (300, 200), (9, 9, 9)).save(path)
    with caplog.at_level(logging.WARNING, logger="lxmert.detection.images"):
        loaded = load_image(path, max_side=100)
    assert loaded.image.size == (100, 67)
    assert loaded.original_size == (300, 200)
    assert loaded.scale == pytest.approx((3.0, 200 / 67))
    assert "wide.png" in caplog.text and "downscaled" in caplog.text


def test_large_jpeg_uses_reduced_decoding_and_keeps_its_size(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (800, 400), (200, 30, 30)).save(path, quality=95)
    loaded = load_image(path, max_side=100)
    assert loaded.image.size == (100, 50)
    assert loaded.original_size == (800, 400)
    assert np.abs(np.subtract(_pixel(loaded.image, (50, 25)), (200, 30, 30))).max() <= 4


def test_to_tensor_refuses_other_modes() -> None:
    with pytest.raises(ValueError, match="RGB"):
        to_tensor(Image.new("L", (2, 2)))


def test_empty_image_is_refused() -> None:
    with pytest.raises(UnreadableImageError, match="empty image"):
        load_image(Image.new("RGB", (0, 0)))
