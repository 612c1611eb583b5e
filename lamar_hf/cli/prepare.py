"""``lamar prepare``: read a benchmark into the lamar-hf schema and save it in the Hub layout."""

from __future__ import annotations

import time
from pathlib import Path

from tqdm.auto import tqdm

from . import UserError, add_command


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "prepare",
        help="prepare a benchmark (items + leave-one-out sequences) and print its statistics",
        example="lamar prepare --source p5 --path ../shared/data/amazon_beauty --out outputs/beauty",
        run=run,
    )
    parser.add_argument("--source", required=True, help="reader: p5 (prepared P5/S3Rec files) or amazon2014 (raw files)")
    parser.add_argument("--path", required=True, type=Path, help="folder with the benchmark's files")
    parser.add_argument("--out", required=True, type=Path, help="output folder (Hub layout: {config}/{split}-*.parquet)")
    parser.add_argument("--category", help="amazon2014 only: the category, e.g. Beauty (default: the one in --path)")
    parser.add_argument("--k-core", type=int, default=5, help="amazon2014 only: k of the k-core filter (default 5)")
    parser.add_argument("--name", help="benchmark name (default: from the folder)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output folder")


def format_statistics(stats: dict) -> str:
    lines = [
        f"users                {stats['users']:>12,}",
        f"items                {stats['items']:>12,}",
        f"interactions         {stats['interactions']:>12,}",
        f"train interactions   {stats['train_interactions']:>12,}",
        f"mean sequence length {stats['mean_sequence_length']:>12.3f}",
        f"density              {stats['density']:>12.6f}",
        "metadata coverage:",
    ]
    lines += [f"  {name:<18} {share:>12.2%}" for name, share in stats["metadata_coverage"].items()]
    return "\n".join(lines)


def run(args) -> int:
    from lamar_hf.data import SOURCES, prepare

    if args.source not in SOURCES:
        raise UserError(f"unknown --source {args.source!r}; choose one of: {', '.join(SOURCES)}")
    if not args.path.is_dir():
        raise UserError(f"--path {args.path} is not a folder")
    options = {"name": args.name}
    if args.source == "amazon2014":
        options.update(category=args.category, k=args.k_core)
    started = time.perf_counter()
    with tqdm(total=2, desc="prepare", unit="step") as progress:
        progress.set_postfix_str(f"reading {args.path}")
        benchmark = prepare(args.source, args.path, **options)
        progress.update()
        progress.set_postfix_str(f"writing {args.out}")
        benchmark.save(args.out, overwrite=args.overwrite)
        progress.update()
    print(f"{benchmark.name}: prepared in {time.perf_counter() - started:.1f} s → {args.out}")
    print(format_statistics(benchmark.statistics()))
    return 0
