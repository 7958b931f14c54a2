"""Robust image input for the detector: any file Pillow opens becomes an upright 8-bit RGB image.

What goes wrong with user images, and what this module does about it:

- memory: before anything is decoded, the header's size is checked against a pixel limit (a decompression bomb
  can be a few kilobytes) and a byte budget (what decoding and converting it would take, :func:`decode_bytes`);
  every decode of a user image in the project goes through :func:`load_image`;
- size: an image whose longer side is above ``max_side`` is downscaled first (JPEG decodes at a fraction of its
  size, other formats are reduced right after decoding), then converted, so conversions never run at full size;
- shape: an image thinner than ``max_aspect`` (1:5000, say) is refused with :class:`ImageShapeError` naming its
  ratio: the detector scales the longer side to its ``max_size``, and the shorter one would vanish;
- orientation: phones store rotation as an EXIF tag; it is read once and applied, so boxes match what people
  see, and the returned image carries no EXIF (an unreadable EXIF block counts as "no rotation");
- modes: RGBA/LA/transparent palettes are composited on white (transparent pixels often hide black RGB
  values), 16-bit and 32-bit greyscale are rescaled rather than clipped, with one float32 copy at working size;
- colour order: RGB stays RGB all the way into the model (the LXMERT demo flips local files to BGR twice, its
  issues 8333 and 19601);
- damage: truncated or non-image files raise :class:`UnreadableImageError` naming the file, so a batch job can
  report and skip them.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from lxmert.errors import InputError

if TYPE_CHECKING:
    from lxmert.detection.config import DetectorConfig

logger = logging.getLogger(__name__)

# Decoders signal damage through many exception types; these are the ones Pillow lets through.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)
_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transposition that makes the image upright (what ImageOps.exif_transpose does).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_TRANSPARENT_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
# Bytes per pixel of a decoded image in Pillow's memory: every mode not listed takes 4 (RGB is stored as RGBX).
_DECODED_BYTES = {"1": 1, "L": 1, "P": 1, **dict.fromkeys(_SIXTEEN_BIT_MODES, 2)}
# Modes that Pillow cannot resample smoothly; they become this mode at full size before downscaling.
_CONVERT_BEFORE_RESIZE = {"1": "L", "P": "RGBA", "PA": "RGBA"}
# Modes that Pillow resizes through a full-size copy with premultiplied alpha.
_PREMULTIPLIED_BY_RESIZE = {"RGBA", "LA"}
# Per pixel of the working (downscaled) size, an upper bound on the conversions: a float32 copy, an RGBA
# composite on a white RGBA canvas, the RGB result (4 bytes each in Pillow's memory).
_WORKING_BYTES = 16

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit
DEFAULT_MAX_BYTES = 1 << 30
DEFAULT_MAX_SIDE = 4096


class ImageError(InputError):
    """An image that the detector cannot take; the message names the file."""


class UnreadableImageError(ImageError):
    """The file is missing, damaged or not an image."""


class ImageTooLargeError(ImageError):
    """The image header claims more pixels, or more memory to decode, than the configured limits."""


class ImageShapeError(ImageError):
    """The image is too thin for the detector: its sides differ by more than the allowed ratio."""


@dataclass
class LoadedImage:
    """An upright RGB image ready for detection.

    Attributes:
        image: 8-bit RGB, possibly downscaled from the original; it carries no EXIF.
        original_size: (width, height) of the upright image at full resolution; boxes are reported in it.
        name: the file path, or the name the caller gave, for messages.
    """

    image: Image.Image
    original_size: tuple[int, int]
    name: str

    @property
    def scale(self) -> tuple[float, float]:
        """(x, y) factors that map pixel coordinates of ``image`` to the original frame."""
        return self.original_size[0] / self.image.width, self.original_size[1] / self.image.height


def load_image(
    source: str | Path | bytes | Image.Image,
    *,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_side: int = DEFAULT_MAX_SIDE,
    max_aspect: float | None = None,
) -> LoadedImage:
    """Open ``source`` as an upright 8-bit RGB image, checking its header against the limits before decoding.

    Args:
        source: a file in any format Pillow reads, its bytes, or an already opened image (not modified).
        name: how messages name the image (default: the path, ``<bytes>`` or ``<PIL.Image>``).
        max_pixels: images whose header claims more pixels are refused (default: Pillow's own bomb limit).
        max_bytes: images whose decoding and conversion would take more memory are refused (:func:`decode_bytes`).
        max_side: a longer side above this is downscaled, keeping the aspect ratio.
        max_aspect: images whose longer side is more than this many times the shorter are refused (None: any).

    Raises:
        ImageTooLargeError: the image has more than ``max_pixels`` pixels or needs more than ``max_bytes``.
        ImageShapeError: the image is thinner than ``max_aspect`` allows.
        UnreadableImageError: the file is missing, damaged or not an image.
    """
    if name is None:
        name = {Image.Image: "<PIL.Image>", bytes: "<bytes>"}.get(type(source), str(source))
    limits = dict(max_pixels=max_pixels, max_bytes=max_bytes, max_side=max_side, max_aspect=max_aspect)
    try:
        if isinstance(source, Image.Image):
            return _prepare(source, name, **limits)
        if isinstance(source, bytes):
            opened = io.BytesIO(source)
        elif not Path(source).is_file():
            raise UnreadableImageError(f"{name}: no such file")
        else:
            opened = source
        with warnings.catch_warnings():
            # Pillow warns above its bomb limit, and about damaged metadata; the checks below say what matters.
            warnings.simplefilter("ignore")
            with Image.open(opened) as image:
                return _prepare(image, name, **limits)
    except ImageError:
        raise
    except Image.DecompressionBombError as err:  # Pillow's guard, for headers far above any sane limit
        raise ImageTooLargeError(f"{name}: {err}") from err
    except MemoryError as err:
        raise ImageTooLargeError(f"{name}: not enough memory to decode it") from err
    except _DECODE_ERRORS as err:
        raise UnreadableImageError(f"{name}: cannot read image ({type(err).__name__}: {err})") from err


def load_detector_image(
    source: str | Path | bytes | Image.Image, config: DetectorConfig, *, name: str | None = None
) -> LoadedImage:
    """:func:`load_image` under a detector's limits, as the detector and the app load every image.

    Images thinner than 1 : ``max_size / 2`` are refused: the detector scales the longer side to at most
    ``config.max_size`` pixels, and the shorter must keep at least two of them.
    """
    return load_image(
        source,
        name=name,
        max_pixels=config.max_image_pixels,
        max_side=config.max_image_side,
        max_aspect=config.max_size / 2,
    )


def check_aspect(size: tuple[int, int], max_aspect: float, name: str) -> None:
    """Refuse an image whose longer side is more than ``max_aspect`` times the shorter (:class:`ImageShapeError`)."""
    short, long = sorted(size)
    if long > max_aspect * short:
        raise ImageShapeError(
            f"{name}: {size[0]}x{size[1]} has an aspect ratio of 1:{long / short:.0f}, thinner than the "
            f"detector takes (at most 1:{max_aspect:.0f}); crop or pad it first"
        )


def decode_bytes(mode: str, size: tuple[int, int], working_size: tuple[int, int]) -> int:
    """Memory that decoding an image of ``mode`` and ``size`` and converting it at ``working_size`` takes at most.

    That is the decoded pixels; when downscaling, the full-size copies made first (modes converted before
    resizing, alpha premultiplied by Pillow's resize) and the intermediate of its two-pass resize (one side
    already scaled); then the conversions at working size.
    """
    pixels = size[0] * size[1]
    needed = pixels * _DECODED_BYTES.get(mode, 4)
    if working_size != size:
        resized_mode = _CONVERT_BEFORE_RESIZE.get(mode, mode)
        resized_bytes = _DECODED_BYTES.get(resized_mode, 4)
        full_size_copies = (resized_mode != mode) + (resized_mode in _PREMULTIPLIED_BY_RESIZE)
        intermediate = max(working_size[0] * size[1], size[0] * working_size[1])
        needed += (pixels * full_size_copies + intermediate) * resized_bytes
    return needed + working_size[0] * working_size[1] * _WORKING_BYTES


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a float (3, H, W) tensor in [0, 1], channel 0 red."""
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {image.mode!r}; use load_image first")
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB, without clipping wide ranges or exposing hidden transparent pixels."""
    if image.mode == "RGB":
        return image
    if image.mode in _TRANSPARENT_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode in _SIXTEEN_BIT_MODES or image.mode in {"I", "F"}:
        return Image.fromarray(_grey_to_uint8(image)).convert("RGB")
    return image.convert("RGB")


def _grey_to_uint8(image: Image.Image) -> np.ndarray:
    """Rescale a wide greyscale image to 0..255: 16-bit by 65535/255, floats in [0, 1] by 255.

    One float32 copy, rescaled in place. It holds every 16-bit value exactly, and no v / 257 lies within its
    rounding error of a half, so the result is what exact arithmetic gives. NaN becomes 0.
    """
    values = np.array(image, dtype=np.float32)
    np.nan_to_num(values, copy=False, nan=0.0)
    top = values.max(initial=0)
    if image.mode in _SIXTEEN_BIT_MODES or (image.mode == "I" and top > 255):
        values /= 257.0  # 65535 / 255: full 16-bit range onto 8 bits
    elif image.mode == "F" and top <= 1.0:
        values *= 255.0
    np.rint(values, out=values)
    np.clip(values, 0, 255, out=values)
    return values.astype(np.uint8)


def _working_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` with its longer side brought down to ``max_side``; the shorter is rounded up, so the aspect ratio
    never grows (a thin image stays within the ratio it was checked for)."""
    if max(size) <= max_side:
        return size
    factor = max_side / max(size)
    return tuple(min(side, max_side if side == max(size) else math.ceil(side * factor)) for side in size)


def _orientation(image: Image.Image, name: str) -> int:
    """The EXIF orientation tag, read once; a damaged EXIF block counts as upright (the pixels are fine)."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except _DECODE_ERRORS as err:
        logger.warning("%s: unreadable EXIF ignored (%s: %s)", name, type(err).__name__, err)
        return 1
    return orientation if orientation in _UPRIGHT else 1


def _prepare(
    image: Image.Image, name: str, *, max_pixels: int, max_bytes: int, max_side: int, max_aspect: float | None
) -> LoadedImage:
    width, height = image.size
    if width < 1 or height < 1:
        raise UnreadableImageError(f"{name}: empty image ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} is {width * height:,} pixels, above the limit of {max_pixels:,} "
            "(a guard against decompression bombs); resize it first or raise max_image_pixels"
        )
    if max_aspect is not None:
        check_aspect(image.size, max_aspect, name)
    target = _working_size(image.size, max_side)
    if target != image.size and image.format == "JPEG":
        image.draft(None, target)  # JPEG decodes at 1/2, 1/4 or 1/8 scale: the largest still at least target
    needed = decode_bytes(image.mode, image.size, target)
    if needed > max_bytes:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} in mode {image.mode} needs about {needed / 2**20:,.0f} MiB to decode, "
            f"above the budget of {max_bytes / 2**20:,.0f} MiB; resize it first"
        )
    image.load()
    orientation = _orientation(image, name)  # after decoding: a PNG may keep its EXIF after the pixels
    working = image
    if working.mode in _CONVERT_BEFORE_RESIZE and working.size != target:
        working = working.convert(_CONVERT_BEFORE_RESIZE[working.mode])
    if working.size != target:
        # Pillow reduces 16-bit images only in one pass; other modes are reduced by whole factors first.
        gap = None if working.mode in _SIXTEEN_BIT_MODES else 2.0
        working = working.resize(target, Image.Resampling.BILINEAR, reducing_gap=gap)
    working = to_rgb(working)
    if orientation in _UPRIGHT:
        working = working.transpose(_UPRIGHT[orientation])
    elif working is image:
        working = image.copy()  # the caller's image stays as it was
    working.info.clear()  # no EXIF, ICC or other metadata travels further
    upright = (height, width) if orientation in {5, 6, 7, 8} else (width, height)
    if working.size != upright:
        logger.warning(
            "%s: %dx%d downscaled to %dx%d for detection (longer side above %d); boxes use original pixels",
            name,
            *upright,
            *working.size,
            max_side,
        )
    return LoadedImage(image=working, original_size=upright, name=name)


__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SIDE",
    "ImageError",
    "ImageShapeError",
    "ImageTooLargeError",
    "LoadedImage",
    "UnreadableImageError",
    "check_aspect",
    "decode_bytes",
    "load_detector_image",
    "load_image",
    "to_rgb",
    "to_tensor",
]
