"""Small helpers for the engine tests."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from bot.engine.types import GenerationRequest, JobKind


def make_request(
    engine: Any, prompt: str = "a castle at dusk", seed: int = 1, **changes: Any
) -> GenerationRequest:
    """A small request for `engine`: native size, 2 steps, the model's guidance; override anything."""
    values: dict[str, Any] = dict(
        kind=JobKind.IMAGINE,
        prompt=prompt,
        width=engine.profile.native_size,
        height=engine.profile.native_size,
        steps=2,
        guidance=engine.profile.default_guidance,
        seed=seed,
        model=engine.profile.name,
    )
    values.update(changes)
    return GenerationRequest(**values)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def max_difference(first: list[Image.Image], second: list[Image.Image]) -> int:
    """Largest per-channel difference (0–255) between two equally long lists of images."""
    assert len(first) == len(second)
    return max(int(np.abs(pixels(a) - pixels(b)).max()) for a, b in zip(first, second, strict=True))
