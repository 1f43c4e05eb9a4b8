"""SQLite storage shared by the credit ledger, the job queue and guild settings."""

from bot.store.db import Database

__all__ = ["Database"]
