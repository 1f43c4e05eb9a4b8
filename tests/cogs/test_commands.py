"""Every slash command is well-formed: unique names, descriptions everywhere, /quota hidden by default."""

from __future__ import annotations

from discord import app_commands


def walk(commands):
    for command in commands:
        yield command
        if isinstance(command, app_commands.Group):
            yield from walk(command.commands)


async def test_every_command_and_option_has_a_description(simcord_env, simcord_bot):
    """Discord's picker shows a description for every command and every option."""
    commands = list(walk(simcord_bot.tree.get_commands()))
    names = [c.qualified_name for c in commands]
    assert len(names) == len(set(names))
    for command in commands:
        assert command.description and command.description != "…", command.qualified_name
        for parameter in getattr(command, "parameters", []):
            assert parameter.description and parameter.description != "…", (
                command.qualified_name,
                parameter.name,
            )


async def test_the_commands_members_expect_are_there(simcord_env, simcord_bot):
    """The documented command set is what gets synced."""
    top = {c.name for c in simcord_bot.tree.get_commands()}
    members = {"imagine", "vary", "upscale", "credits", "queue", "cancel", "settings", "forget"}
    assert top == members | {"quota", "moderation"}
    quota = simcord_bot.tree.get_command("quota")
    assert {c.name for c in quota.commands} == {
        "set",
        "grant",
        "revoke",
        "show",
        "default",
        "prices",
        "block",
        "unblock",
        "relax",
        "pause",
        "resume",
        "clear",
        "modrole",
    }
    assert quota.default_permissions.manage_guild
    moderation = simcord_bot.tree.get_command("moderation")
    assert {c.qualified_name for c in moderation.walk_commands()} >= {
        "moderation terms add",
        "moderation terms remove",
        "moderation terms list",
        "moderation log",
        "moderation images",
    }
    assert moderation.default_permissions.manage_guild


async def test_commands_are_synced_once_and_not_again_when_unchanged(simcord_env, simcord_bot, settings):
    """The command set is synced at first start and skipped on the next start when nothing changed."""
    puts = [r for r in simcord_env.http_requests if r.method == "PUT" and r.path.endswith("/commands")]
    assert len(puts) == 1
    await simcord_bot.sync_commands_if_changed()
    puts = [r for r in simcord_env.http_requests if r.method == "PUT" and r.path.endswith("/commands")]
    assert len(puts) == 1
    assert (settings.data_dir / "command-sync.json").exists()
