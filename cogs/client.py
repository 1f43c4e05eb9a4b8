"""`AtelierBot`: the discord.py client, wired to the services in `bot/`.

Start-up order (see `bot/app.py`): the services exist before the client; `setup_hook` loads the cogs,
registers the persistent buttons, hooks the job-message presenter onto the queue's events, and syncs
the slash commands only when their definition changed since the last sync (a global sync can take up to
an hour to reach every client, so doing it on every start would be both slow and rate-limited).
"""

from __future__ import annotations

import hashlib
import json
import logging

import discord
from discord.ext import commands

from bot.services import Services
from cogs.errors import AtelierTree

log = logging.getLogger(__name__)

EXTENSIONS = (
    "cogs.imagine",
    "cogs.account",
    "cogs.quota",
    "cogs.reactions",
    "cogs.privacy",
    "cogs.moderation",
)


def intents() -> discord.Intents:
    """Only what Atelier needs: guilds (channels, permissions) and reactions. No privileged intent."""
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_reactions = True
    wanted.dm_reactions = True
    return wanted


class AtelierBot(commands.Bot):
    def __init__(self, *, services: Services) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents(),
            tree_cls=AtelierTree,
            help_command=None,
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
        )
        self.services = services

    async def setup_hook(self) -> None:
        from cogs.buttons import JobButton
        from cogs.presenter import Presenter
        from cogs.review import ReviewButton

        for extension in EXTENSIONS:
            await self.load_extension(extension)
        self.add_dynamic_items(JobButton, ReviewButton)
        self.presenter = Presenter(self)
        self.services.queue.add_listener(self.presenter.on_event)
        await self.sync_commands_if_changed()

    async def close(self) -> None:
        presenter = getattr(self, "presenter", None)
        if presenter is not None:
            await presenter.close()
        await super().close()

    async def sync_commands_if_changed(self) -> None:
        """Sync to DEV_GUILD_ID (instant) or globally, but only when the command set changed."""
        settings = self.services.settings
        guild = discord.Object(settings.dev_guild_id) if settings.dev_guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        payload = [command.to_dict(self.tree) for command in self.tree.get_commands(guild=guild)]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        target = f"guild:{settings.dev_guild_id}" if guild else "global"
        marker = settings.data_dir / "command-sync.json"
        synced = json.loads(marker.read_text()) if marker.exists() else {}
        key = f"{self.application_id}:{target}"
        if synced.get(key) == digest:
            log.info("Slash commands unchanged since the last sync (%s); not syncing", target)
            return
        await self.tree.sync(guild=guild)
        synced[key] = digest
        marker.write_text(json.dumps(synced, indent=1))
        log.info("Synced %d slash commands (%s)", len(payload), target)

    async def on_ready(self) -> None:
        settings = self.services.settings
        workers = self.services.queue.workers
        engine = getattr(workers[0], "engine", None)
        log.info(
            "Atelier ready as %s: model %s (%s), devices %s, dtype %s, %d guild(s)",
            self.user,
            settings.model,
            self.services.profile.family,
            ",".join(w.device for w in workers),
            getattr(engine, "dtype", settings.dtype),
            len(self.guilds),
        )
