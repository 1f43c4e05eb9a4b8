"""`python -m bot generate`: the engine without Discord, for checking a machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.__main__ import main
from bot.engine.png import read_recipe

pytestmark = pytest.mark.slow


def test_generate_writes_the_grid_and_four_images(
    tiny_fewstep_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command writes grid.png and 1–4.png with their recipes and prints each stage's time."""
    out = tmp_path / "out"
    argv = ["generate", "a castle at dusk --seed 7 --steps 2 --no fog", "--out", str(out)]
    code = main([*argv, "--model", str(tiny_fewstep_path), "--device", "cpu", "--dtype", "float32"])
    assert code == 0
    assert sorted(path.name for path in out.iterdir()) == ["1.png", "2.png", "3.png", "4.png", "grid.png"]
    recipes = [read_recipe(out / f"{n}.png") for n in range(1, 5)]
    assert [recipe.seed for recipe in recipes] == [7, 8, 9, 10]
    assert {(recipe.prompt, recipe.negative_prompt, recipe.steps) for recipe in recipes} == {
        ("a castle at dusk", "fog", 2)
    }
    printed = capsys.readouterr().out
    for stage in ("load", "encode", "denoise", "previews", "decode", "save"):
        assert f"\n{stage} " in printed
    assert "cpu, float32" in printed


def test_generate_reports_a_bad_prompt_in_one_line(
    tiny_fewstep_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed flag ends with the parser's message and exit code 2, and nothing is written."""
    out = tmp_path / "out"
    code = main(
        [
            "generate",
            "a castle --ar 9:1",
            "--out",
            str(out),
            "--model",
            str(tiny_fewstep_path),
            "--device",
            "cpu",
        ]
    )
    assert code == 2
    assert "`--ar 9:1` is too wide" in capsys.readouterr().err
    assert not out.exists()


def test_generate_reports_a_bad_dtype_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in --dtype is a one-line settings error naming the variable."""
    code = main(["generate", "a castle", "--out", str(tmp_path), "--model", "x", "--dtype", "half"])
    assert code == 2
    assert "DTYPE='half'" in capsys.readouterr().err
