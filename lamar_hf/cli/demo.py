"""``lamar demo``: the main job, the whole pipeline on Amazon Beauty with no network.

1. prepare Amazon Beauty from the P5/S3Rec files;
2. enrich a sample of items live with the default SmolLM2 (the rest come from the signals committed with the package);
3. analyse the signals;
4. train an ID-only and a signal-aware SASRec on a short budget, each tested by full ranking;
5. write the report;
6. publish the enriched dataset and the signal-aware model to local folders in the exact Hub layout (dry run).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from . import UserError, add_command

# A source checkout (the repository root holds pyproject.toml) finds Beauty in ../shared/data beside it; an
# installed lamar-hf has no such default and needs --data.
CHECKOUT = Path(__file__).resolve().parents[2]
IN_CHECKOUT = (CHECKOUT / "pyproject.toml").is_file()
DEFAULT_DATA = CHECKOUT.parent / "shared" / "data" / "amazon_beauty" if IN_CHECKOUT else None
COMMITTED_SIGNALS = Path(__file__).resolve().parents[1] / "resources" / "signals" / "amazon_beauty-v1.parquet"
SIGNALS_PARQUET = Path("signals") / "train-00000-of-00001.parquet"
# The validation-chosen multi-seed results of benchmarks/experiment.py, present in a source checkout once run.
EXPERIMENT_RESULTS = CHECKOUT / "benchmarks" / "results" / "amazon_beauty" / "beauty_sasrec_study.json"


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "demo",
        help="run the whole pipeline on Amazon Beauty (prepare, enrich, analyze, train, report, publish dry-run)",
        example="lamar demo --data ../shared/data/amazon_beauty --out outputs/demo",
        run=run,
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="P5/S3Rec Amazon Beauty folder (default in a source checkout: ../shared/data/amazon_beauty; "
                             "required otherwise)")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="folder for every artefact")
    parser.add_argument("--live-items", type=int, default=16, help="items enriched live by the LLM (default 16)")
    parser.add_argument("--signals", type=Path, default=COMMITTED_SIGNALS,
                        help="signals for the other items (default: the ones committed with lamar-hf)")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs of each recommender (default 5)")
    parser.add_argument("--experiment", type=Path, default=EXPERIMENT_RESULTS if EXPERIMENT_RESULTS.is_file() else None,
                        help="a results file of benchmarks/experiment.py (settings chosen on validation), shown beside "
                             "the demo's short-budget models (default: the checkout's benchmarks/results, if present)")
    parser.add_argument("--max-users", type=int, default=None, help="train on the first N users only (quicker)")


def merge_signals(committed: Path, live: Path, target: Path) -> dict:
    """Committed signal rows, with the live rows replacing theirs; written to ``target``. Returns counts."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    live_table = pq.read_table(live)
    if committed.is_file():
        base = pq.read_table(committed)
        keep = pc.invert(pc.is_in(base["item_id"], value_set=live_table["item_id"]))
        merged = pa.concat_tables([base.filter(keep), live_table.select(base.column_names).cast(base.schema)])
        merged = merged.sort_by("item_id")
    else:
        merged = live_table
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".parquet.tmp")
    pq.write_table(merged, partial)
    partial.replace(target)
    return {"rows": merged.num_rows, "live": live_table.num_rows, "committed": merged.num_rows - live_table.num_rows}


def step(number: int, total: int, text: str) -> float:
    print(f"\n[{number}/{total}] {text}", flush=True)
    return time.perf_counter()


def lamar(*argv: str) -> None:
    from lamar_hf.cli import main

    code = main([str(arg) for arg in argv])
    if code:
        raise UserError(f"`lamar {' '.join(map(str, argv))}` failed with exit code {code}")


def run(args) -> int:
    if args.data is None:
        raise UserError("--data is required outside a source checkout: give the P5/S3Rec Amazon Beauty folder, "
                        "e.g. lamar demo --data ../shared/data/amazon_beauty")
    if not args.data.is_dir():
        raise UserError(f"--data {args.data} is not a folder (the demo reads ../shared/data/amazon_beauty by default)")
    from lamar_hf.cli.prepare import format_statistics
    from lamar_hf.data import read_p5

    # The demo runs with no network: every model is on disk and publishing is a dry run.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out, total, started = args.out, 7, time.perf_counter()
    dataset, live, analysis = out / "beauty", out / "live-signals", out / "analysis"
    models, report, hub = out / "models", out / "report", out / "hub"

    t = step(1, total, f"prepare Amazon Beauty from {args.data}")
    benchmark = read_p5(args.data)
    benchmark.save(dataset, overwrite=True)
    print(format_statistics(benchmark.statistics()))
    print(f"      {time.perf_counter() - t:.1f} s → {dataset}")

    t = step(2, total, f"enrich {args.live_items} items live with SmolLM2-135M-Instruct; the rest from {args.signals}")
    if live.exists():
        shutil.rmtree(live)
    lamar("enrich", "--items", dataset, "--out", live, "--limit", args.live_items)
    counts = merge_signals(args.signals, live / SIGNALS_PARQUET, dataset / SIGNALS_PARQUET)
    print(f"      signals: {counts['live']} live + {counts['committed']} committed = {counts['rows']} rows")
    print(f"      {time.perf_counter() - t:.1f} s → {dataset / SIGNALS_PARQUET}")

    t = step(3, total, "analyse the signals (distinct-n, diversity, novelty, validity)")
    lamar("analyze", "--signals", dataset, "--items", dataset, "--out", analysis)
    print(f"      {time.perf_counter() - t:.1f} s → {analysis}")

    budget = ["--num_train_epochs", args.epochs, "--per_device_train_batch_size", 256, "--disable_tqdm", "true",
              "--early_stopping_patience", 3]
    if args.max_users:
        budget += ["--max_users", args.max_users]
    variants = {
        "id-only": [],
        # Signals alone: embedding the longer metadata texts too would add minutes on 2 CPU cores.
        "signals": ["--signals", "scenario,intent,topic", "--fusion", "add"],
    }
    for number, (label, options) in enumerate(variants.items(), start=4):
        t = step(number, total, f"train and test SASRec {label} ({args.epochs} epochs, full ranking)")
        # A rerun of the demo replaces its own models, as it replaces the rest of --out.
        lamar("train", "--dataset", dataset, "--output_dir", models / label, "--overwrite", *options, *budget)
        print(f"      {time.perf_counter() - t:.1f} s → {models / label}")

    t = step(6, total, "write the report")
    lamar("report", "--dataset", dataset, "--analysis", analysis, "--out", report,
          *[arg for label in variants for arg in ("--model", f"demo · sasrec · {label} ({args.epochs} epochs)={models / label}")],
          *(["--experiment", args.experiment] if args.experiment else []))
    print(f"      {time.perf_counter() - t:.1f} s → {report}")

    t = step(7, total, "publish the enriched dataset and the model in the exact Hub layout (dry run)")
    for path in (hub / "dataset", hub / "model"):
        if path.exists():
            shutil.rmtree(path)
    lamar("publish", "dataset", dataset, "--repo-id", "org/lamar-beauty-enriched", "--version", "v1.0.0",
          "--analysis", analysis / "analysis.json", "--dry-run", hub / "dataset")
    lamar("publish", "model", models / "signals", "--repo-id", "org/lamar-sasrec-beauty", "--version", "v1.0.0",
          "--dataset", "org/lamar-beauty-enriched", "--dataset-revision", "v1.0.0", "--dry-run", hub / "model")
    print(f"      {time.perf_counter() - t:.1f} s → {hub}")

    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s. Everything is in {out}/:")
    for label, path in [("prepared dataset + signals", dataset), ("live signals", live), ("signal analysis", analysis),
                        ("models", models), ("report", report / "report.html"), ("Hub trees (dry run)", hub)]:
        print(f"  {label:<28} {path}")
    return 0
