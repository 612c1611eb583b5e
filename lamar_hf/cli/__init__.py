"""The ``lamar`` command line: one sub-command per step of the pipeline.

Each sub-command lives in its own module of this package and provides ``add_parser(subparsers)``
(which registers its arguments and an example in the help text) and ``run(args) -> int``.
User mistakes raise :class:`UserError`; they are printed as one line and exit with status 2
(``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# The order in which sub-commands appear in `lamar --help`.
COMMANDS = ("prepare", "enrich", "enrich_users", "attributes", "analyze", "tune", "train", "evaluate", "report",
            "publish", "demo")


class UserError(Exception):
    """A mistake in what the user asked for (a missing path, an unknown name, ...)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lamar",
        description="lamar-hf: LLM-driven semantic enrichment for sequential recommendation.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"lamar_hf.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"lamar_hf.cli.{name}":
                continue  # that step is not part of this build
            raise
        module.add_parser(subparsers)
    return parser


def add_command(subparsers, name: str, help: str, example: str, run) -> argparse.ArgumentParser:
    """Register a sub-command with a one-line help and an example command in its epilog."""
    sub = subparsers.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub.set_defaults(run=run)
    return sub


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return int(args.run(args) or 0)
    except (UserError, OSError, ValueError) as error:
        if args.debug:
            raise
        # Library errors (e.g. a model that is neither on disk nor in the cache while offline) span several
        # lines; the first one says what went wrong.
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"lamar {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lamar {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
