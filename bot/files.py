"""Image files on their way in (uploads for /vary and /upscale) and out (results too big for Discord).

Torch-free and Discord-free: cogs call these through `asyncio.to_thread`, since encoding a large PNG
takes long enough to stall the event loop.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bot.errors import InvalidImage


@dataclass(frozen=True)
class OutgoingFile:
    """Bytes ready to upload, with the name Discord will show and a note if they were re-encoded."""

    data: bytes
    filename: str
    note: str | None = None


def save_upload(images_dir: Path, scope: int, image: Image.Image) -> Path:
    """Store a validated upload as PNG, so the job that uses it survives a restart."""
    folder = images_dir / str(scope) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.png"
    image.save(path, format="PNG")
    return path


def fit_for_upload(data: bytes, filename: str, limit: int) -> OutgoingFile:
    """Return the PNG as is if it fits `limit` bytes, else the best WebP/JPEG re-encoding that does.

    Tries lossless-looking qualities first and shrinks the picture only as a last resort, so a member
    always gets *something* and is told what changed.
    """
    if len(data) <= limit:
        return OutgoingFile(data, filename)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # a result file we wrote ourselves should always open
        raise InvalidImage(f"The stored image {filename} cannot be read: {exc}") from None
    stem = Path(filename).stem
    rgb = image.convert("RGB")
    for fmt, ext, quality in (
        ("WEBP", "webp", 92),
        ("WEBP", "webp", 80),
        ("JPEG", "jpg", 85),
        ("JPEG", "jpg", 70),
    ):
        encoded = _encode(rgb, fmt, quality)
        if len(encoded) <= limit:
            note = f"Re-encoded as {fmt} (quality {quality}) to fit Discord's {_mb(limit)} upload limit."
            return OutgoingFile(encoded, f"{stem}.{ext}", note)
    scale = 0.75
    while scale > 0.05:
        smaller = rgb.resize((max(1, int(rgb.width * scale)), max(1, int(rgb.height * scale))), Image.LANCZOS)
        encoded = _encode(smaller, "JPEG", 80)
        if len(encoded) <= limit:
            note = (
                f"Shrunk to {smaller.width}×{smaller.height} JPEG to fit Discord's {_mb(limit)} "
                "upload limit; "
                "the full-size PNG is kept on the server."
            )
            return OutgoingFile(encoded, f"{stem}.jpg", note)
        scale *= 0.75
    raise InvalidImage(f"{filename} cannot be made to fit Discord's {_mb(limit)} upload limit.")


def _encode(image: Image.Image, fmt: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=quality)
    return buffer.getvalue()


def _mb(limit: int) -> str:
    return f"{limit / 1_000_000:.0f} MB" if limit >= 1_000_000 else f"{limit} bytes"
