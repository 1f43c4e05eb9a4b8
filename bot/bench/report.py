"""From the measurements to the figures: ratios, shares of the hardware, the table and the JSON summary.

Definitions (the README's Performance section repeats them):
- images/s: a side's images divided by the wall time of its N jobs (after one untimed warm-up job), in
  its fastest round; the sides take turns round by round, so a burst of load from elsewhere on a shared
  machine does not land on one side only.
- speedup / speedup_vs_bf16: Atelier's images/s over baseline 1's (library defaults) / baseline 2's
  (reduced precision). speedup_cpu / speedup_vs_bf16_cpu: the same ratios in process CPU time (all
  threads) per round, which other work on a shared machine disturbs much less than wall time.
- overhead: the share of Atelier's wall time not spent in the models' passes, i.e. 1 − Σ over batches of
  the engine's encode + denoise + decode seconds / wall. Everything else counts: queue, database, ledger,
  chaos and conditioning, previews and progress, grids, PNG writing, dispatch to the worker.
- unet_peak_fraction: counted UNet FLOPs of all UNet calls of all images / the engine's denoise seconds /
  the measured matmul rate in Atelier's dtype; job_peak_fraction: UNet + VAE + text encoder FLOPs of all
  jobs / Atelier's wall time / the same rate.
- preview_cost_per_step: time making previews and reporting progress / denoising time (both per step).
- first_progress_s: from submitting the first job into the idle queue to its "started" event (the job
  message changes then); first_preview_s: to its first progress event carrying a preview image.
- memory: what each side adds to the process (weights + peak working memory; see `bench.measure`).
- dispatch_s: per batch, the time the queue waited for the worker minus the time inside `Engine.run`.
"""

from __future__ import annotations

import json
from typing import Any

from bot.bench.atelier import AtelierRound
from bot.bench.baseline import SideResult
from bot.bench.measure import JobFlops, max_pixel_difference
from bot.engine.types import GenerationRequest

#: name → (target, "min" if the value must reach it, "max" if it must stay under it)
TARGETS: dict[str, tuple[float, str]] = {
    "speedup": (2.3, "min"),
    "speedup_vs_bf16": (1.15, "min"),
    "unet_peak_fraction": (0.85, "min"),
    "overhead": (0.03, "max"),
    "preview_cost_per_step": (0.01, "max"),
    "first_progress_s": (1.0, "max"),
}


def summarise(
    config: dict[str, Any],
    default: SideResult,
    reduced: SideResult,
    ours: SideResult,
    best: AtelierRound,
    requests: list[GenerationRequest],
    flops: JobFlops,
    unet_calls: int,
    peaks: dict[str, float],
) -> dict[str, Any]:
    """Every figure of the run, JSON-ready (seconds, bytes, FLOP/s, fractions).

    `best` is Atelier's fastest round (its batches and clocks); `unet_calls` the UNet evaluations per job
    (the scheduler's timesteps: PNDM, SD 1.5's scheduler, evaluates steps + 1 times).
    """
    batches = best.batches
    local = config.get("workers", "local") == "local"
    model_seconds = sum(_stage(b.timings, "encode", "denoise", "decode") for b in batches)
    denoise = sum(b.timings.get("denoise", 0.0) for b in batches)
    reporting = sum(_stage(b.timings, "previews", "progress") for b in batches)
    unet_flops = sum(flops.unet_per_image_step * r.images * unet_calls for r in requests)
    job_flops = sum(flops.job(r.images, unet_calls) for r in requests)
    peak = peaks[ours.dtype]
    dispatch = [b.wall - b.engine for b in batches]
    first = best.clocks[0]
    summary: dict[str, Any] = {
        "speedup": ours.images_per_s / default.images_per_s,
        "speedup_vs_bf16": ours.images_per_s / reduced.images_per_s,
        "overhead": max(0.0, 1.0 - model_seconds / ours.seconds),
        "unet_peak_fraction": unet_flops / denoise / peak if denoise else None,
        "job_peak_fraction": job_flops / ours.seconds / peak,
        "preview_cost_per_step": reporting / denoise if denoise else None,
        "first_progress_s": _since(first.submitted, first.started),
        "first_preview_s": _since(first.submitted, first.first_preview),
        "peak_memory": {side.name: side.memory for side in _sides(default, reduced, ours)},
        "max_pixel_diff": max_pixel_difference(ours.images, reduced.images),
        "max_pixel_diff_vs_default": max_pixel_difference(ours.images, default.images),
        "pixel_diff_vs_reduced": {
            default.name: max_pixel_difference(default.images, reduced.images),
            reduced.name: 0,
            ours.name: max_pixel_difference(ours.images, reduced.images),
        },
        "images_per_s": {side.name: side.images_per_s for side in _sides(default, reduced, ours)},
        "seconds": {side.name: side.seconds for side in _sides(default, reduced, ours)},
        "rounds_s": {side.name: side.rounds for side in _sides(default, reduced, ours)},
        "cpu_s": {side.name: side.cpu_seconds for side in _sides(default, reduced, ours)},
        # The same ratios in CPU time: steadier than wall time when other work shares the machine.
        # Only for in-process workers: a Ray actor's CPU time is spent in another process.
        "speedup_cpu": default.cpu_seconds / ours.cpu_seconds if local else None,
        "speedup_vs_bf16_cpu": reduced.cpu_seconds / ours.cpu_seconds if local else None,
        "job_peak_fraction_by_side": {
            side.name: job_flops / side.seconds / peaks[side.dtype] for side in _sides(default, reduced, ours)
        },
        "dtype": {side.name: side.dtype for side in _sides(default, reduced, ours)},
        "dispatch_s": {"mean": sum(dispatch) / len(dispatch), "max": max(dispatch)} if dispatch else None,
        "batches": [b.images for b in batches],
        "atelier_stages": {
            stage: sum(b.timings.get(stage, 0.0) for b in batches)
            for stage in sorted({stage for b in batches for stage in b.timings})
        },
        "flops": {
            "unet_per_image_step": flops.unet_per_image_step,
            "vae_per_image": flops.vae_per_image,
            "text_per_job": flops.text_per_job,
            "unet_calls_per_job": unet_calls,
            "all_jobs": job_flops,
        },
        "matmul_flop_s": peaks,
        "config": config,
    }
    summary["targets_met"] = {name: _met(summary.get(name), *TARGETS[name]) for name in TARGETS}
    return summary


def _stage(timings: dict[str, float], *names: str) -> float:
    return sum(timings.get(name, 0.0) for name in names)


def _since(start: float, end: float | None) -> float | None:
    return None if end is None else end - start


def _sides(*sides: SideResult) -> tuple[SideResult, ...]:
    return sides


def _met(value: Any, target: float, kind: str) -> bool | None:
    if value is None:
        return None
    return bool(value >= target) if kind == "min" else bool(value <= target)


def table(summary: dict[str, Any]) -> str:
    """The human-readable part: one row per side, then Atelier's details against the targets."""
    names = list(summary["images_per_s"])
    base = summary["images_per_s"][names[0]]
    config = summary["config"]
    lines = [
        f"Model {config['model']} · {config['size']}×{config['size']} px · {config['steps']} steps · "
        f"guidance {config['guidance']} · {config['jobs']} job{'' if config['jobs'] == 1 else 's'} "
        f"of {config['images_per_job']} images · "
        f"{config['device']} ({config['threads']} threads) · workers {config['workers']}",
        "",
        f"{'side':<30} {'images/s':>9} {'s/job':>7} {'× base':>7} {'job/peak':>9} {'memory':>9} "
        f"{'px diff':>8}   (px diff: largest 0–255 difference from baseline 2's images)",
    ]
    for name in names:
        rate = summary["images_per_s"][name]
        label = f"{name} ({summary['dtype'][name]})"
        lines.append(
            f"{label:<30} {rate:>9.3f} {summary['seconds'][name] / config['jobs']:>7.2f} "
            f"{rate / base:>7.2f} {summary['job_peak_fraction_by_side'][name]:>9.2f} "
            f"{summary['peak_memory'][name] / 2**30:>7.2f}GB {summary['pixel_diff_vs_reduced'][name]:>8d}"
        )
    lines.append("")
    for name, (target, kind) in TARGETS.items():
        value = summary.get(name)
        shown = "n/a" if value is None else f"{value:.4f}"
        met = summary["targets_met"][name]
        verdict = "n/a" if met is None else ("met" if met else "NOT met")
        sign = "≥" if kind == "min" else "≤"
        lines.append(f"{name:<24} {shown:>10}   target {sign} {target:g}: {verdict}")
    extras = [
        ("job_peak_fraction", summary["job_peak_fraction"], ".4f"),
        ("speedup_cpu", summary["speedup_cpu"], ".4f"),
        ("speedup_vs_bf16_cpu", summary["speedup_vs_bf16_cpu"], ".4f"),
        ("first_preview_s", summary["first_preview_s"], ".2f"),
        ("max_pixel_diff", summary["max_pixel_diff"], "d"),
        ("max_pixel_diff_vs_default", summary["max_pixel_diff_vs_default"], "d"),
    ]
    for name, value, spec in extras:
        lines.append(f"{name:<24} {'n/a' if value is None else format(value, spec):>10}")
    dispatch = summary["dispatch_s"]
    if dispatch:
        lines.append(
            f"{'dispatch per batch':<24} {dispatch['mean'] * 1000:>8.1f}ms   "
            f"(max {dispatch['max'] * 1000:.1f} ms; batches of {summary['batches']} images)"
        )
    stages = ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in summary["atelier_stages"].items())
    lines.append(f"{'Atelier engine stages':<24} {stages} s (wall {summary['seconds']['atelier']:.2f} s)")
    peaks = ", ".join(f"{dtype} {rate / 1e9:.0f} GFLOP/s" for dtype, rate in summary["matmul_flop_s"].items())
    flops = summary["flops"]
    lines.append(
        f"{'counted FLOPs':<24} UNet {flops['unet_per_image_step'] / 1e9:.0f} G per image-step, VAE "
        f"{flops['vae_per_image'] / 1e9:.0f} G per image, text {flops['text_per_job'] / 1e9:.1f} G per job; "
        f"4096² matmul: {peaks}"
    )
    return "\n".join(lines)


def json_line(summary: dict[str, Any]) -> str:
    """The summary as one JSON line, rounded for reading (the raw values are all there)."""
    return json.dumps(_rounded(summary), ensure_ascii=False, separators=(",", ":"))


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(item) for item in value]
    return value
