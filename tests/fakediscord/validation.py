"""What Discord refuses, refused here too: a bot bug shows up in tests as the same 400 it would get live.

The limits are Discord's documented ones (message content 2000, 10 embeds of 6000 characters, 5 action rows
of 5 buttons, custom ids of 100, command names of 32, ...). Errors use Discord's JSON error shape, so
discord.py raises the same `HTTPException` text it would raise against the real API.
"""

from __future__ import annotations

from typing import Any

from tests.fakediscord.models import FLAG_COMPONENTS_V2


class ApiError(Exception):
    """An error response: HTTP status, Discord JSON error code and message, optional field errors."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code} {message} {errors or ''}".strip())
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


UNKNOWN = {
    "application": 10002,
    "channel": 10003,
    "guild": 10004,
    "member": 10007,
    "message": 10008,
    "role": 10011,
    "user": 10013,
    "emoji": 10014,
    "webhook": 10015,
    "interaction": 10062,
    "application command": 10063,
}


def unknown(kind: str) -> ApiError:
    return ApiError(404, UNKNOWN[kind], f"Unknown {kind.capitalize()}")


def form_error(path: list[str | int], code: str, message: str) -> ApiError:
    """400 "Invalid Form Body" with the error nested under `path`, as Discord reports it."""
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        errors = {str(key): errors}
    return ApiError(400, 50035, "Invalid Form Body", errors)


def _check_length(value: Any, path: list[str | int], low: int, high: int) -> None:
    if not isinstance(value, str):
        raise form_error(path, "STRING_TYPE_CONVERT", "Must be a string.")
    if not low <= len(value) <= high:
        raise form_error(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")


# Messages ---------------------------------------------------------------------------------------------


def check_message_body(payload: dict[str, Any], *, file_count: int, creating: bool) -> None:
    """Validate content, embeds, components and emptiness of a message create or edit body."""
    content = payload.get("content")
    if content is not None and len(str(content)) > 2000:
        raise form_error(["content"], "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
    embeds = payload.get("embeds") or []
    if len(embeds) > 10:
        raise form_error(["embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    _check_embeds(embeds)
    components = payload.get("components") or []
    if payload.get("flags", 0) & FLAG_COMPONENTS_V2:
        _check_custom_ids(components)
    else:
        _check_action_rows(components)
    has_body = (
        content or embeds or file_count or components or payload.get("poll") or payload.get("sticker_ids")
    )
    if creating and not has_body:
        raise ApiError(400, 50006, "Cannot send an empty message")


def _check_embeds(embeds: list[dict[str, Any]]) -> None:
    total = 0
    limits = {"title": 256, "description": 4096}
    for index, embed in enumerate(embeds):
        for key, limit in limits.items():
            text = embed.get(key) or ""
            if len(text) > limit:
                raise form_error(
                    ["embeds", index, key], "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."
                )
            total += len(text)
        fields = embed.get("fields") or []
        if len(fields) > 25:
            raise form_error(
                ["embeds", index, "fields"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
            )
        for field_index, field in enumerate(fields):
            _check_length(field.get("name"), ["embeds", index, "fields", field_index, "name"], 1, 256)
            _check_length(field.get("value"), ["embeds", index, "fields", field_index, "value"], 1, 1024)
            total += len(field["name"]) + len(field["value"])
        total += len((embed.get("footer") or {}).get("text") or "") + len(
            (embed.get("author") or {}).get("name") or ""
        )
    if total > 6000:
        raise form_error(["embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")


def _check_action_rows(rows: list[dict[str, Any]]) -> None:
    if len(rows) > 5:
        raise form_error(["components"], "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
    for index, row in enumerate(rows):
        if row.get("type") != 1:
            raise form_error(
                ["components", index],
                "UNION_TYPE_CHOICES",
                "Top-level components must be action rows (type 1).",
            )
        children = row.get("components") or []
        selects = [c for c in children if c.get("type") in (3, 5, 6, 7, 8)]
        if not children or len(children) > 5 or (selects and len(children) > 1):
            raise form_error(
                ["components", index, "components"],
                "BASE_TYPE_BAD_LENGTH",
                "An action row holds 1 to 5 buttons or exactly one select menu.",
            )
    _check_custom_ids(rows)


def _check_custom_ids(components: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    stack = list(components)
    while stack:
        component = stack.pop()
        stack.extend(component.get("components") or [])
        stack.extend(component[key] for key in ("accessory", "component") if key in component)
        if component.get("type") == 2:
            _check_button(component)
        custom_id = component.get("custom_id")
        if custom_id is None:
            continue
        _check_length(custom_id, ["components", "custom_id"], 1, 100)
        if custom_id in seen:
            raise form_error(
                ["components", "custom_id"],
                "COMPONENT_CUSTOM_ID_DUPLICATED",
                f"Component custom id {custom_id!r} is duplicated",
            )
        seen.add(custom_id)


def _check_button(button: dict[str, Any]) -> None:
    style = button.get("style")
    if style not in (1, 2, 3, 4, 5, 6):
        raise form_error(
            ["components", "style"], "BASE_TYPE_CHOICES", f"Value {style!r} is not a valid button style."
        )
    if button.get("label") is not None and len(button["label"]) > 80:
        raise form_error(["components", "label"], "BASE_TYPE_MAX_LENGTH", "Must be 80 or fewer in length.")
    if style == 5 and (not button.get("url") or button.get("custom_id")):
        raise form_error(
            ["components", "url"], "BUTTON_COMPONENT_URL_REQUIRED", "A link button needs a url only."
        )
    if style not in (5, 6) and not button.get("custom_id"):
        raise form_error(
            ["components", "custom_id"],
            "BUTTON_COMPONENT_CUSTOM_ID_REQUIRED",
            "A non-link button needs a custom_id.",
        )


def check_modal(data: dict[str, Any]) -> None:
    _check_length(data.get("title"), ["data", "title"], 1, 45)
    _check_length(data.get("custom_id"), ["data", "custom_id"], 1, 100)
    components = data.get("components") or []
    if not 1 <= len(components) <= 5:
        raise form_error(["data", "components"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")


# Application commands ---------------------------------------------------------------------------------

OPTION_SUB_COMMAND = 1
OPTION_SUB_COMMAND_GROUP = 2
OPTION_STRING = 3
OPTION_INTEGER = 4
OPTION_NUMBER = 10


def _check_name(name: Any, path: list[str | int], *, lowercase: bool) -> None:
    _check_length(name, path, 1, 32)
    valid = all(ch.isalnum() or ch in "-_'" for ch in name)
    if not valid or (lowercase and name != name.lower()):
        raise form_error(path, "APPLICATION_COMMAND_INVALID_NAME", f"Command name {name!r} is invalid")


def check_commands(commands: list[dict[str, Any]]) -> None:
    """Validate a bulk overwrite: each command's shape, and no two commands of one type share a name."""
    seen: set[tuple[int, str]] = set()
    if sum(1 for command in commands if command.get("type", 1) == 1) > 100:
        raise form_error([], "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer chat input commands.")
    for index, command in enumerate(commands):
        check_command(command, [index])
        key = (command.get("type", 1), command["name"])
        if key in seen:
            raise form_error(
                [index, "name"],
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                f"Command name {command['name']!r} is already used",
            )
        seen.add(key)


def check_command(command: dict[str, Any], path: list[str | int]) -> None:
    kind = command.get("type", 1)
    _check_name(command.get("name"), [*path, "name"], lowercase=kind == 1)
    if kind == 1:
        _check_length(command.get("description"), [*path, "description"], 1, 100)
    elif command.get("description"):
        raise form_error(
            [*path, "description"], "BASE_TYPE_BAD_LENGTH", "Context menu commands have no description."
        )
    _check_options(command.get("options") or [], [*path, "options"], depth=0)
    if _text_size(command) > 4000:
        raise form_error(path, "APPLICATION_COMMAND_TOO_LARGE", "Command exceeds maximum size (4000)")


def _check_options(options: list[dict[str, Any]], path: list[str | int], *, depth: int) -> None:
    if len(options) > 25:
        raise form_error(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    kinds = [option.get("type") for option in options]
    nested = [k for k in kinds if k in (OPTION_SUB_COMMAND, OPTION_SUB_COMMAND_GROUP)]
    if nested and len(nested) != len(kinds):
        raise form_error(
            path, "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Sub-commands cannot mix with options."
        )
    names: set[str] = set()
    optional_seen = False
    for index, option in enumerate(options):
        where = [*path, index]
        _check_name(option.get("name"), [*where, "name"], lowercase=True)
        _check_length(option.get("description"), [*where, "description"], 1, 100)
        if option["name"] in names:
            raise form_error(
                [*where, "name"], "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Duplicate option name"
            )
        names.add(option["name"])
        kind = option.get("type")
        if (kind == OPTION_SUB_COMMAND_GROUP and depth > 0) or (kind == OPTION_SUB_COMMAND and depth > 1):
            raise form_error(
                [*where, "type"], "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Sub-commands nest too deep."
            )
        if kind in (OPTION_SUB_COMMAND, OPTION_SUB_COMMAND_GROUP):
            _check_options(option.get("options") or [], [*where, "options"], depth=depth + 1)
            continue
        if option.get("required"):
            if optional_seen:
                raise form_error(
                    [*where, "required"],
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            optional_seen = True
        _check_choices(option, where)


def _check_choices(option: dict[str, Any], where: list[str | int]) -> None:
    choices = option.get("choices") or []
    if len(choices) > 25:
        raise form_error([*where, "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    if choices and option.get("autocomplete"):
        raise form_error(
            [*where, "autocomplete"], "AUTOCOMPLETE_WITH_CHOICES", "Autocomplete cannot have choices."
        )
    expected = {OPTION_STRING: str, OPTION_INTEGER: int, OPTION_NUMBER: (int, float)}.get(option.get("type"))
    for choice_index, choice in enumerate(choices):
        _check_length(choice.get("name"), [*where, "choices", choice_index, "name"], 1, 100)
        if (
            expected is None
            or not isinstance(choice.get("value"), expected)
            or isinstance(choice.get("value"), bool)
        ):
            raise form_error(
                [*where, "choices", choice_index, "value"],
                "BASE_TYPE_CHOICES",
                "Choice value does not match option type.",
            )


def _text_size(command: dict[str, Any]) -> int:
    size = len(command.get("name", "")) + len(command.get("description", ""))
    for option in command.get("options") or []:
        size += _text_size(option)
        size += sum(
            len(choice.get("name", "")) + len(str(choice.get("value", "")))
            for choice in option.get("choices") or []
        )
    return size
