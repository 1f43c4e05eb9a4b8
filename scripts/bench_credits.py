"""Reserve+settle pairs per second on one SQLite file, from concurrent tasks (a benchmark, not a test).

    python scripts/bench_credits.py [--tasks 8] [--pairs 4000] [--members 8]

Each task plays a queue worker: reserve a job's credits, then settle them, over and over. Members are
shared round-robin between tasks (`--members 1` puts every task on the same account). Afterwards the
ledger is verified, so a fast but wrong run does not count.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.credits import CreditStore
from bot.settings import CreditSettings
from bot.store import Database

SCOPE = 1
MODERATOR = 99


async def bench(tasks: int, pairs: int, members: int, path: Path) -> tuple[float, float]:
    """(pairs per second of wall time, CPU microseconds per pair across the loop and SQLite threads)."""
    async with await Database.open(path) as db:
        credits = CreditStore(db, CreditSettings(default_allowance=1_000_000_000))
        for user in range(1, members + 1):  # first use creates the account: not what we measure
            await credits.settle((await credits.reserve(SCOPE, user, 1, None)).id)

        async def worker(index: int) -> None:
            user = index % members + 1
            for n in range(pairs // tasks):
                hold = await credits.reserve(SCOPE, user, 4, index * pairs + n + 1)
                await credits.settle(hold.id)

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(i) for i in range(tasks)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        problems = await credits.verify()
        if problems:
            raise SystemExit(f"verify() found problems: {problems[:3]}")
        done = pairs // tasks * tasks
        return done / elapsed, cpu / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            rate, cpu = asyncio.run(bench(args.tasks, args.pairs, args.members, Path(tmp) / "bench.sqlite3"))
        results.append(rate)
        print(f"run {run + 1}: {rate:,.0f} reserve+settle pairs/s ({cpu:,.0f} µs of CPU per pair)")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"best {max(results):,.0f} pairs/s, median {sorted(results)[len(results) // 2]:,.0f} pairs/s "
        f"({args.tasks} tasks, {args.members} members, {args.pairs} pairs per run, verify clean; "
        f"load average {load} on {os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main()
