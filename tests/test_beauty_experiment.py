"""benchmarks/beauty_experiment.py on a tiny learnable benchmark: runs, time budget, resumption and collect."""

import json
import subprocess
import sys
from pathlib import Path

from lamar_hf.training import RecommendationData
from test_train import chain_benchmark

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "beauty_experiment.py"


def experiment(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600, cwd=REPO)


def test_a_time_budget_ends_every_run_with_a_tested_result_and_finished_runs_are_not_redone(tmp_path):
    inputs, work, results = tmp_path / "inputs", tmp_path / "runs", tmp_path / "results"
    # ID-only variants need no text embeddings: the sequences file alone is enough.
    RecommendationData.from_benchmark(chain_benchmark()).save(inputs / "sequences.safetensors")
    run = ["run", "--inputs", str(inputs), "--work", str(work), "--results_dir", str(results), "--name", "tiny",
           "--variants", "id-only", "--seeds", "0,1", "--max_epochs", "5", "--time_budget", "0.001",
           "--hidden_size", "16", "--jobs", "2"]
    first = experiment(*run)
    assert first.returncode == 0, first.stderr
    assert "0 runs already done, 2 to run" in first.stdout
    rows = json.loads((results / "tiny.json").read_text())["runs"]
    assert [(row["seed"], row["epochs"], row["stopped_by_time_budget"]) for row in rows] == [(0, 1.0, True), (1, 1.0, True)]
    assert all(0.0 <= row["test"]["recall@10"] <= 1.0 for row in rows)
    table = (results / "tiny.md").read_text()
    assert "| sasrec | id-only |" in table and "| 1*, 1* |" in table and "ended by the time budget" in table

    again = experiment(*run)
    assert again.returncode == 0, again.stderr
    assert "2 runs already done, 0 to run" in again.stdout

    collected = experiment("collect", "--runs", str(work), "--inputs", str(inputs), "--results_dir", str(results),
                           "--name", "collected")
    assert collected.returncode == 0, collected.stderr
    summary = json.loads((results / "collected.json").read_text())["summary"]
    assert summary == json.loads((results / "tiny.json").read_text())["summary"]


def test_a_text_variant_without_the_embeddings_file_is_refused_with_the_command_that_makes_it(tmp_path):
    inputs = tmp_path / "inputs"
    RecommendationData.from_benchmark(chain_benchmark()).save(inputs / "sequences.safetensors")
    result = experiment("run", "--inputs", str(inputs), "--variants", "signals", "--work", str(tmp_path / "w"))
    assert result.returncode != 0
    assert "text_embeddings.safetensors is missing" in result.stderr and "prepare" in result.stderr

def test_model_settings_travel_to_every_run_and_into_the_table(tmp_path):
    inputs, work, results = tmp_path / "inputs", tmp_path / "runs", tmp_path / "results"
    RecommendationData.from_benchmark(chain_benchmark()).save(inputs / "sequences.safetensors")
    run = experiment("run", "--inputs", str(inputs), "--work", str(work), "--results_dir", str(results), "--name", "post",
                     "--variants", "id-only", "--seeds", "0", "--max_epochs", "1", "--hidden_size", "16",
                     "--norm_first", "false", "--repeat_bias", "true", "--repeat_score_learning_rate", "0.05",
                     "--threads", "1")
    assert run.returncode == 0, run.stderr
    record = json.loads((work / "sasrec-id-only-seed0.json").read_text())
    job, row = record["job"], record["result"]
    assert job["model"] == {"hidden_size": 16, "norm_first": False, "repeat_bias": True} and job["threads"] == 1
    assert job["repeat_score_learning_rate"] == 0.05
    assert row["repeat_score"] < -0.02  # its own rate reached training: at the default 1e-3 one step moves it ~0.001
    assert set(row["test_excluding_history"]) == set(row["test"]) - {"loss"}
    collected = experiment("collect", "--runs", str(work), "--inputs", str(inputs), "--results_dir", str(results),
                           "--name", "collected", "--note", "Post-norm blocks.")
    assert collected.returncode == 0, collected.stderr
    table = (results / "collected.md").read_text()
    assert ("Model settings (the rest are each backbone's defaults): hidden_size 16, norm_first False, "
            "repeat_bias True.") in table
    assert "; repeat score learning rate 0.05." in table
    assert "Post-norm blocks." in table and "--note 'Post-norm blocks.'" in table
    # one epoch of one allowed: the run hit the epoch limit, not early stopping
    assert "| 1† |" in table and "reached the epoch limit" in table
    assert "when no item of a user's history may be recommended" in table
    assert f"| {row['repeat_score']:.2f} |" in table
