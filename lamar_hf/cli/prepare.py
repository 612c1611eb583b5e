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
    parser.add_argument(
        "--source",
        required=True,
        help="reader: p5 (prepared P5/S3Rec files: Amazon Beauty, Toys, Sports), amazon2014 (raw 2014 files) or "
        "amazon2023 (Amazon Reviews 2023 files in their Hub layout)",
    )
    parser.add_argument(
        "--path",
        type=Path,
        help="folder with the benchmark's files (required, except for amazon2023, which then downloads the files "
        "it needs from the Hub dataset McAuley-Lab/Amazon-Reviews-2023 into the Hugging Face cache)",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (Hub layout: {config}/{split}-*.parquet)")
    parser.add_argument(
        "--category",
        help="amazon2014: the category, e.g. Beauty (default: the one in --path); amazon2023 (required): e.g. Sports_and_Outdoors",
    )
    parser.add_argument(
        "--k-core",
        type=int,
        default=5,
        help="amazon2014 and amazon2023 --from-reviews: k of the k-core filter; amazon2023: which published split (5 or 0)",
    )
    parser.add_argument(
        "--split",
        choices=("last_out", "timestamp"),
        default="last_out",
        help="amazon2023 only: the release's leave-one-out split (last_out, default) or its split at two absolute times",
    )
    parser.add_argument(
        "--from-reviews",
        action="store_true",
        help="amazon2023 only: rebuild the sequences from the reviews file instead of reading the published split files",
    )
    parser.add_argument("--revision", help="amazon2023 download only: the Hub revision (branch, tag or commit)")
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
    from lamar_hf.data import SOURCES, download_amazon2023, prepare, split_fingerprint

    if args.source not in SOURCES:
        raise UserError(f"unknown --source {args.source!r}; choose one of: {', '.join(SOURCES)}")
    if args.source == "amazon2023" and not args.category:
        raise UserError("--source amazon2023 needs --category, e.g. --category Sports_and_Outdoors")
    if args.path is None and args.source != "amazon2023":
        raise UserError(f"--source {args.source} needs --path")
    if args.path is not None and not args.path.is_dir():
        raise UserError(f"--path {args.path} is not a folder")
    options = {"name": args.name}
    if args.source == "amazon2014":
        options.update(category=args.category, k=args.k_core)
    if args.source == "amazon2023":
        options.update(category=args.category, split=args.split, k=args.k_core, from_reviews=args.from_reviews)
    started = time.perf_counter()
    path = args.path
    if path is None:
        path = download_amazon2023(
            args.category, revision=args.revision, split=args.split, from_reviews=args.from_reviews, k=args.k_core
        )
    with tqdm(total=2, desc="prepare", unit="step") as progress:
        progress.set_postfix_str(f"reading {path}")
        benchmark = prepare(args.source, path, **options)
        progress.update()
        progress.set_postfix_str(f"writing {args.out}")
        benchmark.save(args.out, overwrite=args.overwrite)
        progress.update()
    print(f"{benchmark.name}: prepared in {time.perf_counter() - started:.1f} s → {args.out}")
    print(f"split fingerprint    {split_fingerprint(benchmark)}")
    print(format_statistics(benchmark.statistics()))
    return 0
