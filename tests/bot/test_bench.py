"""`python -m bot bench`: the table and the JSON line exist and hold sane, self-consistent figures.

Run on the tiny model so it takes seconds; no figure is compared with a wall-clock expectation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from bot.__main__ import main
from bot.cli.bench import apply_worker_flags
from bot.errors import SettingsError
from bot.settings import Settings

REQUIRED = (
    "speedup",
    "speedup_vs_bf16",
    "overhead",
    "unet_peak_fraction",
    "job_peak_fraction",
    "preview_cost_per_step",
    "first_progress_s",
    "peak_memory",
    "max_pixel_diff",
    "images_per_s",
)
SIDES = ("baseline_default", "baseline_reduced", "atelier")


@pytest.fixture
def bench_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean working directory (no .env) and DATA_DIR, so nothing of the developer's leaks in."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    for name in ("MODEL", "DEVICE", "DTYPE", "ENGINE__COMPILE", "QUEUE__BATCHING"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.mark.slow
def test_bench_prints_table_and_json_line(
    tiny_sd_path: Path, bench_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bench on the tiny model prints a table, then one JSON line with every figure, all sane."""
    code = main(["bench", "--model", str(tiny_sd_path), "--jobs", "3", "--steps", "4", "--size", "64"])

    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    table = "\n".join(lines[:-1])
    for side in SIDES:
        assert side in table
    assert "speedup_vs_bf16" in table and "target" in table
    for key in REQUIRED:
        assert key in summary, key
    rates = summary["images_per_s"]
    assert set(rates) == set(SIDES) and all(rate > 0 for rate in rates.values())
    assert summary["speedup"] == pytest.approx(rates["atelier"] / rates["baseline_default"], rel=1e-3)
    assert summary["speedup_vs_bf16"] == pytest.approx(rates["atelier"] / rates["baseline_reduced"], rel=1e-3)
    assert 0 <= summary["overhead"] < 1
    assert summary["unet_peak_fraction"] > 0 and summary["job_peak_fraction"] > 0
    assert 0 <= summary["preview_cost_per_step"] < 1
    assert 0 <= summary["first_progress_s"] < summary["seconds"]["atelier"]
    assert summary["first_preview_s"] is not None  # 4 steps: a preview after step 2
    assert all(summary["peak_memory"][side] > 0 for side in SIDES)
    assert 0 <= summary["max_pixel_diff"] <= 255
    assert summary["dtype"]["baseline_default"] == "float32"
    assert summary["dtype"]["baseline_reduced"] == "bfloat16"
    assert summary["dtype"]["atelier"] in ("bfloat16", "float32")  # DTYPE=auto: bf16 where the CPU has it
    assert sum(summary["batches"]) == 3 * 4  # every image of every job went through a batch, once
    assert summary["flops"]["unet_per_image_step"] > 0 and summary["flops"]["vae_per_image"] > 0
    assert summary["flops"]["text_per_job"] > 0
    assert summary["dispatch_s"]["mean"] >= 0
    assert summary["config"]["levers"]["channels_last"] is True
    # The delivered PNGs were read back and compared, and nothing was written outside the temp DATA_DIR.
    assert not (bench_env / "data" / "atelier.sqlite3").exists()


@pytest.mark.slow
def test_quick_bench_repeats_the_close_comparison_and_times_float32_once(
    tiny_sd_path: Path, bench_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--quick: one job per round, three rounds of Atelier and baseline 2 (their ratio is the close
    one), baseline 1 in the first round only; --rounds still chooses how many."""
    assert main(["bench", "--quick", "--model", str(tiny_sd_path), "--size", "64"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rounds = {side: len(times) for side, times in summary["rounds_s"].items()}
    assert rounds == {"atelier": 3, "baseline_reduced": 3, "baseline_default": 1}
    assert summary["config"]["quick"] is True and summary["config"]["jobs"] == 1
    assert summary["batches"] == [4]  # the counted (fastest) round: one 4-image job

    assert main(["bench", "--quick", "--rounds", "2", "--model", str(tiny_sd_path), "--size", "64"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [len(summary["rounds_s"][side]) for side in SIDES] == [1, 2, 2]


def test_bench_refuses_bad_arguments(bench_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A job count beyond the queue's length is refused in one line, before anything loads."""
    assert main(["bench", "--jobs", "1000"]) == 2
    assert "--jobs 1000" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--steps", "0"])


def test_worker_flags_set_ray_settings_or_say_why_not() -> None:
    """--workers ray --actors N reach WORKERS and RAY__ACTORS, or are refused clearly without Ray."""
    settings = Settings(_env_file=None)
    apply_worker_flags(settings, "local", None)  # always fine
    if "workers" in Settings.model_fields and "ray" in Settings.model_fields:
        apply_worker_flags(settings, "ray", 3)
        assert settings.workers == "ray"  # type: ignore[attr-defined]
        assert settings.ray.actors == 3  # type: ignore[attr-defined]
    else:
        with pytest.raises(SettingsError, match="no Ray workers"):
            apply_worker_flags(settings, "ray", 3)


def test_pixel_difference_is_the_largest_channel_difference() -> None:
    """Identical images differ by 0; one channel of one pixel off by 7 gives 7."""
    from bot.bench.measure import max_pixel_difference

    a = Image.new("RGB", (8, 8), (10, 20, 30))
    b = a.copy()
    assert max_pixel_difference([a], [b]) == 0
    b.putpixel((3, 5), (10, 27, 30))
    assert max_pixel_difference([a, a], [a, b]) == 7
    with pytest.raises(ValueError, match="sizes differ"):
        max_pixel_difference([a], [Image.new("RGB", (4, 4))])


def test_flop_count_splits_unet_vae_and_text(tiny_sd_path: Path) -> None:
    """Counted FLOPs are split by model, and a UNet step of one image costs the same at any seed."""
    import torch

    from bot.bench.baseline import generate, load_pipeline
    from bot.bench.measure import count_job_flops
    from bot.engine.types import GenerationRequest, JobKind

    pipe = load_pipeline(str(tiny_sd_path), "cpu", torch.float32)
    request = GenerationRequest(
        kind=JobKind.IMAGINE, prompt="a cat", width=64, height=64, steps=1, guidance=7.5, seed=1, images=1
    )
    flops = count_job_flops(lambda: generate(pipe, request))
    again = count_job_flops(lambda: generate(pipe, request.replace(seed=99)))
    assert flops.unet_per_image_step > 0 and flops.vae_per_image > 0 and flops.text_per_job > 0
    assert flops == again
    assert flops.job(images=4, steps=2) == 8 * flops.unet_per_image_step + 4 * flops.vae_per_image + (
        flops.text_per_job
    )
