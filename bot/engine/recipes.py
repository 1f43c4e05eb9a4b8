"""Making an image again from its recipe. Torch-free.

A recipe comes from `GenerationResult.recipes` or from a PNG (`bot.engine.png.read_recipe`). Requests that
start from an earlier image for something new (V1–V4, upscales) are built by `bot.followups`.
"""

from __future__ import annotations

from bot.engine.types import GenerationRequest, Recipe


def replay_request(recipe: Recipe) -> GenerationRequest:
    """The one-image request that makes `recipe`'s image again (same device and dtype: same pixels).

    Vary and upscale recipes need their parent image still at `recipe.parent`.
    """
    return GenerationRequest(
        kind=recipe.kind,
        prompt=recipe.prompt,
        negative_prompt=recipe.negative_prompt,
        width=recipe.width,
        height=recipe.height,
        steps=recipe.steps,
        guidance=recipe.guidance,
        seed=recipe.seed,
        images=1,
        chaos=recipe.chaos,
        strength=recipe.strength,
        init_image=recipe.parent,
        scale=recipe.scale,
        upscale_mode=recipe.upscale_mode,  # type: ignore[arg-type]
        model=recipe.model,
    )
