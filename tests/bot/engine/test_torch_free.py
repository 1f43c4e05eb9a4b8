"""Cogs and the queue import the engine's value objects, parser and image checks without loading torch."""

from __future__ import annotations

import subprocess
import sys

TORCH_FREE = ["bot.engine", "bot.engine.types", "bot.engine.prompt", "bot.engine.images", "bot.engine.png",
              "bot.engine.profile", "bot.engine.recipes"]  # fmt: skip


def test_torch_free_modules_do_not_import_torch() -> None:
    """Importing every torch-free engine module leaves torch and diffusers unloaded."""
    imports = ", ".join(TORCH_FREE)
    code = f"import sys; import {imports}; print(sorted({{'torch', 'diffusers'}} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
