"""``lamar publish dataset|model|adapter``: versioned releases on the Hub, or a dry run to a local folder."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from . import UserError, add_command

EXAMPLES = {
    "dataset": "lamar publish dataset outputs/beauty --repo-id org/lamar-beauty-enriched --version v1.0.0 "
    '--changes "first release" --analysis outputs/beauty/analysis.json',
    "model": "lamar publish model outputs/sasrec --repo-id org/lamar-sasrec-beauty --version v1.0.0 "
    "--eval-results outputs/sasrec/test_results.json --dataset org/lamar-beauty-enriched --dataset-revision v1.0.0",
    "adapter": "lamar publish adapter outputs/generator-lora --repo-id org/lamar-smollm2-signals-lora --version v1.0.0 "
    "--base-model HuggingFaceTB/SmolLM2-135M-Instruct",
    "dry run": "lamar publish dataset outputs/beauty --repo-id org/lamar-beauty-enriched --version v1.0.0 "
    "--dry-run outputs/hub-tree",
}


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "publish",
        "publish an enriched dataset, a recommender or a LoRA adapter to the Hub as a tagged version",
        "\n  ".join(EXAMPLES.values()),
        run,
    )
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    helps = {
        "dataset": "a prepared benchmark folder with a signals config (items, sequences, signals)",
        "model": "a recommender folder written by save_pretrained (config.json, weights, remote code)",
        "adapter": "a LoRA adapter folder written by peft's save_pretrained (adapter_config.json, weights)",
    }
    for kind, folder_help in helps.items():
        sub = kinds.add_parser(
            kind, help=f"publish {folder_help}", description=f"Publish {folder_help} as a tagged version.",
            epilog=f"example:\n  {EXAMPLES[kind]}", formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("folder", type=Path, help=folder_help)
        sub.add_argument("--repo-id", required=True, help="the Hub repository, ORG/NAME")
        sub.add_argument("--version", required=True, help="the version tag, vMAJOR.MINOR.PATCH; an existing one is refused")
        sub.add_argument("--changes", default="", help="what changed in this version (the changelog entry)")
        sub.add_argument("--license", default=None, help="license id for the card (default: the upstream's / apache-2.0)")
        sub.add_argument("--dry-run", type=Path, metavar="DIR", help="write the exact repository tree to DIR instead of pushing")
        # SUPPRESS keeps a --debug given before KIND (lamar publish --debug dataset ...).
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
        if kind == "dataset":
            sub.add_argument("--signals", help="comma-separated signal columns (default: those of scenario,intent,topic present)")
            sub.add_argument("--analysis", type=Path, help="JSON file of signal-analysis figures, {signal: {figure: value}}")
            sub.add_argument("--provenance", type=Path, help="JSON file of generation settings to show on the card")
            sub.add_argument("--pretty-name", help="the card's title")
            sub.add_argument("--attribute-centres", type=Path, metavar="FILE",
                             help="the .attributes.safetensors of lamar attributes that made the signals config's "
                                  "<kind>_cluster ids, published beside it so that new items can be given ids")
            sub.add_argument("--min-validity", type=float, metavar="SHARE",
                             help="refuse signals with a smaller share of valid rows (status ok / retried), "
                             "0..1 (default 0.9)")
        else:
            sub.add_argument("--eval-results", type=Path, help="JSON file of evaluation results, {metric: value} or {split: {...}}")
            sub.add_argument("--dataset", help="the Hub dataset the model was trained and evaluated on")
        if kind == "model":
            sub.add_argument("--dataset-revision", help="the dataset version the results were measured on")
        if kind == "adapter":
            sub.add_argument("--base-model", help="the Hub id of the base model (default: adapter_config.json's)")


def read_json(path: Path | None, what: str):
    if path is None:
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{what} file not found: {path}") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: the {what} must be a JSON object, not {type(value).__name__}")
    return value


def run(args) -> int:
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    from ..hub import PublishError, publish_adapter, publish_dataset, publish_model

    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one INFO line per HTTP request otherwise
    common = dict(changes=args.changes, dry_run=args.dry_run)
    if args.license:
        common["license"] = args.license
    try:
        if args.kind == "dataset":
            result = publish_dataset(
                args.folder, args.repo_id, args.version,
                signals=args.signals.split(",") if args.signals else None,
                analysis=read_json(args.analysis, "analysis"),
                provenance=read_json(args.provenance, "provenance"),
                pretty_name=args.pretty_name,
                attribute_centres=args.attribute_centres,
                **({"min_validity": args.min_validity} if args.min_validity is not None else {}),
                **common,
            )
        elif args.kind == "model":
            result = publish_model(
                args.folder, args.repo_id, args.version,
                eval_results=read_json(args.eval_results, "evaluation results"),
                dataset=args.dataset, dataset_revision=args.dataset_revision,
                **common,
            )
        else:
            result = publish_adapter(
                args.folder, args.repo_id, args.version,
                base_model=args.base_model,
                eval_results=read_json(args.eval_results, "evaluation results"),
                dataset=args.dataset,
                **common,
            )
    except PublishError as error:
        raise UserError(str(error)) from error
    except OfflineModeIsEnabled:
        raise UserError("HF_HUB_OFFLINE is set: unset it to publish, or write the tree locally with --dry-run DIR") from None
    except HfHubHTTPError as error:
        raise UserError(f"the Hub refused the release: {str(error).splitlines()[0]}") from error
    except httpx2.TransportError as error:
        raise UserError(f"could not reach the Hub at {constants.ENDPOINT} ({error})") from error
    print(result.summary())
    return 0
