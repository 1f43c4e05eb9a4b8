"""The generation engine: one loaded diffusers model that turns `GenerationRequest`s into images.

Public interface
----------------
`Engine.load(model, *, device="auto", dtype="auto", settings=None) -> Engine`  (blocking, seconds–minutes)
    Loads `model` (hub id or local diffusers directory) once with `AutoPipelineForText2Image`, passing the
    resolved `dtype=` explicitly, and derives the image-to-image pipeline from it with `from_pipe` (the
    same weights, no second copy). SD 1.x, SD 2.x, SDXL and their Turbo/LCM relatives are supported;
    anything else is a `SettingsError`. The VAE stays in float32 when it asks to be upcast
    (`force_upcast`, e.g. the SDXL VAE, which overflows to NaN in float16) and uses tiling, so large
    upscales decode in pieces. `settings.upscaler` is loaded here too (see `bot.engine.upscalers`), and
    the speed levers `settings` turns on (channels-last, packed weights, compile) are applied (see
    `bot.engine.speed`), and the tiny preview decoder `settings.preview_decoder` names, if any.
    `device`/`dtype` accept what DEVICE/DTYPE accept (see `bot.engine.device`).

Attributes: `profile: ModelProfile` (family, native size, step range, default guidance, sampler — learned
    from the configs by `bot.engine.profile`), `device: str` (resolved, e.g. "cuda", "cpu"),
    `dtype: str` ("float16", "bfloat16" or "float32"), `settings: EngineSettings`.

`Engine.run(requests, *, on_progress=None, should_stop=None) -> list[GenerationResult]`  (blocking)
    Runs every request in ONE pipeline call; result i belongs to request i. All requests must share
    `batch_key()` (same kind, size, steps, guidance, strength, scale) — prompts, negative prompts, seeds,
    chaos and source images may differ. Kinds:
    - IMAGINE: text → `images` images (seeds seed, seed+1, … wrapping at 2³²) plus a 2×2 grid;
    - VARY: image-to-image from `init_image` (a PNG/JPEG/WebP path) at `strength` (subtle/strong values
      live in `bot.followups`) → a new grid;
    - UPSCALE: `init_image` enlarged to width×height (the source × `scale`, 2 or 4, at most
      `settings.max_output_side` per side) by the configured upscaler, then an image-to-image pass at
      `strength` (low for subtle, which keeps detail; higher for creative, which invents more).
    For VARY/UPSCALE `steps` counts the denoising steps actually run: the schedule is stretched to
    ceil(steps / strength) so that a few-step model still takes its steps at low strength.
    Each result has full-resolution `images`, one `Recipe` per image (model, that image's seed, steps,
    guidance, size, sampler, strength, parent path, chaos), the `grid` for multi-image requests,
    `warnings` (e.g. prompt tokens beyond what the encoder reads), `seconds` and `timings` (seconds spent
    in prepare / encode / denoise / previews / progress / decode, for the whole batch; `denoise` is the
    pipeline's loop alone, `previews` making them, `progress` the caller's `on_progress` besides).
    Pixels depend only on the recipe: a request batched with others gives bit-identical images to the
    same request run alone, and an image re-run on its own from its recipe (`recipes.replay_request`)
    is the same image, on the same device and dtype (see `bot.engine.batching` for how and what it costs).
    `on_progress(Progress)` is called after every denoising step from the calling thread; every
    `settings.preview_every` steps `Progress.previews` holds one small RGB preview per request (a grid for
    multi-image requests), made from the latents by a fixed linear map without the VAE, or by the tiny
    preview decoder (`bot.engine.preview`). `should_stop()` is polled after every step; once it returns
    true the loop skips its remaining steps and `GenerationCancelled` is raised.
    Raises `InvalidRequest` (mixed batch, bad size/steps/strength/scale, SELECT jobs, wrong model),
    `InvalidImage` (unreadable source image), `GenerationCancelled`, and `OutOfMemory` when the device
    runs out of memory (its cache is freed first; the engine stays usable).
    Calls are serialised by a lock: one run at a time per engine.

`await Engine.arun(...)`: the same in a worker thread (`asyncio.to_thread`), so an event loop never blocks.
`Engine.close()`: drop the pipelines and free device memory.
`Progress(step, total, previews)`: one progress report; `previews` is None on steps without one.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image
from PIL import Image

from bot.engine.batching import fixed_unet_batches
from bot.engine.device import dtype_name, resolve_device, resolve_dtype
from bot.engine.encode import Encoded, PromptEncoder
from bot.engine.images import fit_to, make_grid, read_image_file
from bot.engine.preview import LatentPreviewer, TinyDecoderPreviewer, load_tiny_decoder
from bot.engine.profile import detect_profile
from bot.engine.prompt import MAX_SEED
from bot.engine.speed import apply_speedups
from bot.engine.types import GenerationRequest, GenerationResult, JobKind, ModelProfile, Recipe
from bot.engine.upscalers import Upscaler, load_upscaler
from bot.errors import GenerationCancelled, InvalidRequest, OutOfMemory, SettingsError
from bot.settings import EngineSettings

log = logging.getLogger(__name__)

SUPPORTED_PIPELINES = {"StableDiffusionPipeline", "StableDiffusionXLPipeline"}
MAX_STEPS = 200  #: hard ceiling; the prompt parser enforces each model's sane range
MAX_GUIDANCE = 50.0
#: At --chaos 100 each token embedding is nudged by noise of this fraction of its own RMS.
CHAOS_NOISE = 0.5
_CHAOS_SALT = 0x0C4A05  # so the chaos noise of seed s is not the latent noise of seed s
_SIZE_MULTIPLE = 8
_UNUSED_NEGATIVE = (
    "The negative prompt (--no) had no effect: at this guidance (--stylize) the model runs without "
    "classifier-free guidance. Raise --stylize to use it."
)
#: The request fields `GenerationRequest.batch_key()` compares, named in the mixed-batch message.
_KEY_FIELDS = ("model", "kind", "width", "height", "steps", "guidance", "strength", "scale", "upscale_mode")
#: Images per UNet call (see bot.engine.batching): a grid's four, or one large upscale.
GRID_SLOTS = 4
UPSCALE_SLOTS = 1
#: The VAE works in overlapping tiles when an image has more than this many times the native pixel count
#: (every upscale; never a normal grid image, whatever its aspect ratio).
TILE_ABOVE_NATIVE_AREA = 2.0
#: Source images are the bot's own files (uploads were checked by the cog against the upload limits).
_SOURCE_MAX_BYTES = 200_000_000


@dataclass(frozen=True)
class Progress:
    """One step done: `step` of `total`, and on preview steps one small image per request."""

    step: int
    total: int
    previews: list[Image.Image] | None = None


@dataclass
class _Batch:
    """Per-image inputs of one pipeline call, in request order."""

    owners: list[int] = field(default_factory=list)  #: request index of each image
    seeds: list[int] = field(default_factory=list)
    encoded: list[Encoded] = field(default_factory=list)
    warnings: list[list[str]] = field(default_factory=list)  #: per request


class Engine:
    """A loaded model; see the module docstring for the contract."""

    def __init__(
        self,
        *,
        pipe: Any,
        profile: ModelProfile,
        device: str,
        dtype: torch.dtype,
        settings: EngineSettings,
        upscaler: Upscaler,
        previewer: Callable[[torch.Tensor, Any], list[Image.Image]] | None = None,
    ) -> None:
        self.pipe = pipe
        self.img2img = AutoPipelineForImage2Image.from_pipe(pipe)
        self.img2img.set_progress_bar_config(disable=True)
        self.profile = profile
        self.device = device
        self.dtype = dtype_name(dtype)
        self.settings = settings
        self.upscaler = upscaler
        self._sdxl = profile.family == "sdxl"
        self._encoder = PromptEncoder(pipe, sdxl=self._sdxl)
        self._previewer = previewer or LatentPreviewer(profile.family, device)
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, model: str, *, device: str = "auto", dtype: str = "auto", settings: EngineSettings | None = None
    ) -> Engine:
        """Load `model` once and learn its profile (blocking)."""
        settings = settings or EngineSettings()
        device_name = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, device_name)
        try:
            pipe = AutoPipelineForText2Image.from_pretrained(model, dtype=torch_dtype)
        except (OSError, ValueError, KeyError) as exc:
            raise SettingsError(f"MODEL={model!r} could not be loaded: {exc}") from None
        if type(pipe).__name__ not in SUPPORTED_PIPELINES:
            raise SettingsError(
                f"MODEL={model!r} is a {type(pipe).__name__}; Atelier runs SD 1.x, SD 2.x and SDXL "
                "text-to-image models (and their Turbo/LCM versions)."
            )
        pipe.to(device_name)
        if torch_dtype == torch.float16 and pipe.vae.config.get("force_upcast", False):
            pipe.vae.to(torch.float32)  # what diffusers does around every decode, done once
        if settings.attention_slicing:
            pipe.enable_attention_slicing()
        apply_speedups(pipe, settings, device_name)
        pipe.set_progress_bar_config(disable=True)
        profile = detect_profile(
            model,
            model_index=dict(pipe.config),
            unet=pipe.unet.config,
            vae=pipe.vae.config,
            scheduler=pipe.scheduler.config,
            tokenizer_max_length=pipe.tokenizer.model_max_length,
        )
        upscaler = load_upscaler(settings.upscaler, device_name, torch_dtype)
        previewer = None
        if settings.preview_decoder:
            decoder = load_tiny_decoder(
                settings.preview_decoder, device_name, torch_dtype, pipe.unet.config.in_channels
            )
            previewer = TinyDecoderPreviewer(decoder, pipe.vae_scale_factor)
        log.debug(
            "Loaded %s: %s, %d px, steps %d (%d–%d), guidance %s, %s, on %s in %s; upscaler %s",
            model,
            profile.family,
            profile.native_size,
            profile.default_steps,
            profile.min_steps,
            profile.max_steps,
            profile.default_guidance,
            profile.sampler,
            device_name,
            dtype_name(torch_dtype),
            upscaler.name,
        )
        return cls(
            pipe=pipe,
            profile=profile,
            device=device_name,
            dtype=torch_dtype,
            settings=settings,
            upscaler=upscaler,
            previewer=previewer,
        )

    def run(
        self,
        requests: list[GenerationRequest],
        *,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[GenerationResult]:
        """Run `requests` as one batch (blocking); see the module docstring."""
        if self.pipe is None:
            raise RuntimeError("This engine was closed; load a new one.")
        with self._lock, torch.inference_mode():
            try:
                return self._run(requests, on_progress, should_stop)
            except torch.cuda.OutOfMemoryError:
                self._free_memory()
                raise OutOfMemory(self._oom_message(requests)) from None
            except RuntimeError as exc:
                if "out of memory" not in str(exc) and "can't allocate memory" not in str(exc):
                    raise
                self._free_memory()
                raise OutOfMemory(self._oom_message(requests)) from None

    async def arun(
        self,
        requests: list[GenerationRequest],
        *,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[GenerationResult]:
        """`run` in a worker thread; callbacks are called from that thread."""
        return await asyncio.to_thread(self.run, requests, on_progress=on_progress, should_stop=should_stop)

    def close(self) -> None:
        """Drop the pipelines and free the device memory they held."""
        with self._lock:
            self.pipe = self.img2img = self.upscaler = None  # type: ignore[assignment]
            self._encoder = None  # type: ignore[assignment]
            self._free_memory()

    # -- one batch ---------------------------------------------------------------------------------------

    def _run(
        self,
        requests: list[GenerationRequest],
        on_progress: Callable[[Progress], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> list[GenerationResult]:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        stop = should_stop or (lambda: False)

        # 1. Check inputs
        self._check_inputs(requests)
        first = requests[0]
        img2img = first.kind in (JobKind.VARY, JobKind.UPSCALE)
        if stop():
            raise GenerationCancelled()

        # 2. Source images, enlarged first for upscales
        clock = time.perf_counter()
        sources = [self._source_image(request) for request in requests] if img2img else []
        timings["prepare"] = time.perf_counter() - clock

        # 3. Encode prompts, one request at a time (so batching cannot change them), then chaos per image
        clock = time.perf_counter()
        # Classifier-free guidance, exactly when diffusers applies it (LCM UNets embed guidance instead).
        use_cfg = first.guidance > 1 and self.pipe.unet.config.get("time_cond_proj_dim") is None
        batch = _Batch()
        for index, request in enumerate(requests):
            encoded = self._encoder.encode(request.prompt, request.negative_prompt, guidance=use_cfg)
            batch.warnings.append(list(encoded.warnings))
            if request.negative_prompt and not use_cfg:
                batch.warnings[-1].append(_UNUSED_NEGATIVE)
            for image in range(request.images):
                seed = (request.seed + image) % (MAX_SEED + 1)
                batch.owners.append(index)
                batch.seeds.append(seed)
                batch.encoded.append(_with_chaos(encoded, request.chaos, seed))
        conditioning = self._conditioning(batch.encoded, use_cfg)
        init_latents = self._encode_images(sources, batch.owners) if img2img else None
        timings["encode"] = time.perf_counter() - clock

        # 4. Denoise: one pipeline call, the UNet in fixed-size groups, progress and stop checks every step
        clock = time.perf_counter()
        previews_seconds = reporting_seconds = 0.0  # making previews; the caller's on_progress (incl. them)
        stopped = False

        def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            nonlocal previews_seconds, reporting_seconds, stopped
            if stop():
                pipe._interrupt = True
                stopped = True
                return tensors
            if on_progress is not None:
                report_clock = time.perf_counter()
                done, total = step + 1, pipe.num_timesteps
                previews = None
                if done % self.settings.preview_every == 0 and done < total:
                    previews = self._previews(tensors["latents"], pipe.scheduler, batch.owners, len(requests))
                    previews_seconds += time.perf_counter() - report_clock
                on_progress(Progress(done, total, previews))
                reporting_seconds += time.perf_counter() - report_clock
            return tensors

        generators = [torch.Generator().manual_seed(seed) for seed in batch.seeds]
        arguments: dict[str, Any] = dict(
            **conditioning,
            guidance_scale=first.guidance,
            generator=generators,
            output_type="latent",
            callback_on_step_end=on_step_end,
        )
        lengths = [encoded.positive.shape[1] for encoded in batch.encoded]
        slots = UPSCALE_SLOTS if first.kind is JobKind.UPSCALE else GRID_SLOTS
        groups = _groups(batch.owners, slots)
        with fixed_unet_batches(self.pipe.unet, groups, lengths, slots):
            if img2img:
                assert first.strength is not None
                latents = self.img2img(
                    image=init_latents,
                    strength=first.strength,
                    num_inference_steps=self._stretched_steps(first.steps, first.strength),
                    **arguments,
                ).images
            else:
                latents = self.pipe(
                    width=first.width, height=first.height, num_inference_steps=first.steps, **arguments
                ).images
        if stopped:
            raise GenerationCancelled()
        timings["denoise"] = time.perf_counter() - clock - reporting_seconds
        timings["previews"] = previews_seconds
        timings["progress"] = reporting_seconds - previews_seconds  # the caller: PNG encoding, hand-off

        # 5. Decode, image by image
        clock = time.perf_counter()
        images = []
        for index in range(latents.shape[0]):
            image, withheld = self._decode(latents[index : index + 1])
            images.append(image)
            if withheld:
                owner = batch.owners[index]
                number = batch.owners[:index].count(owner) + 1
                batch.warnings[owner].append(f"Image {number} was blacked out by the model's safety checker.")
        timings["decode"] = time.perf_counter() - clock

        # 6. Results with their recipes
        seconds = time.perf_counter() - started
        return [
            self._result(request, index, batch, images, seconds, timings)
            for index, request in enumerate(requests)
        ]

    def _stretched_steps(self, steps: int, strength: float) -> int:
        """The schedule length whose last `strength` part is `steps` steps, within what the scheduler allows
        (LCM schedules at most `original_inference_steps`, others at most their training timesteps)."""
        config = self.pipe.scheduler.config
        limit = config.get("original_inference_steps") or config.get("num_train_timesteps", 1000)
        return min(math.ceil(steps / strength), int(limit))

    def _check_inputs(self, requests: list[GenerationRequest]) -> None:
        if not requests:
            raise InvalidRequest("A batch needs at least one request.")
        first = requests[0]
        for number, request in enumerate(requests[1:], start=2):
            if request.batch_key() != first.batch_key():
                differ = [name for name in _KEY_FIELDS if getattr(request, name) != getattr(first, name)]
                raise InvalidRequest(
                    f"Requests in one batch must share their batch_key(); request {number} differs from "
                    f"request 1 in {', '.join(differ) or 'its batch key'}."
                )
        if first.kind not in (JobKind.IMAGINE, JobKind.VARY, JobKind.UPSCALE):
            raise InvalidRequest(
                f"{first.kind.value} jobs need no generation; the engine runs imagine, vary, upscale."
            )
        if first.model and first.model != self.profile.name:
            raise InvalidRequest(
                f"This request is for the model {first.model}, but this engine runs {self.profile.name}."
            )
        total = sum(request.images for request in requests)
        if any(request.images < 1 for request in requests) or total > self.settings.max_batch_images:
            raise InvalidRequest(
                f"A batch holds 1 to {self.settings.max_batch_images} images (asked: {total})."
            )
        largest = self.settings.max_output_side
        if not all(
            64 <= side <= largest and side % _SIZE_MULTIPLE == 0 for side in (first.width, first.height)
        ):
            raise InvalidRequest(
                f"Width and height must be multiples of {_SIZE_MULTIPLE} from 64 to {largest} px "
                f"(asked: {first.width}×{first.height})."
            )
        if not 1 <= first.steps <= MAX_STEPS:
            raise InvalidRequest(f"Steps must be from 1 to {MAX_STEPS} (asked: {first.steps}).")
        if not 0 <= first.guidance <= MAX_GUIDANCE:
            raise InvalidRequest(f"Guidance must be from 0 to {MAX_GUIDANCE:g} (asked: {first.guidance}).")
        for request in requests:
            if not 0 <= request.seed <= MAX_SEED:
                raise InvalidRequest(f"Seeds run from 0 to {MAX_SEED} (asked: {request.seed}).")
            if not 0 <= request.chaos <= 100:
                raise InvalidRequest(f"Chaos runs from 0 to 100 (asked: {request.chaos}).")
        if first.kind is JobKind.IMAGINE:
            return
        if first.strength is None or not 0 < first.strength <= 1:
            raise InvalidRequest(
                f"{first.kind.value} needs a strength above 0 and at most 1 (asked: {first.strength})."
            )
        if any(not request.init_image for request in requests):
            raise InvalidRequest(f"{first.kind.value} needs a source image (init_image).")
        if first.kind is JobKind.UPSCALE:
            if first.scale not in (2, 4):
                raise InvalidRequest(f"Upscales are 2× or 4× (asked: {first.scale}×).")
            if first.upscale_mode not in ("subtle", "creative"):
                raise InvalidRequest(f"Upscale mode is subtle or creative (asked: {first.upscale_mode}).")

    def _source_image(self, request: GenerationRequest) -> Image.Image:
        assert request.init_image is not None
        image = read_image_file(
            request.init_image,
            max_bytes=max(self.settings.max_upload_bytes, _SOURCE_MAX_BYTES),
            max_pixels=max(self.settings.max_upload_pixels, self.settings.max_output_side**2),
        )
        size = (request.width, request.height)
        if request.kind is JobKind.UPSCALE:
            source = (request.width // request.scale, request.height // request.scale)
            image = self.upscaler(fit_to(image, *source), size, prompt=request.prompt, seed=request.seed)
        return fit_to(image, *size)

    def _conditioning(self, encoded: list[Encoded], guidance: bool) -> dict[str, torch.Tensor]:
        """The pipeline's embedding arguments: per-image rows, zero-padded to the longest prompt."""
        longest = max(item.positive.shape[1] for item in encoded)

        def stack(tensors: list[torch.Tensor]) -> torch.Tensor:
            padded = [torch.nn.functional.pad(t, (0, 0, 0, longest - t.shape[1])) for t in tensors]
            return torch.cat(padded).to(self.pipe.device)

        arguments = {"prompt_embeds": stack([item.positive for item in encoded])}
        if guidance:
            arguments["negative_prompt_embeds"] = stack([item.negative for item in encoded])  # type: ignore[misc]
        if self._sdxl:
            arguments["pooled_prompt_embeds"] = torch.cat([item.pooled for item in encoded])  # type: ignore[misc]
            if guidance:
                arguments["negative_pooled_prompt_embeds"] = torch.cat(
                    [item.negative_pooled for item in encoded]  # type: ignore[misc]
                )
        return arguments

    def _encode_images(self, sources: list[Image.Image], owners: list[int]) -> torch.Tensor:
        """Scaled VAE latents of each request's source, one row per image (the distribution's mode)."""
        vae = self.pipe.vae
        config = vae.config
        per_request = []
        for source in sources:
            self._set_tiling(source.width, source.height)
            pixels = self.pipe.image_processor.preprocess(source).to(vae.device, vae.dtype)
            latents = vae.encode(pixels).latent_dist.mode()
            if config.get("latents_mean") is not None and config.get("latents_std") is not None:
                mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1).to(latents)
                std = torch.tensor(config.latents_std).view(1, -1, 1, 1).to(latents)
                latents = (latents - mean) * config.scaling_factor / std
            else:
                latents = latents * config.scaling_factor
            per_request.append(latents.to(self.pipe.unet.dtype))
        return torch.cat([per_request[owner] for owner in owners])

    def _decode(self, latents: torch.Tensor) -> tuple[Image.Image, bool]:
        """One image from its latents, and whether the model's own safety checker (if it ships one,
        as SD 1.5 does) withheld it. Decoding here rather than in the pipeline keeps the VAE per image."""
        vae = self.pipe.vae
        config = vae.config
        latents = latents.to(vae.device, vae.dtype)
        scale = self.pipe.vae_scale_factor
        self._set_tiling(latents.shape[-1] * scale, latents.shape[-2] * scale)
        if config.get("latents_mean") is not None and config.get("latents_std") is not None:
            mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1).to(latents)
            std = torch.tensor(config.latents_std).view(1, -1, 1, 1).to(latents)
            latents = latents * std / config.scaling_factor + mean
        else:
            latents = latents / config.scaling_factor
        pixels = vae.decode(latents, return_dict=False)[0]
        withheld = False
        checker = getattr(self.pipe, "safety_checker", None)
        if checker is not None:
            pixels, concepts = self.pipe.run_safety_checker(pixels, pixels.device, checker.dtype)
            withheld = bool(concepts[0])
        image = self.pipe.image_processor.postprocess(
            pixels, output_type="pil", do_denormalize=[not withheld]
        )
        return image[0], withheld

    def _set_tiling(self, width: int, height: int) -> None:
        if width * height > TILE_ABOVE_NATIVE_AREA * self.profile.native_size**2:
            self.pipe.vae.enable_tiling()
        else:
            self.pipe.vae.disable_tiling()

    def _previews(
        self, latents: torch.Tensor, scheduler: Any, owners: list[int], requests: int
    ) -> list[Image.Image]:
        thumbnails = self._previewer(latents, scheduler)
        grouped: list[list[Image.Image]] = [[] for _ in range(requests)]
        for owner, thumbnail in zip(owners, thumbnails, strict=True):
            grouped[owner].append(thumbnail)
        return [group[0] if len(group) == 1 else make_grid(group) for group in grouped]

    def _result(
        self,
        request: GenerationRequest,
        index: int,
        batch: _Batch,
        images: list[Image.Image],
        seconds: float,
        timings: dict[str, float],
    ) -> GenerationResult:
        mine = [i for i, owner in enumerate(batch.owners) if owner == index]
        recipes = [
            Recipe(
                prompt=request.prompt,
                negative_prompt=request.negative_prompt,
                seed=batch.seeds[i],
                steps=request.steps,
                guidance=request.guidance,
                width=request.width,
                height=request.height,
                sampler=self.profile.sampler,
                model=self.profile.name,
                kind=request.kind,
                chaos=request.chaos,
                strength=request.strength if request.kind is not JobKind.IMAGINE else None,
                parent=request.init_image,
                scale=request.scale if request.kind is JobKind.UPSCALE else 1,
                upscale_mode=request.upscale_mode if request.kind is JobKind.UPSCALE else None,
            )
            for i in mine
        ]
        own_images = [images[i] for i in mine]
        return GenerationResult(
            request=request,
            images=own_images,
            recipes=recipes,
            grid=make_grid(own_images) if len(own_images) > 1 else None,
            warnings=batch.warnings[index],
            seconds=seconds,
            timings=dict(timings),
        )

    def _oom_message(self, requests: list[GenerationRequest]) -> str:
        first = requests[0]
        images = sum(request.images for request in requests)
        return (
            f"The {self.device} ran out of memory making {images} image(s) at {first.width}×{first.height}; "
            "try fewer or smaller images (or a 2× instead of a 4× upscale)."
        )

    def _free_memory(self) -> None:
        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        elif self.device == "mps":
            torch.mps.empty_cache()


def _groups(owners: list[int], slots: int) -> list[list[int]]:
    """Image indices cut into groups of at most `slots`, never mixing two requests."""
    groups: list[list[int]] = []
    for index, owner in enumerate(owners):
        if not groups or len(groups[-1]) == slots or owners[groups[-1][0]] != owner:
            groups.append([])
        groups[-1].append(index)
    return groups


def _with_chaos(encoded: Encoded, chaos: int, seed: int) -> Encoded:
    """`encoded` with its positive side nudged by seeded noise, so the images of one grid drift apart.

    The noise is drawn on the CPU from this image's seed alone, so an image keeps its chaos when re-run.
    """
    if chaos == 0:
        return encoded
    generator = torch.Generator().manual_seed(seed ^ _CHAOS_SALT)
    scale = CHAOS_NOISE * chaos / 100

    def nudge(tensor: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
        rms = tensor.float().pow(2).mean(dim=-1, keepdim=True).sqrt()
        return (tensor.float() + scale * rms * noise.to(tensor.device)).to(tensor.dtype)

    pooled = nudge(encoded.pooled) if encoded.pooled is not None else None
    return Encoded(
        nudge(encoded.positive), encoded.negative, pooled, encoded.negative_pooled, encoded.warnings
    )
