"""Offline publishing: version rules, input checks with clear errors, cards, and dry runs through the push scripts.

This process is offline (conftest.py), so every dry run here builds the tree without asking the Hub;
the pushes themselves are tested end to end in test_hub_publish.py.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch
import yaml
from datasets import Dataset, DatasetDict
from safetensors.torch import save_file

from lamar_hf.cli import main
from lamar_hf.data import Benchmark
from lamar_hf.data.schema import ITEM_FEATURES, SEQUENCE_FEATURES
from lamar_hf.hub import MANIFEST, PublishError, check_version, publish_dataset, publish_model
from lamar_hf.hub.cards import analysis_table, eval_results, size_category
from lamar_hf.hub.release import next_free_patch

REPO_ROOT = Path(__file__).resolve().parents[1]
N_ITEMS = 8


def tiny_benchmark(signals: dict | None = None) -> Benchmark:
    """Eight items, three users, and a signals config (``signals`` replaces its columns)."""
    ids = list(range(1, N_ITEMS + 1))
    items = Dataset.from_dict({
        "item_id": ids, "asin": [f"B{i:09d}" for i in ids], "title": [f"Lip balm {i}" for i in ids],
        "brand": ["Burt's Bees"] * N_ITEMS, "categories": [["Beauty", "Skin Care", "Lips"]] * N_ITEMS,
        "price": [3.5] * N_ITEMS, "description": [None] * N_ITEMS,
    }, features=ITEM_FEATURES)
    users = {1: [1, 2, 3, 4, 5], 2: [2, 4, 6, 8], 3: [8, 7, 6, 5, 4, 3]}

    def split(cut: int) -> Dataset:
        return Dataset.from_dict({"user_id": list(users), "history": [s[:cut] for s in users.values()],
                                  "target": [s[cut] for s in users.values()]}, features=SEQUENCE_FEATURES)

    columns = {
        "item_id": ids, "scenario": [f"after a day outdoors {i}" for i in ids], "intent": [f"soothe lips {i}" for i in ids],
        "topic": [f"lip care {i}" for i in ids], "generator": ["HuggingFaceTB/SmolLM2-135M-Instruct"] * N_ITEMS,
        "status": ["ok"] * N_ITEMS, "status_detail": [""] * N_ITEMS,
    }
    columns.update(signals or {})
    sequences = DatasetDict({"train": split(-3), "validation": split(-2), "test": split(-1)})
    return Benchmark("amazon_beauty", items, sequences, signals=Dataset.from_dict(columns))


def run_script(name: str, *args) -> int:
    """Run a push script as ``python push_scripts/NAME ARGS`` would, in this process."""
    argv = sys.argv
    sys.argv = [name, *map(str, args)]
    try:
        runpy.run_path(str(REPO_ROOT / "push_scripts" / name), run_name="__main__")
    except SystemExit as exit_:
        return exit_.code
    finally:
        sys.argv = argv
    raise AssertionError("the script did not exit with a status")


def front_matter(readme: Path) -> dict:
    return yaml.safe_load(readme.read_text().split("---")[1])


def test_versions_must_be_v_major_minor_patch():
    assert check_version("v1.0.0") == "v1.0.0" and check_version("v10.2.33") == "v10.2.33"
    for bad in ("1.0.0", "v1.0", "v1.0.0-rc1", "v01.0.0", "latest", ""):
        with pytest.raises(PublishError, match="vMAJOR.MINOR.PATCH"):
            check_version(bad)
    assert next_free_patch("v1.0.0", ["v1.0.0", "v1.0.3", "v1.1.0", "draft"]) == "v1.0.4"


def test_cli_refuses_a_bad_version_before_reading_anything(tmp_path, capsys):
    assert main(["publish", "dataset", str(tmp_path / "missing"), "--repo-id", "org/x", "--version", "1.0"]) == 2
    assert "version '1.0' is not of the form vMAJOR.MINOR.PATCH" in capsys.readouterr().err


def test_dataset_dry_run_writes_the_hub_layout_and_the_card(tmp_path):
    tiny_benchmark().save(tmp_path / "beauty")
    (tmp_path / "analysis.json").write_text(json.dumps({"scenario": {"novelty": 0.91}, "topic": {"novelty": 0.42}}))
    out = tmp_path / "tree"
    assert run_script("push_dataset.py", tmp_path / "beauty", "--repo-id", "org/lamar-beauty-enriched", "--version",
                      "v2.0.0", "--changes", "first", "--analysis", tmp_path / "analysis.json", "--dry-run", out) == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted([
        "README.md", MANIFEST, "items/train-00000-of-00001.parquet", "sequences/test-00000-of-00001.parquet",
        "sequences/train-00000-of-00001.parquet", "sequences/validation-00000-of-00001.parquet",
        "signals/train-00000-of-00001.parquet",
    ])
    meta = front_matter(out / "README.md")
    assert [c["config_name"] for c in meta["configs"]] == ["items", "sequences", "signals"]
    assert meta["configs"][2]["default"] is True and not any(c.get("default") for c in meta["configs"][:2])
    assert meta["size_categories"] == ["n<1K"] and meta["annotations_creators"] == ["machine-generated"]
    text = (out / "README.md").read_text()
    assert "| `scenario` | 0.91 |  |" not in text  # one figure per signal: the table has one column
    assert "| `scenario` | 0.91 |" in text and "| `topic` | 0.42 |" in text
    assert 'revision="v2.0.0"' in text and "| generator | HuggingFaceTB/SmolLM2-135M-Instruct |" in text
    assert "status_detail" not in text.split("## How the signals were made")[1].split("## Signal analysis")[0]
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["version"] == "v2.0.0" and [e["version"] for e in manifest["changelog"]] == ["v2.0.0"]
    assert Dataset.from_parquet(str(out / "signals/train-00000-of-00001.parquet"))["topic"][0] == "lip care 1"


def test_dry_run_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "keep.txt").write_text("mine")
    with pytest.raises(PublishError, match="not empty"):
        publish_dataset(tiny_benchmark(), "org/x", "v1.0.0", dry_run=tmp_path / "tree")
    assert [p.name for p in (tmp_path / "tree").iterdir()] == ["keep.txt"]


@pytest.mark.parametrize(
    ("signals", "message"),
    [
        ({"item_id": [1, 2, 3, 4, 5, 6, 7, 7]}, "field 'item_id' repeats item 7"),
        ({"item_id": [1, 2, 3, 4, 5, 6, 7, 99]}, "field 'item_id' holds 99, not an item of amazon_beauty"),
        ({"scenario": None, "intent": None, "topic": None}, "no column scenario, intent, topic"),
    ],
)
def test_bad_signals_are_refused_naming_the_file_and_field(tmp_path, signals, message):
    benchmark = tiny_benchmark({k: v for k, v in signals.items() if v is not None})
    if None in signals.values():
        benchmark.signals = benchmark.signals.remove_columns([k for k, v in signals.items() if v is None])
    with pytest.raises(PublishError, match=message) as error:
        publish_dataset(benchmark, "org/x", "v1.0.0", dry_run=tmp_path / "tree")
    assert "signals/train-00000-of-00001.parquet" in str(error.value) or "--signals" in str(error.value)
    assert not (tmp_path / "tree").exists()


def test_a_benchmark_without_signals_is_refused(tmp_path):
    benchmark = tiny_benchmark()
    benchmark.signals = None
    with pytest.raises(PublishError, match="enrich the benchmark first"):
        publish_dataset(benchmark, "org/x", "v1.0.0", dry_run=tmp_path / "tree")


def test_model_dry_run_ships_remote_code_and_carries_eval_results_from_the_folder_card(tmp_path):
    import lamar_hf.models  # noqa: F401 - registers auto_map for save_pretrained
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from lamar_hf.models import LamarSASRecConfig, LamarSASRecModel

    model = LamarSASRecModel(LamarSASRecConfig(num_items=N_ITEMS, hidden_size=8, num_hidden_layers=1,
                                               num_attention_heads=2, intermediate_size=16, max_history_length=4))
    model.save_pretrained(tmp_path / "sasrec")
    (tmp_path / "sasrec" / "trainer_state.json").write_text("{}")
    result = EvalResult(task_type="sequential-recommendation", dataset_type="org/lamar-beauty-enriched",
                        dataset_name="org/lamar-beauty-enriched", dataset_split="test", dataset_revision="v1.0.0",
                        metric_type="ndcg@10", metric_value=0.0421)
    ModelCard.from_template(ModelCardData(model_name="sasrec", eval_results=[result])).save(tmp_path / "sasrec" / "README.md")
    out = tmp_path / "tree"
    assert run_script("push_model.py", tmp_path / "sasrec", "--repo-id", "org/lamar-sasrec-beauty", "--version", "v1.0.0",
                      "--dry-run", out) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(["README.md", "config.json", "configuration_lamar_sasrec.py", MANIFEST,
                            "model.safetensors", "modeling_lamar_sasrec.py"])
    assert json.loads((out / "config.json").read_text())["auto_map"]["AutoModel"].endswith("LamarSASRecModel")
    card = ModelCard.load(out / "README.md")
    assert [(r.metric_type, r.metric_value, r.dataset_revision) for r in card.data.eval_results] == [("ndcg@10", 0.0421, "v1.0.0")]
    assert card.data.datasets == ["org/lamar-beauty-enriched"]
    assert 'trust_remote_code=True, revision="v1.0.0"' in card.text
    assert card.text.lstrip().startswith("# lamar-sasrec-beauty\n")


def test_a_model_users_could_not_load_is_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    save_file({"weight": torch.zeros(2, 2)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "not_in_transformers"}))
    with pytest.raises(PublishError, match="register_for_auto_class"):
        publish_model(folder, "org/m", "v1.0.0", dry_run=tmp_path / "tree")
    (folder / "config.json").write_text(json.dumps({"model_type": "x", "auto_map": {"AutoModel": "modeling_x.XModel"}}))
    with pytest.raises(PublishError, match="needs modeling_x.py"):
        publish_model(folder, "org/m", "v1.0.0", dry_run=tmp_path / "tree")
    (folder / "model.safetensors").unlink()
    with pytest.raises(PublishError, match="no weights"):
        publish_model(folder, "org/m", "v1.0.0", dry_run=tmp_path / "tree")


def test_adapter_dry_run_names_a_hub_base_model(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    base = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2))
    adapter = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    adapter.save_pretrained(tmp_path / "lora")
    args = ["push_adapter.py", tmp_path / "lora", "--repo-id", "org/lora", "--version", "v0.1.0", "--dry-run"]
    assert run_script(*args, tmp_path / "refused") == 2  # adapter_config.json names no Hub base model
    assert not (tmp_path / "refused").exists()
    assert run_script(*args, tmp_path / "tree", "--base-model", "HuggingFaceTB/SmolLM2-135M-Instruct") == 0
    config = json.loads((tmp_path / "tree" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    meta = front_matter(tmp_path / "tree" / "README.md")
    assert meta["library_name"] == "peft" and meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert (tmp_path / "tree" / "adapter_model.safetensors").is_file()


def test_card_helpers():
    assert [size_category(n) for n in (0, 999, 1_000, 12_101, 198_502, 2_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M"]
    assert analysis_table({"novelty": 0.5}) == (["figure", "value"], [["novelty", "0.5"]])
    header, rows = analysis_table({"scenario": {"novelty": 0.123456}, "intent": {"distinct-2": 1.0}})
    assert header == ["signal", "novelty", "distinct-2"] and rows == [["`scenario`", "0.1235", ""], ["`intent`", "", "1"]]
    results = eval_results({"eval_recall@10": 0.1, "eval_runtime": 3.0, "epoch": 2.0, "note": "x"}, task_type="t",
                           task_name="T", dataset_type="d", dataset_name="d", split="validation")
    assert [(r.metric_type, r.metric_value, r.dataset_split) for r in results] == [("recall@10", 0.1, "validation")]


def test_dataset_release_carries_the_attribute_centres_of_its_signal_ids(tmp_path, capsys):
    """``--attribute-centres``: the centres that made the signals config's ``<kind>_cluster`` ids are published
    beside it (the ids a new item needs); centres that do not fit those ids are refused before anything is written."""
    import numpy as np

    from lamar_hf.enrich.attributes import attributes_centres_file, write_attributes
    from lamar_hf.hub.dataset import ATTRIBUTE_CENTRES

    ids = [1, 2, 3, 1, 2, 3, 0, 1]
    tiny_benchmark({"scenario_cluster": ids}).save(tmp_path / "beauty")
    table = Dataset.from_dict({"item_id": list(range(1, N_ITEMS + 1)), "scenario_cluster": ids})
    provenance = {"format": "lamar-signal-attributes/1", "encoder": "sentence-transformers/all-MiniLM-L6-v2"}
    centres = {"scenario": np.arange(12, dtype=np.float32).reshape(3, 4)}
    made = write_attributes(table, provenance, tmp_path / "attributes.parquet", centres=centres)
    out = tmp_path / "tree"
    args = ["push_dataset.py", tmp_path / "beauty", "--repo-id", "org/lamar-beauty-enriched", "--version", "v1.0.0",
            "--dry-run", out, "--attribute-centres", attributes_centres_file(made)]
    assert run_script(*args) == 0
    assert (out / ATTRIBUTE_CENTRES).read_bytes() == attributes_centres_file(made).read_bytes()
    assert "`signals/attribute_centres.safetensors` (sentence-transformers/all-MiniLM-L6-v2; row i - 1 is attribute " \
           "id i)" in (out / "README.md").read_text()
    load_dataset_signals = Dataset.from_parquet(str(out / "signals/train-00000-of-00001.parquet"))
    assert load_dataset_signals["scenario_cluster"] == ids

    too_few = write_attributes(table, provenance, tmp_path / "two.parquet", centres={"scenario": np.zeros((2, 4))})
    capsys.readouterr()
    assert run_script(*args[:-3], tmp_path / "refused", "--attribute-centres", attributes_centres_file(too_few)) == 2
    assert "2 scenario centres, but the signals config's scenario_cluster uses id 3" in capsys.readouterr().err
    other_kind = write_attributes(table, provenance, tmp_path / "intent.parquet", centres={"intent": np.zeros((3, 4))})
    assert run_script(*args[:-3], tmp_path / "refused", "--attribute-centres", attributes_centres_file(other_kind)) == 2
    assert "no intent_cluster column" in capsys.readouterr().err and not (tmp_path / "refused").exists()
