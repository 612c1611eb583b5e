"""Speed of the recommender trainer on Amazon Beauty: seconds per training epoch and seconds per full-ranking pass
over the 22,363 test users (all 12,101 items ranked), for the strong ID-only SASRec baseline: hidden 64, 1 block,
1 head, dropout 0.2, max length 50, sampled softmax over 256 negatives (RecTools' SASRec+SS settings), batch 128.

    python benchmarks/bench_train.py                                 # ID-only SASRec, negatives drawn per position,
                                                                     # per sequence and per batch; 2 epochs, 3 passes
    python benchmarks/bench_train.py --variants id-per-sequence-repeat-item-dropout-from-end-full-softmax  # the
                                                                     # validation-chosen Beauty SASRec
    python benchmarks/bench_train.py --dataset /tmp/h5/beauty        # a folder written by `lamar prepare`
    python benchmarks/bench_train.py --variants id,signals+metadata  # also a 4-text fused model
    python benchmarks/bench_train.py --profile                       # also torch.profiler's table of one epoch

Writes ``benchmarks/results/bench_train.json`` (and ``bench_train_profile.txt`` with ``--profile``) and prints one
line per figure. The epoch runs in the project's own ``Trainer`` (``recommender_trainer``) and the ranking pass is
``evaluate_recommender``, so the figures are those of a real run. Wall-clock seconds are the figures; process CPU
seconds (all threads), the CPU model, torch's thread count and the load average are recorded beside them, because
on a shared machine other work stretches the wall clock (and more threads than free cores stretch it much more).
The fused model uses random unit vectors in place of the MiniLM embeddings: the cost is the same, no encoder runs.
Targets (issue 16, 2 CPU cores): one epoch <= 10 s, one full-ranking pass <= 2 s.
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
TARGETS = {"epoch_seconds": 10, "evaluation_seconds": 2}
# The eSASRec paper's settings of RecTools' SASRec+SS for Beauty.
BASELINE = dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=1, hidden_dropout_prob=0.2,
                attention_dropout_prob=0.2, max_history_length=50, loss_type="sampled_softmax", num_negatives=256)


def load_beauty(dataset: str | None):
    from lamar_hf.training import RecommendationData

    if dataset and dataset.endswith(".safetensors"):
        return RecommendationData.load(dataset)
    if dataset and Path(dataset).is_dir():
        from lamar_hf.data import load_prepared

        return RecommendationData.from_benchmark(load_prepared(dataset))
    from lamar_hf.data import read_p5

    return RecommendationData.from_benchmark(read_p5(BEAUTY))


def train_epochs(data, model_args, epochs: int, batch_size: int, callbacks=()):
    """A fresh model of ``model_args`` trained for ``epochs`` by the project's Trainer (no validation, no saving)."""
    import torch

    from lamar_hf.training import RecommenderTrainingArguments, build_model, get_backbone
    from lamar_hf.training.trainer import recommender_trainer

    texts = None
    if model_args.text_kinds():
        generator = torch.Generator().manual_seed(0)
        texts = {}
        for kind in model_args.text_kinds():
            vectors = torch.nn.functional.normalize(torch.randn(data.num_items + 1, 384, generator=generator), dim=1)
            texts[kind] = vectors.numpy()
    backbone = get_backbone(model_args.backbone)
    item_counts = data.item_counts() if model_args.negative_sampling == "popularity" else None
    model = build_model(model_args, data.num_items, texts, item_counts)
    windows = backbone.train_examples(data.training_sequences(), model_args.max_history_length)
    with tempfile.TemporaryDirectory() as scratch:
        args = RecommenderTrainingArguments(
            output_dir=scratch, num_train_epochs=epochs, eval_strategy="no", save_strategy="no",
            load_best_model_at_end=False, per_device_train_batch_size=batch_size, disable_tqdm=True,
            logging_strategy="no",
        )
        recommender_trainer(model, backbone, args, windows, callbacks=list(callbacks)).train()
    return model, windows


def profile_epoch(data, name: str, model_args, batch_size: int, path: Path) -> None:
    """Write torch.profiler's table (operators by their own CPU time) of one training epoch to ``path``."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as recorded:
        train_epochs(data, model_args, 1, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"torch.profiler, one training epoch of {name} (batch {batch_size}), torch threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}\n"
        + recorded.key_averages().table(sort_by="self_cpu_time_total", row_limit=25) + "\n"
    )


def time_variant(data, name: str, model_args, epochs: int, repeats: int, batch_size: int, eval_batch_size: int) -> dict:
    from transformers import TrainerCallback

    from lamar_hf.training import evaluate_recommender

    class EpochClock(TrainerCallback):
        def __init__(self):
            self.seconds, self.cpu_seconds, self.started = [], [], None

        def on_epoch_begin(self, args, state, control, **kwargs):
            self.started = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self.started[0])
            self.cpu_seconds.append(time.process_time() - self.started[1])

    clock = EpochClock()
    model, windows = train_epochs(data, model_args, epochs, batch_size, callbacks=[clock])
    evaluations, evaluation_cpu = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        metrics = evaluate_recommender(model, data, "test", batch_size=eval_batch_size)
        evaluations.append(time.perf_counter() - started)
        evaluation_cpu.append(time.process_time() - cpu_started)
    return {
        "variant": name,
        "settings": {key: getattr(model_args, key) for key in (*BASELINE, "negative_sharing", "negative_sampling", "repeat_bias",
                                                                "item_dropout_prob", "position_order")},
        "text_kinds": model_args.text_kinds(),
        "fusion": model.config.fusion,
        "training_windows": len(windows),
        "batch_size": batch_size,
        "evaluation_batch_size": eval_batch_size,
        "epoch_seconds": [round(s, 2) for s in clock.seconds],
        "epoch_seconds_median": round(statistics.median(clock.seconds), 2),
        "epoch_seconds_best": round(min(clock.seconds), 2),
        "epoch_cpu_seconds": [round(s, 2) for s in clock.cpu_seconds],
        "evaluation_users": len(data.targets["test"]),
        "evaluation_seconds": [round(s, 3) for s in evaluations],
        "evaluation_seconds_median": round(statistics.median(evaluations), 3),
        "evaluation_seconds_best": round(min(evaluations), 3),
        "evaluation_cpu_seconds": [round(s, 3) for s in evaluation_cpu],
        "test_recall@10_after_training": round(metrics["recall@10"], 4),
    }


def cpu_model() -> str:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from experiment import device_name

    return device_name("cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=str(REPO / "outputs" / "beauty"),
                        help="prepared folder or sequences .safetensors (default outputs/beauty, else the raw P5 files)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs to time (the first warms up)")
    parser.add_argument("--repeats", type=int, default=3, help="full-ranking passes to time (at least 1)")
    parser.add_argument("--batch-size", type=int, default=128, help="training sequences per batch")
    parser.add_argument("--eval-batch-size", type=int, default=256, help="users per full-ranking batch")
    parser.add_argument("--variants", default="id,id-per-sequence,id-per-batch",
                        help="id (negatives per position), id-per-sequence, id-per-batch (one negative draw per sequence or "
                        "per batch), id-per-sequence-256 (hidden 256), id-per-sequence-repeat (with the learned repeat score), "
                        "id-per-sequence-repeat-item-dropout(-from-end(-1024)) (and item dropout 0.2, positions from the end, "
                        "1024 negatives; -full-softmax: the softmax over every item instead) "
                        "and/or signals+metadata")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: where other processes share the cores, a second thread "
                        "slowed an epoch from 3 s to over 100 s on a 2-core machine; 0: torch's own choice)")
    parser.add_argument("--profile", action="store_true", help="also write torch.profiler's table of an epoch of the "
                        "first variant to bench_train_profile.txt")
    parser.add_argument("--out", type=Path, default=RESULTS)
    options = parser.parse_args()

    import torch

    from lamar_hf.training import ModelArguments

    if options.threads:
        torch.set_num_threads(options.threads)
    load_before, cpu = os.getloadavg(), cpu_model()
    data = load_beauty(options.dataset)
    item_dropout = BASELINE | {"negative_sharing": "sequence", "repeat_bias": True, "item_dropout_prob": 0.2}
    variants = {
        "id": ModelArguments(**BASELINE),
        "id-per-sequence": ModelArguments(**BASELINE, negative_sharing="sequence"),
        "id-per-batch": ModelArguments(**BASELINE, negative_sharing="batch"),
        "id-per-sequence-256": ModelArguments(**(BASELINE | {"hidden_size": 256}), negative_sharing="sequence"),
        # The validation-chosen Beauty SASRec of benchmarks/results/amazon_beauty/beauty_sasrec_study.md is the last
        # of these: the repeat score, item dropout, positions from the end and 1024 negatives per sequence.
        "id-per-sequence-repeat": ModelArguments(**BASELINE, negative_sharing="sequence", repeat_bias=True),
        # RecTools' item-net dropout, then with RecTools' positions counted from the most recent item, then with
        # 1024 negatives.
        "id-per-sequence-repeat-item-dropout": ModelArguments(**item_dropout),
        "id-per-sequence-repeat-item-dropout-from-end": ModelArguments(**item_dropout, position_order="from_end"),
        "id-per-sequence-repeat-item-dropout-from-end-1024": ModelArguments(
            **(item_dropout | {"num_negatives": 1024}), position_order="from_end"
        ),
        "id-per-sequence-repeat-item-dropout-from-end-full-softmax": ModelArguments(
            **(item_dropout | {"loss_type": "ce"}), position_order="from_end"
        ),
        "signals+metadata": ModelArguments(**BASELINE, signals="scenario,intent,topic", use_metadata=True, fusion="add"),
    }
    rows = []
    names = options.variants.split(",")
    if options.profile:  # a run of its own: the profiler slows the epoch it records
        profile_epoch(data, names[0], variants[names[0]], options.batch_size, options.out.with_name("bench_train_profile.txt"))
    for name in names:
        row = time_variant(data, name, variants[name], options.epochs, options.repeats, options.batch_size,
                           options.eval_batch_size)
        rows.append(row)
        print(f"{name}: {row['epoch_seconds_median']} s per training epoch (best {row['epoch_seconds_best']} s; "
              f"{row['training_windows']} windows, batch {row['batch_size']}); {row['evaluation_seconds_median']} s "
              f"per full-ranking pass over {row['evaluation_users']} users x {data.num_items} items (best "
              f"{row['evaluation_seconds_best']} s); load average {os.getloadavg()[0]:.1f}")
    report = {
        "benchmark": "bench_train",
        "dataset": data.name,
        "items": data.num_items,
        "machine": {"cpu": cpu, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "torch": torch.__version__,
                    "load_average_at_start": load_before, "load_average_at_end": os.getloadavg()},
        "targets": TARGETS,
        "within_targets": {row["variant"]: row["epoch_seconds_median"] <= TARGETS["epoch_seconds"]
                           and row["evaluation_seconds_median"] <= TARGETS["evaluation_seconds"] for row in rows},
        "results": rows,
        "command": "python " + " ".join(sys.argv),
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {options.out}")


if __name__ == "__main__":
    main()
