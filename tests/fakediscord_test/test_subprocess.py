"""A bot in a separate process reaches the fake through environment variables, and survives a crash."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.fakediscord import FakeDiscord
from tests.fakediscord_test.conftest import Scene

ROOT = Path(__file__).resolve().parents[2]
Spawn = Callable[[], Awaitable[asyncio.subprocess.Process]]


@pytest.fixture
async def spawn(server: FakeDiscord) -> AsyncIterator[Spawn]:
    processes: list[asyncio.subprocess.Process] = []

    async def start() -> asyncio.subprocess.Process:
        env = os.environ | server.env() | {"PYTHONPATH": str(ROOT)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.fakediscord.example_bot",
            cwd=ROOT,
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.returncode is None:
            process.terminate()
        _, stderr = await process.communicate()
        assert b"Traceback" not in stderr, stderr.decode()


@pytest.mark.slow
async def test_bot_process_answers_and_a_restarted_process_takes_over(
    server: FakeDiscord, scene: Scene, spawn: Spawn
) -> None:
    """A member's button keeps working after the bot process crashes and a new one starts."""
    first = await spawn()
    await server.wait_for_commands("ping", timeout=20)
    interaction = await server.invoke(scene.alice, scene.channel, "ping")
    message = interaction.original
    assert message is not None and message.content == f"pong from pid {first.pid}"
    await server.click(scene.alice, message, "ping:0")
    assert message.content == f"pressed 1 by pid {first.pid}"

    first.kill()
    await first.wait()
    second = await spawn()
    await server.wait_for(
        lambda: server.gateway.identify_count == 2, timeout=20, description="the new process"
    )

    await server.click(scene.alice, message, "ping:1")

    assert message.content == f"pressed 2 by pid {second.pid}"
    assert server.unauthorized_requests == [] and server.unhandled_routes == [] and server.problems == []
