"""The Midjourney-style prompt language. Torch-free, so cogs can refuse a bad prompt before queueing.

    a castle at dusk --ar 16:9 --seed 42 --no fog, people --chaos 30 --stylize 250 --steps 6 --q 1

The description comes first; flags follow. A flag is `--name` at the start of a word (an em dash `—name`, as
phones type it, counts too), optionally `--name=value`. Every flag but `--no` takes one word; `--no` takes
everything up to the next flag (a comma-separated list becomes the negative prompt). `--relax` takes none.

    --ar / --aspect W:H   size bucket of about the model's native pixel count, sides multiples of 64,
                          ratio between 1:4 and 4:1
    --seed N              0…4294967295; image i of a grid uses seed + i (wrapping at 2³²)
    --no TEXT             the negative prompt
    --chaos / --c N       0…100, extra diversity across the four images
    --stylize / --s N     0…1000 (default 100), maps to classifier-free guidance, see `guidance_for`
    --steps N             denoising steps, within the model's sane range (ModelProfile.min/max_steps)
    --q / --quality Q     0.25, 0.5, 1 or 2: multiplies the model's default steps (--steps wins if both)
    --relax               queue for free at the lowest priority

Anything malformed raises `InvalidPrompt` with a sentence naming the flag and what it accepts. A prompt too
long for the engine raises too; the count is a lower bound of the CLIP token count (every word, digit and
run of punctuation is at least one token), so a prompt that fits is never refused.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass

from bot.engine.types import GenerationRequest, JobKind, ModelProfile, round_to_multiple
from bot.errors import InvalidPrompt

MAX_SEED = 4_294_967_295
MAX_RATIO = 4.0
MAX_CHAOS = 100
MAX_STYLIZE = 1000
DEFAULT_STYLIZE = 100
QUALITY_CHOICES = (0.25, 0.5, 1.0, 2.0)
#: The engine encodes a long prompt as up to this many windows of the text encoder (A1111-style chunks).
MAX_PROMPT_CHUNKS = 3
#: What a Discord picker offers; `--ar` accepts any ratio within 1:4…4:1.
ASPECT_CHOICES = ["1:1", "4:3", "3:2", "16:9", "21:9", "2:1", "3:4", "2:3", "9:16", "1:2"]

# `--name`, or `—name` / `–name` (phones turn "--" into a dash) only when a letter follows the dash.
_FLAG = re.compile(r"(?<!\S)(?:--(\S*)|[—–]([^\W\d_]\S*))")
_ASPECT = re.compile(r"^(\d{1,4}):(\d{1,4})$")
# One match per CLIP pre-token (its pattern, in Python's dialect): a contraction suffix, a run of letters,
# one digit, or a run of other non-space characters.
_PRE_TOKEN = re.compile(r"'(?:s|t|re|ve|m|ll|d)|[^\W\d_]+|\d|(?:[^\w\s]|_)+", re.IGNORECASE)

_ALIASES = {
    "ar": "ar",
    "aspect": "ar",
    "seed": "seed",
    "no": "no",
    "chaos": "chaos",
    "c": "chaos",
    "stylize": "stylize",
    "s": "stylize",
    "steps": "steps",
    "q": "quality",
    "quality": "quality",
    "relax": "relax",
}
_KNOWN = "--ar, --seed, --no, --chaos (--c), --stylize (--s), --steps, --q, --relax"


@dataclass(frozen=True)
class ParsedPrompt:
    """A prompt with its flags resolved against one model's profile."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    seed: int | None  #: None: chosen at random when the request is made
    steps: int
    guidance: float
    chaos: int
    stylize: int
    quality: float
    relax: bool
    aspect: str  #: reduced "W:H"

    def to_request(self, kind: JobKind = JobKind.IMAGINE, seed: int | None = None) -> GenerationRequest:
        """The request to queue; a missing seed is drawn now, so the recipe records it."""
        if seed is None:
            seed = self.seed if self.seed is not None else random_seed()
        return GenerationRequest(
            kind=kind,
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            width=self.width,
            height=self.height,
            steps=self.steps,
            guidance=self.guidance,
            seed=seed,
            chaos=self.chaos,
            relax=self.relax,
        )


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


def parse_prompt(text: str, profile: ModelProfile) -> ParsedPrompt:
    """Split `text` into description and flags and resolve them for `profile`, or raise `InvalidPrompt`."""
    description, flags, negatives = _split(text)
    if not description:
        raise InvalidPrompt("The prompt is empty: describe the image first, then add any --flags.")
    negative = ", ".join(negatives)
    aspect = _aspect(flags.pop("ar", None))
    width, height = size_for_aspect(aspect, profile.native_size)
    seed = _integer("seed", flags.pop("seed", None), 0, MAX_SEED)
    chaos = _integer("chaos", flags.pop("chaos", None), 0, MAX_CHAOS) or 0
    stylize = _integer("stylize", flags.pop("stylize", None), 0, MAX_STYLIZE)
    quality = _quality(flags.pop("quality", None))
    steps = _integer(
        "steps", flags.pop("steps", None), profile.min_steps, profile.max_steps, " for this model"
    )
    relax = flags.pop("relax", None) is not None
    _check_length("prompt", description, profile)
    _check_length("negative prompt (--no)", negative, profile)
    if steps is None:
        steps = min(profile.max_steps, max(profile.min_steps, round(profile.default_steps * quality)))
    return ParsedPrompt(
        prompt=description,
        negative_prompt=negative,
        width=width,
        height=height,
        seed=seed,
        steps=steps,
        guidance=guidance_for(stylize, profile),
        chaos=chaos,
        stylize=DEFAULT_STYLIZE if stylize is None else stylize,
        quality=quality,
        relax=relax,
        aspect=aspect,
    )


def size_for_aspect(aspect: str, native: int) -> tuple[int, int]:
    """(width, height) with about native² pixels in ratio `aspect`, each side a multiple of 64."""
    w, h = (int(part) for part in aspect.split(":"))
    ratio = w / h
    area = native * native
    return round_to_multiple(math.sqrt(area * ratio)), round_to_multiple(math.sqrt(area / ratio))


def guidance_for(stylize: int | None, profile: ModelProfile) -> float:
    """Classifier-free guidance for `--stylize`: linear from (0, low) to (100, default) to (1000, high).

    Standard models: low 1.0 (guidance off), high twice the default. Few-step models are trained without
    guidance: up to the default stylize it stays off (0), above it runs from 1.0 (which diffusers treats
    as off too, so there is no jump in effect) to a mild 2.0 at 1000.
    """
    default = profile.default_guidance
    if stylize is None:
        return default
    if profile.few_step:
        if stylize <= DEFAULT_STYLIZE:
            return default
        return round(1.0 + (stylize - DEFAULT_STYLIZE) / (MAX_STYLIZE - DEFAULT_STYLIZE), 2)
    low, high = 1.0, 2 * default
    if stylize <= DEFAULT_STYLIZE:
        value = low + (default - low) * stylize / DEFAULT_STYLIZE
    else:
        value = default + (high - default) * (stylize - DEFAULT_STYLIZE) / (MAX_STYLIZE - DEFAULT_STYLIZE)
    return round(value, 2)


def token_lower_bound(text: str) -> int:
    """At least this many CLIP tokens (without start/end tokens): one per word, digit or punctuation run."""
    return len(_PRE_TOKEN.findall(text))


def prompt_token_limit(profile: ModelProfile) -> int:
    """The most prompt tokens the engine encodes: MAX_PROMPT_CHUNKS windows minus their start/end tokens."""
    return MAX_PROMPT_CHUNKS * (profile.max_prompt_tokens - 2)


_ALLOWED = {
    "ar": "a ratio W:H between 1:4 and 4:1, e.g. 16:9",
    "seed": f"a whole number from 0 to {MAX_SEED}",
    "no": "the things to keep out of the image, e.g. `--no fog, people`",
    "chaos": f"a whole number from 0 to {MAX_CHAOS}",
    "stylize": f"a whole number from 0 to {MAX_STYLIZE} (default {DEFAULT_STYLIZE})",
    "steps": "a whole number of denoising steps",
    "quality": "one of 0.25, 0.5, 1 or 2",
}


def _split(text: str) -> tuple[str, dict[str, str], list[str]]:
    """(description, single-valued flags by canonical name, the `--no` values in order)."""
    matches = list(_FLAG.finditer(text))
    description = text[: matches[0].start()] if matches else text
    values: dict[str, str] = {}
    negatives: list[str] = []
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        word = match.group(1) if match.group(1) is not None else match.group(2)
        raw, _, inline = word.partition("=")
        value = " ".join(filter(None, [inline.strip(), text[match.end() : end].strip()]))
        name = _ALIASES.get(raw.lower())
        if not raw:
            raise InvalidPrompt(f"A lone `--` is not a flag: write `--name value`. Flags: {_KNOWN}.")
        if name is None:
            raise InvalidPrompt(f"Unknown flag `--{raw}`. Flags: {_KNOWN}.")
        if name in values:
            raise InvalidPrompt(f"`--{raw}` is given twice; give each flag once.")
        if name == "relax":
            if value:
                raise InvalidPrompt(f"`--relax` takes no value (got `{value}`); put the description first.")
        elif not value:
            raise InvalidPrompt(f"`--{raw}` needs a value: {_ALLOWED[name]}.")
        elif name != "no" and " " in value:
            raise InvalidPrompt(
                f"`--{raw}` takes one value, but got `{value}`. Put the description before the flags."
            )
        if name == "no":
            negatives.append(value)
        else:
            values[name] = value
    return " ".join(description.split()), values, negatives


def _aspect(value: str | None) -> str:
    if value is None:
        return "1:1"
    match = _ASPECT.match(value)
    if not match or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        raise InvalidPrompt(f"`--ar` must look like W:H with whole numbers, e.g. 16:9 (got `{value}`).")
    w, h = int(match.group(1)), int(match.group(2))
    if not 1 / MAX_RATIO <= w / h <= MAX_RATIO:
        shape = "wide" if w > h else "tall"
        raise InvalidPrompt(f"`--ar {value}` is too {shape}: the ratio must be between 1:4 and 4:1.")
    divisor = math.gcd(w, h)
    return f"{w // divisor}:{h // divisor}"


def _integer(name: str, value: str | None, low: int, high: int, where: str = "") -> int | None:
    if value is None:
        return None
    if not re.fullmatch(r"\d+", value) or not low <= int(value) <= high:
        raise InvalidPrompt(f"`--{name}` must be a whole number from {low} to {high}{where} (got `{value}`).")
    return int(value)


def _quality(value: str | None) -> float:
    if value is None:
        return 1.0
    try:
        quality = float(value)
    except ValueError:
        quality = -1.0
    if quality not in QUALITY_CHOICES:
        raise InvalidPrompt(f"`--q` must be one of 0.25, 0.5, 1 or 2 (got `{value}`).")
    return quality


def _check_length(what: str, text: str, profile: ModelProfile) -> None:
    tokens, limit = token_lower_bound(text), prompt_token_limit(profile)
    if tokens > limit:
        raise InvalidPrompt(
            f"The {what} is too long: at least {tokens} tokens, and the model reads at most {limit}. "
            f"Cut about {tokens - limit} words."
        )
