"""Amazon Beauty: does fusing LaMAR signals into a recommender help? Four variants with the same seeds and budget --
ID-only, +metadata text, +signals, +signals+metadata -- each trained by the same code as training/train.py
(:func:`lamar_hf.training.train_recommender`), evaluated by full ranking over all items, mean and std over seeds.

Step 1, here on CPU (needs datasets + the packaged MiniLM; a few minutes): the sequences and the item-text
embeddings, in two safetensors files::

    python benchmarks/beauty_experiment.py prepare --dataset outputs/beauty \\
        --signals_file outputs/beauty-signals/signals/train-00000-of-00001.parquet \\
        --out outputs/beauty_experiment_inputs

Step 2, anywhere with torch + transformers + accelerate + safetensors + numpy (+ matplotlib for the chart; no
``datasets``, no encoder): run every (variant, seed) in parallel processes and write
``benchmarks/results/beauty_experiment.{md,json,png}``::

    python benchmarks/beauty_experiment.py run --inputs outputs/beauty_experiment_inputs --device cuda --jobs 12

The table and chart can be rewritten from the JSON (e.g. where matplotlib is installed)::

    python benchmarks/beauty_experiment.py report --json benchmarks/results/beauty_experiment.json

A CPU smoke run with a tiny budget (writes ``beauty_experiment_smoke.*``)::

    python benchmarks/beauty_experiment.py run --inputs outputs/beauty_experiment_inputs --max_users 500 \\
        --max_epochs 1 --seeds 0 --jobs 2 --name beauty_experiment_smoke

Finished runs are kept as JSON under ``--work`` and skipped when the command is repeated (``--force`` redoes them).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from transformers import TrainerCallback

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results"
SEQUENCES_FILE = "sequences.safetensors"
TEXTS_FILE = "text_embeddings.safetensors"
SIGNALS = ("scenario", "intent", "topic")
# variant -> (signals, use metadata text)
VARIANTS = {
    "id-only": ((), False),
    "metadata": ((), True),
    "signals": (SIGNALS, False),
    "signals+metadata": (SIGNALS, True),
}
REPORTED = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "mrr@10")
PAPER_GAIN = 0.127  # the LaMAR paper's average Recall@20 gain


def prepare(options) -> None:
    """Write the sequences and the MiniLM embeddings of the metadata text and of every signal (if given)."""
    from lamar_hf.data import load_prepared, read_p5
    from lamar_hf.text_embeddings import (
        DEFAULT_ENCODER,
        cached_item_text_embeddings,
        default_text_embeddings_cache,
        read_signals,
        save_text_embeddings,
    )
    from lamar_hf.training import RecommendationData

    dataset = Path(options.dataset)
    benchmark = load_prepared(dataset) if (dataset / "items").is_dir() else read_p5(dataset)
    out = Path(options.out)
    RecommendationData.from_benchmark(benchmark).save(out / SEQUENCES_FILE)
    signals = read_signals(options.signals_file) if options.signals_file else benchmark.signals
    kinds = ["metadata"] + (list(SIGNALS) if signals is not None else [])
    # The shared cache (also used by training/train.py) re-embeds only texts that changed, e.g. new signals.
    cache = default_text_embeddings_cache(benchmark.name)
    embeddings = cached_item_text_embeddings(benchmark.items, kinds, cache, signals)
    save_text_embeddings(out / TEXTS_FILE, embeddings, {
        "encoder": DEFAULT_ENCODER, "dataset": str(dataset), "signals_file": options.signals_file or "",
        "kinds": kinds,
    })
    covered = {kind: int((abs(matrix).sum(axis=1) > 0).sum()) for kind, matrix in embeddings.items()}
    print(f"wrote {out / SEQUENCES_FILE} and {out / TEXTS_FILE}; items with a text per kind: {covered}"
          + ("" if signals is not None else " (no signals: pass --signals_file)"))


def run_name(job: dict) -> str:
    return f"{job['backbone']}-{job['variant']}-seed{job['seed']}"


def run_one(job: dict) -> dict:
    """Train and test one (variant, seed) in this process; returns its result row."""
    import contextlib

    import torch

    torch.set_num_threads(job["threads"])
    Path(job["work"]).mkdir(parents=True, exist_ok=True)
    # Each run's Trainer log goes to its own file, so that parallel runs do not interleave on the console.
    with open(Path(job["work"]) / f"{run_name(job)}.log", "w") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        return train_one(job)


def train_one(job: dict) -> dict:
    from lamar_hf.text_embeddings import load_text_embeddings
    from lamar_hf.training import (
        ModelArguments,
        RecommendationData,
        RecommenderTrainingArguments,
        get_backbone,
        train_recommender,
    )

    data = RecommendationData.load(Path(job["inputs"]) / SEQUENCES_FILE)
    if job["max_users"]:
        data = data.first_users(job["max_users"])
    signals, use_metadata = VARIANTS[job["variant"]]
    # Settings shared by several backbones (e.g. --dropout's attention dropout) go to those that take them.
    taken = get_backbone(job["backbone"]).hyperparameters
    model_args = ModelArguments(backbone=job["backbone"], signals=",".join(signals), use_metadata=use_metadata,
                                fusion=job["fusion"], **{k: v for k, v in job["model"].items() if k in taken})
    kinds = model_args.text_kinds()
    texts = load_text_embeddings(Path(job["inputs"]) / TEXTS_FILE, kinds)[0] if kinds else None
    output_dir = Path(job["work"]) / run_name(job)
    training_args = RecommenderTrainingArguments(
        output_dir=str(output_dir), seed=job["seed"], num_train_epochs=job["max_epochs"],
        early_stopping_patience=job["patience"], use_cpu=job["device"] == "cpu", disable_tqdm=True,
        train_examples=job.get("train_examples"), repeat_score_learning_rate=job.get("repeat_score_learning_rate"),
        logging_strategy="no",
    )
    callbacks = [TrainingTimeBudget(job["time_budget"])] if job.get("time_budget") else []
    result = train_recommender(data, model_args, training_args, texts, callbacks=callbacks)
    shutil.rmtree(output_dir, ignore_errors=True)  # checkpoints are not needed once the test figures are in
    repeat_score = getattr(result.model, "repeat_score", None)
    return {
        "backbone": job["backbone"], "variant": job["variant"], "seed": job["seed"],
        "fusion": job["fusion"] if kinds else "none",
        "text_kinds": kinds, "validation": result.validation, "test": result.test, "epochs": result.epochs,
        "best_epoch": result.best_epoch, "train_seconds": round(result.train_seconds, 1),
        "stopped_by_time_budget": bool(callbacks and callbacks[0].stopped),
        "device": str(result.model.device),
        # For comparison only (the protocol ranks every item): the same model with each user's history removed.
        "test_excluding_history": test_excluding_history(result.model, data),
        **({"repeat_score": round(repeat_score.item(), 4)} if repeat_score is not None else {}),
        "validation_ndcg@10_by_epoch": [round(entry["eval_ndcg@10"], 5) for entry in result.log_history
                                        if "eval_ndcg@10" in entry and "epoch" in entry],
    }


def test_excluding_history(model, data) -> dict[str, float]:
    """Test Recall/NDCG/MRR@10/20 when the items of each history are never recommended (as RecBole-style
    evaluators with history filtering do)."""
    import torch

    from lamar_hf.metrics import ranking_metrics, target_ranks

    scores = model.score(data.histories["test"], exclude_history=True)
    targets = torch.tensor(data.targets["test"], device=scores.device)
    return ranking_metrics(target_ranks(scores, targets).cpu().numpy(), (10, 20))


class TrainingTimeBudget(TrainerCallback):
    """Ends training at the first epoch end after ``seconds`` of training (the best model so far is then tested), so
    that every run of a time-limited batch leaves a result; ``stopped`` says whether the budget ended it."""

    def __init__(self, seconds: float):
        self.seconds, self.stopped, self.started = seconds, False, time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        if time.perf_counter() - self.started > self.seconds and not control.should_training_stop:
            control.should_training_stop = self.stopped = True
        return control


def summarize(rows: list[dict]) -> dict:
    """``{backbone: {variant: ...}}``: mean and standard deviation over seeds, and each variant's Recall@20 gain
    over the same backbone's ID-only."""
    summary = {}
    for backbone in dict.fromkeys(row["backbone"] for row in rows):
        summary[backbone] = {}
        for variant in VARIANTS:
            runs = [row for row in rows if row["backbone"] == backbone and row["variant"] == variant]
            if not runs:
                continue
            entry = {"seeds": sorted(row["seed"] for row in runs), "epochs": [row["epochs"] for row in runs],
                     "stopped_by_time_budget": [row.get("stopped_by_time_budget", False) for row in runs]}
            for metric in REPORTED:
                values = [row["test"][metric] for row in runs]
                entry[metric] = {"mean": statistics.fmean(values),
                                 "std": statistics.stdev(values) if len(values) > 1 else 0.0}
            if all("test_excluding_history" in row for row in runs):
                entry["test_excluding_history"] = {
                    metric: statistics.fmean(row["test_excluding_history"][metric] for row in runs) for metric in REPORTED}
            if all("repeat_score" in row for row in runs):
                entry["repeat_score"] = statistics.fmean(row["repeat_score"] for row in runs)
            summary[backbone][variant] = entry
        if "id-only" in summary[backbone]:
            base = summary[backbone]["id-only"]["recall@20"]["mean"]
            for entry in summary[backbone].values():
                entry["recall@20_gain_over_id"] = entry["recall@20"]["mean"] / base - 1 if base else None
    return summary


def write_markdown(path: Path, summary: dict, config: dict) -> None:
    lines = [
        "# Amazon Beauty: LaMAR signals fused into sequential recommenders",
        "",
        f"Full ranking over all {config['num_items']:,} items, leave-one-out, no history masking, ties counted against",
        f"the target; test split of {config['users']:,} users. Mean ± std over seeds {config['seeds']}; fusion "
        f"`{config['fusion']}`; up to {config['max_epochs']} epochs, early stopping on validation NDCG@10 (patience "
        f"{config['patience']}); device {config['device']}"
        + (f"; training examples: {config['train_examples']}" if config.get("train_examples") else "")
        + (f"; repeat score learning rate {config['repeat_score_learning_rate']}"
           if config.get("repeat_score_learning_rate") is not None else "") + ".",
        "",
    ]
    if config.get("model"):
        settings = config["model"] if isinstance(config["model"], str) else ", ".join(
            f"{key} {value}" for key, value in config["model"].items())
        lines += [f"Model settings (the rest are each backbone's defaults): {settings}.", ""]
    if config.get("note"):
        lines += [config["note"], ""]
    if config.get("max_users"):
        lines += [f"**Smoke run** on the first {config['max_users']} users with a tiny budget: the figures only show that "
                  "the pipeline runs, they measure nothing.", ""]
    lines += [
        "| backbone | variant | " + " | ".join(metric_label(m) for m in REPORTED) + " | Recall@20 vs ID-only | epochs |",
        "|---|---|" + "---|" * (len(REPORTED) + 2),
    ]
    for backbone, variants in summary.items():
        for variant, entry in variants.items():
            cells = [f"{entry[m]['mean']:.4f} ± {entry[m]['std']:.4f}" for m in REPORTED]
            gain = entry.get("recall@20_gain_over_id")
            gain_text = "—" if variant == "id-only" or gain is None else f"{gain:+.1%}"
            lines.append(f"| {backbone} | {variant} | " + " | ".join(cells) + f" | {gain_text} | "
                         + ", ".join(epoch_mark(e, stopped, config["max_epochs"]) for e, stopped in
                                     zip(entry["epochs"], entry.get("stopped_by_time_budget") or [False] * len(entry["epochs"])))
                         + " |")
    lines.append("")
    if any(any(entry.get("stopped_by_time_budget", ())) for variants in summary.values() for entry in variants.values()):
        lines += ["\\* ended by the time budget of the machine (`--time_budget`) before early stopping: the best "
                  "validation model so far was tested, so the run may not have converged.", ""]
    if any(epoch >= config["max_epochs"] for variants in summary.values() for entry in variants.values()
           for epoch in entry["epochs"]):
        lines += ["† reached the epoch limit (`--max_epochs`) before early stopping: the run may not have converged.", ""]
    excluded = [(backbone, variant, entry) for backbone, variants in summary.items()
                for variant, entry in variants.items() if "test_excluding_history" in entry]
    if excluded:
        lines += ["Outside the protocol, for comparison with evaluators that filter the history (e.g. RecBole's, or "
                  "Klenitskiy & Vasilev's `filter_seen`): the same models' test means when no item of a user's history "
                  "may be recommended, and the learned `repeat_bias` score where the model has one.", "",
                  "| backbone | variant | " + " | ".join(metric_label(m) for m in REPORTED) + " | repeat score |",
                  "|---|---|" + "---|" * (len(REPORTED) + 1)]
        for backbone, variant, entry in excluded:
            repeat = f"{entry['repeat_score']:.2f}" if "repeat_score" in entry else "—"
            lines.append(f"| {backbone} | {variant} | "
                         + " | ".join(f"{entry['test_excluding_history'][m]:.4f}" for m in REPORTED) + f" | {repeat} |")
        lines.append("")
    for backbone, variants in summary.items():
        best = max((v for v in variants if "signals" in v), key=lambda v: variants[v]["recall@20"]["mean"], default=None)
        if best and variants[best].get("recall@20_gain_over_id") is not None:
            gain = variants[best]["recall@20_gain_over_id"]
            verdict = "meets" if gain >= PAPER_GAIN else "does not meet"
            lines.append(f"- {backbone}: best signal-aware variant **{best}**, Recall@20 {gain:+.1%} over ID-only, which "
                         f"{verdict} the LaMAR paper's average gain of +{PAPER_GAIN:.1%}.")
    lines += ["", f"Command: `{config['command']}`", ""]
    path.write_text("\n".join(lines))


def epoch_mark(epochs: float, stopped_by_time_budget: bool, max_epochs: int) -> str:
    """A run's epoch count, marked ``*`` when the time budget ended it and ``†`` when it hit the epoch limit."""
    return f"{epochs:g}" + ("*" if stopped_by_time_budget else "†" if epochs >= max_epochs else "")


def metric_label(metric: str) -> str:
    return metric.replace("recall", "Recall").replace("ndcg", "NDCG").replace("mrr", "MRR")


def write_chart(path: Path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
    bars = [(f"{backbone} · {variant}" if len(summary) > 1 else variant, entry)
            for backbone, variants in summary.items() for variant, entry in variants.items()]
    width = 0.8 / max(len(bars), 1)
    figure, axis = plt.subplots(figsize=(8 + len(bars) * 0.3, 4.5))
    for index, (label, entry) in enumerate(bars):
        positions = [m + (index - (len(bars) - 1) / 2) * width for m in range(len(metrics))]
        axis.bar(positions, [entry[m]["mean"] for m in metrics], width, yerr=[entry[m]["std"] for m in metrics],
                 capsize=3, label=label)
    axis.set_xticks(range(len(metrics)), [metric_label(m) for m in metrics])
    axis.set_ylabel("test score (full ranking)")
    axis.set_title("Amazon Beauty: LaMAR signals in sequential recommenders (mean ± std over seeds)")
    axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run(options) -> None:
    inputs, work = Path(options.inputs), Path(options.work)
    variants = [v.strip() for v in options.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    needs_texts = any(VARIANTS[v][0] or VARIANTS[v][1] for v in variants)
    for name in (SEQUENCES_FILE, TEXTS_FILE) if needs_texts else (SEQUENCES_FILE,):
        if not (inputs / name).is_file():
            raise SystemExit(f"{inputs / name} is missing: run `python benchmarks/beauty_experiment.py prepare` first")
    if options.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda, but torch sees no GPU")
    seeds = [int(s) for s in options.seeds.split(",")]
    backbones = [b.strip() for b in options.backbones.split(",")]
    # Unset options keep each backbone's own defaults (GRU4Rec: 1 layer, dropout 0.3; BERT4Rec: dropout 0.2; ...).
    model = {key: value for key, value in {
        "hidden_size": options.hidden_size, "num_hidden_layers": options.num_hidden_layers,
        "hidden_dropout_prob": options.dropout, "attention_dropout_prob": options.dropout,
        "norm_first": None if options.norm_first is None else options.norm_first == "true",
        "repeat_bias": None if options.repeat_bias is None else options.repeat_bias == "true"}.items() if value is not None}
    threads = options.threads or max(1, (os.cpu_count() or 1) // options.jobs)
    repeat_rate = ({"repeat_score_learning_rate": options.repeat_score_learning_rate}
                   if options.repeat_score_learning_rate is not None else {})
    jobs = [
        {"backbone": backbone, "variant": variant, "seed": seed, "inputs": str(inputs), "work": str(work), "device": options.device,
         "threads": threads, "max_users": options.max_users, "max_epochs": options.max_epochs,
         "patience": options.patience, "fusion": options.fusion, "model": model,
         # only when asked, so that runs finished before this option existed are still recognised as done
         **({"train_examples": options.train_examples} if options.train_examples else {}),
         **repeat_rate,
         **({"time_budget": options.time_budget} if options.time_budget else {})}
        for backbone in backbones for seed in seeds for variant in variants
    ]
    work.mkdir(parents=True, exist_ok=True)
    rows, pending = [], []
    for job in jobs:
        done = work / f"{run_name(job)}.json"
        if done.is_file() and not options.force and json.loads(done.read_text()).get("job") == job:
            rows.append(json.loads(done.read_text())["result"])
        else:
            pending.append(job)
    print(f"{len(rows)} runs already done, {len(pending)} to run with {options.jobs} processes x {threads} threads "
          f"on {options.device}", flush=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=options.jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_one, job): job for job in pending}
        for future in as_completed(futures):
            job, result = futures[future], future.result()
            (work / f"{run_name(job)}.json").write_text(json.dumps({"job": job, "result": result}))
            rows.append(result)
            print(f"[{time.perf_counter() - started:7.1f} s] {run_name(job)}: "
                  f"test Recall@10 {result['test']['recall@10']:.4f} NDCG@10 {result['test']['ndcg@10']:.4f} "
                  f"Recall@20 {result['test']['recall@20']:.4f} after {result['epochs']:g} epochs", flush=True)
    data_header = json.loads(_safetensors_header(inputs / SEQUENCES_FILE))
    config = {
        "num_items": data_header["num_items"], "users": options.max_users or _users(inputs), "seeds": seeds,
        "fusion": options.fusion, "max_epochs": options.max_epochs, "patience": options.patience,
        "device": options.device, "jobs": options.jobs, "backbones": backbones, "model": model, "max_users": options.max_users,
        "train_examples": options.train_examples or "the backbone's own",
        **repeat_rate,
        "command": "python benchmarks/beauty_experiment.py " + shlex.join(sys.argv[1:]),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    write_results(Path(options.results_dir) / f"{options.name}.json", config, rows, backbones)


def collect(options) -> None:
    """Summarise finished runs kept as ``{"job", "result"}`` JSON files, wherever they were trained."""
    finished = [json.loads(path.read_text()) for folder in options.runs for path in sorted(Path(folder).glob("*-seed*.json"))]
    if not finished:
        raise SystemExit(f"no finished runs in {', '.join(options.runs)}")
    rows = [entry["result"] for entry in finished]
    jobs = [entry["job"] for entry in finished]
    backbones = list(dict.fromkeys(job["backbone"] for job in jobs))
    config = {
        "num_items": json.loads(_safetensors_header(Path(options.inputs) / SEQUENCES_FILE))["num_items"],
        "users": _users(Path(options.inputs)), "seeds": sorted({job["seed"] for job in jobs}),
        "fusion": ", ".join(sorted({row["fusion"] for row in rows if row["fusion"] != "none"} or {jobs[0]["fusion"]})),
        "model": jobs[0]["model"] if all(job["model"] == jobs[0]["model"] for job in jobs) else "varies by run",
        "note": options.note, "max_epochs": max(job["max_epochs"] for job in jobs),
        "patience": jobs[0]["patience"], "device": ", ".join(sorted({row["device"] for row in rows})),
        "backbones": backbones, "max_users": None,
        "command": "python benchmarks/beauty_experiment.py " + shlex.join(sys.argv[1:]),
    }
    repeat_rates = {job.get("repeat_score_learning_rate") for job in jobs}
    if repeat_rates != {None}:
        config["repeat_score_learning_rate"] = repeat_rates.pop() if len(repeat_rates) == 1 else "varies by run"
    write_results(Path(options.results_dir) / f"{options.name}.json", config, rows, backbones)


def write_results(path: Path, config: dict, rows: list[dict], backbones: list[str]) -> None:
    """The runs in backbone, variant, seed order with their summary as JSON, then the table and chart beside it."""
    rows.sort(key=lambda row: (backbones.index(row["backbone"]), list(VARIANTS).index(row["variant"]), row["seed"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": config, "summary": summarize(rows), "runs": rows}, indent=2) + "\n")
    write_report(path)


def write_report(json_path: Path) -> None:
    """The markdown table and the PNG chart beside the results JSON (the chart needs matplotlib)."""
    results = json.loads(Path(json_path).read_text())
    write_markdown(json_path.with_suffix(".md"), results["summary"], results["config"])
    try:
        write_chart(json_path.with_suffix(".png"), results["summary"])
    except ImportError:
        print(f"matplotlib is not installed: no chart; make it elsewhere with "
              f"`python benchmarks/beauty_experiment.py report --json {json_path}`")
    print(json_path.with_suffix(".md").read_text())


def _safetensors_header(path: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()["lamar"]


def _users(inputs: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(inputs / SEQUENCES_FILE), framework="pt") as handle:
        return int(handle.get_slice("test.targets").get_shape()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help="write the sequences and MiniLM text embeddings (CPU, here)")
    p.add_argument("--dataset", default=str(REPO / "outputs" / "beauty"),
                   help="prepared folder (lamar prepare) or the raw P5 Beauty folder")
    p.add_argument("--signals_file", help="signals parquet (item_id, scenario, intent, topic, status)")
    p.add_argument("--out", default=str(REPO / "outputs" / "beauty_experiment_inputs"))
    r = commands.add_parser("run", help="train every (variant, seed) and write the table and chart")
    r.add_argument("--inputs", default=str(REPO / "outputs" / "beauty_experiment_inputs"))
    r.add_argument("--work", default=str(REPO / "outputs" / "beauty_experiment_runs"), help="per-run results")
    r.add_argument("--results_dir", default=str(RESULTS))
    r.add_argument("--name", default="beauty_experiment", help="file name of the table, JSON and chart")
    r.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    r.add_argument("--jobs", type=int, default=1, help="trainings run in parallel processes")
    r.add_argument("--threads", type=int, default=None, help="torch threads per run (default: CPU cores / jobs)")
    r.add_argument("--seeds", default="0,1,2")
    r.add_argument("--variants", default=",".join(VARIANTS))
    r.add_argument("--backbones", default="sasrec", help="comma-separated backbones (lamar_hf.training.BACKBONES)")
    r.add_argument("--fusion", default="add", choices=("add", "concat", "gate"))
    r.add_argument("--max_epochs", type=int, default=200)
    r.add_argument("--patience", type=int, default=10)
    r.add_argument("--train_examples", choices=("windows", "prefixes"), default=None,
                   help="training examples (default: the backbone's own; see training/train.py --help); compare "
                        "settings with separate --work and --name")
    r.add_argument("--time_budget", type=float, default=None,
                   help="seconds of training per run, after which it ends at the next epoch end and the best model so "
                        "far is tested (for a time-limited machine; the table marks such runs)")
    r.add_argument("--max_users", type=int, default=None, help="first N users only (smoke runs)")
    r.add_argument("--hidden_size", type=int, default=64)
    r.add_argument("--num_hidden_layers", type=int, default=None, help="default: the backbone's own")
    r.add_argument("--dropout", type=float, default=None,
                   help="hidden and (for backbones with attention) attention dropout (default: the backbone's own)")
    r.add_argument("--norm_first", choices=("true", "false"), default=None,
                   help="sasrec (other backbones ignore it): pre-norm (true, default) or RecBole-style post-norm (false) blocks")
    r.add_argument("--repeat_bias", choices=("true", "false"), default=None,
                   help="sasrec (other backbones ignore it): learn a score for items already in the history (default false)")
    r.add_argument("--repeat_score_learning_rate", type=float, default=None,
                   help="with --repeat_bias true: the repeat score's own learning rate (default: the model's, 1e-3)")
    r.add_argument("--force", action="store_true", help="redo runs that already have results")
    g = commands.add_parser("collect", help="summarise finished per-run JSON files (e.g. from several machines)")
    g.add_argument("--runs", nargs="+", required=True, help="folders holding <backbone>-<variant>-seed<N>.json files")
    g.add_argument("--inputs", default=str(REPO / "outputs" / "beauty_experiment_inputs"))
    g.add_argument("--results_dir", default=str(RESULTS))
    g.add_argument("--name", default="beauty_experiment")
    g.add_argument("--note", default="", help="a line under the table's title, e.g. which signals the runs fused")
    c = commands.add_parser("report", help="rewrite the table and chart from a results JSON")
    c.add_argument("--json", default=str(RESULTS / "beauty_experiment.json"))
    options = parser.parse_args()
    if options.command == "prepare":
        prepare(options)
    elif options.command == "run":
        run(options)
    elif options.command == "collect":
        collect(options)
    else:
        write_report(Path(options.json))


if __name__ == "__main__":
    main()
