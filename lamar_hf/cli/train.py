"""``lamar train``: train a (signal-aware) recommender; the same options and code as ``training/train.py``."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> None:
    from lamar_hf.training.run import argument_parser

    help = (
        "train a (signal-aware) SASRec, GRU4Rec or BERT4Rec recommender and evaluate it by full ranking "
        "(options of training/train.py)"
    )
    example = (
        "lamar train --dataset outputs/beauty --signals scenario,intent,topic --use_metadata "
        "--output_dir outputs/sasrec-beauty"
    )
    # The options come from the training script's dataclasses; `--debug` here means "show tracebacks".
    parser = subparsers.add_parser(
        "train",
        help=help,
        description=help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[argument_parser(add_help=False)],
        conflict_handler="resolve",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.set_defaults(run=run)


def run(args) -> int:
    from lamar_hf.training.run import arguments_from_namespace, main

    results = main(*arguments_from_namespace(args))
    print(json.dumps({"output_dir": args.output_dir, "test": results["test"], "best_epoch": results["best_epoch"]}))
    return 0
