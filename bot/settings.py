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

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
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
    preview_decoder: str | None = Field(
        None,
        description="A tiny VAE decoder (TAESD for SD 1.x/2.x, TAESDXL for SDXL: a diffusers directory or "
        "id) for sharp previews instead of the latent colour map.",
    )
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
    channels_last: bool = Field(
        True, description="Run the UNet and VAE in channels-last memory layout (faster convolutions)."
    )
    prepack_weights: bool = Field(
        True,
        description="On CPUs, lay out the UNet's weights for oneDNN once at load instead of on every step.",
    )
    compile: bool = Field(
        False,
        description="torch.compile the UNet (with weight freezing on CPUs): minutes of compiling per image "
        "size at start, faster steps after.",
    )
    compile_cache_dir: Path | None = Field(
        None, description="Where compiled kernels are kept between runs (default: DATA_DIR/compile-cache)."
    )


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


class PrivacySettings(BaseModel):
    """How long stored images are kept (see README, "What is stored, and where")."""

    retention_days: int = Field(
        30,
        ge=0,
        le=36_500,
        description="Delete generated and uploaded images this many days after their job; 0 keeps them.",
    )


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


class SafetySettings(BaseModel):
    """Content safety: image checks and review requests (the prompt filter is per server, see /moderation)."""

    image_classifier: str | None = Field(
        None,
        description="Image check model: a StableDiffusionSafetyChecker or an image-classification model "
        "(directory or hub id). Unset = images are not checked.",
    )
    flag_labels: list[str] = Field(
        default_factory=lambda: ["nsfw", "porn", "hentai", "sexy", "unsafe"],
        description="Classifier labels that flag an image (JSON list).",
    )
    threshold: float = Field(
        0.5, gt=0, le=1, description="Score of a flag label at which an image is flagged."
    )
    device: str = Field("cpu", description="Where the classifier runs (cpu keeps GPU memory for generation).")
    flagged_images: Literal["withhold", "spoiler"] = Field(
        "withhold",
        description="Default for servers that did not choose: withhold flagged images or spoiler them.",
    )
    reviews_per_day: int = Field(5, ge=0, le=100, description="Review requests a member may make per day.")


class RaySettings(BaseModel):
    """Where generation runs when WORKERS=ray: Ray actors, one per GPU of a cluster (see README)."""

    address: str | None = Field(
        None,
        description="auto (the cluster this machine joined) or host:port of the head node; unset: start a "
        "private Ray instance on this machine. Not ray:// (Ray Client cannot stream progress).",
    )
    actors: int | None = Field(
        None, ge=1, le=4096, description="Actors per model; unset: one per GPU in the cluster, or 1 on CPU."
    )
    extra_models: list[str] = Field(
        default_factory=list, description="Models served besides MODEL, each by its own actors (JSON list)."
    )
    cpus_per_actor: float = Field(
        1.0, gt=0, description="CPUs each actor reserves (all its work on a CPU node)."
    )
    max_restarts: int = Field(3, ge=-1, description="How often Ray restarts a dead actor (-1: always).")
    connect_timeout_s: float = Field(5.0, gt=0, description="How long to try reaching the cluster at start.")
    start_timeout_s: float = Field(
        600.0, gt=0, description="How long an actor may take to be placed and load its model."
    )
    fallback_local: bool = Field(
        False, description="If the cluster is unreachable at start-up, run local workers (DEVICE) instead."
    )


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
    workers: Literal["local", "ray"] = Field(
        "local", description="local: one worker per DEVICE in this process; ray: Ray actors (RAY__...)."
    )

    engine: EngineSettings = EngineSettings()
    queue: QueueSettings = QueueSettings()
    credits: CreditSettings = CreditSettings()
    discord: DiscordSettings = DiscordSettings()
    safety: SafetySettings = SafetySettings()
    privacy: PrivacySettings = PrivacySettings()
    ray: RaySettings = RaySettings()

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        devices = [part.strip().lower() for part in value.split(",") if part.strip()]
        if not devices or not all(DEVICE_PATTERN.match(d) for d in devices):
            raise ValueError("use auto, cpu, mps, cuda or cuda:N (comma-separated for several workers)")
        return ",".join(devices)

    @model_validator(mode="after")
    def _default_compile_cache(self) -> Settings:
        """Compiled kernels live under DATA_DIR unless ENGINE__COMPILE_CACHE_DIR says otherwise."""
        if self.engine.compile_cache_dir is None:
            cache = self.data_dir / "compile-cache"
            self.engine = self.engine.model_copy(update={"compile_cache_dir": cache})
        return self

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
