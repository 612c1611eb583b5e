"""``training/train.py --push_to_hub`` publishes the trained model as a tagged release on a local Hub-compatible
server, with a card whose ``model-index`` carries the test results and the dataset revision."""

import json
import os
import subprocess
import sys

import yaml
from hub_server import HubServer
from test_train import REPO, TINY_MODEL, chain_benchmark


def test_push_to_hub_publishes_a_tagged_release_with_the_test_results_on_the_card(tmp_path):
    chain_benchmark().save(tmp_path / "chains")
    out = tmp_path / "model"
    with HubServer() as hub:
        env = {key: value for key, value in os.environ.items() if not key.endswith("_OFFLINE")}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "home"), HF_TOKEN="hf_local_dummy_token",
                   HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1", OMP_NUM_THREADS="1")
        args = ["training/train.py", "--dataset", str(tmp_path / "chains"), "--dataset_revision", "v1.0.0", *TINY_MODEL,
                "--num_train_epochs", "2", "--output_dir", str(out), "--disable_tqdm", "true",
                "--push_to_hub", "--hub_model_id", "org/sasrec-chains", "--hub_version", "v0.1.0",
                "--hub_dataset_id", "org/chains"]
        process = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
        assert process.returncode == 0, process.stderr[-4000:]
        repo = hub.repo("org/sasrec-chains")
        commit = repo.resolve("v0.1.0")
        assert repo.branches["main"] == commit.oid
        files = commit.files
    results = json.loads((out / "results.json").read_text())
    assert {"config.json", "model.safetensors", "modeling_lamar_sasrec.py", "configuration_lamar_sasrec.py",
            "README.md"} <= set(files)
    assert not any(name.startswith("checkpoint-") for name in files)
    card = files["README.md"].content.decode()
    metadata = yaml.safe_load(card.split("---")[1])
    entries = metadata["model-index"][0]["results"]
    test = next(entry for entry in entries if entry["dataset"]["split"] == "test")
    assert test["dataset"]["revision"] == "v1.0.0"
    # The card names the dataset by its Hub id, never by the local folder it was trained from.
    assert metadata["datasets"] == ["org/chains"] and test["dataset"]["type"] == "org/chains"
    assert str(tmp_path) not in card
    assert results["split_fingerprint"].startswith("sha256:") and results["split_fingerprint"] in card
    reported = {metric["type"]: metric["value"] for metric in test["metrics"]}
    assert reported["recall@10"] == results["test"]["recall@10"]
    assert reported["ndcg@10"] == results["test"]["ndcg@10"]
