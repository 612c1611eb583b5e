"""The full Amazon Beauty enrichment (12,101 items) with the default generator, resumable.

    setsid nohup nice -n 10 .venv/bin/python benchmarks/enrich_beauty.py --out outputs/enrich_beauty \\
        > outputs/enrich_beauty.log 2>&1 &
    .venv/bin/python benchmarks/enrich_beauty.py --out outputs/enrich_beauty --limit 50     # a quick look
    .venv/bin/python benchmarks/enrich_beauty.py --out outputs/enrich_beauty --device cuda --batch-size 256
    .venv/bin/python benchmarks/enrich_beauty.py --out outputs/enrich_beauty_v2 --adapter outputs/adapter-beauty \\
        --device cuda --batch-size 256 --resource lamar_hf/resources/signals/amazon_beauty-v2.parquet

Every finished row is cached under ``OUT/cache`` at once, so a killed run started again with the
same arguments (or another ``--limit`` / ``--chunk-size``) continues where it stopped. At the end it writes
``OUT/signals/train-00000-of-00001.parquet`` (item id, signals, status, provenance),
``OUT/lamar_enrich.json`` (counts, rate, settings, the prompt) and, with ``--resource PATH``, a copy
of the signals parquet for the repository (no upstream metadata text is in it).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # shared CPUs: spinning OpenMP threads slow everyone down

import argparse
import faulthandler
import json
import shutil
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEAUTY = ROOT.parent / "shared" / "data" / "amazon_beauty"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "enrich_beauty")
    parser.add_argument("--items", type=Path, default=None,
                        help="a prepared benchmark folder (lamar prepare); default: read the P5 files in place")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--chunk-size", type=int, default=256, help="items per cached (resumable) chunk")
    parser.add_argument("--limit", type=int, default=None, help="only the first N items (in item id order)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--exemplars", type=Path, default=None, help="few-shot exemplars jsonl (default: shipped)")
    parser.add_argument("--resource", type=Path, default=None, help="also copy the signals parquet here")
    parser.add_argument("--adapter", default=None,
                        help="a peft adapter (folder or id) merged into the model; its saved zero-shot prompt is used")
    args = parser.parse_args(argv)
    # A long background run should say how it ended: a crash in native code, or a termination signal.
    faulthandler.enable()
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(f"enrich_beauty: terminated by signal {number}"))

    import torch

    from lamar_hf.enrich import BEAUTY_EXEMPLARS, PromptBuilder, TransformersGenerator, load_exemplars
    from lamar_hf.enrich.pipeline import enrich_items, status_counts, write_signals

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.items is not None:
        from lamar_hf.data import load_prepared

        items = load_prepared(args.items).items
    else:
        if not BEAUTY.is_dir():
            print(f"enrich_beauty: Amazon Beauty not found at {BEAUTY}; pass --items", file=sys.stderr)
            return 2
        from lamar_hf.data import read_p5

        items = read_p5(BEAUTY).items
    all_items = items
    if args.limit:
        items = items.select(range(min(args.limit, len(items))))
    generator = TransformersGenerator(adapter=args.adapter, device=args.device, dtype=args.dtype,
                                      batch_size=args.batch_size)
    # A tuned adapter brings the prompt it was trained with; the base model gets the few-shot prompt.
    builder = generator.prompt or PromptBuilder(exemplars=load_exemplars(args.exemplars or BEAUTY_EXEMPLARS, all_items))
    print(f"enrich_beauty: {len(items)} items, generator {generator.provenance()}, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}, prompt {builder.version}", flush=True)

    start = time.perf_counter()
    signals = enrich_items(items, generator, prompt=builder, cache_dir=args.out / "cache",
                           chunk_size=args.chunk_size)
    seconds = time.perf_counter() - start
    counts = status_counts(signals)
    valid = (counts["ok"] + counts["retried"]) / max(len(signals), 1)
    manifest = {
        "items": len(signals),
        "status": counts,
        "validity": round(valid, 4),
        "seconds_this_run": round(seconds, 1),
        "items_per_s_this_run": round(len(signals) / seconds, 3),
        "decode_stats_this_run": generator.stats.__dict__,
        "generator": generator.provenance(),
        "batch_size": args.batch_size,
        "device": generator.device,
        "torch_threads": torch.get_num_threads(),
        "prompt_version": builder.version,
        "prompt": builder.to_dict(),
        "command": "python benchmarks/enrich_beauty.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    path = write_signals(signals, args.out, manifest)
    print(f"enrich_beauty: {len(signals)} items in {seconds:.0f} s ({len(signals) / seconds:.2f} items/s, "
          f"cached chunks included), status {counts}, validity {valid:.1%}; wrote {path}", flush=True)
    if args.resource is not None:
        args.resource.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, args.resource)
        print(f"enrich_beauty: copied to {args.resource}")
    print(json.dumps({key: manifest[key] for key in ("items", "status", "validity")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
