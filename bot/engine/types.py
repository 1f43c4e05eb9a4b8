"""The engine's value objects: what a caller asks for and what it gets back. Torch-free.

Cogs, the credit store and the queue import these without importing torch; only
`bot.engine.engine` (and the pipeline files beside it) touch torch and diffusers.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

SAMPLER_DEFAULT = "default"


class JobKind(StrEnum):
    """What a job does."""

    IMAGINE = "imagine"  #: text → a 2×2 grid of four images
    VARY = "vary"  #: one image (+ prompt) → a new grid of four variations
    UPSCALE = "upscale"  #: one image → one larger image
    SELECT = "select"  #: hand out one image of a finished grid (U1–U4); no GPU work, free


Family = Literal["sd1", "sd2", "sdxl"]


@dataclass(frozen=True)
class ModelProfile:
    """What the engine learned about the loaded model from its config."""

    name: str  #: hub id or directory it was loaded from
    family: Family
    native_size: int  #: 512 for SD 1.x / SD-Turbo, 768 for SD 2.x-v, 1024 for SDXL
    default_steps: int
    min_steps: int
    max_steps: int
    default_guidance: float  #: 0.0 for Turbo-class models (no classifier-free guidance)
    few_step: bool  #: Turbo / LCM class
    max_prompt_tokens: int = 77  #: the text encoder's window, including start/end tokens
    sampler: str = SAMPLER_DEFAULT  #: the scheduler class name, recorded in recipes

    def work_units(self, width: int, height: int, steps: int, images: int) -> float:
        """Work relative to one image at native size and default steps (the credit unit)."""
        pixels = (width * height) / (self.native_size**2)
        return images * pixels * (steps / self.default_steps)


@dataclass(frozen=True)
class GenerationRequest:
    """One job's worth of generation, fully resolved (seed included) so it reproduces."""

    kind: JobKind
    prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int  #: first seed; image i uses seed + i
    negative_prompt: str = ""
    images: int = 4  #: 4 for imagine/vary, 1 for upscale
    chaos: int = 0  #: 0–100, extra diversity across the images
    strength: float | None = None  #: img2img strength for vary/upscale
    init_image: str | None = None  #: path of the source PNG for vary/upscale
    scale: int = 1  #: upscale factor (2 or 4)
    upscale_mode: Literal["subtle", "creative"] | None = None
    relax: bool = False  #: queued for free at the lowest priority
    model: str = ""  #: filled by the queue with the model that will run it

    def batch_key(self) -> tuple[Any, ...]:
        """Jobs with equal keys can share one forward pass."""
        return (
            self.model,
            self.kind,
            self.width,
            self.height,
            self.steps,
            self.guidance,
            self.strength,
            self.scale,
            self.upscale_mode,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "kind": self.kind.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationRequest:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["kind"] = JobKind(values["kind"])
        return cls(**values)

    def replace(self, **changes: Any) -> GenerationRequest:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Recipe:
    """Everything needed to make one image again, written into its PNG."""

    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance: float
    width: int
    height: int
    sampler: str
    model: str
    kind: JobKind = JobKind.IMAGINE
    chaos: int = 0
    strength: float | None = None
    parent: str | None = None  #: path or hash of the image it came from
    scale: int = 1  #: upscale factor that made it (1: not an upscale)
    upscale_mode: str | None = None  #: "subtle" or "creative" for upscales

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "kind": self.kind.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["kind"] = JobKind(values.get("kind", "imagine"))
        return cls(**values)


@dataclass
class GenerationResult:
    """One request's output: its images (PIL), their recipes, the 2×2 grid for four-image jobs."""

    request: GenerationRequest
    images: list[Any]  #: PIL.Image.Image, full resolution
    recipes: list[Recipe]
    grid: Any | None = None  #: PIL.Image.Image for four-image jobs
    warnings: list[str] = field(default_factory=list)  #: e.g. how many prompt tokens were dropped
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  #: seconds per stage of the whole batch


def round_to_multiple(value: float, multiple: int = 64) -> int:
    return max(multiple, math.floor(value / multiple + 0.5) * multiple)
