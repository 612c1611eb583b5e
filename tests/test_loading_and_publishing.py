"""Loading and publishing under bad input (issue 15, build item 6).

- A truncated or corrupt ``model.safetensors`` and a missing model path each give one error line naming the path
  (``lamar evaluate``, ``lamar publish model``), not a deserializer traceback or a complaint about a Hub repo id.
- ``lamar publish dataset`` refuses a signals config that does not cover the items, or whose validity is below
  ``--min-validity`` (default 90%), naming the counts and the file.
- Cards name datasets by Hub id only, use Hub task ids, state the split fingerprint when it was recorded, and pass
  huggingface_hub's own metadata parsing (``ModelCard`` / ``DatasetCard`` load, ``ModelCardData`` with its
  ``model-index`` -> ``EvalResult`` validation, ``validate_repo_id``); ``RepoCard.validate`` is the Hub's network
  check, run here against the local Hub server (tests/hub_server.py, which checks the front matter's frame).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from test_publish import N_ITEMS, tiny_benchmark

from lamar_hf.cli import main
from lamar_hf.hub import MANIFEST, PublishError, publish_dataset, publish_model

FINGERPRINT = "sha256:" + "ab12" * 16


def front_matter(readme: Path) -> dict:
    return yaml.safe_load(readme.read_text().split("---")[1])


def known_hub_task_ids() -> set[str]:
    # huggingface's own list of Hub task ids as shipped offline (datasets mirrors huggingface.js pipelines.ts).
    from datasets.utils.metadata import known_task_ids

    return set(known_task_ids)


def run_cli(capsys, *args) -> tuple[int, str]:
    """``lamar ARGS`` in this process: its exit status and the error line(s) it printed."""
    code = main([str(arg) for arg in args])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("lamar ")]


@pytest.fixture
def saved_model(tmp_path) -> Path:
    """A tiny SASRec saved with save_pretrained (config.json with auto_map, model.safetensors, its code)."""
    import lamar_hf.models  # noqa: F401 - registers auto_map for save_pretrained
    from lamar_hf.models import LamarSASRecConfig, LamarSASRecModel

    torch.manual_seed(0)
    model = LamarSASRecModel(LamarSASRecConfig(num_items=N_ITEMS, hidden_size=8, num_hidden_layers=1,
                                               num_attention_heads=2, intermediate_size=16, max_history_length=4))
    model.save_pretrained(tmp_path / "sasrec")
    return tmp_path / "sasrec"


def damage(weights: Path, how: str) -> None:
    data = weights.read_bytes()
    if how == "truncated":
        weights.write_bytes(data[: len(data) * 2 // 3])  # header intact, tensor bytes cut
    elif how == "corrupt header":
        weights.write_bytes(data[:8] + b"{" + b"\xff" * 40 + data[49:])
    else:
        weights.write_bytes(b"")


# -- loading ----------------------------------------------------------------------------------------------------


def test_a_saved_model_loads_through_the_one_helper_with_the_same_scores(saved_model):
    from transformers import AutoModel

    from lamar_hf.hub.loading import load_recommender

    histories = [[1, 2, 3], [5]]
    loaded = load_recommender(str(saved_model)).eval()
    reference = AutoModel.from_pretrained(saved_model).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.score(histories), reference.score(histories))


@pytest.mark.parametrize("how", ["truncated", "corrupt header", "empty"])
def test_a_damaged_weights_file_is_one_line_naming_it(tmp_path, capsys, saved_model, how):
    weights = saved_model / "model.safetensors"
    damage(weights, how)
    code, errors = run_cli(capsys, "evaluate", "--model", saved_model, "--dataset", tmp_path / "no-dataset-needed")
    assert code == 2 and len(errors) == 1
    assert str(weights) in errors[0] and "truncated or corrupt" in errors[0]
    code, errors = run_cli(capsys, "publish", "model", saved_model, "--repo-id", "org/m", "--version", "v1.0.0",
                           "--dry-run", tmp_path / "tree")
    assert code == 2 and len(errors) == 1 and str(weights) in errors[0] and "truncated or corrupt" in errors[0]
    assert not (tmp_path / "tree").exists()


def test_a_damaged_pytorch_weights_file_is_one_line_naming_the_folder(tmp_path, capsys, saved_model):
    from safetensors.torch import load_file

    (saved_model / "model.safetensors").rename(tmp_path / "kept.safetensors")
    torch.save(load_file(tmp_path / "kept.safetensors"), saved_model / "pytorch_model.bin")
    damage(saved_model / "pytorch_model.bin", "truncated")
    code, errors = run_cli(capsys, "evaluate", "--model", saved_model, "--dataset", tmp_path / "no-dataset-needed")
    assert code == 2 and len(errors) == 1 and f"{saved_model}: the model does not load" in errors[0]


@pytest.mark.parametrize("name", ["{tmp}/missing-model", "./missing-model", "outputs/runs/missing-model"])
def test_a_missing_model_path_is_reported_as_a_missing_folder(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    name = name.format(tmp=tmp_path)
    code, errors = run_cli(capsys, "evaluate", "--model", name, "--dataset", tmp_path)
    assert code == 2 and len(errors) == 1
    assert f"model folder not found: {name}" in errors[0] and "Repo id" not in errors[0]
    code, errors = run_cli(capsys, "publish", "model", name, "--repo-id", "org/m", "--version", "v1.0.0",
                           "--dry-run", tmp_path / "tree")
    assert code == 2 and errors == [f"lamar publish: error: model folder not found: {Path(name)}"]


def test_a_name_that_may_be_a_hub_id_says_both_what_it_tried(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no folder org/model here; offline, the Hub cannot answer
    code, errors = run_cli(capsys, "evaluate", "--model", "org/model", "--dataset", tmp_path)
    assert code == 2 and len(errors) == 1
    assert "org/model is not a folder here, and loading it as a Hub model failed" in errors[0]
    weights_file = tmp_path / "model.safetensors"
    weights_file.write_bytes(b"x")
    code, errors = run_cli(capsys, "evaluate", "--model", weights_file, "--dataset", tmp_path)
    assert code == 2 and errors == [f"lamar evaluate: error: {weights_file} is a file, not a model folder "
                                    "(a folder written by `lamar train` or save_pretrained)"]


# -- publish dataset: coverage and validity ----------------------------------------------------------------------


def signals_folder(tmp_path: Path, **columns) -> Path:
    folder = tmp_path / "beauty"
    tiny_benchmark(columns).save(folder)
    return folder


def test_signals_that_do_not_cover_the_items_are_refused_naming_counts_and_file(tmp_path, capsys):
    # Signals for 3 of the 8 items (as `lamar enrich --limit 3` writes them), all valid.
    folder = signals_folder(tmp_path)
    benchmark = tiny_benchmark()
    benchmark.signals = benchmark.signals.select(range(3))
    benchmark.save(folder, overwrite=True)
    code, errors = run_cli(capsys, "publish", "dataset", folder, "--repo-id", "org/d", "--version", "v1.0.0",
                           "--dry-run", tmp_path / "tree")
    assert code == 2 and len(errors) == 1
    assert str(folder / "signals" / "train-00000-of-00001.parquet") in errors[0]
    assert f"3 signal rows for the {N_ITEMS} items" in errors[0] and "5 items have none, e.g. item_id 4" in errors[0]
    assert not (tmp_path / "tree").exists()
    # A lower validity threshold does not let a partial signals config through.
    code, _ = run_cli(capsys, "publish", "dataset", folder, "--repo-id", "org/d", "--version", "v1.0.0",
                      "--min-validity", "0", "--dry-run", tmp_path / "tree")
    assert code == 2 and not (tmp_path / "tree").exists()


def test_signals_below_the_validity_threshold_are_refused(tmp_path, capsys):
    folder = signals_folder(tmp_path, status=["failed"] * N_ITEMS)  # every row covered, 0% valid
    args = ["publish", "dataset", folder, "--repo-id", "org/d", "--version", "v1.0.0", "--dry-run", tmp_path / "tree"]
    code, errors = run_cli(capsys, *args)
    assert code == 2 and len(errors) == 1
    assert str(folder / "signals" / "train-00000-of-00001.parquet") in errors[0]
    assert f"only 0 of {N_ITEMS} signal rows are valid" in errors[0] and "0.0% < 90%" in errors[0]
    assert not (tmp_path / "tree").exists()

    # 7 of 8 valid (87.5%): refused at the default 90%, published when the threshold is lowered on purpose.
    folder = signals_folder(tmp_path / "b", status=["ok"] * 6 + ["retried", "invalid"])
    args = ["publish", "dataset", folder, "--repo-id", "org/d", "--version", "v1.0.0", "--dry-run", tmp_path / "tree"]
    code, errors = run_cli(capsys, *args)
    assert code == 2 and f"only 7 of {N_ITEMS} signal rows are valid" in errors[0] and "87.5% < 90%" in errors[0]
    assert run_cli(capsys, *args, "--min-validity", "0.85")[0] == 0
    assert (tmp_path / "tree" / "README.md").is_file()
    with pytest.raises(PublishError, match="between 0 and 1"):
        publish_dataset(tiny_benchmark(), "org/d", "v1.0.0", min_validity=90, dry_run=tmp_path / "other")


# -- cards --------------------------------------------------------------------------------------------------------


def check_model_card_with_huggingface_hub(readme: Path) -> dict:
    """Parse the card as the Hub's clients do; every dataset it names must be a valid Hub repo id."""
    from huggingface_hub import ModelCard, ModelCardData
    from huggingface_hub.utils import validate_repo_id

    card = ModelCard.load(readme)  # parses the YAML; ModelCardData turns model-index into validated EvalResults
    metadata = card.data.to_dict()
    assert ModelCardData(**metadata).to_dict() == metadata  # round trip, nothing lost or reinterpreted
    for dataset in metadata.get("datasets") or []:
        validate_repo_id(dataset)
    for entry in metadata.get("model-index") or []:
        for result in entry["results"]:
            assert result["task"]["type"] in known_hub_task_ids(), result["task"]
            validate_repo_id(result["dataset"]["type"])
    return metadata


def test_a_local_dataset_path_never_lands_in_the_model_card(tmp_path, monkeypatch, saved_model, caplog):
    monkeypatch.chdir(tmp_path)
    Path("outputs/beauty").mkdir(parents=True)  # the prepared folder `lamar train --dataset outputs/beauty` read
    results = {"test": {"recall@10": 0.25, "ndcg@10": 0.125}}
    publish_model(saved_model, "org/lamar-sasrec-beauty", "v1.0.0", eval_results=results, dataset="outputs/beauty",
                  dry_run=tmp_path / "tree")
    metadata = check_model_card_with_huggingface_hub(tmp_path / "tree" / "README.md")
    assert "datasets" not in metadata and "model-index" not in metadata
    text = (tmp_path / "tree" / "README.md").read_text()
    assert "outputs/beauty" not in text and "| test | recall@10 | 0.25 |" in text and "needs the Hub id" in text
    assert json.loads((tmp_path / "tree" / MANIFEST).read_text())["dataset"] is None
    assert any("outputs/beauty is a local path" in record.getMessage() for record in caplog.records)


def test_a_model_card_names_its_hub_dataset_with_hub_task_ids_and_the_split_fingerprint(tmp_path, saved_model):
    (saved_model / "results.json").write_text(json.dumps({"test": {"recall@10": 0.25}, "split_fingerprint": FINGERPRINT}))
    publish_model(saved_model, "org/lamar-sasrec-beauty", "v1.0.0", eval_results={"test": {"recall@10": 0.25}},
                  dataset="org/lamar-beauty-enriched", dataset_revision="v1.0.0", dry_run=tmp_path / "tree")
    readme = tmp_path / "tree" / "README.md"
    metadata = check_model_card_with_huggingface_hub(readme)
    assert metadata["datasets"] == ["org/lamar-beauty-enriched"]
    [entry] = metadata["model-index"]
    [result] = entry["results"]
    assert result["task"]["type"] == "other" and result["dataset"]["type"] == "org/lamar-beauty-enriched"
    assert result["dataset"]["revision"] == "v1.0.0" and result["metrics"][0]["value"] == 0.25
    assert FINGERPRINT in readme.read_text()
    assert json.loads((tmp_path / "tree" / MANIFEST).read_text())["split_fingerprint"] == FINGERPRINT


def test_a_local_dataset_carried_from_a_folder_card_is_dropped(tmp_path, saved_model, monkeypatch):
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    monkeypatch.chdir(tmp_path)
    Path("outputs/beauty").mkdir(parents=True)
    result = EvalResult(task_type="other", dataset_type="outputs/beauty", dataset_name="outputs/beauty",
                        dataset_split="test", metric_type="ndcg@10", metric_value=0.0421)
    ModelCard.from_template(ModelCardData(model_name="sasrec", eval_results=[result])).save(saved_model / "README.md")
    publish_model(saved_model, "org/m", "v1.0.0", dry_run=tmp_path / "tree")
    metadata = check_model_card_with_huggingface_hub(tmp_path / "tree" / "README.md")
    assert "datasets" not in metadata and "model-index" not in metadata
    assert "| test | ndcg@10 | 0.0421 |" in (tmp_path / "tree" / "README.md").read_text()


def test_an_adapter_card_names_hub_datasets_only_with_a_hub_task_id(tmp_path, monkeypatch):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from lamar_hf.hub import publish_adapter

    monkeypatch.chdir(tmp_path)
    Path("outputs/exemplars").mkdir(parents=True)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2))
    adapter = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    adapter.save_pretrained(tmp_path / "lora")
    for dataset, named in (("outputs/exemplars", None), ("org/lamar-beauty-enriched", ["org/lamar-beauty-enriched"])):
        tree = tmp_path / f"tree-{bool(named)}"
        publish_adapter(tmp_path / "lora", "org/lora", "v0.1.0", base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
                        eval_results={"validity": 0.9}, dataset=dataset, dry_run=tree)
        metadata = check_model_card_with_huggingface_hub(tree / "README.md")
        assert metadata.get("datasets") == named and ("model-index" in metadata) == bool(named)
        assert metadata["pipeline_tag"] in known_hub_task_ids()
        assert "outputs/exemplars" not in (tree / "README.md").read_text()


def test_the_dataset_card_passes_huggingface_metadata_parsing_and_states_the_split_fingerprint(tmp_path):
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    folder = signals_folder(tmp_path)
    manifest = json.loads((folder / "lamar_prepare.json").read_text())
    manifest["split_fingerprint"] = FINGERPRINT  # as `lamar prepare` records it
    (folder / "lamar_prepare.json").write_text(json.dumps(manifest))
    publish_dataset(folder, "org/lamar-beauty-enriched", "v1.0.0", dry_run=tmp_path / "tree")
    card = DatasetCard.load(tmp_path / "tree" / "README.md")
    metadata = card.data.to_dict()
    assert DatasetCardData(**metadata).to_dict() == metadata
    assert set(metadata["task_categories"]) <= known_hub_task_ids()
    assert sorted(MetadataConfigs.from_dataset_card_data(card.data)) == ["items", "sequences", "signals"]
    infos = DatasetInfosDict.from_dataset_card_data(card.data)
    assert {name: {s: i.num_examples for s, i in info.splits.items()} for name, info in infos.items()}["signals"] == {"train": N_ITEMS}
    assert FINGERPRINT in card.text
    assert json.loads((tmp_path / "tree" / MANIFEST).read_text())["split_fingerprint"] == FINGERPRINT
    # Without a recorded fingerprint the card says nothing about one (it is never computed here).
    publish_dataset(tiny_benchmark(), "org/lamar-beauty-enriched", "v1.0.0", dry_run=tmp_path / "plain")
    assert "fingerprint" not in (tmp_path / "plain" / "README.md").read_text()


def test_cards_pass_repo_card_validate_on_the_local_hub(tmp_path, saved_model, monkeypatch):
    from huggingface_hub import DatasetCard, ModelCard, constants
    from hub_server import HubServer

    publish_model(saved_model, "org/m", "v1.0.0", eval_results={"test": {"recall@10": 0.25}},
                  dataset="org/lamar-beauty-enriched", dry_run=tmp_path / "model")
    publish_dataset(tiny_benchmark(), "org/d", "v1.0.0", dry_run=tmp_path / "dataset")
    with HubServer() as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        ModelCard.load(tmp_path / "model" / "README.md").validate()
        DatasetCard.load(tmp_path / "dataset" / "README.md").validate()
        assert hub.requests.count(("POST", "/api/validate-yaml")) == 2
