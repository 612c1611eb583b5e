"""End to end: lamar-hf publishes to a local Hub-compatible server, the real clients read it back.

huggingface_hub, datasets and transformers read ``HF_ENDPOINT`` when they are imported and conftest.py
puts this test process offline, so every client scenario runs in a fresh subprocess with its own
environment. The reading side (``load_dataset``, ``AutoModel.from_pretrained(..., trust_remote_code=True)``,
``PeftModel.from_pretrained``) runs in a process that never imports lamar_hf.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hub_server import HubServer

DATASET = "org/lamar-beauty-enriched"
MODEL = "org/lamar-sasrec-beauty"
BASE = "org/tiny-llama"
ADAPTER = "org/lamar-signals-lora"
BEAUTY = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon_beauty"
SUBSET_ITEMS = 60
ANALYSIS = {"scenario": {"novelty": 0.8125, "distinct-2": 0.64}, "intent": {"novelty": 0.75, "distinct-2": 0.58}}
HISTORIES = [[1, 2, 3], [5], [7, 8, 9, 10, 11, 12, 13, 14, 15, 16]]
# torch.testing.assert_close's float32 tolerances: scores from two processes may take other kernels.
FLOAT32_RTOL, FLOAT32_ATOL = 1.3e-6, 1e-5


def enriched_beauty_subset(tag: str):
    """Items 1..60 of real Amazon Beauty (code-built stand-ins when ../shared/data is absent), the users'
    sequences restricted to them, and a ``signals`` config whose texts carry ``tag`` (v1 / v2)."""
    from datasets import Dataset

    from lamar_hf.data import Benchmark, leave_one_out, user_sequences
    from lamar_hf.data.schema import ITEM_FEATURES

    if BEAUTY.is_dir():
        from lamar_hf.data import read_p5

        beauty = read_p5(BEAUTY)
        items = beauty.items.select(range(SUBSET_ITEMS))
        sequences = {user: [i for i in items_ if i <= SUBSET_ITEMS] for user, items_ in user_sequences(beauty.sequences).items()}
    else:
        n = SUBSET_ITEMS
        items = Dataset.from_dict({
            "item_id": list(range(1, n + 1)), "asin": [f"B{i:09d}" for i in range(1, n + 1)],
            "title": [f"Nail polish shade {i}" for i in range(1, n + 1)], "brand": ["OPI"] * n,
            "categories": [["Beauty", "Makeup", "Nails"]] * n, "price": [9.5] * n, "description": [None] * n,
        }, features=ITEM_FEATURES)
        sequences = {user: [(user * 7 + step * 11) % n + 1 for step in range(6)] for user in range(1, 18)}
    sequences = {user: seq for user, seq in sequences.items() if len(seq) >= 4}
    ids, titles = items["item_id"], items["title"]
    signals = Dataset.from_dict({
        "item_id": ids,
        "scenario": [f"[{tag}] someone getting ready for an evening out uses {t}" for t in titles],
        "intent": [f"[{tag}] to finish a look with {t}" for t in titles],
        "topic": [f"[{tag}] {t}" for t in titles],
        "generator": ["HuggingFaceTB/SmolLM2-135M-Instruct"] * len(ids),
        "prompt_version": [f"test-{tag}"] * len(ids),
        "status": ["ok"] * (len(ids) - 1) + ["fallback"],
    })
    return Benchmark("amazon_beauty", items, leave_one_out(sequences), signals=signals, source={"kind": "p5"})


PUBLISHER = r'''
import contextlib, io, json, sys
from pathlib import Path

import torch
from lamar_hf.cli import main

cfg = json.loads(Path(sys.argv[1]).read_text())
out = {}


def cli(*args):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(a) for a in args])
    return {"code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}


common = ["--repo-id", cfg["dataset"]]
out["v1"] = cli("publish", "dataset", cfg["v1"], *common, "--version", "v1.0.0", "--changes", "first release",
                "--analysis", cfg["analysis"])
out["dry_run"] = cli("publish", "dataset", cfg["v2"], *common, "--version", "v1.1.0", "--changes", "regenerated signals",
                     "--analysis", cfg["analysis"], "--dry-run", cfg["dry_run_dir"])
out["v2"] = cli("publish", "dataset", cfg["v2"], *common, "--version", "v1.1.0", "--changes", "regenerated signals",
                "--analysis", cfg["analysis"])

# A tiny signal-aware SASRec, trained for a few steps on the subset's training sequences.
import lamar_hf.models  # registers the model for the auto classes (auto_map in config.json)
from lamar_hf.data import load_prepared
from lamar_hf.models import LamarSASRecConfig, LamarSASRecModel

torch.manual_seed(0)
benchmark = load_prepared(cfg["v2"])
config = LamarSASRecConfig(num_items=benchmark.num_items, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_history_length=8, fusion="add", text_kinds=["scenario"],
                           text_embedding_dim=8)
model = LamarSASRecModel(config)
model.set_text_embeddings({"scenario": torch.randn(benchmark.num_items + 1, 8)})
before = {name: p.detach().clone() for name, p in model.named_parameters()}
sequences = [h + [t] for h, t in zip(benchmark.sequences["train"]["history"], benchmark.sequences["train"]["target"])]
sequences = [s[-9:] for s in sequences if len(s) >= 2]
width = max(len(s) for s in sequences) - 1
inputs = torch.tensor([s[:-1] + [0] * (width - len(s) + 1) for s in sequences])
labels = torch.tensor([s[1:] + [-100] * (width - len(s) + 1) for s in sequences])
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
model.train()
for _ in range(15):
    optimizer.zero_grad()
    model(input_ids=inputs, labels=labels).loss.backward()
    optimizer.step()
out["trained"] = all(not torch.equal(before[n], p) for n, p in model.named_parameters() if p.requires_grad)
test = benchmark.sequences["test"]
scores = model.score(test["history"])
ranks = [(row > row[target]).sum().item() for row, target in zip(scores, test["target"])]
eval_results = {"test_recall@10": sum(r < 10 for r in ranks) / len(ranks), "test_mrr@10": sum(1 / (r + 1) for r in ranks if r < 10) / len(ranks),
                "test_runtime": 0.5}
Path(cfg["eval"]).write_text(json.dumps(eval_results))
out["eval_results"] = eval_results
model.save_pretrained(cfg["model_dir"])
out["scores"] = model.score(cfg["histories"]).tolist()
import shutil
shutil.copytree(cfg["model_dir"], cfg["model_dir"] + "-notes")
Path(cfg["model_dir"] + "-notes", "notes.json").write_text("{}")
out["model"] = cli("publish", "model", cfg["model_dir"] + "-notes", "--repo-id", cfg["model"], "--version", "v1.0.0",
                   "--eval-results", cfg["eval"], "--dataset", cfg["dataset"], "--dataset-revision", "v1.1.0")
out["model_v1.1.0"] = cli("publish", "model", cfg["model_dir"], "--repo-id", cfg["model"], "--version", "v1.1.0",
                          "--eval-results", cfg["eval"], "--dataset", cfg["dataset"], "--changes", "without notes.json")

# A LoRA adapter on a tiny Llama: the base goes up with the plain PreTrainedModel.push_to_hub.
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM
from lamar_hf.hub import publish_adapter

base = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32))
base.push_to_hub(cfg["base"])
input_ids = torch.tensor([cfg["prompt"]])
base.eval()
out["base_logits"] = base(input_ids).logits.tolist()
adapted = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
with torch.no_grad():
    for name, parameter in adapted.named_parameters():
        if "lora_B" in name:
            parameter.normal_(std=0.5)  # LoRA starts as a no-op; "train" it so that it changes the outputs
adapted.eval()
out["adapter_logits"] = adapted(input_ids).logits.tolist()
result = publish_adapter(adapted, cfg["adapter"], "v1.0.0", base_model=cfg["base"], changes="first adapter",
                         eval_results={"parse_rate": 0.95})
out["adapter"] = {"revision": result.revision, "files": result.files}
print(json.dumps(out))
'''

REFUSER = r'''
import contextlib, io, json, sys
from lamar_hf.cli import main

cfg = json.loads(open(sys.argv[1]).read())
out = {}
for kind, folder, repo in (("dataset", cfg["v2"], cfg["dataset"]), ("model", cfg["model_dir"], cfg["model"])):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(["publish", kind, folder, "--repo-id", repo, "--version", "v1.0.0"])
    out[kind] = {"code": code, "stderr": stderr.getvalue()}

# A fix of an older line is allowed (with a warning); the dry run asks the Hub for the changelog so far.
import logging
warnings = []
handler = logging.Handler()
handler.emit = lambda record: warnings.append(record.getMessage())
logging.getLogger("lamar_hf.hub").addHandler(handler)
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    code = main(["publish", "dataset", cfg["v1"], "--repo-id", cfg["dataset"], "--version", "v1.0.1",
                 "--changes", "fix", "--dry-run", cfg["fix_dry_run_dir"]])
out["fix"] = {"code": code, "warnings": warnings}
print(json.dumps(out))
'''

CONSUMER = r'''
import json, sys

import torch
from datasets import get_dataset_config_names, load_dataset
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, ModelCard, hf_hub_download
from peft import PeftModel
from transformers import AutoModel, AutoModelForCausalLM

cfg = json.loads(open(sys.argv[1]).read())
repo, out = cfg["dataset"], {}
for revision in ("v1.0.0", "v1.1.0"):
    out["signals@" + revision] = load_dataset(repo, "signals", revision=revision, split="train").to_dict()
card = DatasetCard.load(hf_hub_download(repo, "README.md", repo_type="dataset", revision="v1.1.0"))
out["card"] = card.data.to_dict()
out["card_text"] = card.text
out["metadata_configs"] = sorted(MetadataConfigs.from_dataset_card_data(card.data))
out["dataset_infos"] = {name: {s: i.num_examples for s, i in info.splits.items()}
                        for name, info in DatasetInfosDict.from_dataset_card_data(card.data).items()}
out["config_names"] = get_dataset_config_names(repo, revision="v1.1.0")
out["rows"] = {name: {split: len(ds) for split, ds in load_dataset(repo, name, revision="v1.1.0").items()}
               for name in out["config_names"]}
out["default_columns"] = load_dataset(repo, revision="v1.1.0", split="train").column_names

model = AutoModel.from_pretrained(cfg["model"], trust_remote_code=True, revision="v1.0.0")
out["model_class"] = type(model).__module__ + "." + type(model).__name__
out["scores"] = model.score(cfg["histories"]).tolist()
model_card = ModelCard.load(hf_hub_download(cfg["model"], "README.md", revision="v1.0.0"))
out["model_card"] = model_card.data.to_dict()
out["eval_results"] = {r.metric_type: r.metric_value for r in model_card.data.eval_results}

base = AutoModelForCausalLM.from_pretrained(cfg["base"])
adapted = PeftModel.from_pretrained(base, cfg["adapter"], revision="v1.0.0")
adapted.eval()
with torch.no_grad():
    out["adapter_logits"] = adapted(torch.tensor([cfg["prompt"]])).logits.tolist()
out["adapter_card"] = ModelCard.load(hf_hub_download(cfg["adapter"], "README.md", revision="v1.0.0")).data.to_dict()
out["lamar_hf_imported"] = sorted(name for name in sys.modules if name.split(".")[0] == "lamar_hf")
print(json.dumps(out))
'''


def run_client(hub: HubServer, script: str, cfg_path: Path, home: Path, timeout: int = 300) -> dict:
    """Run ``script`` in a fresh Python with the client environment pointing at ``hub``; return its JSON."""
    env = {key: value for key, value in os.environ.items() if not key.endswith("_OFFLINE")}
    env.update(
        HF_ENDPOINT=hub.url, HF_HOME=str(home), HF_TOKEN="hf_local_dummy_token", HF_HUB_DISABLE_XET="1",
        HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0", HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1",
        TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
    )
    home.mkdir(parents=True, exist_ok=True)
    process = subprocess.run([sys.executable, "-c", textwrap.dedent(script), str(cfg_path)], env=env, cwd=home,
                             capture_output=True, text=True, timeout=timeout)
    if process.returncode != 0:
        pytest.fail(f"client script failed ({process.returncode}):\n{process.stderr[-6000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def flat(nested) -> list[float]:
    return [x for item in nested for x in flat(item)] if isinstance(nested, list) else [nested]


def write_state(hub: HubServer) -> dict:
    """Every repository's branches and tags, to compare before and after a refused release."""
    with hub.state.lock:
        return {f"{t}:{r}": (dict(repo.branches), dict(repo.tags), len(repo.commits)) for (t, r), repo in hub.state.repos.items()}


@pytest.fixture(scope="module")
def hub():
    with HubServer() as server:
        yield server


@pytest.fixture(scope="module")
def published(hub, tmp_path_factory):
    root = tmp_path_factory.mktemp("publish")
    enriched_beauty_subset("v1").save(root / "beauty-v1")
    enriched_beauty_subset("v2").save(root / "beauty-v2")
    (root / "analysis.json").write_text(json.dumps(ANALYSIS))
    cfg = {
        "dataset": DATASET, "model": MODEL, "base": BASE, "adapter": ADAPTER, "histories": HISTORIES,
        "v1": str(root / "beauty-v1"), "v2": str(root / "beauty-v2"), "analysis": str(root / "analysis.json"),
        "dry_run_dir": str(root / "dry-run"), "fix_dry_run_dir": str(root / "fix-dry-run"), "model_dir": str(root / "sasrec"), "eval": str(root / "eval.json"),
        "prompt": [1, 5, 9, 13, 2, 7],
    }
    cfg_path = root / "cfg.json"
    cfg_path.write_text(json.dumps(cfg))
    out = run_client(hub, PUBLISHER, cfg_path, root / "publisher-home")
    return {"cfg": cfg, "cfg_path": cfg_path, "root": root, "out": out}


@pytest.fixture(scope="module")
def consumed(hub, published):
    return run_client(hub, CONSUMER, published["cfg_path"], published["root"] / "consumer-home")


def test_each_version_is_one_tagged_commit_and_the_cli_prints_its_revision(hub, published):
    out = published["out"]
    repo = hub.repo(DATASET, "dataset")
    for key, version in (("v1", "v1.0.0"), ("v2", "v1.1.0")):
        assert out[key]["code"] == 0, out[key]["stderr"]
        assert f"revision {repo.tags[version]}" in out[key]["stdout"]
    assert repo.tags["v1.0.0"] != repo.tags["v1.1.0"]
    assert repo.branches["main"] == repo.tags["v1.1.0"]
    assert repo.commits[repo.tags["v1.1.0"]].parent == repo.tags["v1.0.0"]  # one commit per version
    assert ("POST", "/api/validate-yaml") in hub.requests  # the client had the card's metadata checked first


def test_load_dataset_returns_the_rows_of_each_tagged_version(published, consumed):
    v1, v2 = consumed["signals@v1.0.0"], consumed["signals@v1.1.0"]
    assert v1["item_id"] == v2["item_id"] == list(range(1, SUBSET_ITEMS + 1))
    assert all(text.startswith("[v1] ") for text in v1["scenario"] + v1["intent"] + v1["topic"])
    assert all(text.startswith("[v2] ") for text in v2["scenario"] + v2["intent"] + v2["topic"])
    assert set(v2["prompt_version"]) == {"test-v2"} and v2["status"].count("fallback") == 1


def test_the_card_metadata_validates_and_lists_every_config(hub, consumed):
    card = consumed["card"]
    configs = {entry["config_name"]: entry for entry in card["configs"]}
    assert sorted(configs) == consumed["metadata_configs"] == sorted(consumed["config_names"]) == ["items", "sequences", "signals"]
    assert [name for name, entry in configs.items() if entry.get("default")] == ["signals"]
    files = hub.repo(DATASET, "dataset").resolve("v1.1.0").files
    for entry in configs.values():
        for data_file in entry["data_files"]:
            assert data_file["path"] in files
            assert data_file["path"] == f"{entry['config_name']}/{data_file['split']}-00000-of-00001.parquet"
    # Every config loads, and the card's dataset_info agrees with what load_dataset returns.
    assert consumed["rows"] == consumed["dataset_infos"]
    assert consumed["rows"]["signals"] == {"train": SUBSET_ITEMS}
    assert set(consumed["rows"]["sequences"]) == {"train", "validation", "test"}
    assert consumed["default_columns"][:4] == ["item_id", "scenario", "intent", "topic"]
    assert card["annotations_creators"] == ["machine-generated"]
    for field in ("license", "task_categories", "size_categories", "source_datasets", "pretty_name", "tags"):
        assert card.get(field), field
    text = consumed["card_text"]
    for expected in ("0.8125", "HuggingFaceTB/SmolLM2-135M-Instruct", "test-v2", "arXiv", "McAuley",
                     "**v1.1.0**", "regenerated signals", "**v1.0.0**", "first release"):
        assert expected in text, expected


def test_dry_run_wrote_exactly_the_tree_that_was_pushed(hub, published):
    assert published["out"]["dry_run"]["code"] == 0, published["out"]["dry_run"]["stderr"]
    dry_run = Path(published["cfg"]["dry_run_dir"])
    written = {p.relative_to(dry_run).as_posix(): p.read_bytes() for p in dry_run.rglob("*") if p.is_file()}
    pushed = {path: blob.content for path, blob in hub.repo(DATASET, "dataset").resolve("v1.1.0").files.items()}
    pushed.pop(".gitattributes")
    assert sorted(written) == sorted(pushed)
    assert written == pushed


def test_published_recommender_gives_identical_scores_with_remote_code(published, consumed):
    out = published["out"]
    assert out["trained"]
    assert out["model"]["code"] == 0, out["model"]["stderr"]
    assert consumed["lamar_hf_imported"] == []
    assert consumed["model_class"].startswith("transformers_modules.")  # the code came from the repository
    # Another process may take other kernels: equal up to float32 rounding, not to the bit.
    assert flat(consumed["scores"]) == pytest.approx(flat(out["scores"]), rel=FLOAT32_RTOL, abs=FLOAT32_ATOL)
    assert not all(math.isinf(x) for x in consumed["scores"][0])


def test_a_new_version_drops_the_files_its_folder_no_longer_has(hub, published):
    assert published["out"]["model_v1.1.0"]["code"] == 0, published["out"]["model_v1.1.0"]["stderr"]
    repo = hub.repo(MODEL)
    assert "notes.json" in repo.resolve("v1.0.0").files and "notes.json" not in repo.resolve("v1.1.0").files
    assert repo.resolve("v1.0.0").files["model.safetensors"] == repo.resolve("v1.1.0").files["model.safetensors"]


def test_model_card_carries_the_eval_results(published, consumed):
    expected = {"recall@10": published["out"]["eval_results"]["test_recall@10"],
                "mrr@10": published["out"]["eval_results"]["test_mrr@10"]}
    assert consumed["eval_results"] == pytest.approx(expected)
    card = consumed["model_card"]
    assert card["datasets"] == [DATASET]
    result = card["model-index"][0]["results"][0]
    assert result["dataset"]["revision"] == "v1.1.0" and result["dataset"]["split"] == "test"


def test_lora_adapter_reloads_with_peft(published, consumed):
    out = published["out"]
    assert out["adapter_logits"] != out["base_logits"]  # the adapter does something
    assert flat(consumed["adapter_logits"]) == pytest.approx(flat(out["adapter_logits"]), rel=FLOAT32_RTOL, abs=FLOAT32_ATOL)
    assert consumed["adapter_card"]["base_model"] == BASE
    assert consumed["adapter_card"]["library_name"] == "peft"
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(out["adapter"]["files"])


def test_an_existing_version_is_refused_and_nothing_is_pushed(hub, published, consumed):
    before_state, before_requests = write_state(hub), len(hub.requests)
    out = run_client(hub, REFUSER, published["cfg_path"], published["root"] / "refuser-home")
    for kind, repo in (("dataset", DATASET), ("model", MODEL)):
        assert out[kind]["code"] == 2
        message = out[kind]["stderr"]
        assert f"{repo} already has version v1.0.0" in message and "Nothing was pushed" in message, message
        assert "v1.0.1" in message
    assert write_state(hub) == before_state
    writes = [(method, path) for method, path in hub.requests[before_requests:] if method not in ("GET", "HEAD")]
    assert writes == []
    assert out["fix"]["code"] == 0
    assert any("v1.0.1 is older than the latest version v1.1.0" in w for w in out["fix"]["warnings"])
    manifest = json.loads((Path(published["cfg"]["fix_dry_run_dir"]) / "lamar_publish.json").read_text())
    assert [entry["version"] for entry in manifest["changelog"]] == ["v1.0.1", "v1.1.0", "v1.0.0"]
