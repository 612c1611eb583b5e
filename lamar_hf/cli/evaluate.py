"""``lamar evaluate``: full-ranking Recall/NDCG/MRR@K of a saved recommender on a prepared benchmark."""

from __future__ import annotations

import json

from . import UserError, add_command


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "evaluate",
        help="evaluate a trained recommender by full ranking over all items (leave-one-out, ties against the target)",
        example="lamar evaluate --model outputs/sasrec-beauty --dataset outputs/beauty --split test",
        run=run,
    )
    parser.add_argument("--model", required=True, help="a folder written by `lamar train` (or a Hub model id)")
    parser.add_argument("--dataset", required=True, help="a prepared benchmark folder or Hub dataset id")
    parser.add_argument("--dataset-revision", help="Hub revision of --dataset")
    parser.add_argument("--split", default="test", help="validation or test (default: test)")
    parser.add_argument("--cutoffs", default="10,20", help="comma-separated K of Recall/NDCG/MRR@K (default 10,20)")
    parser.add_argument("--batch-size", type=int, default=1024, help="users per evaluation batch (default 1024)")
    parser.add_argument("--trust-remote-code", action="store_true", help="load the model with its own code")


def run(args) -> int:
    try:
        cutoffs = [int(k) for k in args.cutoffs.split(",") if k.strip()]
    except ValueError:
        raise UserError(f"--cutoffs must be comma-separated integers, got {args.cutoffs!r}") from None
    if args.split not in ("validation", "test"):
        raise UserError(f"unknown split {args.split!r}; choose validation or test")
    from lamar_hf.hub.loading import load_recommender
    from lamar_hf.training import RecommendationData, evaluate_recommender
    from lamar_hf.training.run import load_benchmark

    # The model first: a bad --model is reported before the benchmark is read.
    model = load_recommender(args.model, trust_remote_code=args.trust_remote_code)
    data = RecommendationData.from_benchmark(load_benchmark(args.dataset, args.dataset_revision), args.dataset_revision)
    metrics = evaluate_recommender(model, data, args.split, batch_size=args.batch_size, cutoffs=cutoffs)
    print(json.dumps({"model": args.model, "dataset": args.dataset, "split": args.split,
                      "users": len(data.targets[args.split]), "metrics": metrics}))
    return 0
