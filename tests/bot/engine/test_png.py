"""PNG metadata: every image carries its recipe (A1111 format) and says it is AI-generated."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from bot.engine.png import encode_png, parameters_text, parse_parameters, read_recipe
from bot.engine.types import JobKind, Recipe
from bot.errors import InvalidImage

BASE = Recipe(
    prompt="a castle at dusk",
    negative_prompt="fog, people",
    seed=42,
    steps=4,
    guidance=0.0,
    width=704,
    height=384,
    sampler="EulerDiscreteScheduler",
    model="stabilityai/sd-turbo",
)


def test_parameters_follow_the_a1111_layout() -> None:
    """Prompt line, 'Negative prompt:' line, then the comma-separated settings line A1111 tools read."""
    lines = parameters_text(BASE).split("\n")
    assert lines[0] == "a castle at dusk"
    assert lines[1] == "Negative prompt: fog, people"
    assert lines[2].startswith(
        "Steps: 4, Sampler: EulerDiscreteScheduler, CFG scale: 0.0, Seed: 42, Size: 704x384, "
        "Model: stabilityai/sd-turbo"
    )
    assert "Denoising strength" not in lines[2]


@pytest.mark.parametrize(
    "recipe",
    [
        BASE,
        dataclasses.replace(BASE, negative_prompt="", chaos=30),
        Recipe(
            prompt='日本の城, 夕暮れ: "quoted"',
            negative_prompt="",
            seed=4294967295,
            steps=30,
            guidance=7.416666666666667,
            width=1344,
            height=768,
            sampler="DDIMScheduler",
            model="C:\\models\\my, model",
            kind=JobKind.VARY,
            strength=0.35,
            parent="/data/images/12/3.png",
        ),
        Recipe(
            prompt="a ship",
            negative_prompt="text",
            seed=7,
            steps=4,
            guidance=0.0,
            width=1024,
            height=1024,
            sampler="EulerDiscreteScheduler",
            model="sd-turbo",
            kind=JobKind.UPSCALE,
            strength=0.2,
            parent="/data/images/12/1.png",
            scale=2,
            upscale_mode="subtle",
        ),
    ],
    ids=["imagine", "chaos-no-negative", "vary-unicode-quotes", "upscale"],
)
def test_recipes_round_trip_through_a_png(recipe: Recipe) -> None:
    """Writing a PNG and reading it back gives the identical recipe, floats and odd characters included."""
    image = Image.new("RGB", (16, 16), "purple")
    assert read_recipe(encode_png(image, recipe)) == recipe


def test_pngs_say_they_are_ai_generated(tmp_path: Path) -> None:
    """Software, an ai_generated flag, a description and the IPTC 'trained algorithmic media' XMP marker."""
    path = tmp_path / "1.png"
    path.write_bytes(encode_png(Image.new("RGB", (8, 8)), BASE))
    with Image.open(path) as image:
        info = image.info
        assert image.size == (8, 8)
    assert info["Software"] == "Atelier"
    assert info["ai_generated"] == "true"
    assert "AI-generated" in info["Description"] and "stabilityai/sd-turbo" in info["Description"]
    assert "trainedAlgorithmicMedia" in info["XML:com.adobe.xmp"]
    assert read_recipe(path) == BASE


def test_a1111_images_can_be_read() -> None:
    """Parameters written by AUTOMATIC1111 itself (with its own extra keys) are understood."""
    text = (
        "masterpiece, a cat\nwearing a hat\nNegative prompt: lowres, blurry\n"
        "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x768, "
        'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "a: 1, b: 2", Version: v1.6.0'
    )
    recipe = parse_parameters(text)
    assert recipe.prompt == "masterpiece, a cat\nwearing a hat"
    assert recipe.negative_prompt == "lowres, blurry"
    assert (recipe.steps, recipe.guidance, recipe.seed) == (20, 7.0, 1234)
    assert (recipe.width, recipe.height, recipe.sampler) == (512, 768, "DPM++ 2M Karras")
    assert recipe.model == "v1-5-pruned-emaonly" and recipe.kind is JobKind.IMAGINE


def png_with_parameters(text: str | None) -> bytes:
    info = PngImagePlugin.PngInfo()
    if text is not None:
        info.add_text("parameters", text)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("source", "says"),
    [
        (b"not a png", "not a PNG I can read"),
        (png_with_parameters(None), "carries no generation recipe"),
        (png_with_parameters("a cat\nSteps: 20, Sampler: Euler, Size: 512x512"), "it has no CFG scale, Seed"),
        (png_with_parameters("a cat\nSteps: 20, CFG scale: 7, Seed: 1, Size: big"), "malformed value"),
        (png_with_parameters("a cat\nSteps: 20, CFG scale: 7, Seed: x, Size: 8x8"), "malformed value"),
        (png_with_parameters("a\nSteps: 2, CFG scale: 7, Seed: 1, Size: 8x8, Job: dance"), "malformed value"),
    ],
    ids=["not-png", "no-recipe", "incomplete", "bad-size", "bad-seed", "bad-job"],
)
def test_missing_or_broken_recipes_are_refused(source: bytes, says: str) -> None:
    """A file without a usable recipe gets an InvalidImage that says what is missing."""
    with pytest.raises(InvalidImage, match=says):
        read_recipe(source)
