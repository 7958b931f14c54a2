"""Robust image input for the detector: any file Pillow opens becomes an upright 8-bit RGB image.

What goes wrong with user images, and what this module does about it:

- orientation: phones store rotation as an EXIF tag; it is applied, so boxes match what people see;
- modes: RGBA/LA/transparent palettes are composited on white (transparent pixels often hide black RGB
  values), 16-bit and 32-bit greyscale are rescaled rather than clipped, other modes go through Pillow;
- colour order: RGB stays RGB all the way into the model (the LXMERT demo flips local files to BGR twice, its
  issues 8333 and 19601);
- size: a header that claims more than ``max_pixels`` is refused before anything is decoded (a decompression
  bomb can be a few kilobytes), and a longer side above ``max_side`` is downscaled with a logged message;
- damage: truncated or non-image files raise :class:`UnreadableImageError` naming the file, so a batch job can
  report and skip them.
"""

from __future__ import annotations

import logging
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

logger = logging.getLogger(__name__)

# Decoders signal damage through many exception types; these are the ones Pillow lets through.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)
# EXIF orientations 5-8 transpose the image, so width and height swap.
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_TRANSPARENT_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


class ImageError(ValueError):
    """An image that the detector cannot take; the message names the file."""


class UnreadableImageError(ImageError):
    """The file is missing, damaged or not an image."""


class ImageTooLargeError(ImageError):
    """The image header claims more pixels than the configured limit."""


@dataclass
class LoadedImage:
    """An upright RGB image ready for detection.

    Attributes:
        image: 8-bit RGB, possibly downscaled from the original.
        original_size: (width, height) of the upright image at full resolution; boxes are reported in it.
        name: the file path, or "<PIL.Image>" for an in-memory image, for messages.
    """

    image: Image.Image
    original_size: tuple[int, int]
    name: str

    @property
    def scale(self) -> tuple[float, float]:
        """(x, y) factors that map pixel coordinates of ``image`` to the original frame."""
        return self.original_size[0] / self.image.width, self.original_size[1] / self.image.height


def load_image(
    source: str | Path | Image.Image, *, max_pixels: int = 89_478_485, max_side: int = 4096
) -> LoadedImage:
    """Open ``source`` (a path or a PIL image) as an upright 8-bit RGB image.

    Args:
        source: a file in any format Pillow reads, or an already opened image.
        max_pixels: images whose header claims more pixels are refused (default: Pillow's own bomb limit).
        max_side: a longer side above this is downscaled, keeping the aspect ratio.

    Raises:
        ImageTooLargeError: the image has more than ``max_pixels`` pixels.
        UnreadableImageError: the file is missing, damaged or not an image.
    """
    name = "<PIL.Image>" if isinstance(source, Image.Image) else str(source)
    try:
        if isinstance(source, Image.Image):
            return _prepare(source, name, max_pixels=max_pixels, max_side=max_side)
        if not Path(source).is_file():
            raise UnreadableImageError(f"{name}: no such file")
        with Image.open(source) as image:
            return _prepare(image, name, max_pixels=max_pixels, max_side=max_side)
    except ImageError:
        raise
    except Image.DecompressionBombError as err:  # Pillow's guard, when max_pixels was raised above it
        raise ImageTooLargeError(f"{name}: {err}") from err
    except _DECODE_ERRORS as err:
        raise UnreadableImageError(f"{name}: cannot read image ({type(err).__name__}: {err})") from err


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
        return Image.fromarray(_grey_to_uint8(image.mode, np.asarray(image))).convert("RGB")
    return image.convert("RGB")


def _grey_to_uint8(mode: str, values: np.ndarray) -> np.ndarray:
    """Rescale a wide greyscale array to 0..255: 16-bit by 65535/255, floats in [0, 1] by 255."""
    values = values.astype(np.float64)
    if mode in _SIXTEEN_BIT_MODES or (mode == "I" and values.max(initial=0) > 255):
        values = values / 257.0  # 65535 / 255: full 16-bit range onto 8 bits
    elif mode == "F" and values.max(initial=0) <= 1.0:
        values = values * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _prepare(image: Image.Image, name: str, *, max_pixels: int, max_side: int) -> LoadedImage:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} is {width * height:,} pixels, above the limit of {max_pixels:,} "
            "(a guard against decompression bombs); resize it first or raise max_image_pixels"
        )
    if width < 1 or height < 1:
        raise UnreadableImageError(f"{name}: empty image ({width}x{height})")
    orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    upright = (height, width) if orientation in _TRANSPOSING_ORIENTATIONS else (width, height)
    if max(width, height) > max_side and image.format == "JPEG":
        # JPEG decodes at 1/2, 1/4 or 1/8 scale for free; draft picks the largest still at least this size.
        factor = max_side / max(width, height)
        image.draft(None, (max(1, int(width * factor)), max(1, int(height * factor))))
    image.load()
    image = to_rgb(ImageOps.exif_transpose(image))
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    if image.size != upright:
        logger.warning(
            "%s: %dx%d downscaled to %dx%d for detection (longer side above %d); boxes use original pixels",
            name, *upright, *image.size, max_side,
        )  # fmt: skip
    return LoadedImage(image=image, original_size=upright, name=name)


__all__ = [
    "ImageError",
    "ImageTooLargeError",
    "LoadedImage",
    "UnreadableImageError",
    "load_image",
    "to_rgb",
    "to_tensor",
]
