"""Session-wide fixtures: tiny random-weight diffusers pipelines on disk, built once per test session.

    def test_something(tiny_sd_path): Engine.load(str(tiny_sd_path), device="cpu", dtype="float32")

`tiny_sd_path` (SD-1.x-shaped, DDIM), `tiny_sdxl_path` (SDXL-shaped, Euler) and `tiny_fewstep_path`
(SD-1.x-shaped with an LCMScheduler, which marks a Turbo/LCM-class model) are directories written by
`tests.tiny_models`; tests load them through the same `from_pretrained` path a real model takes. Their
native size is 64 px. torch and diffusers are imported only when one of these fixtures is used.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_sdxl_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import build_tiny_sdxl

    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"))


@pytest.fixture(scope="session")
def tiny_fewstep_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Named without "turbo": a Turbo name would (rightly) make the profile assume 512 px."""
    from tests.tiny_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-fewstep"), few_step=True)
