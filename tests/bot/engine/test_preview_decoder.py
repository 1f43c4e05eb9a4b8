"""ENGINE__PREVIEW_DECODER: sharp previews from a tiny (TAESD-class) decoder, loaded like a real one.

The decoder here is diffusers' `AutoencoderTiny` with random weights and a two-block config, written with
`save_pretrained` and loaded by path, the way madebyollin/taesd is loaded from a download.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderTiny

from bot.engine.engine import Engine, Progress
from bot.engine.preview import TinyDecoderPreviewer
from bot.errors import SettingsError
from bot.settings import EngineSettings
from tests.bot.engine.helpers import make_request, max_difference


def _tiny_decoder(path: Path, latent_channels: int = 4) -> Path:
    torch.manual_seed(0)
    AutoencoderTiny(
        encoder_block_out_channels=(16, 16),
        decoder_block_out_channels=(16, 16),
        num_encoder_blocks=(1, 1),
        num_decoder_blocks=(1, 1),
        latent_channels=latent_channels,
    ).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def decoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_decoder(tmp_path_factory.mktemp("taesd"))


@pytest.fixture(scope="module")
def engine(tiny_sd_path: Path, decoder_path: Path) -> Engine:
    settings = EngineSettings(preview_every=1, preview_decoder=str(decoder_path))
    return Engine.load(str(tiny_sd_path), device="cpu", dtype="float32", settings=settings)


def test_previews_come_from_the_tiny_decoder_at_image_size(engine: Engine, sd_engine: Engine) -> None:
    """With a tiny decoder, each preview image has the image's own size (the latent colour map gives the
    latent's), a 2×2 grid for four images; the finished images are exactly those made without it."""
    updates: list[Progress] = []
    request = make_request(engine, seed=3, steps=3)
    result = engine.run([request], on_progress=updates.append)[0]
    previews = [update.previews[0] for update in updates if update.previews]
    assert len(previews) == 2
    assert all(preview.size == (2 * 64, 2 * 64) and preview.mode == "RGB" for preview in previews)
    assert max_difference(result.images, sd_engine.run([request])[0].images) == 0


def test_large_outputs_preview_at_a_bounded_size(decoder_path: Path) -> None:
    """Latents are subsampled before decoding, so a big image's preview costs what a 128 px one does."""
    decoder = AutoencoderTiny.from_pretrained(decoder_path, dtype=torch.float32)
    previewer = TinyDecoderPreviewer(decoder, vae_scale_factor=8)  # SD's VAE: 128 px = 16 latents
    # Two 1024 px images' latents (128 × 128) decode from 16 × 16, i.e. 32 px with this 2× decoder.
    images = previewer(torch.randn(2, 4, 128, 128))
    assert [image.size for image in images] == [(32, 32), (32, 32)]


def test_a_missing_or_mismatched_decoder_is_one_settings_error(tiny_sd_path: Path, tmp_path: Path) -> None:
    """A wrong ENGINE__PREVIEW_DECODER stops start-up with a line naming it, not a traceback mid-job."""
    with pytest.raises(SettingsError, match=r"ENGINE__PREVIEW_DECODER='.*nowhere' could not be loaded"):
        Engine.load(
            str(tiny_sd_path),
            device="cpu",
            dtype="float32",
            settings=EngineSettings(preview_decoder=str(tmp_path / "nowhere")),
        )
    sixteen = _tiny_decoder(tmp_path / "taesd3", latent_channels=16)
    with pytest.raises(SettingsError, match="16-channel latents; the model makes 4-channel"):
        Engine.load(
            str(tiny_sd_path),
            device="cpu",
            dtype="float32",
            settings=EngineSettings(preview_decoder=str(sixteen)),
        )
