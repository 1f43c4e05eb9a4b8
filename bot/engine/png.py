"""PNGs that carry their recipe and say they are AI-generated. Torch-free.

Every image is written with:
- `parameters`: the recipe in the AUTOMATIC1111 format, which most image tools read back:

      a castle at dusk
      Negative prompt: fog, people
      Steps: 4, Sampler: EulerDiscreteScheduler, CFG scale: 0.0, Seed: 42, Size: 704x384, Model: m, ...

  The third line also carries Atelier's own keys where they apply: `Denoising strength` (vary, upscale),
  `Chaos`, `Job` (imagine/vary/upscale), `Parent` (the source image), `Upscale` and `Upscale mode`.
  Values holding a comma, colon or quote are JSON-quoted, as A1111 does. Floats are written with Python's
  shortest round-trip repr, so a recipe read back reproduces the exact same numbers.
- `Software: Atelier`, `ai_generated: true`, a `Description` sentence, and an XMP packet with the IPTC
  digital source type `trainedAlgorithmicMedia`, the marker image hosts look for.

Pillow writes a text chunk as tEXt when it is Latin-1 and as iTXt (UTF-8) otherwise, so prompts in any
script survive; `read_recipe` reads either.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from bot.engine.types import JobKind, Recipe
from bot.errors import InvalidImage

SOFTWARE = "Atelier"
_NEGATIVE = "Negative prompt:"
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_XMP = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
    'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"/>'
    '</rdf:RDF></x:xmpmeta><?xpacket end="r"?>'
)


def parameters_text(recipe: Recipe) -> str:
    """The recipe as A1111 `parameters` text (prompt line, optional negative line, key: value line)."""
    fields: dict[str, Any] = {
        "Steps": recipe.steps,
        "Sampler": recipe.sampler,
        "CFG scale": repr(float(recipe.guidance)),
        "Seed": recipe.seed,
        "Size": f"{recipe.width}x{recipe.height}",
        "Model": recipe.model,
    }
    if recipe.strength is not None:
        fields["Denoising strength"] = repr(float(recipe.strength))
    if recipe.chaos:
        fields["Chaos"] = recipe.chaos
    fields["Job"] = recipe.kind.value
    if recipe.parent:
        fields["Parent"] = recipe.parent
    if recipe.scale != 1:
        fields["Upscale"] = recipe.scale
    if recipe.upscale_mode:
        fields["Upscale mode"] = recipe.upscale_mode
    fields["Version"] = SOFTWARE
    lines = [recipe.prompt]
    if recipe.negative_prompt:
        lines.append(f"{_NEGATIVE} {recipe.negative_prompt}")
    lines.append(", ".join(f"{key}: {_quote(str(value))}" for key, value in fields.items()))
    return "\n".join(lines)


def parse_parameters(text: str) -> Recipe:
    """The Recipe in A1111 `parameters` text (Atelier's or A1111's own), or `InvalidImage` if incomplete."""
    *lines, last = text.strip().split("\n")
    if len(_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        line = line.strip()
        if line.startswith(_NEGATIVE) or negative:
            negative.append(line.removeprefix(_NEGATIVE).strip() if not negative else line)
        else:
            prompt.append(line)
    values = {key.strip(): _unquote(value.strip()) for key, value in _PARAM.findall(last)}
    missing = [key for key in ("Steps", "CFG scale", "Seed", "Size") if key not in values]
    if missing:
        raise InvalidImage(f"The recipe in this image is incomplete: it has no {', '.join(missing)}.")
    size = _SIZE.match(values["Size"])
    try:
        if size is None:
            raise ValueError(values["Size"])
        strength = values.get("Denoising strength")
        return Recipe(
            prompt="\n".join(prompt),
            negative_prompt="\n".join(negative),
            seed=int(values["Seed"]),
            steps=int(values["Steps"]),
            guidance=float(values["CFG scale"]),
            width=int(size.group(1)),
            height=int(size.group(2)),
            sampler=values.get("Sampler", ""),
            model=values.get("Model", ""),
            kind=JobKind(values.get("Job", JobKind.IMAGINE.value)),
            chaos=int(values.get("Chaos", 0)),
            strength=float(strength) if strength is not None else None,
            parent=values.get("Parent"),
            scale=int(values.get("Upscale", 1)),
            upscale_mode=values.get("Upscale mode"),
        )
    except ValueError as exc:
        raise InvalidImage(f"The recipe in this image has a malformed value ({exc}).") from None


def encode_png(image: Image.Image, recipe: Recipe) -> bytes:
    """PNG bytes of `image` with its recipe and the AI-generated markers (see the module docstring)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters_text(recipe))
    info.add_text("Software", SOFTWARE)
    info.add_text("ai_generated", "true")
    info.add_text("Description", f"AI-generated image, made with {SOFTWARE} using the model {recipe.model}.")
    info.add_itxt("XML:com.adobe.xmp", _XMP)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def read_recipe(source: bytes | str | Path) -> Recipe:
    """The recipe stored in a PNG (bytes or a path), or `InvalidImage` if there is none."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else Path(source)) as image:
            text = image.info.get("parameters")
    except (UnidentifiedImageError, OSError, ValueError):
        raise InvalidImage("That file is not a PNG I can read.") from None
    if not isinstance(text, str):
        raise InvalidImage("This image carries no generation recipe (no `parameters` text in the PNG).")
    return parse_parameters(text)


def _quote(text: str) -> str:
    if any(char in text for char in ',:"\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text
