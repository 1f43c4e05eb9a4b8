"""Image checks: a configured classifier looks at uploads and results before anyone sees them.

Two kinds of model are accepted for `SAFETY__IMAGE_CLASSIFIER` (a local directory or a hub id):

- the Stable Diffusion safety checker (`StableDiffusionSafetyChecker`, e.g.
  `CompVis/stable-diffusion-safety-checker`), with its CLIP image processor: an image is flagged when the
  checker reports an NSFW concept;
- any transformers image-classification model (`pipeline("image-classification")`): an image is flagged
  when the score of one of `SAFETY__FLAG_LABELS` reaches `SAFETY__THRESHOLD`.

The classifier is small next to a diffusion model and runs in its own thread on `SAFETY__DEVICE`
(CPU by default, so it never competes with the generation workers for GPU memory). Without a classifier
nothing is checked, and `open_services` says so at start-up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.errors import SettingsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    flagged: bool
    label: str = ""  #: the flagged label, or the best label when not flagged
    score: float = 0.0

    def describe(self) -> str:
        return f"{self.label} {self.score:.2f}" if self.label else "flagged"


class ImageChecker:
    """A loaded classifier. `check` is blocking; `acheck` runs it off the event loop, one call at a time."""

    def __init__(self, name: str, classify: Any, *, labels: tuple[str, ...], threshold: float) -> None:
        self.name = name
        self._classify = classify
        self._labels = {label.casefold() for label in labels}
        self._threshold = threshold
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, model: str, *, labels: tuple[str, ...], threshold: float, device: str = "cpu"
    ) -> ImageChecker:
        try:
            architectures = _architectures(model)
            if "StableDiffusionSafetyChecker" in architectures:
                classify = _sd_safety_checker(model, device)
            else:
                classify = _classification_pipeline(model, device)
        except (OSError, ValueError) as exc:
            raise SettingsError(f"SAFETY__IMAGE_CLASSIFIER={model!r} cannot be loaded: {exc}") from None
        return cls(model, classify, labels=labels, threshold=threshold)

    def check(self, images: list[Any]) -> list[Verdict]:
        """One verdict per PIL image."""
        if not images:
            return []
        with self._lock:
            outputs = self._classify([image.convert("RGB") for image in images])
        return [self._verdict(output) for output in outputs]

    async def acheck(self, images: list[Any]) -> list[Verdict]:
        return await asyncio.to_thread(self.check, images)

    def _verdict(self, output: Any) -> Verdict:
        if isinstance(output, Verdict):  # the SD safety checker decides by itself
            return output
        scores = {item["label"].casefold(): float(item["score"]) for item in output}
        flagged = [
            (s, label) for label, s in scores.items() if label in self._labels and s >= self._threshold
        ]
        if flagged:
            score, label = max(flagged)
            return Verdict(True, label, score)
        label, score = max(scores.items(), key=lambda item: item[1], default=("", 0.0))
        return Verdict(False, label, score)


def _architectures(model: str) -> list[str]:
    local = Path(model) / "config.json"
    if local.is_file():
        return json.loads(local.read_text()).get("architectures") or []
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model).architectures or []


def _classification_pipeline(model: str, device: str) -> Any:
    from transformers import pipeline

    classifier = pipeline("image-classification", model=model, device=device)

    def classify(images: list[Any]) -> list[Any]:
        return classifier(images, top_k=None)

    return classify


def _sd_safety_checker(model: str, device: str) -> Any:
    import numpy as np
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    checker = StableDiffusionSafetyChecker.from_pretrained(model, dtype=torch.float32).to(device).eval()
    processor = CLIPImageProcessor.from_pretrained(model)

    def classify(images: list[Any]) -> list[Verdict]:
        clip_input = processor(images=images, return_tensors="pt").pixel_values.to(device)
        blank = np.zeros((len(images), 1, 1, 3), dtype=np.float32)  # it only blacks these out
        with torch.inference_mode():
            _, concepts = checker(clip_input=clip_input, images=blank)
        return [Verdict(bool(c), "nsfw concept" if c else "", 1.0 if c else 0.0) for c in concepts]

    return classify
