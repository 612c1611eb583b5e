"""``lamar demo``: the main job, run on the embedded defaults with no network."""

from __future__ import annotations

import time
from pathlib import Path

from . import UserError, add_command

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "amazon_beauty"


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "demo",
        help="run the demo pipeline on Amazon Beauty and print where everything is",
        example="lamar demo --data ../shared/data/amazon_beauty --out outputs/demo",
        run=run,
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="P5/S3Rec Amazon Beauty folder")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="folder for every artefact of the demo")


def run(args) -> int:
    from lamar_hf.cli.prepare import format_statistics
    from lamar_hf.data import read_p5

    if not args.data.is_dir():
        raise UserError(f"--data {args.data} is not a folder (the demo reads ../shared/data/amazon_beauty by default)")
    started = time.perf_counter()
    benchmark = read_p5(args.data)
    prepared = benchmark.save(args.out / "beauty", overwrite=True)
    print(f"[1/1] prepared {benchmark.name} in {time.perf_counter() - started:.1f} s → {prepared}")
    print(format_statistics(benchmark.statistics()))
    return 0
