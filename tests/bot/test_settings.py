"""Settings: one clear line for every bad variable, never a traceback, never the token."""

import pytest

from bot.errors import SettingsError
from bot.settings import load_settings


def test_defaults_need_no_environment(monkeypatch, tmp_path):
    """A fresh install starts with a few-step default model on the best device."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.model == "stabilityai/sd-turbo"
    assert settings.devices == ["auto"]
    assert settings.discord_token is None


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DEVICE", "gpu", "DEVICE='gpu': use auto, cpu, mps, cuda or cuda:N"),
        ("DTYPE", "fp8", "DTYPE='fp8': Input should be 'auto', 'float32', 'float16' or 'bfloat16'"),
        ("QUEUE__MAX_QUEUED_PER_MEMBER", "0", "QUEUE__MAX_QUEUED_PER_MEMBER='0': Input should be greater"),
        (
            "CREDITS__PERIOD",
            "fortnight",
            "CREDITS__PERIOD='fortnight': Input should be 'day', 'week' or 'month'",
        ),
        ("DISCORD__REACTIONS", '{"🔥": "explode"}', "DISCORD__REACTIONS: unknown action(s) ['explode']"),
    ],
)
def test_bad_value_names_the_variable_and_what_it_accepts(monkeypatch, tmp_path, variable, value, expected):
    """A typo in the environment fails at start-up with one line naming the variable."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_several_devices_give_several_workers(monkeypatch, tmp_path):
    """DEVICE=cuda:0,cuda:1 asks for one worker per GPU."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEVICE", "cuda:0, CUDA:1")
    assert load_settings().devices == ["cuda:0", "cuda:1"]


def test_env_file_is_read_and_empty_values_mean_default(monkeypatch, tmp_path):
    """`.env` copied from `.env.example` works as is: blank values fall back to defaults."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("MODEL=/models/sdxl\nDEV_GUILD_ID=\nQUEUE__MAX_QUEUE_LENGTH=7\n")
    settings = load_settings()
    assert settings.model == "/models/sdxl"
    assert settings.dev_guild_id is None
    assert settings.queue.max_queue_length == 7


def test_token_never_appears_in_errors_or_repr(monkeypatch, tmp_path):
    """The bot token is a secret: not in a settings error, not in the settings' repr."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_TOKEN", "super-secret-token")
    monkeypatch.setenv("DEVICE", "nonsense")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "super-secret-token" not in str(caught.value)
    monkeypatch.setenv("DEVICE", "cpu")
    settings = load_settings()
    assert "super-secret-token" not in repr(settings)
    assert settings.discord_token.get_secret_value() == "super-secret-token"


def test_example_env_file_lists_every_setting():
    """`.env.example` documents every variable the settings read."""
    from pathlib import Path

    from bot.settings import Settings

    example = (Path(__file__).parents[2] / ".env.example").read_text()
    for name, field in Settings.model_fields.items():
        if hasattr(field.annotation, "model_fields"):
            for sub in field.annotation.model_fields:
                assert f"{name.upper()}__{sub.upper()}" in example, f"{name}__{sub} missing"
        else:
            assert f"{name.upper()}=" in example, f"{name} missing"
