"""Start-up of the Discord bot: settings → database → engine → queue → bot."""

from __future__ import annotations

from bot.errors import SettingsError
from bot.settings import load_settings


def run_bot() -> int:
    settings = load_settings()
    if settings.discord_token is None:
        raise SettingsError("DISCORD_TOKEN is not set: create a bot in the Discord developer portal (see README).")
    raise SettingsError("The Discord layer is not built yet.")
