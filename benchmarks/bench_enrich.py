"""Signal-generation speed: the batched engine vs a naive loop, on the same Amazon Beauty items.

    .venv/bin/python benchmarks/bench_enrich.py                 # 256 items, SmolLM2, both in one run
    .venv/bin/python benchmarks/bench_enrich.py --items 64 --skip-naive

Both sides use the same model object (same weights, dtype and threads) and the same few-shot
prompts (the shipped Beauty exemplars). The naive loop calls ``model.generate`` once per item
(greedy, no batching, stops at the end-of-turn token). The engine is
``TransformersGenerator.generate``: length-sorted batches with left padding, the shared few-shot
prefix computed once, the answer's line labels written by the engine, rows dropped as they finish.
A third figure is the whole ``enrich_items`` (parse, validate, retry the failures once).

Figures go to ``benchmarks/results/bench_enrich.json``; one line per side is printed.
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


def beauty_items(count: int, seed: int):
    from lamar_hf.data import read_p5

    items = read_p5(BEAUTY).items
    return items, items.shuffle(seed=seed).select(range(count))


def naive_loop(generator, conversations, max_new_tokens: int) -> dict:
    """One ``model.generate`` per item: what a first script would do."""
    import torch

    model, tokenizer = generator.model, generator.tokenizer
    prompt_tokens = generated = 0
    texts = []
    start = time.perf_counter()
    with torch.inference_mode():
        for conversation in conversations:
            ids = torch.tensor([generator.encode(conversation)], device=generator.device)
            output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                    do_sample=False, eos_token_id=generator.engine.eos_ids,
                                    pad_token_id=tokenizer.pad_token_id)
            new = output[0, ids.shape[1]:].tolist()
            new = [token for token in new if token not in generator.engine.eos_ids]
            prompt_tokens += ids.shape[1]
            generated += len(new)
            texts.append(tokenizer.decode(new, skip_special_tokens=True))
    seconds = time.perf_counter() - start
    return figures("naive loop (model.generate per item)", len(conversations), seconds, prompt_tokens, generated,
                   prompt_tokens) | {"texts": texts}


def figures(name, items, seconds, prompt_tokens, generated, computed_prompt_tokens) -> dict:
    return {
        "name": name,
        "items": items,
        "seconds": round(seconds, 2),
        "items_per_s": round(items / seconds, 3),
        "generated_tokens": generated,
        "generated_tokens_per_s": round(generated / seconds, 1),
        "processed_tokens": prompt_tokens + generated,
        "processed_tokens_per_s": round((prompt_tokens + generated) / seconds, 1),
        "computed_prompt_tokens": computed_prompt_tokens,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0, help="which Beauty items (a seeded shuffle)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_enrich.json")
    args = parser.parse_args(argv)
    if not BEAUTY.is_dir():
        print(f"bench_enrich: Amazon Beauty not found at {BEAUTY}", file=sys.stderr)
        return 2

    import torch

    from lamar_hf.enrich import BEAUTY_EXEMPLARS, GREEDY, PromptBuilder, TransformersGenerator, load_exemplars
    from lamar_hf.enrich.pipeline import enrich_items, status_counts

    if args.threads:
        torch.set_num_threads(args.threads)
    all_items, items = beauty_items(args.items, args.seed)
    builder = PromptBuilder(exemplars=load_exemplars(BEAUTY_EXEMPLARS, all_items))
    rows = items.to_list()
    conversations = [builder.messages(row) for row in rows]

    load_start = time.perf_counter()
    generator = TransformersGenerator(device=args.device, dtype=args.dtype, batch_size=args.batch_size)
    load_seconds = time.perf_counter() - load_start
    generator.generate(conversations[:2], GREEDY.with_(max_new_tokens=4))  # warm-up
    results = {}

    before = generator.stats.__dict__.copy()
    start = time.perf_counter()
    engine_texts = generator.generate(conversations, GREEDY, answer_signals=builder.signals)
    seconds = time.perf_counter() - start
    after = generator.stats.__dict__
    delta = {key: after[key] - before[key] for key in after}
    results["engine"] = figures("engine (TransformersGenerator.generate)", len(rows), seconds, delta["prompt_tokens"],
                                delta["generated_tokens"], delta["computed_prompt_tokens"])

    start = time.perf_counter()
    signals = enrich_items(items, generator, prompt=builder, progress=False)
    seconds = time.perf_counter() - start
    results["enrich_items"] = {"name": "enrich_items (generate, parse, validate, retry once)", "items": len(rows),
                               "seconds": round(seconds, 2), "items_per_s": round(len(rows) / seconds, 3),
                               "status": status_counts(signals)}

    if not args.skip_naive:
        naive = naive_loop(generator, conversations, GREEDY.max_new_tokens)
        naive_texts = naive.pop("texts")
        results["naive"] = naive
        results["speedup_engine_vs_naive"] = round(results["engine"]["items_per_s"] / naive["items_per_s"], 2)
        results["same_first_line_share"] = round(sum(
            a.split("\n")[0].strip() == b.split("\n")[0].strip() for a, b in zip(engine_texts, naive_texts)
        ) / len(rows), 3)

    results["setup"] = {
        "generator": generator.provenance(),
        "batch_size": args.batch_size,
        "device": generator.device,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "items": args.items,
        "item_seed": args.seed,
        "prompt_version": builder.version,
        "mean_prompt_tokens": round(results["engine"]["processed_tokens"] / len(rows)
                                    - results["engine"]["generated_tokens"] / len(rows), 1),
        "model_load_seconds": round(load_seconds, 1),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs" + (
            f", {torch.cuda.get_device_name()}" if generator.device.startswith("cuda") else ""),
        "load_average_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "command": "python benchmarks/bench_enrich.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for key in ("engine", "naive"):
        if key in results:
            r = results[key]
            print(f"{r['name']}: {r['items_per_s']} items/s, {r['generated_tokens_per_s']} generated tokens/s, "
                  f"{r['processed_tokens_per_s']} processed tokens/s ({r['items']} items in {r['seconds']} s)")
    print(f"enrich_items: {results['enrich_items']['items_per_s']} items/s, status {results['enrich_items']['status']}")
    if "speedup_engine_vs_naive" in results:
        print(f"speed-up engine vs naive: {results['speedup_engine_vs_naive']}x")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
