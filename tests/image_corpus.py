"""A corpus of bad and odd image files, built at test time (nothing binary is committed).

Each :class:`Case` is one kind of file and what loading it under the shipped detector's limits must give: a
result of a known size, or one :class:`~lxmert.detection.images.ImageError` subclass. The large files are written
a row at a time (PNG) or from one constant colour (JPEG), so building them takes little memory: what they cost
to load is what the corpus test measures.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, TiffImagePlugin, features

from lxmert.detection.images import ImageError, ImageShapeError, ImageTooLargeError, UnreadableImageError

# An image is readable, or fails with one of these.
Outcome = tuple[int, int] | type[ImageError]


@dataclass(frozen=True)
class Case:
    """One file of the corpus.

    Attributes:
        kind: what is odd about it.
        file_name: its name in the corpus folder (the extension is what a user would have).
        data: its bytes.
        expected: the upright (width, height) it loads as, or the error class loading must raise.
        heavy: a large decode (or refusal of one): the memory test, which measures every file, checks the corpus
            holds enough of them.
    """

    kind: str
    file_name: str
    data: bytes
    expected: Outcome
    heavy: bool = False

    @property
    def readable(self) -> bool:
        return isinstance(self.expected, tuple)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _scene(size: tuple[int, int] = (96, 64), mode: str = "RGB") -> Image.Image:
    """A small picture with structure (a bright square on a gradient), so that decoding errors would show."""
    width, height = size
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, axis=0)
    rgb = np.stack([ramp, ramp[::-1, ::-1], np.full_like(ramp, 90)], axis=-1).astype(np.uint8)
    rgb[height // 4 : height // 2, width // 4 : width // 2] = (250, 240, 20)
    return Image.fromarray(rgb).convert(mode)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _constant_png(
    width: int, height: int, *, bit_depth: int, colour_type: int, header: tuple | None = None
) -> bytes:
    """A PNG of zero pixels, compressed row by row (a few hundred KB for hundreds of MB of pixels).

    ``header`` makes the IHDR claim another (width, height) than the pixel data has: a bomb by header.
    """
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row = bytes(1 + width * channels * bit_depth // 8)  # filter byte 0, then zeros
    compressor = zlib.compressobj(9)
    rows_per_piece = max(1, (1 << 22) // len(row))
    pieces = [
        compressor.compress(row * min(rows_per_piece, height - y)) for y in range(0, height, rows_per_piece)
    ]
    idat = b"".join(pieces) + compressor.flush()
    claimed = header or (width, height)
    ihdr = struct.pack(">IIBBBBB", *claimed, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _gif_header_bomb() -> bytes:
    """A 1x1 GIF whose logical screen claims 65535 x 65535."""
    data = bytearray(_encode(Image.new("P", (1, 1)), "GIF"))
    data[6:10] = struct.pack("<HH", 65535, 65535)
    return bytes(data)


def _png_with_bad_crc() -> bytes:
    data = bytearray(_encode(_scene(), "PNG"))
    data[29] ^= 0xFF  # the IHDR chunk's CRC
    return bytes(data)


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _frames(mode: str = "RGB") -> list[Image.Image]:
    return [_scene(mode=mode), _scene(mode=mode).transpose(Image.Transpose.FLIP_LEFT_RIGHT)]


def _animated(fmt: str, **options) -> bytes:
    first, *rest = _frames()
    return _encode(first, fmt, save_all=True, append_images=rest, duration=100, loop=0, **options)


def _palette_with_alpha() -> bytes:
    image = _scene().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    image.info["transparency"] = 0
    return _encode(image, "PNG", transparency=0)


def _rgba_hidden_black() -> bytes:
    rgba = np.zeros((64, 96, 4), np.uint8)  # black under full transparency
    rgba[:, 48:] = (200, 30, 30, 255)
    return _encode(Image.fromarray(rgba), "PNG")


def _sixteen_bit_png() -> bytes:
    values = np.linspace(0, 65535, 96 * 64).reshape(64, 96).astype(np.uint16)
    return _encode(Image.fromarray(values), "PNG")


def _float_tiff() -> bytes:
    values = np.linspace(0, 1, 96 * 64, dtype=np.float32).reshape(64, 96)
    return _encode(Image.fromarray(values), "TIFF")


def _float_tiff_with_nan() -> bytes:
    values = np.linspace(-1, 2, 96 * 64, dtype=np.float32).reshape(64, 96)
    values[::7] = np.nan
    values[1::7] = np.inf
    return _encode(Image.fromarray(values), "TIFF")


def _int32_tiff() -> bytes:
    values = np.linspace(0, 65535, 96 * 64).reshape(64, 96).astype(np.int32)
    return _encode(Image.fromarray(values), "TIFF")


def _heic_like() -> bytes:
    """The start of an HEIF file (its ftyp box) followed by junk: what Pillow sees without an HEIF plugin."""
    return struct.pack(">I", 24) + b"ftypheic" + struct.pack(">I", 0) + b"mif1heic" + bytes(64)


def _avif() -> tuple[bytes, Outcome]:
    if features.check("avif"):
        return _encode(_scene(), "AVIF"), (96, 64)
    return struct.pack(">I", 24) + b"ftypavif" + struct.pack(">I", 0) + b"mif1avif" + bytes(
        64
    ), UnreadableImageError


def _bad_icc_jpeg() -> bytes:
    return _encode(_scene(), "JPEG", icc_profile=b"not an ICC profile at all" * 4)


def _bad_icc_png() -> bytes:
    return _encode(_scene(), "PNG", icc_profile=b"\x00garbage\xff" * 8)


def _multipage_tiff() -> bytes:
    first, *rest = _frames()
    return _encode(first, "TIFF", save_all=True, append_images=rest)


def _sixteen_bit_tiff() -> bytes:
    values = np.linspace(0, 65535, 96 * 64).reshape(64, 96).astype(np.uint16)
    return _encode(Image.fromarray(values), "TIFF", compression="tiff_lzw")


def _tiff_header_bomb() -> bytes:
    """A 1x1 TIFF whose tags claim 60000 x 60000 pixels."""
    info = TiffImagePlugin.ImageFileDirectory_v2()
    data = bytearray(_encode(Image.new("L", (1, 1)), "TIFF", tiffinfo=info))
    for tag in (256, 257):  # ImageWidth, ImageLength: rewrite their values in the first IFD
        offset = struct.unpack("<I", data[4:8])[0]
        count = struct.unpack("<H", data[offset : offset + 2])[0]
        for i in range(count):
            entry = offset + 2 + 12 * i
            if struct.unpack("<H", data[entry : entry + 2])[0] == tag:
                kind = struct.unpack("<H", data[entry + 2 : entry + 4])[0]
                packed = struct.pack("<H", 60000) + b"\0\0" if kind == 3 else struct.pack("<I", 60000)
                data[entry + 8 : entry + 12] = packed
    return bytes(data)


def _truncated(fmt: str) -> bytes:
    data = _encode(_scene((256, 192)), fmt)
    return data[: len(data) // 2]


def _big_jpeg(width: int, height: int) -> bytes:
    return _encode(Image.new("RGB", (width, height), (40, 120, 200)), "JPEG", quality=80)


def build_cases() -> list[Case]:
    """Every kind of file of the corpus, with what loading it under the shipped detector's limits gives."""
    avif, avif_expected = _avif()
    scene = _scene()
    too_large, unreadable, too_thin = ImageTooLargeError, UnreadableImageError, ImageShapeError
    builders: list[tuple[str, str, Callable[[], bytes] | bytes, Outcome, bool]] = [
        # damaged or not images at all
        ("truncated PNG", "truncated_png.png", lambda: _truncated("PNG"), unreadable, False),
        ("truncated JPEG", "truncated_jpeg.jpg", lambda: _truncated("JPEG"), unreadable, False),
        ("zero bytes", "empty.png", b"", unreadable, False),
        ("text named .jpg", "notes.jpg", b"this is not an image, just some text\n" * 4, unreadable, False),
        ("HTML named .png", "page.png", b"<!doctype html><html><body>404</body></html>", unreadable, False),
        ("JPEG start marker only", "marker.jpg", b"\xff\xd8\xff", unreadable, False),
        ("PNG with a bad CRC", "bad_crc.png", _png_with_bad_crc, unreadable, False),
        ("SVG text", "drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>', unreadable, False),
        ("HEIC without a decoder", "photo.heic", _heic_like, unreadable, False),
        ("PNG claiming 0x0", "zero_size.png", lambda: _constant_png(1, 1, bit_depth=8, colour_type=0, header=(0, 0)), unreadable, False),
        # bombs and extreme sizes
        ("PNG header claiming 100000^2", "bomb_header.png", lambda: _constant_png(1, 1, bit_depth=8, colour_type=2, header=(100_000, 100_000)), too_large, True),
        ("GIF header claiming 65535^2", "bomb_header_gif.gif", _gif_header_bomb, too_large, False),
        ("TIFF tags claiming 60000^2", "bomb_header_tiff.tif", _tiff_header_bomb, too_large, False),
        ("PNG header claiming 12000^2", "header_12000.png", lambda: _constant_png(1, 1, bit_depth=8, colour_type=2, header=(12_000, 12_000)), too_large, False),
        ("greyscale PNG of 12000^2 inflating 1000:1", "huge_12000.png", lambda: _constant_png(12_000, 12_000, bit_depth=8, colour_type=0), too_large, True),
        ("RGBA PNG of 9400^2 inflating 1000:1 (over the byte budget)", "bomb_zlib.png", lambda: _constant_png(9400, 9400, bit_depth=8, colour_type=6), too_large, True),
        ("RGB PNG of 9000x6000 inflating 1000:1", "big_rgb.png", lambda: _constant_png(9000, 6000, bit_depth=8, colour_type=2), (9000, 6000), True),
        ("16-bit PNG of 9400^2 (177 MB decoded)", "grey16_9400.png", lambda: _constant_png(9400, 9400, bit_depth=16, colour_type=0), (9400, 9400), True),
        ("20000x4000 JPEG", "wide_20000.jpg", lambda: _big_jpeg(20_000, 4_000), (20_000, 4_000), True),
        ("1x1", "dot.png", lambda: _encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), (1, 1), False),
        ("1x5000", "tall_line.png", lambda: _encode(Image.new("L", (1, 5000), 128), "PNG"), too_thin, False),
        ("5000x1", "wide_line.png", lambda: _encode(Image.new("L", (5000, 1), 128), "PNG"), too_thin, False),
        ("2x1025 (just past 1:512)", "thin_1025.png", lambda: _encode(Image.new("RGB", (2, 1025)), "PNG"), too_thin, False),
        ("20x4000 (1:200)", "strip_200.png", lambda: _encode(_scene((20, 4000)), "PNG"), (20, 4000), False),
        ("4000x20 JPEG (200:1)", "banner_200.jpg", lambda: _encode(_scene((4000, 20)), "JPEG"), (4000, 20), False),
        # modes
        ("CMYK JPEG", "cmyk.jpg", lambda: _encode(scene.convert("CMYK"), "JPEG"), (96, 64), False),
        ("16-bit PNG", "grey16.png", _sixteen_bit_png, (96, 64), False),
        ("16-bit TIFF", "grey16_tiff.tif", _sixteen_bit_tiff, (96, 64), False),
        ("1-bit PNG", "bilevel.png", lambda: _encode(scene.convert("1"), "PNG"), (96, 64), False),
        ("palette PNG with transparency", "palette_alpha.png", _palette_with_alpha, (96, 64), False),
        ("LA PNG", "grey_alpha.png", lambda: _encode(scene.convert("LA"), "PNG"), (96, 64), False),
        ("RGBA hiding black under transparency", "hidden_black.png", _rgba_hidden_black, (96, 64), False),
        ("float TIFF", "float.tif", _float_tiff, (96, 64), False),
        ("float TIFF with NaN and infinity", "float_nan.tif", _float_tiff_with_nan, (96, 64), False),
        ("32-bit integer TIFF", "int32.tif", _int32_tiff, (96, 64), False),
        ("greyscale JPEG", "grey.jpg", lambda: _encode(scene.convert("L"), "JPEG"), (96, 64), False),
        # animation and pages: the first frame
        ("animated GIF", "animated.gif", lambda: _animated("GIF"), (96, 64), False),
        ("animated PNG", "animated_png.png", lambda: _animated("PNG"), (96, 64), False),
        ("animated WebP", "animated_webp.webp", lambda: _animated("WEBP"), (96, 64), False),
        ("multi-page TIFF", "pages.tif", _multipage_tiff, (96, 64), False),
        # metadata
        ("garbage EXIF", "garbage_exif.jpg", lambda: _encode(scene, "JPEG", exif=b"Exif\x00\x00garbage garbage"), (96, 64), False),
        ("EXIF orientation 99", "bad_orientation.jpg", lambda: _encode(scene, "JPEG", exif=_exif(99)), (96, 64), False),
        ("EXIF orientation 6", "rotated_6.jpg", lambda: _encode(scene, "JPEG", exif=_exif(6)), (64, 96), False),
        ("EXIF orientation 8", "rotated_8.jpg", lambda: _encode(scene, "JPEG", exif=_exif(8)), (64, 96), False),
        ("bad ICC profile (JPEG)", "bad_icc.jpg", _bad_icc_jpeg, (96, 64), False),
        ("bad ICC profile (PNG)", "bad_icc_png.png", _bad_icc_png, (96, 64), False),
        # formats
        ("progressive JPEG", "progressive.jpg", lambda: _encode(scene, "JPEG", progressive=True), (96, 64), False),
        ("BMP", "picture_bmp.bmp", lambda: _encode(scene, "BMP"), (96, 64), False),
        ("ICO", "icon.ico", lambda: _encode(_scene((64, 64)), "ICO", sizes=[(64, 64)]), (64, 64), False),
        ("PPM", "picture_ppm.ppm", lambda: _encode(scene, "PPM"), (96, 64), False),
        ("WebP", "picture_webp.webp", lambda: _encode(scene, "WEBP"), (96, 64), False),
        ("AVIF", "picture_avif.avif", lambda: avif, avif_expected, False),
    ]  # fmt: skip
    return [
        Case(kind, file_name, build() if callable(build) else build, expected, heavy)
        for kind, file_name, build, expected, heavy in builders
    ]


def write_cases(cases: list[Case], folder: Path) -> dict[str, Path]:
    """Write every case into ``folder``; returns kind -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for case in cases:
        path = folder / case.file_name
        path.write_bytes(case.data)
        paths[case.kind] = path
    return paths


__all__ = ["Case", "build_cases", "write_cases"]
