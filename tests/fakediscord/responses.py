"""How the bot answers interactions: the callback, followups and the interaction webhook's messages.

Discord's rules kept here, because a bot that breaks them fails live:
- one callback per interaction, within `ack_timeout_s` (3 s on Discord), else "Unknown interaction";
- the callback types allowed depend on the interaction type (no type 7 for a slash command, ...);
- a deferred reply (type 5) is a "thinking" placeholder; the first followup *fills* it, keeping its
  ephemerality, and later followups are new messages;
- `@original` is the reply, or for a component's type 6/7 the message the component is on;
- ephemeral messages never reach the gateway nor the channel routes, only the interaction webhook.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.fakediscord.models import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    FakeInteraction,
    FakeMessage,
)
from tests.fakediscord.validation import ApiError, check_modal, form_error, unknown
from tests.fakediscord.world import Upload, World

CHANNEL_MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, AUTOCOMPLETE_RESULT, MODAL = (
    4,
    5,
    6,
    7,
    8,
    9,
)
ALLOWED_CALLBACKS = {
    APPLICATION_COMMAND: {CHANNEL_MESSAGE, DEFERRED_MESSAGE, MODAL},
    MESSAGE_COMPONENT: {CHANNEL_MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, MODAL},
    MODAL_SUBMIT: {CHANNEL_MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE},
    AUTOCOMPLETE: {AUTOCOMPLETE_RESULT},
}
#: Flags a bot may set when sending: SUPPRESS_EMBEDS, EPHEMERAL, SUPPRESS_NOTIFICATIONS, IS_COMPONENTS_V2.
SENDABLE_FLAGS = (1 << 2) | FLAG_EPHEMERAL | (1 << 12) | (1 << 15)


class InteractionResponder:
    """Applies the bot's callbacks and webhook calls to the interactions the driver sent."""

    def __init__(self, world: World, *, ack_timeout_s: float | None) -> None:
        self.world = world
        self.ack_timeout_s = ack_timeout_s
        self._timers: list[asyncio.TimerHandle] = []

    def arm(self, interaction: FakeInteraction) -> None:
        """Start the acknowledgement clock of an interaction just delivered to the bot."""
        if self.ack_timeout_s is not None:
            loop = asyncio.get_running_loop()
            self._timers.append(loop.call_later(self.ack_timeout_s, self._expire, interaction))

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()

    def _expire(self, interaction: FakeInteraction) -> None:
        if interaction.response_type is None:
            interaction.failed = True
            self.world.touch()

    def lookup(self, token: str, *, interaction_id: str | None = None) -> FakeInteraction:
        interaction = self.world.interactions_by_token.get(token)
        if interaction is None or (interaction_id is not None and str(interaction.id) != interaction_id):
            raise unknown("interaction" if interaction_id is not None else "webhook")
        return interaction

    # The callback -------------------------------------------------------------------------------------

    def callback(
        self, interaction: FakeInteraction, body: dict[str, Any], uploads: list[Upload]
    ) -> dict[str, Any]:
        if interaction.failed:
            raise unknown("interaction")
        if interaction.response_type is not None:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        kind = body.get("type")
        data = body.get("data") or {}
        allowed = ALLOWED_CALLBACKS[interaction.type]
        if interaction.type == MODAL_SUBMIT and interaction.message is None:
            allowed = allowed - {DEFERRED_UPDATE, UPDATE_MESSAGE}
        if kind not in allowed:
            raise form_error(
                ["type"],
                "INTERACTION_RESPONSE_TYPE_INVALID",
                f"Callback type {kind} is not valid for interaction type {interaction.type}; "
                f"use one of {sorted(allowed)}",
            )
        message = self._respond(interaction, kind, data, uploads)
        interaction.response_type = kind
        self.world.touch()
        return self._callback_response(interaction, kind, message)

    def _respond(
        self, interaction: FakeInteraction, kind: int, data: dict[str, Any], uploads: list[Upload]
    ) -> FakeMessage | None:
        bot, channel = self.world.bot, interaction.channel
        reply_type = 20 if interaction.type == APPLICATION_COMMAND else 0
        if kind == CHANNEL_MESSAGE:
            flags = data.get("flags", 0) & SENDABLE_FLAGS
            body = data | {"flags": flags}
            interaction.original = self.world.create_message(
                channel, bot, body, uploads, type=reply_type, interaction=interaction
            )
        elif kind == DEFERRED_MESSAGE:
            flags = FLAG_LOADING | (data.get("flags", 0) & FLAG_EPHEMERAL)
            interaction.original = self.world.create_message(
                channel, bot, {}, [], flags=flags, type=reply_type, interaction=interaction, validate=False
            )
        elif kind == DEFERRED_UPDATE:
            interaction.original = interaction.message
        elif kind == UPDATE_MESSAGE:
            assert interaction.message is not None
            interaction.original = self.world.edit_message(interaction.message, data, uploads)
        elif kind == AUTOCOMPLETE_RESULT:
            choices = data.get("choices") or []
            if len(choices) > 25:
                raise form_error(
                    ["data", "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )
            interaction.autocomplete_choices = choices
        elif kind == MODAL:
            check_modal(data)
            interaction.modal = data
        return interaction.original

    def _callback_response(
        self, interaction: FakeInteraction, kind: int, message: FakeMessage | None
    ) -> dict[str, Any]:
        summary: dict[str, Any] = {"id": str(interaction.id), "type": interaction.type}
        response: dict[str, Any] = {"interaction": summary}
        if kind in (CHANNEL_MESSAGE, DEFERRED_MESSAGE, UPDATE_MESSAGE) and message is not None:
            summary |= {
                "response_message_id": str(message.id),
                "response_message_loading": kind == DEFERRED_MESSAGE,
                "response_message_ephemeral": message.ephemeral,
            }
            response["resource"] = {"type": kind, "message": self.world.render(message)}
        elif kind != AUTOCOMPLETE_RESULT:
            response["resource"] = {"type": kind}
        return response

    # The interaction webhook --------------------------------------------------------------------------

    def followup(
        self, interaction: FakeInteraction, body: dict[str, Any], uploads: list[Upload]
    ) -> FakeMessage:
        if interaction.response_type is None:
            raise unknown("webhook")
        original = interaction.original
        if interaction.response_type == DEFERRED_MESSAGE and original is not None and original.loading:
            # The first followup after a deferred reply fills the "thinking" placeholder, which keeps
            # the ephemerality chosen when deferring whatever flags the followup asks for.
            body = {key: value for key, value in body.items() if key != "flags"}
            return self.world.edit_message(original, body, uploads)
        flags = body.get("flags", 0) & SENDABLE_FLAGS
        message = self.world.create_message(
            interaction.channel, self.world.bot, body | {"flags": flags}, uploads, interaction=interaction
        )
        interaction.followups.append(message)
        return message

    def message(self, interaction: FakeInteraction, message_id: str) -> FakeMessage:
        """A message this interaction's token may read, edit or delete."""
        if message_id == "@original":
            message = interaction.original
        else:
            own = [interaction.original, *interaction.followups]
            message = next((m for m in own if m is not None and str(m.id) == message_id), None)
        if message is None or message.deleted:
            raise unknown("message")
        return message

    def edit(self, message: FakeMessage, body: dict[str, Any], uploads: list[Upload]) -> FakeMessage:
        body = dict(body)
        if "flags" in body:
            body["flags"] = (body["flags"] or 0) & SENDABLE_FLAGS & ~FLAG_EPHEMERAL
        return self.world.edit_message(message, body, uploads)
