"""The split fingerprint: ``sha256:<hex>`` over the train / validation / test histories and targets, printed by
``lamar prepare``, written to ``lamar_prepare.json`` and carried into ``RecommendationData.source``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lamar_hf.cli import main as lamar
from lamar_hf.data import Benchmark, leave_one_out, load_prepared, read_p5, split_fingerprint
from lamar_hf.data.items import item_row, items_dataset
from lamar_hf.training.data import RecommendationData

ROOT = Path(__file__).resolve().parents[1]
SEQUENCES = {1: [1, 2, 3, 4], 2: [5, 4, 3], 3: [2, 2, 6, 1, 5]}


def tiny_benchmark(sequences=SEQUENCES) -> Benchmark:
    items = items_dataset([item_row(item, f"ASIN{item}") for item in range(1, 7)])
    return Benchmark("tiny", items, leave_one_out(sequences))


def fingerprint_in_a_fresh_process(folder: Path, hash_seed: str) -> str:
    script = "import sys; from lamar_hf.data import load_prepared, split_fingerprint; print(split_fingerprint(load_prepared(sys.argv[1])))"
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
    process = subprocess.run([sys.executable, "-c", script, str(folder)], env=env, capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr[-2000:]
    return process.stdout.strip()


def test_same_splits_same_fingerprint_in_every_form_and_process(tmp_path):
    benchmark = tiny_benchmark()
    fingerprint = split_fingerprint(benchmark)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", fingerprint)
    data = RecommendationData.from_benchmark(benchmark)
    assert data.source["split_fingerprint"] == fingerprint
    assert split_fingerprint(data) == split_fingerprint(benchmark.sequences) == split_fingerprint(tiny_benchmark()) == fingerprint

    folder = benchmark.save(tmp_path / "tiny")
    assert json.loads((folder / "lamar_prepare.json").read_text())["split_fingerprint"] == fingerprint
    assert RecommendationData.from_benchmark(load_prepared(folder)).source["split_fingerprint"] == fingerprint
    assert split_fingerprint(RecommendationData.load(data.save(tmp_path / "tiny.safetensors"))) == fingerprint
    assert fingerprint_in_a_fresh_process(folder, hash_seed="12345") == fingerprint


@pytest.mark.parametrize(
    "changed",
    [
        {**SEQUENCES, 3: [2, 2, 6, 1, 4]},  # one test target
        {**SEQUENCES, 1: [1, 3, 3, 4]},  # one item in a history
        {1: SEQUENCES[2], 2: SEQUENCES[1], 3: SEQUENCES[3]},  # two users' rows swapped
        {**SEQUENCES, 2: [5, 4, 3, 6]},  # one more interaction
    ],
)
def test_a_one_item_change_changes_the_fingerprint(changed):
    assert split_fingerprint(tiny_benchmark(changed)) != split_fingerprint(tiny_benchmark())


def test_history_boundaries_are_part_of_the_fingerprint():
    # The same concatenated items and targets, cut into histories differently, must not collide.
    data = RecommendationData.from_benchmark(tiny_benchmark())
    moved = RecommendationData(data.name, data.num_items, {**data.histories}, data.targets)
    moved.histories["test"] = [data.histories["test"][0] + data.histories["test"][1][:1], data.histories["test"][1][1:], data.histories["test"][2]]
    assert sum(map(len, moved.histories["test"])) == sum(map(len, data.histories["test"]))
    assert split_fingerprint(moved) != split_fingerprint(data)


def test_prepare_prints_and_records_the_fingerprint_of_beauty(shared_data, tmp_path, capsys):
    out = tmp_path / "beauty"
    assert lamar(["prepare", "--source", "p5", "--path", str(shared_data / "amazon_beauty"), "--out", str(out)]) == 0
    printed = re.search(r"^split fingerprint +(sha256:[0-9a-f]{64})$", capsys.readouterr().out, re.MULTILINE).group(1)
    assert printed == split_fingerprint(read_p5(shared_data / "amazon_beauty"))
    assert json.loads((out / "lamar_prepare.json").read_text())["split_fingerprint"] == printed
    assert RecommendationData.from_benchmark(load_prepared(out)).source["split_fingerprint"] == printed


def test_a_subset_of_users_carries_its_own_fingerprint():
    data = RecommendationData.from_benchmark(tiny_benchmark())
    subset = data.first_users(2)
    expected = split_fingerprint(tiny_benchmark({user: SEQUENCES[user] for user in (1, 2)}))
    assert subset.source["split_fingerprint"] == expected != data.source["split_fingerprint"]
