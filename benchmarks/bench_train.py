"""Speed of the recommender trainer on Amazon Beauty: seconds per training epoch and seconds per full-ranking
evaluation pass over the 22,363 test users (all 12,101 items ranked), with the default SASRec settings.

    python benchmarks/bench_train.py                       # ID-only and a 4-text fused model, 2 epochs each
    python benchmarks/bench_train.py --epochs 3 --repeats 5

Writes ``benchmarks/results/bench_train.json`` and prints one line per figure. Wall-clock seconds are the figures;
the process CPU seconds (all threads) and the load average are recorded beside them, because on a shared
machine other work stretches the wall clock. The fused model uses random
unit vectors in place of the MiniLM embeddings: the cost is the same, and no encoder run is needed.
Targets (issue 5, 2 CPU cores): one epoch <= 60 s, one evaluation pass <= 4 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BEAUTY = REPO.parent / "shared" / "data" / "amazon_beauty"
RESULTS = REPO / "benchmarks" / "results" / "bench_train.json"


def load_beauty(dataset: str | None):
    from lamar_hf.training import RecommendationData

    if dataset and dataset.endswith(".safetensors"):
        return RecommendationData.load(dataset)
    if dataset and Path(dataset).is_dir():
        from lamar_hf.data import load_prepared

        return RecommendationData.from_benchmark(load_prepared(dataset))
    from lamar_hf.data import read_p5

    return RecommendationData.from_benchmark(read_p5(BEAUTY))


def time_variant(data, name: str, model_args, epochs: int, repeats: int, batch_size: int) -> dict:
    import torch
    from transformers import TrainerCallback

    from lamar_hf.training import RecommenderTrainingArguments, build_model, evaluate_recommender, get_backbone
    from lamar_hf.training.trainer import recommender_trainer

    class EpochClock(TrainerCallback):
        def __init__(self):
            self.seconds, self.cpu_seconds, self.started = [], [], None

        def on_epoch_begin(self, args, state, control, **kwargs):
            self.started = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self.started[0])
            self.cpu_seconds.append(time.process_time() - self.started[1])

    texts = None
    if model_args.text_kinds():
        generator = torch.Generator().manual_seed(0)
        texts = {}
        for kind in model_args.text_kinds():
            vectors = torch.nn.functional.normalize(torch.randn(data.num_items + 1, 384, generator=generator), dim=1)
            texts[kind] = vectors.numpy()
    backbone = get_backbone(model_args.backbone)
    model = build_model(model_args, data.num_items, texts)
    windows = backbone.train_examples(data.training_sequences(), model_args.max_history_length)
    clock = EpochClock()
    with tempfile.TemporaryDirectory() as scratch:
        args = RecommenderTrainingArguments(
            output_dir=scratch, num_train_epochs=epochs, eval_strategy="no", save_strategy="no",
            load_best_model_at_end=False, per_device_train_batch_size=batch_size, disable_tqdm=True,
            logging_strategy="no",
        )
        recommender_trainer(model, backbone, args, windows, callbacks=[clock]).train()
    evaluations, evaluation_cpu = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        metrics = evaluate_recommender(model, data, "test")
        evaluations.append(time.perf_counter() - started)
        evaluation_cpu.append(time.process_time() - cpu_started)
    return {
        "variant": name,
        "text_kinds": model_args.text_kinds(),
        "fusion": model.config.fusion,
        "training_windows": len(windows),
        "batch_size": batch_size,
        "epoch_seconds": [round(s, 2) for s in clock.seconds],
        "epoch_seconds_median": round(statistics.median(clock.seconds), 2),
        "epoch_cpu_seconds": [round(s, 2) for s in clock.cpu_seconds],
        "evaluation_users": len(data.targets["test"]),
        "evaluation_seconds": [round(s, 3) for s in evaluations],
        "evaluation_seconds_median": round(statistics.median(evaluations), 3),
        "evaluation_seconds_best": round(min(evaluations), 3),
        "evaluation_cpu_seconds": [round(s, 3) for s in evaluation_cpu],
        "test_recall@10_after_training": round(metrics["recall@10"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=str(REPO / "outputs" / "beauty"),
                        help="prepared folder or sequences .safetensors (default outputs/beauty, else the raw P5 files)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="evaluation passes to time")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--variants", default="id,signals+metadata", help="id and/or signals+metadata")
    parser.add_argument("--out", type=Path, default=RESULTS)
    options = parser.parse_args()

    import torch

    from lamar_hf.training import ModelArguments

    data = load_beauty(options.dataset)
    variants = {
        "id": ModelArguments(),
        "signals+metadata": ModelArguments(signals="scenario,intent,topic", use_metadata=True, fusion="add"),
    }
    rows = []
    for name in options.variants.split(","):
        row = time_variant(data, name, variants[name], options.epochs, options.repeats, options.batch_size)
        rows.append(row)
        print(f"{name}: {row['epoch_seconds_median']} s per training epoch ({row['training_windows']} windows, "
              f"batch {row['batch_size']}); {row['evaluation_seconds_median']} s per full-ranking pass over "
              f"{row['evaluation_users']} users x {data.num_items} items (best {row['evaluation_seconds_best']} s); "
              f"load average {os.getloadavg()[0]:.1f}")
    report = {
        "benchmark": "bench_train",
        "dataset": data.name,
        "items": data.num_items,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "load_average_at_end": os.getloadavg(), "torch": torch.__version__},
        "targets": {"epoch_seconds": 60, "evaluation_seconds": 4},
        "results": rows,
        "command": "python " + " ".join(sys.argv),
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
