"""`python -m bot bench`: Atelier against plain diffusers, side by side, in one process.

The same N `/imagine` jobs (N members' prompts, parsed by the real prompt parser; same seeds, steps,
size and guidance) run three ways, each after one untimed warm-up job:
1. baseline 1: one plain `pipe(prompt, num_images_per_prompt=4, ...)` call per job, library defaults
   — what a typical bot does. That is float32: SD 1.5's published weights are float32 and load as such
   without a `dtype=`. (The built model stores bfloat16 to halve its size, and transformers would load
   its text encoder in the stored dtype, so float32 is passed explicitly to get what the defaults give.)
2. baseline 2: the same with `dtype=` bfloat16 (float16 on a GPU) — what a careful engineer writes;
3. Atelier: the real queue and engine via `open_services` on a fresh DATA_DIR, everything on that it
   does by default (grids, PNGs with recipes, database and ledger writes, progress previews).
All three are loaded side by side and take turns, round after round (`--rounds`); each side's fastest
round counts, so a burst of load from elsewhere on a shared machine does not decide the comparison.
`--quick` spends its minutes where the comparison is close: three short rounds of Atelier and baseline 2
(whose ratio, ~1.2–1.4, is what a single round on a shared machine can get wrong), baseline 1 in the
first round only (it is 3–4× slower, far from its 2.3 target, and costs as much as the other two).

The model is, by default, Stable Diffusion 1.5's architecture with random weights (`bot.bench.sd15`),
built once into DATA_DIR/bench-model; `--model` takes any diffusers directory or hub id. Settings come
from the environment and `.env` as for the bot (so ENGINE__… levers apply to Atelier's side), with
MODEL, DEVICE, DATA_DIR and the credit allowance overridden. The table goes to stdout, then one JSON
line with every figure (see `bot.bench.report` for the definitions); logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import SettingsError
from bot.settings import Settings, load_settings

if TYPE_CHECKING:
    import torch

    from bot.bench.atelier import AtelierRound
    from bot.bench.baseline import SideResult
    from bot.bench.measure import JobFlops
    from bot.engine.types import GenerationRequest, ModelProfile

#: --quick: fewer jobs and steps, so the whole run (model build included) fits in 5 minutes on 2 cores;
#: "baseline_1_rounds" caps the rounds of the slow float32 baseline (None: as many as the others).
QUICK = {"jobs": 1, "steps": 3, "rounds": 3, "baseline_1_rounds": 1}
FULL = {"jobs": 4, "steps": 8, "rounds": 2, "baseline_1_rounds": None}
BUILT_MODEL_SIZE = 256
MAX_JOBS = 100
PROMPTS = [
    "a castle at dusk, highly detailed",
    "a cat in the rain, watercolor",
    "a robot in a misty forest, oil painting",
    "a ship on ocean waves at golden hour",
    "a portrait of a dog, photo, 4k",
    "a neon city in the rain",
    "a garden with a red apple, watercolor",
    "a mountain in fog, oil painting",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="a diffusers directory or hub id (default: SD-1.5 architecture)")
    parser.add_argument("--size", type=_positive, help="image side in px (default: 256, or the model's)")
    parser.add_argument("--steps", type=_positive, help=f"denoising steps (default {FULL['steps']})")
    parser.add_argument("--jobs", type=_positive, help=f"number of /imagine jobs (default {FULL['jobs']})")
    parser.add_argument(
        "--rounds",
        type=_positive,
        help=f"rounds per side, the fastest counts (default {FULL['rounds']}; with --quick "
        f"{QUICK['rounds']}, baseline 1 once)",
    )
    parser.add_argument("--device", help="override DEVICE (one device: cpu, cuda, cuda:N, mps)")
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK['jobs']} job of {QUICK['steps']} steps (< 5 min)"
    )
    parser.add_argument("--workers", choices=("local", "ray"), help="override WORKERS for Atelier's side")
    parser.add_argument("--actors", type=_positive, help="override RAY__ACTORS (with --workers ray)")
    parser.add_argument(
        "--cache", type=Path, help="where the built model is kept (default DATA_DIR/bench-model)"
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def bench_command(args: argparse.Namespace) -> int:
    defaults = QUICK if args.quick else FULL
    jobs = args.jobs or defaults["jobs"]
    steps = args.steps or defaults["steps"]
    rounds = args.rounds or defaults["rounds"]
    baseline_1_rounds = min(rounds, defaults["baseline_1_rounds"] or rounds)
    if jobs > MAX_JOBS:
        raise SettingsError(f"--jobs {jobs}: at most {MAX_JOBS} (the queue's default length).")
    base = load_settings(**({"device": args.device} if args.device else {}))
    if len(base.devices) != 1:
        raise SettingsError(f"DEVICE={base.device}: the benchmark compares one device; pass --device.")

    import torch
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from bot.bench.measure import matmul_rate
    from bot.bench.report import json_line, summarise, table
    from bot.bench.sd15 import ensure_sd15
    from bot.engine.device import dtype_name, resolve_device, resolve_dtype
    from bot.engine.prompt import parse_prompt
    from bot.settings import CreditSettings

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    device = resolve_device(base.devices[0])
    reduced = torch.float16 if device.startswith("cuda") or device == "mps" else torch.bfloat16
    ours = resolve_dtype(base.dtype, device)
    model = args.model or str(ensure_sd15(args.cache or base.data_dir / "bench-model" / "sd15"))
    size = args.size or (None if args.model else BUILT_MODEL_SIZE)

    def build_requests(profile: ModelProfile) -> list[GenerationRequest]:
        side = size or profile.native_size
        requests = []
        for n in range(jobs):
            parsed = parse_prompt(f"{PROMPTS[n % len(PROMPTS)]} --seed {1000 + 4 * n}", profile)
            # Size and steps are set after parsing: --ar keeps the native pixel count and --steps keeps
            # to the model's range, and the benchmark's load is smaller than either on purpose.
            requests.append(parsed.to_request().replace(width=side, height=side, steps=steps))
        return requests

    started = time.perf_counter()
    peaks_before = {dtype_name(d): matmul_rate(d, device) for d in {torch.float32, reduced, ours}}
    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as data_dir:
        settings = load_settings(
            model=model,
            device=device,
            data_dir=Path(data_dir),
            engine=base.engine,  # compile_cache_dir stays where the real DATA_DIR points: kept between runs
            queue=base.queue.model_copy(update={"max_queue_length": MAX_JOBS + 1}),
            credits=CreditSettings(default_allowance=1_000_000_000),
        )
        apply_worker_flags(settings, args.workers, args.actors)
        sides = asyncio.run(
            _run_sides(settings, build_requests, model, device, reduced, rounds, baseline_1_rounds)
        )
    ours, best, second, first, requests, flops, unet_calls = sides
    peaks = {
        dtype: max(rate, matmul_rate(getattr(torch, dtype), device)) for dtype, rate in peaks_before.items()
    }
    config: dict[str, Any] = {
        "model": "SD-1.5 architecture, random weights" if not args.model else args.model,
        "size": requests[0].width,
        "steps": steps,
        "jobs": jobs,
        "images_per_job": requests[0].images,
        "guidance": requests[0].guidance,
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "workers": getattr(settings, "workers", "local"),
        "levers": {
            "channels_last": settings.engine.channels_last,
            "prepack_weights": settings.engine.prepack_weights,
            "compile": settings.engine.compile,
            "batching": settings.queue.batching,
            "max_batch_images": settings.engine.max_batch_images,
        },
        "rounds": rounds,
        "quick": bool(args.quick),
        "total_s": time.perf_counter() - started,
    }
    summary = summarise(config, first, second, ours, best, requests, flops, unet_calls, peaks)
    print(table(summary))
    print(json_line(summary), flush=True)
    return 0


def apply_worker_flags(settings: Settings, workers: str | None, actors: int | None) -> None:
    """Set WORKERS and RAY__ACTORS from --workers / --actors, if this build has those settings."""
    if workers is None and actors is None:
        return
    fields = type(settings).model_fields
    if "workers" not in fields:
        if workers in (None, "local") and actors is None:
            return
        raise SettingsError("--workers ray / --actors: this build has no Ray workers (no WORKERS setting).")
    if workers is not None:
        settings.workers = workers  # type: ignore[attr-defined]
    if actors is not None:
        if "ray" not in fields:
            raise SettingsError("--actors: this build has no RAY__ACTORS setting.")
        settings.ray = settings.ray.model_copy(update={"actors": actors})  # type: ignore[attr-defined]


async def _run_sides(
    settings: Settings,
    build_requests: Callable[[ModelProfile], list[GenerationRequest]],
    model: str,
    device: str,
    reduced: torch.dtype,
    rounds: int,
    baseline_1_rounds: int,
) -> tuple[SideResult, AtelierRound, SideResult, SideResult, list[GenerationRequest], JobFlops, int]:
    """Load all three sides, warm each up, then run them in turns for `rounds` rounds (baseline 1 takes
    part in the first `baseline_1_rounds` of them).

    The baselines run in a thread, so the queue's event loop stays free while they work.
    """
    import torch

    from bot.bench.atelier import AtelierSide
    from bot.bench.baseline import Baseline

    atelier = await AtelierSide.start(settings, build_requests)
    baselines: list[Baseline] = []
    try:
        requests = atelier.requests
        for name, dtype in (("baseline_reduced", reduced), ("baseline_default", torch.float32)):
            baselines.append(await asyncio.to_thread(Baseline, name, model, device, dtype))
            await asyncio.to_thread(baselines[-1].warm_up, requests[0])
        second, first = baselines
        for index in range(rounds):
            await atelier.run_round()
            await asyncio.to_thread(second.run_round, requests)
            if index < baseline_1_rounds:
                await asyncio.to_thread(first.run_round, requests)
        flops = await asyncio.to_thread(second.count_flops, requests[0])
        return (
            atelier.result(),
            atelier.best,
            second.result(),
            first.result(),
            requests,
            flops,
            second.unet_calls,
        )
    finally:
        for baseline in baselines:
            baseline.close()
        await atelier.close()
