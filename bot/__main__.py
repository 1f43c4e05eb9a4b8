"""`python -m bot [run | generate | bench]`: the bot, the engine alone, or the benchmark.

Each sub-command imports what it needs only when chosen, so `python -m bot --help` is instant and a
settings mistake is reported in one line before torch is ever imported.
"""

from __future__ import annotations

import argparse
import logging
import sys

from bot.errors import AtelierError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")

    commands.add_parser("run", help="start the Discord bot (the default)")

    generate = commands.add_parser("generate", help="make one 2×2 grid without Discord, to check the GPU")
    generate.add_argument(
        "prompt", help='the prompt with its flags, e.g. "a castle at dusk --ar 3:2 --seed 7"'
    )
    generate.add_argument("--out", default="out", help="directory for the grid and the four images")
    generate.add_argument("--model", help="override MODEL (hub id or local diffusers directory)")
    generate.add_argument("--device", help="override DEVICE")
    generate.add_argument("--dtype", help="override DTYPE")

    bench = commands.add_parser(
        "bench", help="benchmark Atelier against plain diffusers on the same jobs (table + JSON line)"
    )
    from bot.cli.bench import add_arguments  # torch-free: the command imports torch only when run

    add_arguments(bench)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    try:
        if args.command == "generate":
            from bot.cli.generate import generate_command

            return generate_command(args)
        if args.command == "bench":
            from bot.cli.bench import bench_command

            return bench_command(args)
        from bot.app import run_bot

        return run_bot()
    except AtelierError as exc:
        print(f"atelier: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
