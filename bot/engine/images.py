"""Checking untrusted images and arranging finished ones. Torch-free (Pillow only).

Cogs call `load_image` on an upload before anything is queued; the engine calls it again on the files it
reads back, so a bad file is refused with the same sentence wherever it comes from. The checks run
cheapest-first: byte size, then the header (format, dimensions, animation) before any pixel is decoded,
so a decompression bomb is refused from its header alone.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from bot.errors import InvalidImage

#: Formats members may upload, by Pillow's format name → how the message names them.
ALLOWED_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP", "GIF": "GIF (still)"}
_ALLOWED_TEXT = ", ".join(ALLOWED_FORMATS.values())
#: Phone cameras write JPEGs with an extra depth/preview picture, which Pillow reports as MPO; the first
#: picture is the photo itself.
_MULTI_PICTURE_JPEG = "MPO"


def load_image(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Decode `data` into an RGB image, or raise `InvalidImage` saying what is wrong and what is allowed."""
    if len(data) > max_bytes:
        raise InvalidImage(f"The image is {_megabytes(len(data))}; the limit is {_megabytes(max_bytes)}.")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise InvalidImage(
            f"The image is too large to open safely; the limit is {max_pixels:,} pixels."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InvalidImage(f"That file is not an image I can read. Allowed: {_ALLOWED_TEXT}.") from None
    if image.format not in ALLOWED_FORMATS and image.format != _MULTI_PICTURE_JPEG:
        raise InvalidImage(f"{image.format or 'This'} images are not accepted. Allowed: {_ALLOWED_TEXT}.")
    width, height = image.size
    if width * height > max_pixels:
        raise InvalidImage(
            f"The image is {width}×{height} = {width * height:,} pixels; the limit is {max_pixels:,} pixels."
        )
    if image.format != _MULTI_PICTURE_JPEG and getattr(image, "is_animated", False):
        raise InvalidImage("Animated images are not accepted: upload a single still frame (PNG or JPEG).")
    try:
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError):
        raise InvalidImage("The image file is damaged or truncated: upload it again.") from None
    return _to_rgb(ImageOps.exif_transpose(image))


def read_image_file(path: str | Path, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """`load_image` on a file; a missing file is an `InvalidImage` too (a stored parent that was deleted)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        raise InvalidImage(f"The source image `{Path(path).name}` is no longer available.") from None
    return load_image(data, max_bytes=max_bytes, max_pixels=max_pixels)


def make_grid(images: Sequence[Image.Image], columns: int | None = None) -> Image.Image:
    """Images of one size side by side, row by row: four make the familiar 2×2 grid."""
    if not images:
        raise ValueError("make_grid needs at least one image")
    width, height = images[0].size
    if any(image.size != (width, height) for image in images):
        raise ValueError("make_grid needs images of one size")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    grid = Image.new("RGB", (columns * width, rows * height))
    for index, image in enumerate(images):
        grid.paste(image, ((index % columns) * width, (index // columns) * height))
    return grid


def fit_to(image: Image.Image, width: int, height: int) -> Image.Image:
    """Center-crop `image` to the aspect of width×height, then resize to exactly that (Lanczos)."""
    if image.size == (width, height):
        return image
    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS)


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB; transparent areas become white rather than whatever colour the hidden pixels happen to hold."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, "white")
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"
