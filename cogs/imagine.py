"""`/imagine`, `/vary` and `/upscale`: turn an interaction into a queued job and its job message."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import followups
from bot.engine.images import load_image
from bot.engine.prompt import ASPECT_CHOICES, parse_prompt
from bot.engine.types import JobKind
from bot.errors import InvalidImage
from bot.files import save_upload
from bot.members import Preferences
from cogs.actions import InteractionOrigin, start_job

if TYPE_CHECKING:
    from cogs.client import AtelierBot

SEED_MAX = 4_294_967_295


def imagine_cooldown(interaction: discord.Interaction) -> app_commands.Cooldown | None:
    """One /imagine per `DISCORD__IMAGINE_COOLDOWN_S` per member (none when it is 0)."""
    seconds = interaction.client.services.settings.discord.imagine_cooldown_s  # type: ignore[attr-defined]
    return app_commands.Cooldown(1, seconds) if seconds > 0 else None


_HAS_FLAG = {
    "aspect": re.compile(r"(?:^|\s)--(?:ar|aspect)\b"),
    "stylize": re.compile(r"(?:^|\s)--(?:s|stylize)\b"),
    "seed": re.compile(r"(?:^|\s)--seed\b"),
    "negative": re.compile(r"(?:^|\s)--no\b"),
    "relax": re.compile(r"(?:^|\s)--(?:relax|fast)\b"),
}


def compose_prompt(
    text: str,
    preferences: Preferences,
    *,
    aspect: str | None = None,
    seed: int | None = None,
    negative: str | None = None,
) -> str:
    """Add picker options and the member's saved defaults as flags, unless the prompt already has them.

    Precedence: flags typed in the prompt, then the command's options, then `/settings` defaults.
    """
    extra = []
    if not _HAS_FLAG["aspect"].search(text) and (aspect or preferences.aspect):
        extra.append(f"--ar {aspect or preferences.aspect}")
    if not _HAS_FLAG["stylize"].search(text) and preferences.stylize is not None:
        extra.append(f"--stylize {preferences.stylize}")
    if not _HAS_FLAG["seed"].search(text) and seed is not None:
        extra.append(f"--seed {seed}")
    if not _HAS_FLAG["relax"].search(text) and preferences.relax:
        extra.append("--relax")
    composed = " ".join([text.strip(), *extra])
    if negative and not _HAS_FLAG["negative"].search(text):
        composed += f" --no {negative}"  # last: --no takes the rest of the line
    return composed


async def read_upload(bot: AtelierBot, scope: int, attachment: discord.Attachment) -> tuple[str, Any]:
    """Check, download and store an uploaded image; returns (path, the PIL image).

    The image is stored before the content check (in `start_job`) so that a refused upload can still be
    shown to moderators if its member asks for a review; retention deletes it like any other upload.
    """
    engine = bot.services.settings.engine
    if attachment.size > engine.max_upload_bytes:
        raise InvalidImage(
            f"`{attachment.filename}` is {attachment.size / 1e6:.1f} MB; the limit is "
            f"{engine.max_upload_bytes / 1e6:.0f} MB. Upload a smaller PNG, JPEG or WebP."
        )
    if attachment.content_type and not attachment.content_type.startswith("image/"):
        raise InvalidImage(
            f"`{attachment.filename}` is not an image ({attachment.content_type}). "
            "Upload a PNG, JPEG or WebP."
        )
    data = await attachment.read()
    image = await asyncio.to_thread(
        load_image, data, max_bytes=engine.max_upload_bytes, max_pixels=engine.max_upload_pixels
    )
    path = await asyncio.to_thread(save_upload, bot.services.settings.images_dir, scope, image)
    return str(path), image


class Imagine(commands.Cog):
    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    @app_commands.command(
        name="imagine", description="Make four images from a prompt (flags: --ar --seed --no ...)"
    )
    @app_commands.describe(
        prompt="What to draw, with optional flags: --ar 16:9 --seed 42 --no fog --chaos 30 --stylize 250",
        aspect="Aspect ratio (same as --ar)",
        seed="Seed for reproducible images (same as --seed)",
        negative="What to keep out of the picture (same as --no)",
    )
    @app_commands.choices(aspect=[app_commands.Choice(name=a, value=a) for a in ASPECT_CHOICES])
    @app_commands.checks.dynamic_cooldown(imagine_cooldown, key=lambda i: (i.guild_id, i.user.id))
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 2000],
        aspect: str | None = None,
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
        negative: app_commands.Range[str, 1, 1000] | None = None,
    ) -> None:
        origin = InteractionOrigin(interaction)
        services = self.bot.services
        preferences = await services.members.preferences(origin.scope, interaction.user.id)
        text = compose_prompt(prompt, preferences, aspect=aspect, seed=seed, negative=negative)
        parsed = parse_prompt(text, services.profile)
        await start_job(self.bot, origin, parsed.to_request(kind=JobKind.IMAGINE))

    @app_commands.command(name="vary", description="Make four variations of an image you upload")
    @app_commands.describe(
        image="A PNG, JPEG or WebP image",
        prompt="What the variations should show (default: the image's own prompt, if it has one)",
        strength="subtle keeps the composition; strong changes more",
    )
    async def vary(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, 2000] | None = None,
        strength: Literal["subtle", "strong"] = "subtle",
    ) -> None:
        origin = InteractionOrigin(interaction)
        services = self.bot.services
        await origin.defer_privately()
        path, upload = await read_upload(self.bot, origin.scope, image)
        parsed = parse_prompt(prompt, services.profile) if prompt else None
        request = followups.vary_upload(path, upload.width, upload.height, services.profile, strength, parsed)
        await start_job(self.bot, origin, request, upload=upload)

    @app_commands.command(name="upscale", description="Make an uploaded image 2× or 4× larger")
    @app_commands.describe(
        image="A PNG, JPEG or WebP image",
        scale="How much larger (2 or 4)",
        mode="subtle keeps detail as it is; creative adds new detail",
    )
    async def upscale(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        scale: Literal[2, 4] = 2,
        mode: Literal["subtle", "creative"] = "subtle",
    ) -> None:
        origin = InteractionOrigin(interaction)
        services = self.bot.services
        await origin.defer_privately()
        path, upload = await read_upload(self.bot, origin.scope, image)
        request = followups.upscale_upload(
            path, upload.width, upload.height, services.profile, scale, mode, services.settings.engine
        )
        await start_job(self.bot, origin, request, upload=upload)


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Imagine(bot))
