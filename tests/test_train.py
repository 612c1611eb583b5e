"""Training pieces (examples, collator, ranking hook), the Trainer loop on a tiny learnable benchmark, and the
training script / ``lamar train`` / ``lamar evaluate`` end to end on a prepared folder with signals."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from datasets import Dataset

from lamar_hf.data import Benchmark, leave_one_out, load_prepared
from lamar_hf.data.schema import ITEM_FEATURES
from lamar_hf.training import (
    ModelArguments,
    NextItemCollator,
    RecommendationData,
    RecommenderTrainingArguments,
    evaluate_recommender,
    last_item_examples,
    next_item_prefixes,
    next_item_windows,
    rank_targets,
    train_recommender,
)

REPO = Path(__file__).resolve().parents[1]
NUM_ITEMS = 30
TINY_MODEL = ["--hidden_size", "16", "--num_attention_heads", "2", "--intermediate_size", "32",
              "--max_history_length", "8", "--hidden_dropout_prob", "0.1", "--attention_dropout_prob", "0.1"]


def chain_sequences(users: int = 120, seed: int = 0) -> dict[int, list[int]]:
    """Users walk a ring of items (item i is always followed by i + 1): a next-item task a model can learn."""
    import random

    rng = random.Random(seed)
    sequences = {}
    for user in range(1, users + 1):
        start, length = rng.randint(1, NUM_ITEMS), rng.randint(5, 11)
        sequences[user] = [(start - 1 + step) % NUM_ITEMS + 1 for step in range(length)]
    return sequences


def chain_benchmark() -> Benchmark:
    items = Dataset.from_dict(
        {
            "item_id": list(range(1, NUM_ITEMS + 1)),
            "asin": [f"B{i:09d}" for i in range(1, NUM_ITEMS + 1)],
            "title": [f"Nail polish shade {i}" if i != 7 else None for i in range(1, NUM_ITEMS + 1)],
            "brand": ["OPI" if i % 2 else None for i in range(1, NUM_ITEMS + 1)],
            "categories": [["Beauty", "Makeup", "Nails"]] * NUM_ITEMS,
            "price": [9.5] * NUM_ITEMS,
            "description": [None] * NUM_ITEMS,
        },
        features=ITEM_FEATURES,
    )
    return Benchmark("chains", items, leave_one_out(chain_sequences()), source={"kind": "test"})


def write_signals(path: Path) -> Path:
    ids = list(range(1, NUM_ITEMS + 1))
    table = pa.table({
        "item_id": ids,
        "scenario": [f"painting nails before a party, shade {i}" for i in ids],
        "intent": [f"a glossy finish {i}" for i in ids],
        "topic": [f"nail polish {i}" for i in ids],
        "status": ["ok"] * (NUM_ITEMS - 1) + ["failed"],
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def test_windows_cover_every_next_item_step_exactly_once():
    sequence = list(range(1, 24))  # 22 next-item steps
    windows = next_item_windows([sequence, [5], [3, 4]], max_history_length=8)
    assert all(len(w["input_ids"]) == len(w["labels"]) <= 8 for w in windows)
    steps = sorted((i, l) for w in windows for i, l in zip(w["input_ids"], w["labels"]))
    assert steps == sorted([(a, a + 1) for a in range(1, 23)] + [(3, 4)])
    assert windows[0] == {"input_ids": list(range(15, 23)), "labels": list(range(16, 24))}  # most recent first


def test_prefixes_make_one_example_per_next_item_step_labelled_at_its_last_position():
    examples = next_item_prefixes([list(range(1, 12)), [5]], max_history_length=8)
    assert len(examples) == 10
    assert examples[0] == {"input_ids": [1], "labels": [2]}
    assert examples[-1] == {"input_ids": list(range(3, 11)), "labels": [-100] * 7 + [11]}
    assert all(sum(label != -100 for label in e["labels"]) == 1 for e in examples)


def test_evaluation_examples_read_the_recent_history_and_label_only_the_last_position():
    examples = last_item_examples([[1, 2, 3], list(range(1, 13))], [4, 13], max_history_length=8)
    assert examples[0] == {"input_ids": [1, 2, 3], "labels": [-100, -100, 4]}
    assert examples[1]["input_ids"] == list(range(5, 13)) and examples[1]["labels"][-1] == 13
    with pytest.raises(ValueError, match="evaluation row 1 has an empty history"):
        last_item_examples([[1], []], [2, 3], 8)


def test_collator_pads_on_the_right_to_the_longest_example():
    batch = NextItemCollator()([{"input_ids": [1, 2], "labels": [2, 3]}, {"input_ids": [4, 5, 6], "labels": [5, 6, 7]}])
    assert batch["input_ids"].tolist() == [[1, 2, 0], [4, 5, 6]]
    assert batch["labels"].tolist() == [[2, 3, -100], [5, 6, 7]]


def test_rank_targets_ranks_the_single_target_of_each_row_pessimistically():
    logits = torch.tensor([[float("-inf"), 1.0, 2.0, 2.0], [float("-inf"), 3.0, 1.0, 0.0]])
    labels = torch.tensor([[-100, 2, -100], [-100, -100, 1]])
    assert rank_targets(logits, labels).tolist() == [1, 0]
    with pytest.raises(ValueError, match="exactly one labelled position"):
        rank_targets(logits, torch.tensor([[1, 2, -100], [-100, -100, 1]]))


def test_recommendation_data_comes_from_a_benchmark_and_round_trips_through_a_file(tmp_path):
    benchmark = chain_benchmark()
    data = RecommendationData.from_benchmark(benchmark, revision="v1.0.0")
    sequences = chain_sequences()
    assert data.num_items == NUM_ITEMS and data.name == "chains"
    assert data.histories["test"][0] == sequences[1][:-1] and data.targets["test"][0] == sequences[1][-1]
    assert data.training_sequences()[0] == sequences[1][:-2]
    loaded = RecommendationData.load(data.save(tmp_path / "chains.safetensors"))
    assert loaded == data
    small = data.first_users(5)
    assert len(small.histories["train"]) == 5 and small.num_items == NUM_ITEMS


def tiny_training_args(tmp_path, **overrides) -> RecommenderTrainingArguments:
    kwargs = dict(output_dir=str(tmp_path / "out"), num_train_epochs=40, per_device_train_batch_size=32,
                  learning_rate=1e-2, early_stopping_patience=2, disable_tqdm=True, seed=3)
    kwargs.update(overrides)
    return RecommenderTrainingArguments(**kwargs)


def test_trainer_learns_a_tiny_benchmark_keeps_the_best_model_and_stops_early(tmp_path):
    data = RecommendationData.from_benchmark(chain_benchmark())
    model_args = ModelArguments(hidden_size=16, intermediate_size=32, max_history_length=8,
                                hidden_dropout_prob=0.1, attention_dropout_prob=0.1)
    result = train_recommender(data, model_args, tiny_training_args(tmp_path))
    assert result.test["recall@10"] > 0.9 and result.validation["ndcg@10"] > 0.8
    assert result.epochs < 40  # early stopping ended the run
    evaluations = [entry["eval_ndcg@10"] for entry in result.log_history if "eval_ndcg@10" in entry]
    assert result.validation["ndcg@10"] == pytest.approx(max(evaluations))  # the best model was restored
    again = evaluate_recommender(result.model, data, "test")
    assert again == pytest.approx(result.test)


def run_script(args, env_extra=None, timeout=400):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    process = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert process.returncode == 0, process.stderr[-4000:]
    return process


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    chain_benchmark().save(root / "chains")
    return {"dataset": root / "chains", "signals": write_signals(root / "signals.parquet"), "root": root}


def test_training_script_fuses_signals_and_metadata_and_saves_a_self_contained_model(prepared, tmp_path):
    from transformers import AutoModel

    from lamar_hf.text_embeddings import embed_texts, metadata_text

    out, cache = tmp_path / "model", tmp_path / "cache"
    args = ["training/train.py", "--dataset", str(prepared["dataset"]), "--signals", "scenario,topic",
            "--signals_file", str(prepared["signals"]), "--use_metadata", "--fusion", "gate",
            *TINY_MODEL, "--num_train_epochs", "2", "--per_device_train_batch_size", "32",
            "--output_dir", str(out), "--disable_tqdm", "true"]
    run_script(args, {"LAMAR_CACHE": str(cache)})
    results = json.loads((out / "results.json").read_text())
    assert set(results["test"]) >= {"recall@10", "ndcg@10", "mrr@10", "recall@20", "ndcg@20", "mrr@20"}
    assert results["epochs"] == 2
    assert results["learning_rate"] == 1e-3 and results["repeat_score_learning_rate"] is None

    model = AutoModel.from_pretrained(out)
    assert model.config.fusion == "gate" and model.config.text_kinds == ["scenario", "topic", "metadata"]
    buffer = model.item_table.text_embeddings  # [items + 1, 3 * 384]: scenario | topic | metadata
    item = load_prepared(prepared["dataset"]).items[2]
    expected = torch.tensor(embed_texts([metadata_text(item)], show_progress=False)[0]).half().float()
    # Embedded in another process, then rounded to float16: equal up to one float16 rounding step.
    torch.testing.assert_close(buffer[3, 768:], expected, rtol=1e-3, atol=1e-5)
    assert torch.count_nonzero(buffer[NUM_ITEMS, :768]) == 0  # its signal row failed: zeros
    assert torch.count_nonzero(buffer[NUM_ITEMS, 768:]) > 0  # its metadata is still there
    cache_files = list((cache / "text_embeddings").glob("*.safetensors"))
    assert len(cache_files) == 1


def test_lamar_train_and_lamar_evaluate_agree(prepared, tmp_path, capsys):
    from lamar_hf.cli import main

    out = tmp_path / "model"
    code = main(["train", "--dataset", str(prepared["dataset"]), *TINY_MODEL, "--num_train_epochs", "2",
                 "--per_device_train_batch_size", "32", "--output_dir", str(out), "--disable_tqdm", "true"])
    assert code == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    code = main(["evaluate", "--model", str(out), "--dataset", str(prepared["dataset"]), "--split", "test"])
    assert code == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["metrics"] == pytest.approx(trained["test"])
    assert main(["evaluate", "--model", str(out), "--dataset", str(prepared["dataset"]), "--split", "dev"]) == 2
    assert "unknown split 'dev'" in capsys.readouterr().err


def test_training_script_refuses_signals_it_cannot_find(prepared, tmp_path):
    from lamar_hf.cli import main

    code = main(["train", "--dataset", str(prepared["dataset"]), "--signals", "scenario", "--output_dir",
                 str(tmp_path / "x")])
    assert code == 2
    code = main(["train", "--dataset", str(tmp_path / "missing"), "--output_dir", str(tmp_path / "x")])
    assert code == 2
    code = main(["train", "--dataset", str(prepared["dataset"]), "--use_metadata", "--fusion", "none",
                 "--output_dir", str(tmp_path / "x")])
    assert code == 2


def test_signals_come_from_the_prepared_dataset_when_no_file_is_given(tmp_path, capsys):
    from lamar_hf.cli import main
    from transformers import AutoModel

    benchmark = chain_benchmark()
    benchmark.signals = Dataset.from_list(pq.read_table(write_signals(tmp_path / "s.parquet")).to_pylist())
    benchmark.save(tmp_path / "with-signals")
    out = tmp_path / "model"
    code = main(["train", "--dataset", str(tmp_path / "with-signals"), "--signals", "intent", *TINY_MODEL,
                 "--num_train_epochs", "1", "--output_dir", str(out), "--disable_tqdm", "true",
                 "--text_embeddings_cache", str(tmp_path / "cache.safetensors")])
    assert code == 0, capsys.readouterr().err
    model = AutoModel.from_pretrained(out)
    assert model.config.text_kinds == ["intent"] and model.config.fusion == "add"
    assert torch.count_nonzero(model.item_table.text_embeddings[1]) > 0


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tmp_path):
    data = RecommendationData.from_benchmark(chain_benchmark()).first_users(40)
    model_args = ModelArguments(hidden_size=16, intermediate_size=32, max_history_length=8)
    keep_state = dict(save_strategy="epoch", save_only_model=False, save_total_limit=2, early_stopping_patience=0)
    first = train_recommender(data, model_args, tiny_training_args(tmp_path, num_train_epochs=2, **keep_state))
    assert first.epochs == 2
    # Another seed: had the second run started afresh, its first epochs would differ from the first run's.
    resumed = train_recommender(data, model_args, tiny_training_args(
        tmp_path, num_train_epochs=4, resume_from_checkpoint="last", seed=4, **keep_state))
    losses = {entry["epoch"]: entry["loss"] for entry in resumed.log_history if "loss" in entry}
    first_losses = {entry["epoch"]: entry["loss"] for entry in first.log_history if "loss" in entry}
    assert resumed.epochs == 4 and sorted(losses) == [1.0, 2.0, 3.0, 4.0]
    assert losses[1.0] == first_losses[1.0] and losses[2.0] == first_losses[2.0]


def test_train_examples_option_picks_windows_or_prefixes(tmp_path):
    from lamar_hf.training import get_backbone
    from lamar_hf.training.trainer import training_examples

    sasrec = get_backbone("sasrec")
    assert training_examples(sasrec, tiny_training_args(tmp_path)) is sasrec.train_examples
    assert training_examples(sasrec, tiny_training_args(tmp_path, train_examples="prefixes")) is next_item_prefixes
    assert training_examples(sasrec, tiny_training_args(tmp_path, train_examples="windows")) is next_item_windows
    with pytest.raises(ValueError, match="--train_examples must be one of"):
        training_examples(sasrec, tiny_training_args(tmp_path, train_examples="sliding"))


def test_the_repeat_score_can_learn_at_a_rate_of_its_own(tmp_path):
    data = RecommendationData.from_benchmark(chain_benchmark())  # nobody picks an item twice
    model_args = ModelArguments(hidden_size=16, intermediate_size=32, max_history_length=8, repeat_bias=True)
    learned = {}
    for rate in (None, 0.1):
        args = tiny_training_args(tmp_path / str(rate), num_train_epochs=3, early_stopping_patience=0,
                                  repeat_score_learning_rate=rate)
        result = train_recommender(data, model_args, args)
        repeat_score = result.model.repeat_score
        holding = [group for group in result.trainer.optimizer.param_groups
                   if any(param is repeat_score for param in group["params"])]
        assert len(holding) == 1 and holding[0]["lr"] == (rate or args.learning_rate)
        if rate is not None:
            assert holding[0]["params"] == [repeat_score]  # the other parameters keep --learning_rate
        learned[rate] = repeat_score.item()
    # 12 Adam steps: about -lr per step while no target is a repeat
    assert learned[0.1] < 5 * learned[None] < 0

    with pytest.raises(ValueError, match="--repeat_score_learning_rate needs a model with a repeat score"):
        train_recommender(data, ModelArguments(hidden_size=16, intermediate_size=32, max_history_length=8),
                          tiny_training_args(tmp_path / "no-repeat", num_train_epochs=1, repeat_score_learning_rate=0.1))


def test_resuming_from_last_takes_the_newest_whole_checkpoint_and_passes_over_a_half_written_one(tmp_path):
    from types import SimpleNamespace

    from lamar_hf.training.trainer import checkpoint_to_resume

    last = SimpleNamespace(output_dir=str(tmp_path / "run"), resume_from_checkpoint="last")
    assert checkpoint_to_resume(last) is None  # no output folder yet: start afresh
    for step, whole in ((40, True), (120, True), (160, False)):  # 160: killed while it was being written
        folder = tmp_path / "run" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"")
        if whole:
            (folder / "trainer_state.json").write_text("{}")
    (tmp_path / "run" / "checkpoint-notes").mkdir()
    assert checkpoint_to_resume(last) == str(tmp_path / "run" / "checkpoint-120")
    chosen = SimpleNamespace(output_dir=str(tmp_path / "run"), resume_from_checkpoint=str(tmp_path / "elsewhere"))
    assert checkpoint_to_resume(chosen) == str(tmp_path / "elsewhere")
    assert checkpoint_to_resume(SimpleNamespace(output_dir=str(tmp_path / "run"))) is None
