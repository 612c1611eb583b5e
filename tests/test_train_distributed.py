"""Two data-parallel CPU processes (``accelerate launch --multi_gpu --num_processes 2`` on a machine without a GPU:
``--cpu`` alone would start one process, as accelerate needs MPI for several CPU processes) train with gloo DDP
and reach the same metrics as one process (within noise) on a tiny learnable benchmark, same global batch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_train import TINY_MODEL, chain_benchmark

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def train(launcher: list[str], dataset: Path, out: Path, per_device_batch: int) -> dict:
    args = ["training/train.py", "--dataset", str(dataset), *TINY_MODEL, "--num_train_epochs", "6",
            "--learning_rate", "0.01", "--per_device_train_batch_size", str(per_device_batch), "--seed", "3",
            "--output_dir", str(out), "--disable_tqdm", "true"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.run([*launcher, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=500)
    assert process.returncode == 0, process.stderr[-4000:]
    return json.loads((out / "results.json").read_text())


@pytest.mark.timeout(600)
def test_two_cpu_processes_match_one_process(tmp_path):
    chain_benchmark().save(tmp_path / "chains")
    single = train([sys.executable], tmp_path / "chains", tmp_path / "single", per_device_batch=32)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]
    double = train(launch, tmp_path / "chains", tmp_path / "double", per_device_batch=16)
    assert single["processes"] == 1 and double["processes"] == 2
    assert single["train_batch_size"] == double["train_batch_size"] == 32
    for metric in ("recall@10", "ndcg@10", "recall@20"):
        assert single["test"][metric] > 0.8, single["test"]
        assert double["test"][metric] == pytest.approx(single["test"][metric], abs=0.1)
    # Every process saw the validation users once: the metrics are over all 120 users, not half of them.
    assert (tmp_path / "double" / "model.safetensors").is_file()
