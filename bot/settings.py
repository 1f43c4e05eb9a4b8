"""One settings object for the whole bot, read from the environment and `.env`.

Top-level fields are the ones every install touches (`MODEL`, `DEVICE`, ...); the rest sit in groups
set with a double underscore, e.g. `QUEUE__MAX_QUEUED_PER_MEMBER=3`. Nothing here imports torch:
`DEVICE=auto` and `DTYPE=auto` are resolved by the engine, which is the only part that knows the hardware.
`load_settings()` turns any validation problem into one `SettingsError` line that names the variable
and what it accepts, so a typo never ends in a traceback from deep inside a library.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import SettingsError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
Period = Literal["day", "week", "month"]
#: What a reaction on a result message can do (see cogs/reactions.py).
REACTION_ACTIONS = ("u1", "u2", "u3", "u4", "rr", "us", "vx", "dm", "cancel")
DEFAULT_REACTIONS = {
    "1️⃣": "u1",
    "2️⃣": "u2",
    "3️⃣": "u3",
    "4️⃣": "u4",
    "🔄": "rr",
    "⬆️": "us",
    "🔀": "vx",
    "✉️": "dm",
    "❌": "cancel",
}


class EngineSettings(BaseModel):
    """How images are made."""

    preview_every: int = Field(2, ge=1, description="Send a latent preview every N denoising steps.")
    max_batch_images: int = Field(
        16, ge=1, le=256, description="Most images one forward pass may carry (4 per /imagine job)."
    )
    upscaler: str | None = Field(
        None, description="Optional dedicated upscaler: a diffusers directory/id or a spandrel model file."
    )
    max_upload_bytes: int = Field(10_000_000, ge=1, description="Largest image a member may upload.")
    max_upload_pixels: int = Field(4096 * 4096, ge=64 * 64, description="Decompression-bomb guard.")
    max_output_side: int = Field(4096, ge=256, description="Largest side an upscale may produce.")
    attention_slicing: bool = Field(False, description="Trade speed for memory on small GPUs.")


class QueueSettings(BaseModel):
    """Fair-share queue limits (defaults; scopes may override)."""

    max_queued_per_member: int = Field(5, ge=1)
    max_running_per_member: int = Field(1, ge=1)
    max_queue_length: int = Field(100, ge=1)
    job_timeout_s: float = Field(600.0, gt=0)
    batching: bool = True


class CreditSettings(BaseModel):
    """Defaults for a scope that no moderator has configured yet."""

    default_allowance: int = Field(40, ge=0, le=1_000_000_000)
    period: Period = "week"
    relax_allowed: bool = False
    hold_timeout_s: float = Field(3600.0, gt=0, description="An open hold older than this is released.")


class DiscordSettings(BaseModel):
    """Discord-facing behaviour."""

    moderator_role_id: int | None = Field(None, description="Members with this role count as moderators.")
    preview_edit_interval_s: float = Field(2.5, ge=1.0, description="Minimum time between progress edits.")
    imagine_cooldown_s: float = Field(0.0, ge=0)
    reactions: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_REACTIONS),
        description="Emoji → action on Atelier's result messages (JSON in DISCORD__REACTIONS).",
    )

    @field_validator("reactions")
    @classmethod
    def _check_reactions(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value.values()) - set(REACTION_ACTIONS))
        if unknown:
            raise ValueError(f"unknown action(s) {unknown}; use {', '.join(REACTION_ACTIONS)}")
        return value


class Settings(BaseSettings):
    """Everything Atelier reads from its environment."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
        env_ignore_empty=True,
        case_sensitive=False,
    )

    discord_token: SecretStr | None = Field(None, description="Bot token; needed only to connect.")
    model: str = Field("stabilityai/sd-turbo", min_length=1, description="Hub id or local diffusers dir.")
    device: str = Field("auto", description="auto, cpu, mps, cuda or cuda:N; comma-separate for several.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    data_dir: Path = Path("./data")
    dev_guild_id: int | None = Field(None, description="Sync commands to this guild only (instant).")
    discord_api_base: str | None = Field(
        None, description="Discord REST base URL; only for a local fake Discord in end-to-end tests."
    )
    discord_gateway_url: str | None = Field(
        None, description="Discord gateway URL to go with DISCORD_API_BASE (end-to-end tests only)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    engine: EngineSettings = EngineSettings()
    queue: QueueSettings = QueueSettings()
    credits: CreditSettings = CreditSettings()
    discord: DiscordSettings = DiscordSettings()

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        devices = [part.strip().lower() for part in value.split(",") if part.strip()]
        if not devices or not all(DEVICE_PATTERN.match(d) for d in devices):
            raise ValueError("use auto, cpu, mps, cuda or cuda:N (comma-separated for several workers)")
        return ",".join(devices)

    @property
    def devices(self) -> list[str]:
        """The configured devices, one generation worker each."""
        return self.device.split(",")

    @property
    def database_path(self) -> Path:
        return self.data_dir / "atelier.sqlite3"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"


def _env_name(location: tuple[int | str, ...]) -> str:
    return "__".join(str(part) for part in location).upper()


def load_settings(**overrides: object) -> Settings:
    """Read the settings, or raise one readable `SettingsError` line per bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            given = error.get("input")
            name = _env_name(error["loc"])
            secret = "TOKEN" in name or isinstance(given, dict) or given is None
            shown = "" if secret else f"={given!r}"
            lines.append(f"{name}{shown}: {message}")
        raise SettingsError("; ".join(lines)) from None
