"""Writing a job's images to disk as PNGs that carry their recipe. Blocking: call through a thread.

Layout: `<images_dir>/<scope>/<job_id>/grid.png` (four-image jobs) and `1.png`, `2.png`, ... Files are
written before the transaction that records their paths commits, so the database never points at a
half-written PNG: a crash mid-write leaves the job running, and its retry rewrites the folder.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from bot.engine.png import encode_png
from bot.engine.types import GenerationResult, Recipe


@dataclass(frozen=True)
class SavedImages:
    grid_path: str | None
    result_paths: tuple[str, ...]
    recipes: tuple[Recipe, ...]


def job_folder(images_dir: Path, scope: int, job_id: int) -> Path:
    return images_dir / str(scope) / str(job_id)


def save_result(folder: Path, result: GenerationResult) -> SavedImages:
    """Write one job's images; the grid carries image 1's recipe (the others' seeds follow it)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, (image, recipe) in enumerate(zip(result.images, result.recipes, strict=True), start=1):
        path = folder / f"{n}.png"
        path.write_bytes(encode_png(image, recipe))
        paths.append(str(path))
    grid_path = None
    if result.grid is not None:
        grid = folder / "grid.png"
        grid.write_bytes(encode_png(result.grid, result.recipes[0]))
        grid_path = str(grid)
    return SavedImages(grid_path, tuple(paths), tuple(result.recipes))


def discard(folders: list[Path]) -> None:
    """Remove what a cancelled job had written: its output is not delivered, so it is not kept."""
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
