"""What a job message says at each stage. Pure functions of the job and its latest event.

Kept apart from the code that sends messages so the wording can be read (and tested) in one place.
"""

from __future__ import annotations

from typing import Any

from bot.engine.types import JobKind

PROMPT_SHOWN = 300  #: characters of the prompt shown in a job message


def headline(job: Any) -> str:
    """`**prompt** — @owner` plus what the job is, e.g. `(variation of job 12, image 3)`."""
    request = job.request
    prompt = (
        request.prompt if len(request.prompt) <= PROMPT_SHOWN else request.prompt[: PROMPT_SHOWN - 1] + "…"
    )
    what = {
        JobKind.IMAGINE: "",
        JobKind.VARY: " · variation",
        JobKind.UPSCALE: f" · upscale ×{request.scale} ({request.upscale_mode or 'subtle'})",
        JobKind.SELECT: "",
    }[request.kind]
    parent = f" of job {job.parent_job_id}" if getattr(job, "parent_job_id", None) else ""
    if what and parent and getattr(job, "parent_index", None):
        parent += f", image {job.parent_index}"
    return f"**{prompt}** — <@{job.owner}>{what}{parent if what else ''}"


def cost_text(job: Any) -> str:
    if getattr(job, "relax", False) or job.request.relax:
        return "relax mode (free)"
    return "free" if job.cost == 0 else f"{job.cost} credit{'s' if job.cost != 1 else ''}"


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f", ~{max(1, round(seconds))} s"
    return f", ~{round(seconds / 60)} min"


def waiting(job: Any, position: int | None, eta_s: float | None, *, paused: bool = False) -> str:
    where = f"position {position}" if position else "queued"
    state = "Queue paused by a moderator" if paused else "Waiting to start"
    return f"{headline(job)}\n{state} ({where}{eta_text(eta_s)}) · {cost_text(job)} · job {job.id}"


def starting(job: Any) -> str:
    return f"{headline(job)}\nStarting… · {cost_text(job)} · job {job.id}"


def progress(job: Any, step: int, total: int) -> str:
    percent = 0 if total <= 0 else int(100 * step / total)
    return f"{headline(job)}\n{percent}% · {cost_text(job)} · job {job.id}"


def done(job: Any, note: str | None = None) -> str:
    request = job.request
    seconds = ""
    if getattr(job, "started_at", None) and getattr(job, "finished_at", None):
        seconds = f" in {job.finished_at - job.started_at:.0f} s"
    size = f"{request.width}×{request.height}"
    text = f"{headline(job)}\nDone{seconds} · seed {request.seed} · {size} · {cost_text(job)}"
    text += f" · job {job.id}"
    warnings = getattr(job, "warnings", None) or []
    for line in [*warnings, note]:
        if line:
            text += f"\n-# {line}"
    return text


def refunded(job: Any) -> str:
    if job.cost == 0:
        return "Nothing was charged."
    return f"Your {job.cost} credit{'s' if job.cost != 1 else ''} came back."


def failed(job: Any, reason: str | None) -> str:
    why = reason or job.error or "unknown error"
    return f"{headline(job)}\nFailed: {why}. {refunded(job)} · job {job.id}"


def cancelled(job: Any, reason: str | None = None) -> str:
    by = f" ({reason})" if reason else ""
    return f"{headline(job)}\nCancelled{by}. {refunded(job)} · job {job.id}"


def withheld(job: Any, *, spoiler: bool) -> str:
    """A result the image check flagged, outside an age-restricted channel."""
    shown = "It is shown blurred below; open it only if you want to." if spoiler else "It was not posted."
    return (
        f"{headline(job)}\n⚠️ The image check flagged this result ({job.flagged}). {shown} "
        f"{refunded(job)} · job {job.id}"
    )
