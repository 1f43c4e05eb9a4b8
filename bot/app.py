"""`python -m bot`: settings → database → engine → queue → Discord, and a clean shutdown.

The token is read from the settings (environment or `.env`) and handed to discord.py only; it is never
logged, and a login failure is reported without it. SIGINT/SIGTERM stop the queue first, while
still connected (it refuses new jobs, finishes or checkpoints the running batch so its results are
delivered, and leaves the rest queued), then the client, then the database.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import discord
import yarl

from bot.errors import SettingsError
from bot.services import open_services
from bot.settings import Settings, load_settings

log = logging.getLogger("atelier")


def run_bot() -> int:
    settings = load_settings()
    logging.getLogger().setLevel(settings.log_level)
    if settings.discord_token is None:
        raise SettingsError(
            "DISCORD_TOKEN is not set: create a bot in the Discord developer portal and put its token "
            "in .env (see README, 'Create the Discord application')."
        )
    asyncio.run(serve(settings))
    return 0


def point_at_api(base: str | None, gateway: str | None) -> None:
    """Use another Discord (a local fake in end-to-end tests).

    A plain `Client` never asks `/gateway/bot` for its gateway URL (only the auto-sharded one does), so
    the gateway is set as well as the REST base.
    """
    if base:
        discord.http.Route.BASE = base.rstrip("/")
    if gateway:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)


async def serve(settings: Settings) -> None:
    from cogs.client import AtelierBot

    point_at_api(settings.discord_api_base, settings.discord_gateway_url)
    services = await open_services(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with AtelierBot(services=services) as bot:
            token = settings.discord_token.get_secret_value() if settings.discord_token else ""
            runner = asyncio.create_task(bot.start(token), name="discord")
            stopper = asyncio.create_task(stop.wait(), name="signals")
            done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if runner in done:
                stopper.cancel()
                error = runner.exception()
                if isinstance(error, discord.LoginFailure):
                    raise SettingsError(
                        "Discord refused DISCORD_TOKEN: copy the bot token again from the portal."
                    )
                if error is not None:
                    raise error
            else:
                log.info("Shutting down: finishing the running batch, leaving queued jobs for the next start")
                await services.queue.stop()  # still connected, so the batch's results are delivered
                await bot.presenter.flush()
                await bot.close()
                await asyncio.gather(runner, return_exceptions=True)
    finally:
        await services.close()
        log.info("Stopped")
