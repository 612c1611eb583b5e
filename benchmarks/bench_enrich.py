"""Signal-generation speed on the same Amazon Beauty prompts, greedy: lamar's engine vs transformers' own paths.

    .venv/bin/lamar prepare --source p5 --path ../shared/data/amazon_beauty --out outputs/beauty
    .venv/bin/python benchmarks/bench_enrich.py --benchmark outputs/beauty --items 32
    .venv/bin/python benchmarks/bench_enrich.py --benchmark outputs/beauty --items 256 --answer-format

Every side decodes the same few-shot prompts (the shipped Beauty exemplars, about 520 tokens each) with
SmolLM2-135M-Instruct (the packaged GGUF, same weights, dtype and threads), greedy, the same
``max_new_tokens`` and the same batch size:

- ``engine``: lamar's :class:`~lamar_hf.enrich.engine.DecodingEngine` (the shared few-shot prefix computed
  once, rows sorted by length and dropped from the batch as they finish);
- ``generate``: transformers' ``model.generate`` per batch, left-padded, through
  :class:`~lamar_hf.enrich.engine.LibraryDecoder` (the path of every model the engine does not support);
- ``generate_batch``: transformers' continuous batching (paged cache; block sharing, i.e. prefix sharing,
  on), at most ``--batch-size`` requests per batch.

Answers are compared token by token with the engine's. ``--zero-shot`` takes the short prompt of a
tuned adapter instead (about 100 tokens). ``--answer-format`` adds the enrichment's own setting
(repetition penalty 1.2, labels written by the decoder, lines clipped at their word limits) for the
engine and ``generate``; continuous batching cannot take those per-row rules.
Each side is timed ``--repeats`` times, sides alternating, the best pass kept (the machine is shared).
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
RESULTS = ROOT / "benchmarks" / "results"


def cpu_model() -> str:
    """The CPU's model name (as ``lscpu`` shows it), and how many cores this process sees."""
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0] if names else platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"


def strip_eos(tokens, eos_ids) -> list[int]:
    """The answer's tokens before the first end-of-sequence token."""
    tokens = list(tokens)
    for index, token in enumerate(tokens):
        if token in eos_ids:
            return tokens[:index]
    return tokens


def run_engine(decoder, prompts, decoding, exempt=(), answer_format=None) -> list[list[int]]:
    """One pass of a lamar decoder (the engine or :class:`LibraryDecoder`); a new shared prefix every pass."""
    if hasattr(decoder, "prefix"):
        decoder.prefix = None
    return decoder.generate(prompts, decoding, exempt, answer_format)


def run_generate_batch(model, prompts, decoding, eos_ids, pad_id, batch_size) -> list[list[int]]:
    """One pass of transformers' continuous batching over all prompts."""
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    config = GenerationConfig(max_new_tokens=decoding.max_new_tokens, do_sample=False, eos_token_id=list(eos_ids),
                              pad_token_id=pad_id)
    outputs = model.generate_batch(inputs=prompts, generation_config=config, warmup=False,
                                   continuous_batching_config=ContinuousBatchingConfig(
                                       max_requests_per_batch=batch_size))
    by_prompt = [outputs[f"req_{index}"] for index in range(len(prompts))]
    failed = [output.request_id for output in by_prompt if output.error]
    if failed:
        raise RuntimeError(f"generate_batch failed on {failed[:5]}: {by_prompt[0].error}")
    return [strip_eos(output.generated_tokens, eos_ids) for output in by_prompt]


def side_figures(name: str, seconds: float, answers, prompts, reference=None) -> dict:
    figures = {
        "name": name,
        "items": len(prompts),
        "seconds": round(seconds, 2),
        "items_per_s": round(len(prompts) / seconds, 3),
        "generated_tokens": sum(len(answer) for answer in answers),
        "generated_tokens_per_s": round(sum(len(answer) for answer in answers) / seconds, 1),
    }
    if reference is not None:
        same = [answer == expected for answer, expected in zip(answers, reference)]
        figures["identical_answers"] = sum(same)
        figures["identical_share"] = round(sum(same) / len(prompts), 3)
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default=str(BEAUTY), help="Beauty: a lamar prepare folder or the P5 folder")
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="which Beauty items (a seeded shuffle)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1, help="timed passes per side (best kept)")
    parser.add_argument("--answer-format", action="store_true",
                        help="also time the enrichment's decoding (penalty, labels, clipped lines): engine vs generate")
    parser.add_argument("--zero-shot", action="store_true",
                        help="the zero-shot prompt of a tuned adapter (about 100 tokens, nothing much to share)")
    parser.add_argument("--skip-generate-batch", action="store_true")
    parser.add_argument("--generate-batch-items", type=int,
                        help="time continuous batching on the first N items only (it is slow on CPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_enrich.json")
    args = parser.parse_args(argv)
    if not Path(args.benchmark).is_dir():
        print(f"bench_enrich: no benchmark at {args.benchmark} (lamar prepare --source p5 ...)", file=sys.stderr)
        return 2

    import torch

    from lamar_hf.cli.tune import load_tuner
    from lamar_hf.enrich import BEAUTY_EXEMPLARS, DEFAULT_DECODING, GREEDY, PromptBuilder, TransformersGenerator
    from lamar_hf.enrich import load_exemplars

    if args.threads:
        torch.set_num_threads(args.threads)
    all_items = load_tuner().load_items(args.benchmark)
    items = all_items.shuffle(seed=args.seed).select(range(args.items)).to_list()
    builder = PromptBuilder(exemplars=load_exemplars(BEAUTY_EXEMPLARS, all_items))
    if args.zero_shot:
        builder = load_tuner().tuned_prompt([spec.name for spec in builder.signals])
    conversations = [builder.messages(item) for item in items]

    load_start = time.perf_counter()
    engine_side = TransformersGenerator(device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                                        decoder="engine")
    # A second copy of the weights for transformers' paths, left with transformers' own attention.
    library_side = TransformersGenerator(device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                                         decoder="transformers")
    load_seconds = time.perf_counter() - load_start
    prompts = [engine_side.encode(conversation) for conversation in conversations]
    eos_ids, pad_id = engine_side.engine.eos_ids, engine_side.tokenizer.pad_token_id
    greedy = GREEDY.with_(max_new_tokens=args.max_new_tokens)

    runs = {"engine": lambda: run_engine(engine_side.engine, prompts, greedy),
            "generate": lambda: run_engine(library_side.engine, prompts, greedy)}
    if not args.skip_generate_batch:
        subset = prompts[: args.generate_batch_items or len(prompts)]
        runs["generate_batch"] = lambda: run_generate_batch(library_side.model, subset, greedy, eos_ids, pad_id,
                                                            args.batch_size)
    if args.answer_format:
        exempt = sorted({token for conversation in conversations for message in conversation
                         if message["role"] == "system" for token in engine_side._content_ids(message)})
        answer_format = engine_side.answer_format(builder.signals, clip_words=True)
        runs["engine_answer_format"] = lambda: run_engine(engine_side.engine, prompts, DEFAULT_DECODING, exempt,
                                                          answer_format)
        runs["generate_answer_format"] = lambda: run_engine(library_side.engine, prompts, DEFAULT_DECODING, exempt,
                                                            answer_format)
    for name, run in runs.items():  # warm-up on two prompts (one-time set-up is not what is measured)
        print(f"warming up {name} ...", flush=True)
        if name == "generate_batch":
            run_generate_batch(library_side.model, prompts[:2], greedy.with_(max_new_tokens=4), eos_ids, pad_id, 2)
        else:
            decoder = engine_side.engine if name.startswith("engine") else library_side.engine
            run_engine(decoder, prompts[:2], greedy.with_(max_new_tokens=4))

    best: dict[str, tuple[float, list]] = {}
    for repeat in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            answers = run()
            seconds = time.perf_counter() - start
            print(f"  pass {repeat + 1} {name}: {len(answers) / seconds:.3f} items/s", flush=True)
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, answers)

    reference = {"engine": None, "generate": "engine", "generate_batch": "engine", "engine_answer_format": None,
                 "generate_answer_format": "engine_answer_format"}
    sides = {name: side_figures(name, seconds, answers, prompts[: len(answers)],
                                best[reference[name]][1][: len(answers)] if reference[name] else None)
             for name, (seconds, answers) in best.items()}
    library = [name for name in ("generate", "generate_batch") if name in sides]
    fastest = max(library, key=lambda name: sides[name]["items_per_s"])
    results = {
        "title": "Greedy decoding of few-shot Beauty prompts: lamar's engine vs transformers' generate / generate_batch",
        "sides": sides,
        "best_library_path": fastest,
        "speedup_engine_vs_best_library": round(sides["engine"]["items_per_s"] / sides[fastest]["items_per_s"], 2),
        "speedup_engine_vs": {name: round(sides["engine"]["items_per_s"] / sides[name]["items_per_s"], 2)
                              for name in library},
        "setup": {
            "generator": engine_side.provenance(),
            "items": args.items,
            "item_seed": args.seed,
            "batch_size": args.batch_size,
            "max_new_tokens": args.max_new_tokens,
            "repeats": args.repeats,
            "mean_prompt_tokens": round(sum(map(len, prompts)) / len(prompts), 1),
            "prompt_version": builder.version,
            "prompt_mode": builder.mode,
            "device": engine_side.device,
            "cpu": cpu_model() + (f", {torch.cuda.get_device_name()}" if engine_side.device.startswith("cuda") else ""),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
            "model_load_seconds": round(load_seconds, 1),
            "load_average_at_end": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "command": "python benchmarks/bench_enrich.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        },
    }
    if "generate_answer_format" in sides:
        results["speedup_engine_vs_generate_answer_format"] = round(
            sides["engine_answer_format"]["items_per_s"] / sides["generate_answer_format"]["items_per_s"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for side in sides.values():
        same = f", identical to the engine's: {side['identical_answers']}/{side['items']}" if "identical_answers" in side else ""
        print(f"{side['name']}: {side['items_per_s']} items/s, {side['generated_tokens_per_s']} generated tokens/s "
              f"({side['items']} items in {side['seconds']} s){same}")
    print(f"engine vs best library path ({fastest}): {results['speedup_engine_vs_best_library']}x; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
