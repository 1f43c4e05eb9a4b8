"""Persistent buttons under result messages: U1–U4, V1–V4, 🔄, and the single-image actions.

Every button is one `DynamicItem` whose custom id carries the job id and the action
(`atelier:<job>:<action>`), so buttons keep working after a restart without any stored view state.
Anyone who can see the message may click; the new job belongs to (and is paid by) the clicker.
"""

from __future__ import annotations

import re

import discord

GRID_ROWS = (("u1", "u2", "u3", "u4"), ("v1", "v2", "v3", "v4", "rr"))
SINGLE_ROW = (("vs", "vx", "us", "uc"),)
LABELS = {
    **{f"u{n}": f"U{n}" for n in range(1, 5)},
    **{f"v{n}": f"V{n}" for n in range(1, 5)},
    "rr": None,
    "vs": "Vary (Subtle)",
    "vx": "Vary (Strong)",
    "us": "Upscale (Subtle)",
    "uc": "Upscale (Creative)",
}
ACTION_PATTERN = "u[1-4]|v[1-4]|rr|vs|vx|us|uc"


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button], template=rf"atelier:(?P<job>\d+):(?P<action>{ACTION_PATTERN})"
):
    """One button of a result message; the callback hands the action to `cogs.actions`."""

    def __init__(self, job_id: int, action: str) -> None:
        self.job_id = job_id
        self.action = action
        upscale = action in ("us", "uc")
        super().__init__(
            discord.ui.Button(
                label=LABELS[action],
                emoji="🔄" if action == "rr" else None,
                style=discord.ButtonStyle.primary if upscale else discord.ButtonStyle.secondary,
                custom_id=f"atelier:{job_id}:{action}",
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> JobButton:
        return cls(int(match["job"]), match["action"])

    async def callback(self, interaction: discord.Interaction) -> None:
        from cogs.actions import InteractionOrigin, perform
        from cogs.errors import report_error

        try:
            await perform(interaction.client, InteractionOrigin(interaction), self.job_id, self.action)
        except Exception as error:
            await report_error(interaction, error, job_id=self.job_id)


def result_view(job_id: int, *, grid: bool) -> discord.ui.View:
    """U/V/🔄 rows under a grid, or the Vary/Upscale row under a single image."""
    view = discord.ui.View(timeout=None)
    for row, actions in enumerate(GRID_ROWS if grid else SINGLE_ROW):
        for action in actions:
            button = JobButton(job_id, action)
            button.item.row = row
            view.add_item(button)
    return view
