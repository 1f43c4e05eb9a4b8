"""Image checks through the real queue and services: flagged results are withheld and refunded."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from PIL import Image

from bot.errors import ImageRefused
from bot.queue import FakeWorker, JobStatus
from bot.services import Services, open_services
from bot.settings import Settings
from tests.bot.queue.helpers import finished, imagine
from tests.tiny_classifier import build_tiny_classifier, build_tiny_sd_safety_checker

SCOPE = 42


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("classifiers")
    return {
        "flags": build_tiny_classifier(root / "flags", nsfw_score=0.9),
        "passes": build_tiny_classifier(root / "passes", nsfw_score=0.1),
        "sd-flags": build_tiny_sd_safety_checker(root / "sd-flags", flags=True),
        "sd-passes": build_tiny_sd_safety_checker(root / "sd-passes", flags=False),
    }


async def open_with(tmp_path: Path, classifier: Path | None):
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        safety={"image_classifier": str(classifier) if classifier else None},
    )
    return await open_services(settings, workers=[FakeWorker()])


@asynccontextmanager
async def opened(tmp_path: Path, classifier: Path | None) -> AsyncIterator[Services]:
    services = await open_with(tmp_path, classifier)
    try:
        yield services
    finally:
        await services.close()


@pytest.mark.parametrize("model", ["flags", "sd-flags"])
async def test_a_flagged_result_is_withheld_and_refunded(tmp_path, classifiers, model):
    async with opened(tmp_path, classifiers[model]) as services:
        job = await services.queue.submit(SCOPE, 1, imagine())
        done = await finished(services.queue, job.id)
        assert done.status is JobStatus.DONE
        assert done.flagged and "image 1" in done.flagged
        balance = await services.credits.balance(SCOPE, 1)
        assert (balance.free_left, balance.held) == (40, 0)  # nothing charged
        assert await services.credits.verify() == []


@pytest.mark.parametrize("model", ["passes", "sd-passes"])
async def test_a_clean_result_is_delivered_and_charged(tmp_path, classifiers, model):
    async with opened(tmp_path, classifiers[model]) as services:
        job = await services.queue.submit(SCOPE, 1, imagine())
        done = await finished(services.queue, job.id)
        assert done.status is JobStatus.DONE and done.flagged is None
        assert (await services.credits.balance(SCOPE, 1)).free_left == 36


async def test_results_in_age_restricted_channels_are_not_withheld(tmp_path, classifiers):
    async with opened(tmp_path, classifiers["flags"]) as services:
        job = await services.queue.submit(SCOPE, 1, imagine(), nsfw=True)
        done = await finished(services.queue, job.id)
        assert done.flagged is None and done.nsfw
        assert (await services.credits.balance(SCOPE, 1)).free_left == 36


async def test_a_broken_classifier_withholds_rather_than_posting_unchecked(tmp_path, classifiers):
    def explode(images):
        raise RuntimeError("classifier crashed")

    async with opened(tmp_path, classifiers["passes"]) as services:
        services.safety.checker._classify = explode
        job = await services.queue.submit(SCOPE, 1, imagine())
        done = await finished(services.queue, job.id)
        assert done.flagged == "the image check could not run"
        assert (await services.credits.balance(SCOPE, 1)).free_left == 40


async def test_uploads_are_checked(tmp_path, classifiers):
    async with opened(tmp_path, classifiers["flags"]) as services:
        with pytest.raises(ImageRefused, match="flagged your upload"):
            await services.safety.check_upload(Image.new("RGB", (64, 64)))


async def test_start_up_says_when_image_checking_is_off(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="bot.safety"):
        services = await open_with(tmp_path, None)
    try:
        assert "Image checking is off" in caplog.text
        await services.safety.check_upload(Image.new("RGB", (64, 64)))  # nothing to check with
    finally:
        await services.close()


async def test_a_missing_classifier_is_a_one_line_settings_error(tmp_path):
    from bot.errors import SettingsError

    with pytest.raises(SettingsError, match="SAFETY__IMAGE_CLASSIFIER"):
        await open_with(tmp_path, tmp_path / "no-such-model")
