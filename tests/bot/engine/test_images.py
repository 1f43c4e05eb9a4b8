"""Checking uploaded images before anything is queued, and laying out grids."""

from __future__ import annotations

import io
import warnings

import pytest
from PIL import Image, ImageFile

from bot.engine.images import fit_to, load_image, make_grid
from bot.errors import InvalidImage

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 512 * 512}


def encoded(image: Image.Image, format: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def png(width: int = 64, height: int = 64, mode: str = "RGB", color: object = (200, 10, 10)) -> bytes:
    return encoded(Image.new(mode, (width, height), color))


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "green", "blue")]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def bomb_png(side: int) -> bytes:
    """A side×side PNG that compresses to kilobytes: hundreds of megapixels once decoded."""
    return encoded(Image.new("1", (side, side)), optimize=True)


def truncated_jpeg() -> bytes:
    data = encoded(Image.effect_noise((256, 256), 64).convert("RGB"), "JPEG", quality=90)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "not an image I can read. Allowed: PNG, JPEG, WebP, GIF (still)"),
        (
            b"hello, this is a text file" * 10,
            "not an image I can read. Allowed: PNG, JPEG, WebP, GIF (still)",
        ),
        (png()[:40], "not an image I can read"),
        (truncated_jpeg(), "damaged or truncated"),
        (animated_gif(), "Animated images are not accepted"),
        (png(1024, 1024), "The image is 1024×1024 = 1,048,576 pixels; the limit is 262,144 pixels."),
        (b"\x89PNG" + b"\0" * 1_000_001, "The image is 1.0 MB; the limit is 1.0 MB."),
        (encoded(Image.new("RGB", (8, 8)), "BMP"), "BMP images are not accepted. Allowed: PNG, JPEG"),
    ],
    ids=["empty", "text", "cut-header", "truncated", "animated", "too-many-pixels", "too-many-bytes", "bmp"],
)
def test_bad_images_are_refused_with_a_reason(data: bytes, says: str) -> None:
    """Each kind of bad upload gets an InvalidImage naming the problem and what is allowed."""
    with pytest.raises(InvalidImage) as caught:
        load_image(data, **LIMITS)
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("side", "says"),
    [
        (12000, "The image is 12000×12000 = 144,000,000 pixels; the limit is 262,144 pixels."),
        (16000, "The image is too large to open safely; the limit is 262,144 pixels."),
    ],
)
def test_a_decompression_bomb_is_refused_from_its_header(
    side: int, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small file claiming a huge canvas is refused before a single pixel is decoded."""
    data = bomb_png(side)
    assert len(data) < LIMITS["max_bytes"]

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(InvalidImage) as caught, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        load_image(data, **LIMITS)
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (png(100, 50), (100, 50)),
        (encoded(Image.new("RGB", (40, 30), "blue"), "JPEG"), (40, 30)),
        (encoded(Image.new("RGB", (40, 30), "blue"), "WEBP"), (40, 30)),
        (encoded(Image.new("P", (20, 20), 3), "GIF"), (20, 20)),
        (png(16, 16, "L", 128), (16, 16)),
    ],
    ids=["png", "jpeg", "webp", "still-gif", "greyscale"],
)
def test_good_images_come_back_as_rgb(data: bytes, size: tuple[int, int]) -> None:
    """Every accepted format is returned as an RGB image of its own size."""
    image = load_image(data, **LIMITS)
    assert image.mode == "RGB" and image.size == size


def test_transparency_becomes_white() -> None:
    """A transparent upload is composited on white, not on whatever colour hides under the alpha."""
    image = load_image(png(8, 8, "RGBA", (255, 0, 0, 0)), **LIMITS)
    assert image.getpixel((0, 0)) == (255, 255, 255)


def test_phone_photos_are_turned_upright() -> None:
    """A JPEG whose EXIF says 'rotated 90°' is returned the way the phone showed it."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    data = encoded(Image.new("RGB", (40, 20), "red"), "JPEG", exif=exif.tobytes())
    assert load_image(data, **LIMITS).size == (20, 40)


def test_four_images_make_a_two_by_two_grid() -> None:
    """The grid puts image 1 top-left, 2 top-right, 3 bottom-left, 4 bottom-right."""
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    grid = make_grid([Image.new("RGB", (10, 6), colour) for colour in colours])
    assert grid.size == (20, 12)
    assert [grid.getpixel(xy) for xy in [(0, 0), (10, 0), (0, 6), (10, 6)]] == colours


def test_fit_to_crops_to_the_target_aspect() -> None:
    """A source of another shape is centre-cropped, never stretched."""
    source = Image.new("RGB", (200, 100), "white")
    source.paste((0, 0, 0), (0, 0, 40, 100))  # a black band on the left that a centre crop removes
    fitted = fit_to(source, 64, 64)
    assert fitted.size == (64, 64)
    assert fitted.getpixel((2, 32)) == (255, 255, 255)
