"""Smoke tests of the real `python -m bot` process, unmodified, against the loopback fake Discord.

The bot runs as a subprocess with the tiny few-step test pipeline on the CPU; members act through the
fake's driver. One process serves both tests; the journey test restarts it (SIGTERM, then a new process
on the same DATA_DIR), so a full run starts the bot exactly twice. Each test prints the bot's log in its
teardown, which pytest shows only when the test failed.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import discord
import pytest
import pytest_asyncio

from bot.settings import Settings
from tests.fakediscord import FakeChannel, FakeDiscord, FakeGuild, FakeInteraction, FakeMessage, FakeUser

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
#: Settings the bot would read from the caller's environment (`DISCORD__…` groups included).
SETTING_NAMES = {name.upper() for name in Settings.model_fields}
START_S = 120.0  #: loading torch and the pipeline on a busy 2-core machine
REPLY_S = 10.0  #: an answer that needs no images
JOB_S = 90.0  #: one tiny 2-step job, with room for a loaded machine
STOP_S = 30.0
GRID_LABELS = ["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4", "🔄"]
SINGLE_LABELS = ["Vary (Subtle)", "Vary (Strong)", "Upscale (Subtle)", "Upscale (Creative)"]


@dataclass
class Scene:
    server: FakeDiscord
    guild: FakeGuild
    channel: FakeChannel
    alice: FakeUser  #: goes through /imagine, U1 and the upscale
    bob: FakeUser  #: a member without moderator rights
    carol: FakeUser  #: receives bonus credits
    mod: FakeUser  #: has Manage Server through a role


@dataclass
class BotRunner:
    """Starts and stops `python -m bot` processes on one DATA_DIR, each logging to its own file."""

    env: dict[str, str]
    workdir: Path
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def process(self) -> asyncio.subprocess.Process:
        return self.processes[-1]

    @property
    def running(self) -> bool:
        return bool(self.processes) and self.process.returncode is None

    async def start(self) -> None:
        log_path = self.workdir / f"bot-{len(self.processes) + 1}.log"
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", cwd=self.workdir, env=self.env, stdout=log_file, stderr=log_file
            )
        self.processes.append(process)
        self.logs.append(log_path)

    async def stop(self) -> int:
        """SIGTERM, as a service manager stops the bot; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(STOP_S):
            return await self.process.wait()

    def log(self, index: int = -1) -> str:
        return self.logs[index].read_text(errors="replace")

    def check_alive(self) -> None:
        if not self.running:
            raise AssertionError(f"the bot exited with code {self.process.returncode}:\n{self.log()[-4000:]}")


def is_setting(name: str) -> bool:
    """`MODEL`, `queue__max_queue_length`, `DISCORD_…`: names are case-insensitive, groups nest with `__`."""
    upper = name.upper()
    return upper.startswith("DISCORD") or upper.split("__")[0] in SETTING_NAMES


def bot_env(server: FakeDiscord, model: Path, data_dir: Path, guild: FakeGuild) -> dict[str, str]:
    """The caller's environment without anything the bot would read as a setting, plus the test's."""
    inherited = {name: value for name, value in os.environ.items() if not is_setting(name)}
    python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return (
        inherited
        | server.env()
        | {
            "PYTHONPATH": python_path,
            "MODEL": str(model),
            "DEVICE": "cpu",
            "DTYPE": "float32",
            "DATA_DIR": str(data_dir),
            "DEV_GUILD_ID": str(guild.id),
            "LOG_LEVEL": "INFO",
            "HF_HUB_OFFLINE": "1",
        }
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scene() -> AsyncIterator[Scene]:
    async with FakeDiscord() as server:
        guild = server.create_guild("Atelier E2E")
        yield Scene(
            server=server,
            guild=guild,
            channel=server.create_text_channel(guild, "art"),
            alice=server.create_member(guild, "alice"),
            bob=server.create_member(guild, "bob"),
            carol=server.create_member(guild, "carol"),
            mod=server.create_member(guild, "mod", permissions=discord.Permissions(manage_guild=True)),
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runner(
    scene: Scene, tiny_fewstep_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[BotRunner]:
    """Bot processes on the tiny few-step pipeline, where `--steps 2` is allowed (standard: 10 or more)."""
    workdir = tmp_path_factory.mktemp("e2e")  # also the cwd, so no stray .env is read
    env = bot_env(scene.server, tiny_fewstep_path, workdir / "data", scene.guild)
    bots = BotRunner(env=env, workdir=workdir)
    yield bots
    if bots.running:
        try:
            code = await bots.stop()
        finally:
            if bots.running:
                bots.process.kill()
                await bots.process.wait()
        assert code == 0, bots.log()


@pytest_asyncio.fixture(loop_scope="module")
async def bot(scene: Scene, runner: BotRunner) -> AsyncIterator[BotRunner]:
    """A running, synced bot; its logs are printed after the test (shown by pytest only on failure)."""
    try:
        if not runner.running:
            await runner.start()
            commands = {"imagine", "credits", "quota"}
            await wait(
                scene,
                runner,
                lambda: commands <= set(scene.server.command_names(scene.guild)),
                "commands",
                START_S,
            )
            await wait_ready(scene, runner)
        yield runner
    finally:
        for path in runner.logs:
            print(f"----- {path.name} -----\n{path.read_text(errors='replace')}")
    server = scene.server
    for index in range(len(runner.logs)):
        log = runner.log(index)
        assert server.token not in log
        assert "Traceback" not in log and " ERROR " not in log, "the bot logged an unexpected error"
    assert server.unhandled_routes == []
    assert server.problems == []
    assert server.unauthorized_requests == []


async def wait(
    scene: Scene, runner: BotRunner, predicate: Callable[[], T], description: str, seconds: float
) -> T:
    """`server.wait_for` that gives up at once, with the log, if the bot process died meanwhile."""

    def check() -> T:
        runner.check_alive()
        return predicate()

    return await scene.server.wait_for(check, timeout=seconds, description=description)


async def wait_ready(scene: Scene, runner: BotRunner) -> None:
    """Wait for the newest process's one-line start-up summary: model, device, dtype and guild count."""

    def summary() -> str | None:
        return next((line for line in runner.log().splitlines() if "Atelier ready" in line), None)

    line = await wait(scene, runner, summary, "the start-up summary", START_S)
    assert f"model {runner.env['MODEL']} " in line, line
    assert re.search(r"\bcpu\b.*\bfloat32\b.*\b1 guild", line), line
    assert scene.server.gateway.identify_count == len(runner.processes)  # one session per process


async def reply_to(
    scene: Scene,
    runner: BotRunner,
    interaction: FakeInteraction,
    predicate: Callable[[FakeMessage], bool] = bool,
    seconds: float = REPLY_S,
) -> FakeMessage:
    """The bot's answer to `interaction`; fails at once if it was not acknowledged or the bot died."""
    assert not interaction.failed, f"the bot did not acknowledge {interaction.name!r} in time"

    def check(message: FakeMessage) -> bool:
        runner.check_alive()
        return predicate(message)

    return await scene.server.wait_for_reply(interaction, check, timeout=seconds)


async def credits_of(scene: Scene, runner: BotRunner, member: FakeUser) -> int:
    """What `/credits` says is available to `member`; the answer must be private."""
    interaction = await scene.server.invoke(member, scene.channel, "credits")
    reply = await reply_to(scene, runner, interaction)
    assert reply.ephemeral, reply.content
    match = re.search(r"\*\*(\d+)\*\* credits available", reply.content)
    assert match, reply.content
    return int(match[1])


def cost_in(content: str) -> int:
    """The credits a job message states: `· 3 credits ·`, or `· free ·`."""
    match = re.search(r"· (?:(\d+) credits?|free) ·", content)
    assert match, content
    return int(match[1] or 0)


def quoted_cost(message: FakeMessage) -> int:
    """What the member was told before the job ran (the first version), which the result must repeat."""
    quoted = cost_in(message.history[0].content if message.history else message.content)
    assert cost_in(message.content) == quoted, message.content
    return quoted


def finished(message: FakeMessage) -> bool:
    """A delivered result: an image and its buttons (progress previews come without buttons)."""
    return bool(message.attachments and message.buttons)


def labels(message: FakeMessage) -> list[str | None]:
    return [button.label or button.emoji for button in message.buttons]


def custom_id(message: FakeMessage, label: str) -> str:
    button = message.button(label)
    assert button.custom_id is not None
    return button.custom_id


async def test_members_credits_are_granted_only_by_moderators(scene: Scene, bot: BotRunner) -> None:
    """`/quota grant` from a plain member is refused naming Manage Server; a moderator's adds the credits."""
    server = scene.server
    before = await credits_of(scene, bot, scene.carol)

    refused = await server.invoke(
        scene.bob, scene.channel, "quota grant", {"user": scene.carol, "amount": 5}, check_permissions=False
    )
    refusal = await reply_to(scene, bot, refused)
    assert refusal.ephemeral and "Manage Server" in refusal.content, refusal.content
    assert await credits_of(scene, bot, scene.carol) == before

    granted = await server.invoke(scene.mod, scene.channel, "quota grant", {"user": scene.carol, "amount": 5})
    answer = await reply_to(scene, bot, granted)
    assert answer.ephemeral and "Gave" in answer.content, answer.content
    assert await credits_of(scene, bot, scene.carol) == before + 5


async def test_imagine_select_and_upscale_across_a_restart(scene: Scene, bot: BotRunner) -> None:
    """A member's grid, U1 and a 2× upscale work, are charged as quoted, and buttons survive a restart."""
    server, alice = scene.server, scene.alice
    start = await credits_of(scene, bot, alice)

    # /imagine → the grid with U1–U4 / V1–V4 / 🔄, charged what its message quotes.
    imagined = await server.invoke(alice, scene.channel, "imagine", {"prompt": "a castle --seed 7 --steps 2"})
    grid = await reply_to(scene, bot, imagined, finished, JOB_S)
    assert labels(grid) == GRID_LABELS
    assert len(grid.attachments) == 1
    imagine_cost = quoted_cost(grid)
    assert imagine_cost > 0
    assert await credits_of(scene, bot, alice) == start - imagine_cost

    # U1 → image 1 alone with the single-image buttons, free.
    selected = await server.click(alice, grid, custom_id(grid, "U1"))
    single = await reply_to(scene, bot, selected, finished, JOB_S)
    assert single is not grid and labels(single) == SINGLE_LABELS
    assert len(single.attachments) == 1 and quoted_cost(single) == 0
    image = single.attachments[0]
    assert (grid.attachments[0].width, grid.attachments[0].height) == (2 * image.width, 2 * image.height)
    after_select = await credits_of(scene, bot, alice)
    assert after_select == start - imagine_cost

    # Restart: a clean SIGTERM exit that never logged the token, then a new process on the same data.
    assert await bot.stop() == 0, bot.log()
    assert server.token not in bot.log()
    await bot.start()
    await wait_ready(scene, bot)

    # Upscale (Subtle) on the message from before the restart → a 2× image, charged what it quotes.
    upscaled = await server.click(alice, single, custom_id(single, "Upscale (Subtle)"))
    result = await reply_to(scene, bot, upscaled, finished, JOB_S)
    assert result is not single
    (big,) = result.attachments
    assert (big.width, big.height) == (2 * image.width, 2 * image.height)
    upscale_cost = quoted_cost(result)
    assert upscale_cost > 0
    assert await credits_of(scene, bot, alice) == after_select - upscale_cost
