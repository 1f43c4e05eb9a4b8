"""Engines over the tiny pipelines, loaded once per session (float32 on the CPU, so pixels are stable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.settings import EngineSettings


def _load(path: Path, **settings: Any) -> Any:
    import torch

    from bot.engine.engine import Engine

    # Tiny models gain nothing from a second thread, and on a shared 2-core machine spinning OpenMP
    # threads make small ops many times slower whenever another process is busy.
    torch.set_num_threads(1)

    return Engine.load(str(path), device="cpu", dtype="float32", settings=EngineSettings(**settings))


@pytest.fixture(scope="session")
def sd_engine(tiny_sd_path: Path) -> Any:
    return _load(tiny_sd_path, preview_every=1, max_output_side=256)


@pytest.fixture(scope="session")
def sdxl_engine(tiny_sdxl_path: Path) -> Any:
    return _load(tiny_sdxl_path)


@pytest.fixture(scope="session")
def fewstep_engine(tiny_fewstep_path: Path) -> Any:
    return _load(tiny_fewstep_path)


@pytest.fixture(scope="session")
def tiny_upscaler_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import build_tiny_x4_upscaler

    return build_tiny_x4_upscaler(tmp_path_factory.mktemp("tiny-x4-upscaler"))
