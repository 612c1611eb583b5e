"""``lamar evaluate --user_signals_file``: a user-token model is evaluated with the users' embeddings made as
``lamar train`` makes them, and the mistakes around the user token exit with status 2 and a clear line."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_train_attributes_and_user_signals import (
    ONE_EPOCH,
    PER_USER,
    USERS,
    disjoint_benchmark,
    intent_of,
    write_user_signals,
)

from lamar_hf.cli import main as lamar


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The disjoint benchmark, its user_signals file, and two one-epoch models: with a user token and without."""
    root = tmp_path_factory.mktemp("evaluate-users")
    disjoint_benchmark().save(root / "disjoint")
    users = write_user_signals(root / "users" / "user_signals.parquet")
    base = ["train", "--dataset", str(root / "disjoint"), "--text_embeddings_cache", str(root / "train-cache.safetensors"),
            *ONE_EPOCH]
    assert lamar([*base, "--user_signals_file", str(users), "--min_user_signal_coverage", "0.8",
                  "--output_dir", str(root / "user-model")]) == 0
    assert lamar([*base, "--output_dir", str(root / "plain-model")]) == 0
    return {"root": root, "dataset": root / "disjoint", "users": users, "user_model": root / "user-model",
            "plain_model": root / "plain-model"}


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMAR_CACHE", str(tmp_path / "lamar-cache"))  # the default embedding cache: not ~/.cache


def evaluate(capsys, trained, *extra) -> tuple[int, dict | None, str]:
    code = lamar(["evaluate", "--model", str(trained["user_model"]), "--dataset", str(trained["dataset"]), *extra])
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if line.startswith("{")]
    return code, json.loads(lines[-1]) if lines else None, captured.err


def test_the_user_token_model_is_evaluated_with_the_users_embeddings_it_was_trained_with(trained, capsys):
    code, report, errors = evaluate(capsys, trained, "--user_signals_file", str(trained["users"]))
    assert code == 0, errors
    # The trainer's final test read the same file's embeddings: the same metrics, the (continuous) loss included.
    results = json.loads((trained["user_model"] / "results.json").read_text())
    assert set(report["metrics"]) == set(results["test"]) and "loss" in report["metrics"]
    assert report["metrics"] == pytest.approx(results["test"], rel=1e-5, abs=1e-6)
    assert report["users"] == USERS
    assert report["user_signals"] == {"file": str(trained["users"]), "column": "intent",
                                      "encoder": "sentence-transformers/all-MiniLM-L6-v2", "training_users": USERS,
                                      "training_users_with_signal": USERS - 2}

    # Each user reads its own signal: the intents handed round to other users change the loss (slightly, after one
    # epoch; same embeddings give the same loss to float precision).
    rows = pq.read_table(trained["users"]).to_pylist()
    for row in rows:
        row["intent"] = intent_of(row["user_id"] % USERS + 1) if row["intent"] is not None else None
    moved = trained["root"] / "moved.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(trained["users"])), moved)
    code, other, errors = evaluate(capsys, trained, "--user-signals-file", str(moved), "--user-signal", "intent")
    assert code == 0, errors
    assert abs(other["metrics"]["loss"] - report["metrics"]["loss"]) > 1e-5


def error_line(errors: str) -> str:
    [line] = [line for line in errors.splitlines() if line.startswith("lamar evaluate: error:")]
    return line


def test_the_user_token_mistakes_exit_with_status_2_naming_the_option_or_the_file(trained, capsys, tmp_path):
    code, _, errors = evaluate(capsys, trained)
    assert code == 2
    assert "reads a user token (user_text_embedding_dim=384): pass --user_signals_file" in error_line(errors)

    code = lamar(["evaluate", "--model", str(trained["plain_model"]), "--dataset", str(trained["dataset"]),
                  "--user_signals_file", str(trained["users"])])
    assert code == 2
    assert "reads no user token (user_text_embedding_dim=0): leave --user_signals_file out" in error_line(
        capsys.readouterr().err)

    code, _, errors = evaluate(capsys, trained, "--user_signals_file", str(trained["users"]), "--user_signal", "scenario")
    assert code == 2
    assert f"{trained['users']}: the user signals table has no column 'scenario'" in error_line(errors)

    # User 3's prompt showed its test item (its last): refused, as lamar train refuses it.
    shown = {user: [PER_USER * (user - 1) + 1] for user in range(1, USERS + 1)}
    shown[3] = [11, 15]
    leaked = write_user_signals(tmp_path / "leaked.parquet", shown)
    code, _, errors = evaluate(capsys, trained, "--user_signals_file", str(leaked))
    assert code == 2
    assert f"{leaked}: user 3's signal was written from item 15, outside its training sequence" in error_line(errors)
