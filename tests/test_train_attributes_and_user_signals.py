"""Training with signal attribute ids (``--signal_attributes``: the signals file's ``<kind>_cluster`` columns) and a
user token (``--user_signals_file``: each user's training-history signal, embedded by the packaged MiniLM), through
``lamar train``, ``train_recommender`` and ``evaluate_recommender``; and ``benchmarks/experiment.py`` prepare + run
with the ``attributes``, ``user-signals`` and one-signal variants."""

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
from test_train import NUM_ITEMS, TINY_MODEL, chain_benchmark, write_signals
from transformers import AutoModel, TrainerCallback

from lamar_hf.cli import main as lamar
from lamar_hf.data import Benchmark, leave_one_out, load_prepared
from lamar_hf.data.schema import ITEM_FEATURES
from lamar_hf.text_embeddings import embed_texts
from lamar_hf.training import ModelArguments, RecommendationData, evaluate_recommender, train_recommender
from lamar_hf.training.data import UserEmbeddingCollator, UserTextEmbeddings, item_attribute_ids
from lamar_hf.training.run import ScriptArguments, user_text_embeddings_for
from lamar_hf.training.trainer import item_table_fused_once

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import experiment  # noqa: E402

ONE_EPOCH = [*TINY_MODEL, "--num_train_epochs", "1", "--per_device_train_batch_size", "32", "--disable_tqdm", "true"]
# Disjoint users: user u buys items 5(u - 1) + 1 .. 5u, so every example names its user by its items.
USERS, PER_USER = 12, 5
WITHOUT_SIGNAL = {4: "invalid", 9: "unavailable"}


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("lamar train: error:")]


def scenario_ids(item: int) -> int:
    return item % 4 + 1


def intent_ids(item: int) -> int:
    return 0 if item == NUM_ITEMS else item % 3 + 1  # the last item's signal row failed: no attribute


def write_attribute_signals(path: Path, scenario=scenario_ids, intent=intent_ids) -> Path:
    """The signals of test_train with the ``<kind>_cluster`` columns ``lamar attributes`` adds (no topic_cluster)."""
    table = pq.read_table(write_signals(path))
    ids = table.column("item_id").to_pylist()
    table = table.append_column("scenario_cluster", pa.array([scenario(i) for i in ids], pa.int32()))
    table = table.append_column("intent_cluster", pa.array([intent(i) for i in ids], pa.int32()))
    pq.write_table(table, path)
    return path


def owner(item: int) -> int:
    return (item - 1) // PER_USER + 1


def disjoint_benchmark() -> Benchmark:
    num_items = USERS * PER_USER
    items = Dataset.from_dict({
        "item_id": list(range(1, num_items + 1)), "asin": [f"B{i:09d}" for i in range(1, num_items + 1)],
        "title": [f"Lip balm {i}" for i in range(1, num_items + 1)], "brand": [None] * num_items,
        "categories": [["Beauty"]] * num_items, "price": [None] * num_items, "description": [None] * num_items,
    }, features=ITEM_FEATURES)
    # Users listed out of id order, so that a row number is not its user id.
    order = list(range(USERS, 0, -1))
    sequences = {user: list(range(PER_USER * (user - 1) + 1, PER_USER * user + 1)) for user in order}
    return Benchmark("disjoint", items, leave_one_out(sequences), source={"kind": "test"})


def intent_of(user: int) -> str:
    return f"shopper {user} wants soft lips for a winter trip number {user}"


def write_user_signals(path: Path, shown=None) -> Path:
    """A user_signals table (lamar enrich_users) for the disjoint benchmark: two users without a usable intent;
    ``history_items`` the training items each prompt showed."""
    users = list(range(1, USERS + 1))
    shown = shown or {user: list(range(PER_USER * (user - 1) + 1, PER_USER * (user - 1) + 3)) for user in users}
    table = pa.table({
        "user_id": pa.array(users, pa.int32()),
        "intent": [None if user == 9 else intent_of(user) for user in users],
        "status": [WITHOUT_SIGNAL.get(user, "ok") for user in users],
        "history_items": pa.array([shown[user] for user in users], pa.list_(pa.int32())),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("attributes-users")
    chain_benchmark().save(root / "chains")
    disjoint_benchmark().save(root / "disjoint")
    return {"chains": root / "chains", "disjoint": root / "disjoint", "root": root,
            "signals": write_attribute_signals(root / "signals-attributes.parquet"),
            "users": write_user_signals(root / "users" / "user_signals.parquet")}


# ------------------------------------------------------------------------------------------- signal attributes

def test_signal_attributes_train_and_the_model_holds_the_files_ids(prepared, tmp_path, capsys):
    out = tmp_path / "model"
    code = lamar(["train", "--dataset", str(prepared["chains"]), "--signals_file", str(prepared["signals"]),
                  "--signal_attributes", "scenario,intent", *ONE_EPOCH, "--output_dir", str(out)])
    assert code == 0, capsys.readouterr().err
    model = AutoModel.from_pretrained(out)
    assert model.config.attribute_kinds == ["scenario", "intent"] and model.config.attribute_vocab_sizes == [4, 3]
    assert model.config.fusion == "none" and model.config.user_text_embedding_dim == 0
    expected = torch.tensor([[0, 0]] + [[scenario_ids(i), intent_ids(i)] for i in range(1, NUM_ITEMS + 1)])
    assert torch.equal(model.item_table.item_attributes, expected)
    results = json.loads((out / "results.json").read_text())
    assert results["model_args"]["signal_attributes"] == "scenario,intent"
    assert results["item_attributes"] == {"signals": str(prepared["signals"]), "kinds": {
        "scenario": {"column": "scenario_cluster", "largest_id": 4, "items_with_id": NUM_ITEMS},
        "intent": {"column": "intent_cluster", "largest_id": 3, "items_with_id": NUM_ITEMS - 1}}}
    # The learned attribute embeddings moved in training (their padding row 0 did not).
    scenario = model.item_table.attribute_embeddings[0].weight
    assert torch.count_nonzero(scenario[0]) == 0 and torch.count_nonzero(scenario[1:]) > 0


def test_attributes_beside_fused_texts_and_the_item_table_is_computed_once_while_evaluating(prepared, tmp_path):
    data = RecommendationData.from_benchmark(chain_benchmark()).first_users(40)
    rows = pq.read_table(prepared["signals"]).to_pylist()
    attributes = item_attribute_ids(rows, ["scenario"], NUM_ITEMS, "signals.parquet")
    assert attributes["scenario"].tolist() == [0] + [scenario_ids(i) for i in range(1, NUM_ITEMS + 1)]
    args = ModelArguments(hidden_size=16, intermediate_size=32, max_history_length=8, signal_attributes="scenario")
    from test_train import tiny_training_args

    result = train_recommender(data, args, tiny_training_args(tmp_path, num_train_epochs=1),
                               item_attributes=attributes)
    model = result.model
    assert model.config.fusion == "none" and model.config.attribute_kinds == ["scenario"]
    with item_table_fused_once(model):
        assert "forward" in vars(model.item_table)  # the whole table, attributes summed in, computed once
        cached = model.item_table()
    assert "forward" not in vars(model.item_table)
    torch.testing.assert_close(cached, model.item_table())
    with pytest.raises(ValueError, match=r"--signal_attributes asks for scenario, but attribute ids were given for none"):
        train_recommender(data, args, tiny_training_args(tmp_path / "again", num_train_epochs=1))


def test_a_missing_cluster_column_or_too_few_attribute_ids_are_refused_naming_the_file(prepared, tmp_path, capsys):
    code = lamar(["train", "--dataset", str(prepared["chains"]), "--signals_file", str(prepared["signals"]),
                  "--signal_attributes", "scenario,topic", *ONE_EPOCH, "--output_dir", str(tmp_path / "a")])
    assert code == 2
    [line] = error_lines(capsys)
    assert str(prepared["signals"]) in line and "no column 'topic_cluster' for the attribute 'topic'" in line
    assert "lamar attributes" in line

    sparse = write_attribute_signals(tmp_path / "sparse.parquet", intent=lambda item: item % 3 if item < 20 else 0)
    code = lamar(["train", "--dataset", str(prepared["chains"]), "--signals_file", str(sparse),
                  "--signal_attributes", "intent", *ONE_EPOCH, "--output_dir", str(tmp_path / "b")])
    assert code == 2
    [line] = error_lines(capsys)
    assert f"intent_cluster gives 13 of {NUM_ITEMS} items an attribute id" in line and str(sparse) in line
    assert "--min_signal_coverage 0.95" in line
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ------------------------------------------------------------------------------------------------- user token

class RecordBatches(TrainerCallback):
    """Records what every forward pass of the model receives (training and evaluation)."""

    def __init__(self):
        self.batches, self.hook = [], None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        def record(module, positional, keywords):
            self.batches.append({key: keywords[key].detach().cpu() for key in ("input_ids", "labels", "user_embeddings")
                                 if keywords.get(key) is not None})

        self.hook = model.register_forward_pre_hook(record, with_kwargs=True)


def user_run(prepared, tmp_path, **script):
    from test_train import tiny_training_args

    benchmark = load_prepared(prepared["disjoint"])
    data = RecommendationData.from_benchmark(benchmark)
    model_args = ModelArguments(hidden_size=16, intermediate_size=32, max_history_length=8)
    training_args = tiny_training_args(tmp_path, num_train_epochs=2, per_device_train_batch_size=5,
                                       per_device_eval_batch_size=4, early_stopping_patience=0)
    script_args = ScriptArguments(dataset=str(prepared["disjoint"]), user_signals_file=str(prepared["users"]),
                                  text_embeddings_cache=str(prepared["root"] / "cache.safetensors"), **script)
    users = user_text_embeddings_for(benchmark, data, script_args, model_args, training_args)
    return data, model_args, training_args, users


def test_every_batch_carries_the_user_embedding_of_each_examples_own_user(prepared, tmp_path):
    data, model_args, training_args, users = user_run(prepared, tmp_path, min_user_signal_coverage=0.8)
    assert users.source["training_users"] == USERS and users.source["training_users_with_signal"] == USERS - 2
    recorder = RecordBatches()
    result = train_recommender(data, model_args, training_args, callbacks=[recorder], user_embeddings=users)
    assert result.model.config.user_text_embedding_dim == 384

    # What each user's vector must be: MiniLM of that user's own intent (float16-rounded by the cache), or zeros.
    expected = {user: torch.zeros(384) if user in WITHOUT_SIGNAL else
                torch.tensor(embed_texts([intent_of(user)], show_progress=False)[0]).half().float()
                for user in range(1, USERS + 1)}
    seen = {"train": set(), "eval": set()}
    for batch in recorder.batches:
        assert batch["user_embeddings"].shape == (len(batch["input_ids"]), 384)
        # Training batches carry labels; evaluation scores the histories alone (its loss is taken from the scores).
        split = "train" if "labels" in batch else "eval"
        for inputs, vector in zip(batch["input_ids"], batch["user_embeddings"]):
            [user] = {owner(int(item)) for item in inputs if item > 0}  # disjoint users: the items name their user
            torch.testing.assert_close(vector, expected[user], rtol=1e-3, atol=1e-3)
            seen[split].add(user)
    assert seen == {"train": set(range(1, USERS + 1)), "eval": set(range(1, USERS + 1))}

    # evaluate_recommender passes them too, and agrees with the Trainer's final test; without them it refuses.
    assert evaluate_recommender(result.model, data, "test", user_embeddings=users) == pytest.approx(result.test)
    with pytest.raises(ValueError, match=r"reads a user token \(user_text_embedding_dim=384\)"):
        evaluate_recommender(result.model, data, "test")
    # The user changes the scores: the same histories with other users' vectors rank differently.
    histories = data.histories["test"]
    own = result.model.score(histories, user_embeddings=users.for_users(data.users_of("test")))
    other = result.model.score(histories, user_embeddings=users.for_users(data.users_of("test")[::-1]))
    assert (own[:, 1:] - other[:, 1:]).abs().max() > 1e-4  # column 0, padding, is -inf in both


def test_lamar_train_with_user_signals_saves_a_user_token_model_and_records_the_coverage(prepared, tmp_path, capsys):
    out = tmp_path / "model"
    code = lamar(["train", "--dataset", str(prepared["disjoint"]), "--user_signals_file", str(prepared["users"]),
                  "--min_user_signal_coverage", "0.8", "--text_embeddings_cache", str(tmp_path / "cache.safetensors"),
                  *ONE_EPOCH, "--output_dir", str(out)])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["user_signals"] == {"file": str(prepared["users"]), "column": "intent",
                                       "encoder": "sentence-transformers/all-MiniLM-L6-v2", "training_users": USERS,
                                       "training_users_with_signal": USERS - 2}
    model = AutoModel.from_pretrained(out)
    assert model.config.user_text_embedding_dim == 384 and model.config.attribute_kinds == []


def test_too_few_users_with_a_signal_a_missing_column_or_a_leaked_item_are_refused_naming_the_file(
        prepared, tmp_path, capsys):
    base = ["train", "--dataset", str(prepared["disjoint"]), "--text_embeddings_cache",
            str(tmp_path / "cache.safetensors"), *ONE_EPOCH]
    assert lamar([*base, "--user_signals_file", str(prepared["users"]), "--output_dir", str(tmp_path / "a")]) == 2
    [line] = error_lines(capsys)
    assert f"the user signal 'intent' covers 10 of {USERS} training users (83.3%) in {prepared['users']}" in line
    assert "--min_user_signal_coverage 0.95" in line

    assert lamar([*base, "--user_signals_file", str(prepared["users"]), "--user_signal", "scenario",
                  "--output_dir", str(tmp_path / "b")]) == 2
    [line] = error_lines(capsys)
    assert f"{prepared['users']}: the user signals table has no column 'scenario'" in line

    # User 3's prompt showed its test item (its last): the signal was not written from its training history.
    shown = {user: [PER_USER * (user - 1) + 1] for user in range(1, USERS + 1)}
    shown[3] = [11, 15]
    leaked = write_user_signals(tmp_path / "leaked.parquet", shown)
    assert lamar([*base, "--user_signals_file", str(leaked), "--min_user_signal_coverage", "0.5",
                  "--output_dir", str(tmp_path / "c")]) == 2
    [line] = error_lines(capsys)
    assert f"{leaked}: user 3's signal was written from item 15, outside its training sequence" in line
    assert not any((tmp_path / name).exists() for name in "abc")


def test_the_collator_and_the_user_table_look_users_up_by_id():
    users = UserTextEmbeddings([7, 3], torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
    assert users.rows([3, 7, 99]) == [2, 1, 0] and users.coverage([3, 7, 99]) == (1, 3)
    assert users.for_users([99, 7]).tolist() == [[0.0, 0.0], [1.0, 2.0]]
    from lamar_hf.training import NextItemCollator

    collate = UserEmbeddingCollator(NextItemCollator(), users.table())
    batch = collate([{"input_ids": [1], "labels": [2], "user_index": 1},
                     {"input_ids": [3, 4], "labels": [4, 5], "user_index": 0}])
    assert batch["input_ids"].tolist() == [[1, 0], [3, 4]] and set(batch) == {"input_ids", "labels", "user_embeddings"}
    assert batch["user_embeddings"].tolist() == [[1.0, 2.0], [0.0, 0.0]]
    with pytest.raises(ValueError, match="example 0 of the batch has no user_index"):
        collate([{"input_ids": [1], "labels": [2]}])
    with pytest.raises(ValueError, match="a user has two rows"):
        UserTextEmbeddings([1, 1], torch.zeros(2, 2))


def test_sequences_keep_their_user_ids_through_a_file_and_a_subset(tmp_path):
    data = RecommendationData.from_benchmark(disjoint_benchmark())
    assert data.users_of("train") == list(range(USERS, 0, -1)) == data.users_of("test")
    loaded = RecommendationData.load(data.save(tmp_path / "s.safetensors"))
    assert loaded == data and loaded.first_users(3).users_of("validation") == [12, 11, 10]
    legacy = RecommendationData(data.name, data.num_items, data.histories, data.targets)
    with pytest.raises(ValueError, match="carry no user ids"):
        RecommendationData.load(legacy.save(tmp_path / "old.safetensors")).users_of("train")


# ------------------------------------------------------------------------------------------ experiment runner

def test_experiment_prepares_and_runs_the_attribute_user_and_single_signal_variants(prepared, tmp_path):
    inputs, work, results = tmp_path / "inputs", tmp_path / "runs", tmp_path / "results"
    env = dict(os.environ, OMP_NUM_THREADS="1", LAMAR_CACHE=str(tmp_path / "cache"))
    signals = write_attribute_signals(tmp_path / "all-kinds.parquet")
    table = pq.read_table(signals)
    pq.write_table(table.append_column("topic_cluster", pa.array([i % 2 + 1 for i in table.column("item_id").to_pylist()],
                                                                 pa.int32())), signals)
    chains_users = tmp_path / "chain_users.parquet"
    pq.write_table(pa.table({"user_id": pa.array(range(1, 121), pa.int32()),
                             "intent": [f"paint nails in shade {user % 7}" for user in range(1, 121)],
                             "status": ["ok"] * 119 + ["invalid"]}), chains_users)

    def run_experiment(*args):
        process = subprocess.run([sys.executable, str(REPO / "benchmarks" / "experiment.py"), *args], cwd=REPO,
                                 env=env, capture_output=True, text=True, timeout=600)
        assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
        return process.stdout

    out = run_experiment("prepare", "--dataset", str(prepared["chains"]), "--signals_file", str(signals),
                         "--user_signals_file", str(chains_users), "--out", str(inputs))
    assert "items with an attribute id per kind: {'scenario': 30, 'intent': 29, 'topic': 30}" in out
    assert "119 of 120 training users (99.2%) have a usable intent" in out
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({
        "backbones": ["sasrec"], "variants": ["attributes", "scenario", "user-signals"], "seeds": [0],
        "base": {"hidden_size": 16, "intermediate_size": 32, "max_history_length": 8, "num_train_epochs": 1,
                 "per_device_train_batch_size": 64},
        "settings": [{"name": "reference"}, {"name": "gate", "fusion": "gate"},
                     {"name": "multiview", "fusion": "multiview"}]}))
    command = ["run", "--config", str(grid), "--inputs", str(inputs), "--work", str(work), "--results_dir",
               str(results), "--max_users", "50", "--jobs", "1", "--threads", "1"]
    first = run_experiment(*command)
    assert "0 runs already done, 4 to run" in first  # attributes, user-signals: reference; scenario: reference, gate
    assert "scenario 'multiview' (fusion multiview weighs two or more item texts" in first
    assert "user-signals 'gate' (the same run as setting 'reference'" in first
    records = {(r["variant"], r["setting_name"]): r for r in experiment.read_records([work])}
    assert set(records) == {("attributes", "reference"), ("scenario", "reference"), ("scenario", "gate"),
                            ("user-signals", "reference")}
    attributes, users, gate = records["attributes", "reference"], records["user-signals", "reference"], records[
        "scenario", "gate"]
    assert attributes["attributes"].startswith("sha256:") and attributes["texts"] is None
    assert "user_signals" not in attributes and "fusion" not in attributes["setting"]
    assert attributes["result"]["attribute_kinds"] == ["scenario", "intent", "topic"]
    assert attributes["result"]["attribute_vocab_sizes"] == [4, 3, 2]
    assert users["user_signals"].startswith("sha256:") and "attributes" not in users and users["texts"] is None
    assert users["result"]["user_signals"]["training_users_in_run"] == 50
    assert users["result"]["user_signals"]["column"] == "intent"
    assert gate["texts"].startswith("sha256:") and "attributes" not in gate and "user_signals" not in gate
    assert gate["setting"]["fusion"] == "gate" and gate["result"]["text_kinds"] == ["scenario"]
    written = json.loads((results / "grid_reduced.json").read_text())
    assert {(part["variant"], part["setting"]) for part in written["not_applicable"]} == {
        ("attributes", "gate"), ("attributes", "multiview"), ("scenario", "multiview"), ("user-signals", "gate"),
        ("user-signals", "multiview")}
    assert [(row["variant"], row["settings_declared"], row["missing"]) for row in written["rows"]] == [
        ("attributes", 1, False), ("scenario", 2, False), ("user-signals", 1, False)]
    assert written["inputs"] == {"attributes": attributes["attributes"], "user_signals": users["user_signals"]}

    again = run_experiment(*command)
    assert "4 runs already done, 0 to run" in again


def test_training_reads_the_attribute_column_that_lamar_attributes_writes():
    from lamar_hf.enrich.attributes import cluster_column
    from lamar_hf.training.data import ATTRIBUTE_COLUMN

    assert all(ATTRIBUTE_COLUMN.format(kind=kind) == cluster_column(kind) for kind in ("scenario", "intent", "topic"))
