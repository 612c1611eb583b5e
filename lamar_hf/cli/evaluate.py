"""``lamar evaluate``: full-ranking Recall/NDCG/MRR@K of a saved recommender on a prepared benchmark."""

from __future__ import annotations

import json
import tempfile

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
    parser.add_argument("--user_signals_file", "--user-signals-file",
                        help="for a model with a user token: the user_signals parquet file it was trained with "
                             "(`lamar enrich_users`); each user's --user_signal is embedded by the model's text encoder")
    parser.add_argument("--user_signal", "--user-signal", default="intent",
                        help="the column of --user_signals_file the user token embeds (default: intent)")


def user_embeddings_for(model, benchmark, data, args):
    """The users' embeddings of ``--user_signals_file``, made as ``lamar train`` makes them
    (:func:`lamar_hf.training.run.user_text_embeddings_for`) with the encoder the model records.

    No coverage is required: a user without a usable signal reads a zero vector, as in training, and the
    coverage is reported with the metrics.
    """
    from lamar_hf.training import ModelArguments, RecommenderTrainingArguments
    from lamar_hf.training.run import ScriptArguments, user_text_embeddings_for

    script_args = ScriptArguments(dataset=args.dataset, dataset_revision=args.dataset_revision,
                                  user_signals_file=args.user_signals_file, user_signal=args.user_signal,
                                  min_user_signal_coverage=0.0)
    model_args = ModelArguments(text_encoder=getattr(model.config, "text_encoder", ModelArguments.text_encoder))
    with tempfile.TemporaryDirectory() as scratch:
        # Only its main_process_first is used: one process here.
        training_args = RecommenderTrainingArguments(output_dir=scratch)
        return user_text_embeddings_for(benchmark, data, script_args, model_args, training_args)


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
    width = int(getattr(model.config, "user_text_embedding_dim", 0) or 0)
    if width and not args.user_signals_file:
        raise UserError(f"{args.model} reads a user token (user_text_embedding_dim={width}): pass --user_signals_file, "
                        "the user_signals table it was trained with")
    if args.user_signals_file and not width:
        raise UserError(f"{args.model} reads no user token (user_text_embedding_dim=0): leave --user_signals_file out")
    benchmark = load_benchmark(args.dataset, args.dataset_revision)
    data = RecommendationData.from_benchmark(benchmark, args.dataset_revision)
    users = user_embeddings_for(model, benchmark, data, args) if width else None
    metrics = evaluate_recommender(model, data, args.split, batch_size=args.batch_size, cutoffs=cutoffs,
                                   user_embeddings=users)
    report = {"model": args.model, "dataset": args.dataset, "split": args.split,
              "users": len(data.targets[args.split]), "metrics": metrics}
    if users is not None:
        report["user_signals"] = users.source
    print(json.dumps(report))
    return 0
