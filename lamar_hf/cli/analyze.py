"""``lamar analyze``: distinctness, diversity, novelty, length and validity of generated signals."""

from __future__ import annotations

import json
from pathlib import Path

from . import UserError, add_command


def add_parser(subparsers) -> None:
    sub = add_command(
        subparsers, "analyze", "print and plot how distinct, diverse, novel and valid the signals are",
        "lamar analyze --signals outputs/beauty --items outputs/beauty --out outputs/beauty/analysis", run)
    sub.add_argument("--signals", required=True, type=Path,
                     help="a folder with signals/*.parquet (lamar enrich --out) or a signals parquet file")
    sub.add_argument("--items", type=Path, default=None,
                     help="the benchmark's items, for novelty (default: the --signals folder, if it has items/)")
    sub.add_argument("--out", type=Path, default=None, help="write analysis.json and PNG plots here")
    sub.add_argument("--no-embeddings", action="store_true", help="skip the embedding diversity (no encoder load)")
    sub.add_argument("--sample", type=int, default=2000, help="phrases per signal for the embedding diversity")


def read_signals(path: Path):
    from datasets import load_dataset

    files = [path] if path.is_file() else sorted((path / "signals").glob("*.parquet"))
    if not files:
        raise UserError(f"--signals {path}: no signals parquet (expected {path}/signals/*.parquet or a .parquet file)")
    return load_dataset("parquet", data_files=[str(file) for file in files], split="train")


def run(args) -> int:
    from ..enrich.analysis import analyze_signals, format_table, plot_report
    from .enrich import read_items

    signals = read_signals(args.signals)
    items_path = args.items
    if items_path is None and args.signals.is_dir() and (args.signals / "items").is_dir():
        items_path = args.signals
    items = read_items(items_path) if items_path is not None else None
    encoder = None
    if not args.no_embeddings:
        from sentence_transformers import SentenceTransformer

        from ..text_embeddings import default_encoder_path

        encoder = SentenceTransformer(str(default_encoder_path()), device="cpu")
    report = analyze_signals(signals, items, encoder=encoder, sample=args.sample)
    print(format_table(report))
    if items is None:
        print("(novelty needs the items: pass --items)")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "analysis.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        for path in plot_report(report, args.out):
            print(f"wrote {path}")
    return 0
