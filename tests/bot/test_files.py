"""Results too big for Discord are re-encoded until they fit, and the member is told."""

import io

import numpy as np
from PIL import Image

from bot.files import fit_for_upload


def noisy_png(side: int = 256) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_file_under_the_limit_is_sent_as_is():
    """A PNG that fits keeps its bytes, its name and its recipe."""
    data = noisy_png(32)
    out = fit_for_upload(data, "grid.png", len(data))
    assert (out.data, out.filename, out.note) == (data, "grid.png", None)


def test_an_oversized_png_is_re_encoded_and_says_so():
    """Over the limit, the image becomes WebP or JPEG under it, same size, with a note saying what changed."""
    data = noisy_png()
    out = fit_for_upload(data, "grid.png", len(data) // 2)
    assert len(out.data) <= len(data) // 2
    assert out.filename.rsplit(".", 1)[1] in ("webp", "jpg")
    assert Image.open(io.BytesIO(out.data)).size == (256, 256)
    assert "Re-encoded" in out.note and "upload limit" in out.note


def test_when_re_encoding_is_not_enough_the_picture_shrinks():
    """A very small limit shrinks the picture, and the note says the full PNG stays on the server."""
    data = noisy_png()
    out = fit_for_upload(data, "1.png", 6_000)
    assert len(out.data) <= 6_000
    assert Image.open(io.BytesIO(out.data)).width < 256
    assert "full-size PNG is kept" in out.note
