"""Does the LoRA adapter beat few-shot prompting? (a) the base model few-shot vs (b) base + adapter zero-shot.

    .venv/bin/python benchmarks/compare_adapter.py --adapter outputs/adapter-beauty
    .venv/bin/python benchmarks/compare_adapter.py --adapter outputs/adapter-beauty --extra-items 256

Both sides run on the same held-out items (the validation exemplars of ``training/data``, which the
adapter never saw; ``--extra-items N`` adds N random Beauty items that are in no exemplar file), in
one process, with the same generator engine, batch size and decoding settings (greedy, one retry
with the pipeline's retry settings): ``enrich_items`` of :mod:`lamar_hf.enrich`, timed end to end.
(a) uses the shipped few-shot Beauty exemplars, (b) the zero-shot prompt saved with the adapter.

Speed: the engine alone (one greedy pass, as ``bench_enrich.py`` times it) with its shared-prefix cache
and without it (each prompt computed in full, as a server without prefix caching would), sides
alternating, best of ``--repeats`` passes; and the whole ``enrich_items`` run.

Per side: validity (ok + retried), first-pass ok share, copies (of a prompt exemplar, and of any
hand-written training phrase), distinct-1/2, novelty against the item's own metadata, mean words,
similarity to the hand-written reference signals (validation items), items/s and prompt tokens
per item. Figures go to ``benchmarks/results/compare_adapter.json`` and ``.md``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # shared CPUs: spinning OpenMP threads slow everyone down

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEAUTY = ROOT.parent / "shared" / "data" / "amazon_beauty"
DATA = ROOT / "training" / "data"
RESULTS = ROOT / "benchmarks" / "results"
SIGNALS = ("scenario", "intent", "topic")
COPY_FLAG = "copy of an exemplar answer"


def load_tuner():
    from lamar_hf.cli.tune import load_tuner as load

    return load()


def evaluation_items(all_items, validation_ids: list[int], exclude: set[int], extra: int, seed: int):
    """The validation exemplar items, plus ``extra`` random items that no exemplar file names."""
    ids = list(validation_ids)
    if extra:
        pool = [item_id for item_id in all_items["item_id"] if item_id not in exclude]
        import random

        ids += random.Random(seed).sample(pool, extra)
    return all_items.select([item_id - 1 for item_id in ids])  # items hold ids 1..N in order


def run_side(name: str, generator, builder, items) -> dict:
    """One side's signals through the whole ``enrich_items`` (generate, parse, validate, retry once), timed."""
    from lamar_hf.enrich import DEFAULT_DECODING, enrich_items

    rows = items.to_list()
    generator.generate([builder.messages(row) for row in rows[:2]], DEFAULT_DECODING.with_(max_new_tokens=4),
                       answer_signals=builder.signals)  # warm-up
    side = {"name": name, "prompt_mode": builder.mode, "prompt_version": builder.version,
            "exemplars_in_prompt": len(builder.exemplars), "items": len(rows)}
    start = time.perf_counter()
    signals = enrich_items(items, generator, prompt=builder, progress=False, keep_answers=True)
    seconds = time.perf_counter() - start
    side["enrich_items"] = {"seconds": round(seconds, 2), "items_per_s": round(len(rows) / seconds, 3)}
    return side | {"_signals": signals}


def time_engine(generator, builder, items, use_prefix_cache: bool) -> dict:
    """One greedy pass of the engine alone (``TransformersGenerator.generate``, as bench_enrich.py times it)."""
    from lamar_hf.enrich import DEFAULT_DECODING

    conversations = [builder.messages(row) for row in items.to_list()]
    generator.engine.use_prefix_cache = use_prefix_cache
    generator.engine.prefix = None  # every pass builds its own shared prefix
    before = dict(generator.stats.__dict__)
    start = time.perf_counter()
    try:
        generator.generate(conversations, DEFAULT_DECODING, answer_signals=builder.signals)
    finally:
        generator.engine.use_prefix_cache = True
    seconds = time.perf_counter() - start
    delta = {key: generator.stats.__dict__[key] - before[key] for key in before}
    count = len(conversations)
    return {
        "seconds": round(seconds, 2),
        "items_per_s": round(count / seconds, 3),
        "prompt_tokens_per_item": round(delta["prompt_tokens"] / count, 1),
        "computed_prompt_tokens_per_item": round(delta["computed_prompt_tokens"] / count, 1),
        "generated_tokens_per_item": round(delta["generated_tokens"] / count, 1),
        "processed_tokens_per_s": round((delta["prompt_tokens"] + delta["generated_tokens"]) / seconds, 1),
    }


def hand_written_phrases(tuner, items, train_file: Path = DATA / "beauty_train.jsonl") -> set[str]:
    """Every hand-written signal phrase, normalised: the adapter's training exemplars and the shipped few-shot ones."""
    from lamar_hf.enrich import BEAUTY_EXEMPLARS, load_exemplars
    from lamar_hf.enrich.parsing import normalize

    phrases = {normalize(row[name]) for row in tuner.read_exemplars(train_file, list(SIGNALS)) for name in SIGNALS}
    return phrases | {normalize(value) for exemplar in load_exemplars(BEAUTY_EXEMPLARS, items)
                      for value in exemplar.signals.values()}


def copy_figures(signals, builder, hand_written: set[str]) -> dict:
    """First answers that copied a prompt exemplar (the validator's flag), final phrases equal to a hand-written one."""
    from lamar_hf.enrich.parsing import normalize

    rows = signals.to_list()
    slots = len(rows) * len(builder.signals)
    flagged = sum((row.get("status_detail") or "").count(COPY_FLAG) for row in rows)
    usable = [row[spec.name] for row in rows if row["status"] in ("ok", "retried")
              for spec in builder.signals if row.get(spec.name)]
    copied = sum(normalize(phrase) in hand_written for phrase in usable)
    return {
        "first_answer_copies_of_prompt_exemplar": flagged,
        "final_copies_of_hand_written_phrase": copied,
        "copy_rate": round((flagged + copied) / slots, 4) if slots else None,
        "signal_slots": slots,
    }


def reference_similarity(signals, references: dict[int, dict], encoder) -> dict:
    """Mean cosine similarity of each generated phrase to the hand-written one of the same item and signal."""
    import numpy as np

    figures = {}
    rows = [row for row in signals.to_list() if row["item_id"] in references and row["status"] in ("ok", "retried")]
    for name in SIGNALS:
        pairs = [(row[name], references[row["item_id"]][name]) for row in rows if row.get(name)]
        if not pairs:
            figures[name] = None
            continue
        generated = encoder.encode([p for p, _ in pairs], normalize_embeddings=True, show_progress_bar=False)
        written = encoder.encode([r for _, r in pairs], normalize_embeddings=True, show_progress_bar=False)
        figures[name] = round(float(np.mean(np.sum(generated * written, axis=1))), 4)
    valid = [value for value in figures.values() if value is not None]
    figures["mean"] = round(sum(valid) / len(valid), 4) if valid else None
    return figures


def summarize(side: dict, items, builder, hand_written, references, encoder) -> dict:
    from lamar_hf.enrich.analysis import analyze_signals

    signals = side.pop("_signals")
    report = analyze_signals(signals, items, encoder)
    per_signal = {
        name: {key: (round(value, 4) if isinstance(value, float) else value)
               for key, value in figures.items() if key not in ("top", "similarity_sample")}
        for name, figures in report["signals"].items()
    }

    def mean_of(key):
        values = [figures.get(key) for figures in per_signal.values() if figures.get(key) is not None]
        return round(sum(values) / len(values), 4) if values else None

    side.update({
        "status": report["status"],
        "validity": round(report["validity"], 4),
        "first_pass_ok": round(report["status"].get("ok", 0) / report["items"], 4),
        **copy_figures(signals, builder, hand_written),
        "distinct_2": mean_of("distinct_2"),
        "distinct_1": mean_of("distinct_1"),
        "novelty_1": mean_of("novelty_1"),
        "novelty_2": mean_of("novelty_2"),
        "mean_words": mean_of("mean_words"),
        "pairwise_similarity": mean_of("mean_pairwise_similarity"),
        "reference_similarity": reference_similarity(signals, references, encoder),
        "per_signal": per_signal,
        "top_phrases": {name: figures["top"][:3] for name, figures in report["signals"].items()},
    })
    return side, signals


def markdown(results: dict, examples: list[dict]) -> str:
    sides = results["sides"]
    keys = list(sides)
    rows = [
        ("prompt", lambda s: f"{s['prompt_mode']} ({s['exemplars_in_prompt']} exemplars)"),
        ("validity (ok + retried)", lambda s: f"{s['validity']:.1%}"),
        ("first-pass ok", lambda s: f"{s['first_pass_ok']:.1%}"),
        ("copy rate (of all signal slots)", lambda s: f"{s['copy_rate']:.1%}"),
        ("  first answers copying a prompt exemplar", lambda s: str(s["first_answer_copies_of_prompt_exemplar"])),
        ("  final phrases equal to a hand-written one", lambda s: str(s["final_copies_of_hand_written_phrase"])),
        ("distinct-2 (mean of signals)", lambda s: f"{s['distinct_2']:.3f}"),
        ("distinct-1 (mean of signals)", lambda s: f"{s['distinct_1']:.3f}"),
        ("novelty-2 vs own metadata", lambda s: f"{s['novelty_2']:.3f}"),
        ("novelty-1 vs own metadata", lambda s: f"{s['novelty_1']:.3f}"),
        ("mean pairwise similarity (lower: more diverse)", lambda s: f"{s['pairwise_similarity']:.3f}"),
        ("similarity to the hand-written reference", lambda s: f"{s['reference_similarity']['mean']:.3f}"),
        ("mean words per phrase", lambda s: f"{s['mean_words']:.2f}"),
        ("prompt tokens per item", lambda s: f"{s['engine']['prompt_tokens_per_item']:.0f}"),
        ("prompt tokens computed per item (shared prefix once)",
         lambda s: f"{s['engine']['computed_prompt_tokens_per_item']:.0f}"),
        ("engine items/s (one greedy pass)", lambda s: f"{s['engine']['items_per_s']:.3f}"),
        ("engine items/s without the shared-prefix cache",
         lambda s: f"{s['engine_no_prefix_cache']['items_per_s']:.3f}"),
        ("prompt tokens computed per item without the cache",
         lambda s: f"{s['engine_no_prefix_cache']['computed_prompt_tokens_per_item']:.0f}"),
        ("enrich_items items/s (with retries)", lambda s: f"{s['enrich_items']['items_per_s']:.3f}"),
    ]
    lines = [f"# {results['title']}", "", results["description"], "",
             "| figure | " + " | ".join(sides[key]["name"] for key in keys) + " |",
             "|---|" + "---|" * len(keys)]
    for label, cell in rows:
        values = []
        for key in keys:
            try:
                values.append(cell(sides[key]))
            except (KeyError, TypeError):
                values.append("-")
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    lines += ["", "Speed-ups of (b) over (a): " + ", ".join(f"{k} {v}x" for k, v in results["speedup_b_over_a"].items()),
              "", "## Five validation items", ""]
    for example in examples:
        lines.append(f"**{example['title']}** (item {example['item_id']})")
        lines.append("")
        lines.append("| | " + " | ".join(SIGNALS) + " |")
        lines.append("|---|" + "---|" * len(SIGNALS))
        for label, signals in example["rows"]:
            lines.append(f"| {label} | " + " | ".join(signals.get(name) or "*(failed)*" for name in SIGNALS) + " |")
        lines.append("")
    setup = results["setup"]
    lines += ["## Setup", "", f"- command: `{setup['command']}`", f"- machine: {setup['machine']}, torch threads "
              f"{setup['torch_threads']}, load average at the end {setup['load_average_at_end']}",
              f"- decoding: {setup['decoding']}; retry: {setup['retry_decoding']}",
              f"- adapter: {setup['adapter']}", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", required=True, help="adapter folder written by training/tune_generator.py")
    parser.add_argument("--benchmark", default=str(BEAUTY), help="Beauty: a lamar prepare folder or the P5 folder")
    parser.add_argument("--train-file", type=Path, default=DATA / "beauty_train.jsonl")
    parser.add_argument("--validation-file", type=Path, default=DATA / "beauty_validation.jsonl")
    parser.add_argument("--extra-items", type=int, default=0, help="add N random Beauty items in no exemplar file")
    parser.add_argument("--repeats", type=int, default=2,
                        help="timed engine passes per side (best kept); 0 skips the speed passes")
    parser.add_argument("--limit", type=int, help="only the first N validation items (a quick check)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-base-zero-shot", action="store_true",
                        help="skip the ablation (c): the base model with the adapter's zero-shot prompt")
    parser.add_argument("--out", type=Path, default=RESULTS / "compare_adapter.json")
    args = parser.parse_args(argv)

    import torch
    from sentence_transformers import SentenceTransformer

    from lamar_hf.enrich import BEAUTY_EXEMPLARS, DEFAULT_DECODING, RETRY, PromptBuilder, TransformersGenerator
    from lamar_hf.enrich import load_exemplars
    from lamar_hf.text_embeddings import default_encoder_path

    tuner = load_tuner()
    all_items = tuner.load_items(args.benchmark)
    train_rows = tuner.read_exemplars(args.train_file, list(SIGNALS))
    validation_rows = tuner.read_exemplars(args.validation_file, list(SIGNALS))[: args.limit]
    few_shot = load_exemplars(BEAUTY_EXEMPLARS, all_items)
    exclude = {row["item_id"] for row in train_rows + validation_rows} | {e.item_id for e in few_shot}
    items = evaluation_items(all_items, [row["item_id"] for row in validation_rows], exclude, args.extra_items,
                             args.seed)
    references = {row["item_id"]: row for row in validation_rows}
    hand_written = hand_written_phrases(tuner, all_items, args.train_file)
    encoder = SentenceTransformer(str(default_encoder_path()), device="cpu")

    # lamar's engine, whose shared-prefix cache the speed passes switch on and off.
    base = TransformersGenerator(batch_size=args.batch_size, decoder="engine")
    tuned = TransformersGenerator(adapter=args.adapter, batch_size=args.batch_size, decoder="engine")
    if tuned.prompt is None:
        print(f"compare_adapter: {args.adapter} has no lamar_prompt.json", file=sys.stderr)
        return 2
    plans = [("a", "(a) base few-shot", base, PromptBuilder(exemplars=few_shot)),
             ("b", "(b) base + adapter zero-shot", tuned, tuned.prompt)]
    if not args.no_base_zero_shot:
        plans.append(("c", "(c) base, adapter's zero-shot prompt", base, tuned.prompt))
    sides, outputs = {}, {}
    for key, name, generator, builder in plans:
        print(f"running {name} on {len(items)} items ...", flush=True)
        side = run_side(name, generator, builder, items)
        sides[key], outputs[key] = summarize(side, items, builder, hand_written, references, encoder)
        print(f"  validity {sides[key]['validity']:.1%}, copy rate {sides[key]['copy_rate']:.1%}, "
              f"distinct-2 {sides[key]['distinct_2']:.3f}, novelty-2 {sides[key]['novelty_2']:.3f}, "
              f"{sides[key]['enrich_items']['items_per_s']:.3f} items/s", flush=True)

    # Speed of the engine alone, with and without the shared-prefix cache, sides alternating and the
    # best of --repeats passes kept: the machine is shared, so one pass can be slowed by others' work.
    for cached, label in ((True, "engine"), (False, "engine_no_prefix_cache")):
        for repeat in range(args.repeats):
            for key in ("a", "b"):
                _, _, generator, builder = next(plan for plan in plans if plan[0] == key)
                figures = time_engine(generator, builder, items, cached)
                print(f"  {label} pass {repeat + 1} {key}: {figures['items_per_s']} items/s", flush=True)
                if label not in sides[key] or figures["items_per_s"] > sides[key][label]["items_per_s"]:
                    sides[key][label] = figures
    speedup = {label: round(sides["b"][label]["items_per_s"] / sides["a"][label]["items_per_s"], 2)
               for label in ("engine", "engine_no_prefix_cache", "enrich_items") if label in sides["b"]}
    by_id = {row["item_id"]: row for row in items.to_list()}
    example_ids = [row["item_id"] for row in validation_rows[:: max(1, len(validation_rows) // 5)]][:5]
    examples = []
    for item_id in example_ids:
        rows = [("hand-written", references[item_id])]
        for key in sides:
            row = next(r for r in outputs[key].to_list() if r["item_id"] == item_id)
            rows.append((sides[key]["name"], row))
        examples.append({"item_id": item_id, "title": by_id[item_id]["title"], "rows": rows})

    results = {
        "title": "LoRA adapter vs few-shot prompting: held-out Amazon Beauty items",
        "description": (
            f"{len(items)} items ({len(validation_rows)} validation exemplar items the adapter never saw"
            + (f", plus {args.extra_items} random Beauty items in no exemplar file" if args.extra_items else "")
            + "), one process, same engine, batch size and decoding. Copy rate: first answers that copied a prompt "
            "exemplar (flagged by the validator, then retried) plus final phrases equal to a hand-written "
            "exemplar phrase (training file or shipped few-shot exemplars), over items x signals."),
        "sides": sides,
        "speedup_b_over_a": speedup,
        "examples": [{"item_id": e["item_id"], "title": e["title"],
                      "rows": [[label, {name: row.get(name) for name in SIGNALS}] for label, row in e["rows"]]}
                     for e in examples],
        "setup": {
            "command": "python benchmarks/compare_adapter.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "adapter": tuned.adapter,
            "base": base.provenance(),
            "decoding": DEFAULT_DECODING.to_dict(),
            "retry_decoding": RETRY.to_dict(),
            "batch_size": args.batch_size,
            "torch_threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
            "load_average_at_end": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    md_examples = [{"item_id": e["item_id"], "title": e["title"], "rows": [(label, row) for label, row in e["rows"]]}
                   for e in examples]
    args.out.with_suffix(".md").write_text(markdown(results, md_examples) + "\n")
    print(f"speed-up (b) over (a): {speedup}; wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
