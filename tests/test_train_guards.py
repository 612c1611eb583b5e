"""Training that refuses to be wrong (issue 15, build item 5): each test reproduces a case a new user met.

- ``lamar train`` into a folder holding a model overwrote it (and deleted its checkpoint), exit 0;
- NaN text embeddings trained and saved a NaN model, logged the loss as 0 and wrote a bare ``NaN`` into
  ``results.json``;
- signals covering 1% of the items, or none, trained after one INFO line (none when read from the cache);
- a signals file naming an item twice was read silently.
"""

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from datasets import Dataset
from test_train import NUM_ITEMS, TINY_MODEL, chain_benchmark, tiny_training_args, write_signals

from lamar_hf.cli import main as lamar
from lamar_hf.training import ModelArguments, RecommendationData, evaluate_recommender, train_recommender
from lamar_hf.training.guards import MODEL_FILES, NonFiniteValue, model_files_in, strict_json

REPO = Path(__file__).resolve().parents[1]
ONE_EPOCH = [*TINY_MODEL, "--num_train_epochs", "1", "--per_device_train_batch_size", "32", "--disable_tqdm", "true"]


def error_lines(capsys, command: str = "train") -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith(f"lamar {command}: error:")]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A prepared tiny benchmark and one model trained on it (checkpoints keep the optimizer, so it can resume)."""
    root = tmp_path_factory.mktemp("guards")
    chain_benchmark().save(root / "chains")
    model = root / "model"
    code = lamar(["train", "--dataset", str(root / "chains"), *ONE_EPOCH, "--save_only_model", "false",
                  "--output_dir", str(model)])
    assert code == 0
    return {"dataset": root / "chains", "model": model, "root": root}


def test_lamar_train_refuses_a_folder_holding_a_model_unless_told_to_overwrite_or_resume(prepared, tmp_path, capsys):
    out = tmp_path / "model"
    shutil.copytree(prepared["model"], out)
    assert {"config.json", "model.safetensors", "results.json"} <= set(model_files_in(out))
    assert any(name.startswith("checkpoint-") for name in model_files_in(out))
    before = folder_bytes(out)
    capsys.readouterr()

    code = lamar(["train", "--dataset", str(prepared["dataset"]), *ONE_EPOCH, "--seed", "7", "--output_dir", str(out)])
    assert code == 2
    [line] = error_lines(capsys)
    assert str(out) in line and "--overwrite" in line and "results.json" in line
    assert folder_bytes(out) == before  # weights, results and checkpoint untouched

    # A folder with only the checkpoint of an interrupted run holds a model too.
    interrupted = tmp_path / "interrupted"
    checkpoint = next(name for name in model_files_in(out) if name.startswith("checkpoint-"))
    shutil.copytree(out / checkpoint, interrupted / checkpoint)
    assert lamar(["train", "--dataset", str(prepared["dataset"]), *ONE_EPOCH, "--output_dir", str(interrupted)]) == 2
    [line] = error_lines(capsys)
    assert checkpoint in line and "--overwrite" in line

    # Resuming in its own folder is still allowed: epoch 2 continues from the checkpoint of epoch 1.
    code = lamar(["train", "--dataset", str(prepared["dataset"]), *ONE_EPOCH, "--num_train_epochs", "2",
                  "--save_only_model", "false", "--resume_from_checkpoint", "last", "--output_dir", str(out)])
    assert code == 0
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["epochs"] == 2

    code = lamar(["train", "--dataset", str(prepared["dataset"]), *ONE_EPOCH, "--seed", "7", "--overwrite",
                  "--output_dir", str(out)])
    assert code == 0
    replaced = json.loads((out / "results.json").read_text())
    assert replaced["epochs"] == 1 and replaced["seed"] == 7


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.timeout(300)
def test_training_script_under_accelerate_launch_refuses_a_folder_holding_a_model(prepared, tmp_path):
    out = tmp_path / "model"
    shutil.copytree(prepared["model"], out)
    before = folder_bytes(out)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(free_port())]
    args = ["training/train.py", "--dataset", str(prepared["dataset"]), *ONE_EPOCH, "--output_dir", str(out)]
    process = subprocess.run([*launch, *args], cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"),
                             capture_output=True, text=True, timeout=280)
    assert process.returncode != 0
    refusals = [line for line in process.stderr.splitlines() if line.startswith("train.py: error:")]
    assert len(refusals) == 1, process.stderr[-3000:]  # both processes refuse, one of them says so
    assert str(out) in refusals[0] and "--overwrite" in refusals[0]
    assert folder_bytes(out) == before


def nan_encoder(folder: Path, poisoned_token: str = "op") -> Path:
    """A tiny sentence encoder (MiniLM's tokenizer, a 1-layer BERT of width 8) whose embedding of one token is NaN:
    every text holding that token embeds to NaN, the others stay finite."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from lamar_hf.text_embeddings import default_encoder_path

    tokenizer = AutoTokenizer.from_pretrained(default_encoder_path())
    bert = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=8, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=16, max_position_embeddings=64))
    with torch.no_grad():
        bert.embeddings.word_embeddings.weight[tokenizer.convert_tokens_to_ids(poisoned_token)] = float("nan")
    bert.save_pretrained(folder / "bert")
    tokenizer.save_pretrained(folder / "bert")
    encoder = SentenceTransformer(modules=[Transformer(str(folder / "bert"), max_seq_length=32), Pooling(8, "mean")])
    encoder.save(str(folder / "encoder"))
    return folder / "encoder"


def test_nan_text_embeddings_stop_the_run_before_training_naming_the_kind_and_items(prepared, tmp_path, capsys):
    encoder, out, cache = nan_encoder(tmp_path), tmp_path / "model", tmp_path / "cache.safetensors"
    # The brand "OPI" (tokens op ##i) is on the odd items only: their metadata text embeds to NaN.
    for attempt in ("embedded now", "the same texts again, whatever the cache kept"):
        code = lamar(["train", "--dataset", str(prepared["dataset"]), "--use_metadata", "--text_encoder", str(encoder),
                      "--text_embeddings_cache", str(cache), *ONE_EPOCH, "--output_dir", str(out)])
        assert code == 2, attempt
        [line] = error_lines(capsys)
        assert "metadata text embeddings hold NaN or inf for 15 items (item_id 1, 3, 5, 7, 9" in line, line
        assert str(cache) in line and "nothing was trained" in line
        assert model_files_in(out) == []


def test_a_non_finite_training_loss_stops_the_run_naming_the_epoch_and_saves_nothing(prepared, tmp_path, capsys):
    out = tmp_path / "model"
    # Adam steps of size ~1e30 overflow float32 within the first epoch.
    code = lamar(["train", "--dataset", str(prepared["dataset"]), *ONE_EPOCH, "--num_train_epochs", "3",
                  "--learning_rate", "1e30", "--output_dir", str(out)])
    assert code == 2
    [line] = error_lines(capsys)
    assert re.search(r"the training loss is (nan|inf) at epoch 1 \(steps 1-\d+\)", line), line
    assert model_files_in(out) == []  # no model, no results.json, no checkpoint of the diverged weights


def test_a_model_with_non_finite_outputs_fails_evaluation_naming_the_metrics(prepared, tmp_path, capsys):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(prepared["model"])
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    data = RecommendationData.from_benchmark(chain_benchmark())
    with pytest.raises(NonFiniteValue, match=r"evaluation gave non-finite .*test_loss"):
        evaluate_recommender(model, data, "test")
    model.save_pretrained(tmp_path / "nan-model")
    capsys.readouterr()
    assert lamar(["evaluate", "--model", str(tmp_path / "nan-model"), "--dataset", str(prepared["dataset"])]) == 2
    [line] = error_lines(capsys, "evaluate")
    assert "non-finite" in line and "loss" in line


def test_results_json_is_strict_json_and_a_non_finite_result_saves_nothing(prepared, tmp_path):
    from lamar_hf.training.run import ScriptArguments, save_outputs

    def refuse(constant):
        raise AssertionError(f"results.json holds {constant}")

    results = json.loads((prepared["model"] / "results.json").read_text(), parse_constant=refuse)
    assert all(math.isfinite(value) for value in results["test"].values())

    with pytest.raises(NonFiniteValue, match=r"out/results.json would hold non-finite values \(test.ndcg@10, "
                                             r"history\[1\]\)"):
        strict_json({"test": {"ndcg@10": float("nan"), "recall@10": 0.5}, "history": [1.0, float("inf")]},
                    "out/results.json")

    data = RecommendationData.from_benchmark(chain_benchmark()).first_users(40)
    model_args = ModelArguments(hidden_size=16, intermediate_size=32, max_history_length=8)
    training_args = tiny_training_args(tmp_path, num_train_epochs=1, save_strategy="no", load_best_model_at_end=False)
    result = train_recommender(data, model_args, training_args)
    result.test["ndcg@10"] = float("nan")
    with pytest.raises(NonFiniteValue, match=r"results.json would hold non-finite values \(test.ndcg@10\)"):
        save_outputs(result, ScriptArguments(dataset="chains"), model_args, training_args, data)
    assert not any((Path(training_args.output_dir) / name).exists() for name in MODEL_FILES)


def write_signal_rows(path: Path, item_ids: list[int], statuses: list[str] | None = None) -> Path:
    table = pa.table({
        "item_id": pa.array(item_ids, pa.int64()),
        "scenario": pa.array([f"painting nails, shade {i}" for i in item_ids], pa.string()),
        "status": pa.array(statuses or ["ok"] * len(item_ids), pa.string()),
    })
    pq.write_table(table, path)
    return path


def test_signals_covering_too_few_items_stop_lamar_train_also_from_the_cache(prepared, tmp_path, capsys):
    dataset, cache = str(prepared["dataset"]), str(tmp_path / "cache.safetensors")
    sparse = write_signal_rows(tmp_path / "sparse.parquet", [4])
    empty = write_signal_rows(tmp_path / "empty.parquet", [])
    # 29 of 30 rows usable (96.7%) trains; 1 of 30 (3.3%), or none at all, is refused.
    assert lamar(["train", "--dataset", dataset, "--signals", "scenario", "--signals_file",
                  str(write_signals(tmp_path / "full.parquet")), "--text_embeddings_cache", cache, *ONE_EPOCH,
                  "--output_dir", str(tmp_path / "full")]) == 0
    for signals, covered in ((sparse, "1 of 30 items (3.3%)"), (empty, "0 of 30 items (0.0%)")):
        out = tmp_path / signals.stem
        code = lamar(["train", "--dataset", dataset, "--signals", "scenario", "--signals_file", str(signals),
                      "--text_embeddings_cache", cache, *ONE_EPOCH, "--output_dir", str(out)])
        assert code == 2
        [line] = error_lines(capsys)
        assert f"the scenario signal covers {covered} in {signals}, below --min_signal_coverage 0.95" in line, line
        assert f"lamar enrich --items {dataset}" in line and "or lower --min_signal_coverage" in line
        assert not out.exists()

    # Lowering the option trains (and fills the cache); the same signals read back from the cache are still refused.
    options = ["--signals", "scenario", "--signals_file", str(sparse), "--text_embeddings_cache", cache, *ONE_EPOCH]
    assert lamar(["train", "--dataset", dataset, *options, "--min_signal_coverage", "0.0",
                  "--output_dir", str(tmp_path / "lowered")]) == 0
    assert (tmp_path / "lowered" / "model.safetensors").is_file()
    capsys.readouterr()
    assert lamar(["train", "--dataset", dataset, *options, "--output_dir", str(tmp_path / "from-cache")]) == 2
    [line] = error_lines(capsys)
    assert "covers 1 of 30 items (3.3%)" in line


def test_sparse_signals_of_a_prepared_folder_are_named_by_their_file(tmp_path, capsys):
    benchmark = chain_benchmark()
    benchmark.signals = Dataset.from_list(pq.read_table(write_signal_rows(tmp_path / "s.parquet", [1, 2])).to_pylist())
    benchmark.save(tmp_path / "with-signals")
    code = lamar(["train", "--dataset", str(tmp_path / "with-signals"), "--signals", "scenario", *ONE_EPOCH,
                  "--text_embeddings_cache", str(tmp_path / "cache.safetensors"), "--output_dir", str(tmp_path / "m")])
    assert code == 2
    [line] = error_lines(capsys)
    assert f"covers 2 of {NUM_ITEMS} items (6.7%) in {tmp_path / 'with-signals' / 'signals'}" in line, line


def test_duplicate_item_rows_in_a_signals_file_are_an_error_naming_the_file_and_items(prepared, tmp_path, capsys):
    ids = list(range(1, NUM_ITEMS + 1)) + [9, 4, 9]
    signals = write_signal_rows(tmp_path / "doubled.parquet", ids)
    code = lamar(["train", "--dataset", str(prepared["dataset"]), "--signals", "scenario", "--signals_file",
                  str(signals), "--text_embeddings_cache", str(tmp_path / "cache.safetensors"), *ONE_EPOCH,
                  "--output_dir", str(tmp_path / "model")])
    assert code == 2
    [line] = error_lines(capsys)
    assert f"{signals}: item_id 4, 9 appear in more than one signals row (2 items)" in line, line
    assert not (tmp_path / "model").exists()
