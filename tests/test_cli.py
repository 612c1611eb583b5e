"""The `lamar` command line end to end on a tiny dataset with a tiny LLM, and the user mistakes it must catch."""

import json
import random
import re

import pytest
from chat_server import tiny_llama, tiny_tokenizer

from lamar_hf.cli import main as lamar

TITLES = ["Rose Face Cream", "Nail Polish Red", "Argan Oil Shampoo", "Matte Lipstick", "Clay Face Mask", "Hair Dryer"]
CATEGORIES = ["'Beauty', 'Skin Care', 'Face'", "'Beauty', 'Makeup', 'Nails'", "'Beauty', 'Hair Care'"]


def tiny_p5_layout(root, users: int = 40, items: int = 30, seed: int = 0):
    """A P5/S3Rec-layout Beauty folder (sequences, id map, metadata) with synthetic users and items."""
    rng = random.Random(seed)
    (root / "s3rec").mkdir(parents=True)
    (root / "p5_llm-recsys-id").mkdir()
    (root / "plrec").mkdir()
    lines = []
    for user in range(1, users + 1):
        start = rng.randrange(1, items + 1)
        lines.append(" ".join(str(x) for x in [user] + [(start + step - 1) % items + 1 for step in range(rng.randrange(5, 9))]))
    (root / "s3rec" / "Beauty.txt").write_text("\n".join(lines) + "\n")
    asins = {str(item): f"B{item:09d}" for item in range(1, items + 1)}
    (root / "p5_llm-recsys-id" / "datamaps.json").write_text(json.dumps({"id2item": asins, "item2id": {v: k for k, v in asins.items()}}))
    header = "item_id:token\ttitle:token\tsales_type:token\tsales_rank:float\tcategories:token_seq\tprice:float\tbrand:token\n"
    rows = [f"{rank}\t{TITLES[rank % len(TITLES)]} {rank}\tBeauty\t1.0\t{CATEGORIES[rank % len(CATEGORIES)]}\t{rank}.5\tAcme\n"
            for rank in range(1, items + 1)]
    (root / "plrec" / "item_description.csv").write_text(header + "".join(rows))
    return root


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llm")
    tokenizer = tiny_tokenizer()
    tiny_llama(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_the_whole_pipeline_through_the_cli(tmp_path, tiny_generator, capsys):
    data, out = tiny_p5_layout(tmp_path / "raw"), tmp_path / "beauty"
    assert lamar(["prepare", "--source", "p5", "--path", str(data), "--out", str(out)]) == 0
    assert lamar(["enrich", "--items", str(out), "--out", str(out), "--generator", str(tiny_generator),
                  "--exemplars", "none", "--max-new-tokens", "12", "--cache-dir", str(tmp_path / "cache"),
                  "--min-validity", "0"]) == 0  # the tiny LLM's answers are all invalid
    signals = out / "signals" / "train-00000-of-00001.parquet"
    assert signals.is_file()
    assert lamar(["analyze", "--signals", str(out), "--items", str(out), "--out", str(tmp_path / "analysis"),
                  "--no-embeddings"]) == 0
    assert (tmp_path / "analysis" / "analysis.json").is_file()
    model = tmp_path / "model"
    # The tiny LLM's answers are all invalid: the signals cover no item, which `lamar train` refuses by default.
    assert lamar(["train", "--dataset", str(out), "--output_dir", str(model), "--signals", "scenario,intent,topic",
                  "--min_signal_coverage", "0", "--use_metadata", "--fusion", "add", "--hidden_size", "16",
                  "--num_train_epochs", "2", "--per_device_train_batch_size", "16", "--disable_tqdm", "true",
                  "--report_to", "none"]) == 0
    results = json.loads((model / "results.json").read_text())
    assert set(results["test"]) >= {"recall@10", "ndcg@10"}
    capsys.readouterr()
    assert lamar(["evaluate", "--model", str(model), "--dataset", str(out), "--split", "test"]) == 0
    assert "recall@10" in capsys.readouterr().out.lower()
    report = tmp_path / "report"
    # A multi-seed experiment's results (as benchmarks/experiment.py writes them) shown beside the trained model.
    figures = {key: value for m in ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "mrr@10")
               for key, value in ((m, 0.0777), (f"{m}_std", 0.0048))}
    experiment = tmp_path / "experiment.json"
    experiment.write_text(json.dumps({
        "experiment": "beauty_sasrec", "dataset": "amazon_beauty", "split_fingerprint": "sha256:" + "0" * 64,
        "device": "AMD EPYC", "grid": {"file": "benchmarks/configs/beauty_sasrec.yaml", "settings": {"reference": {}},
                                       "seeds": [0, 1, 2], "selection_metric": "ndcg@10"},
        "rows": [{"backbone": "sasrec", "variant": "id-only", "missing": False, "setting": {"name": "reference"},
                  "settings_complete": 1, "settings_declared": 1, "seeds": [0, 1, 2], "epochs": [30, 31, 32],
                  "reached_max_epochs": [False] * 3, "stopped_by_time_budget": [False] * 3,
                  "validation": figures, "test": figures}]}))
    assert lamar(["report", "--dataset", str(out), "--analysis", str(tmp_path / "analysis"),
                  "--model", f"signals={model}", "--experiment", str(experiment), "--out", str(report)]) == 0
    page = (report / "report.html").read_text()
    assert "Recommender comparison" in page and "data:image/png;base64," in page and "signals" in page
    markdown = (report / "report.md").read_text()
    assert "| variant |" in markdown
    assert "| sasrec | id-only | reference | 3 | 0.0777 ± 0.0048 |" in markdown
    assert "| experiment: beauty_sasrec | path | " in markdown and "|  | sha256 | " in markdown  # one row per field
    hub = tmp_path / "hub"
    # The tiny LLM's signals are all invalid: publishing them needs the validity threshold lowered on purpose.
    assert lamar(["publish", "dataset", str(out), "--repo-id", "org/tiny-enriched", "--version", "v1.0.0",
                  "--min-validity", "0", "--dry-run", str(hub / "dataset")]) == 0
    assert lamar(["publish", "model", str(model), "--repo-id", "org/tiny-sasrec", "--version", "v1.0.0",
                  "--dry-run", str(hub / "model")]) == 0
    tree = sorted(p.relative_to(hub).as_posix() for p in hub.rglob("*") if p.is_file())
    assert "dataset/README.md" in tree and "dataset/signals/train-00000-of-00001.parquet" in tree
    assert "model/config.json" in tree and "model/README.md" in tree


@pytest.mark.parametrize(
    "argv, message",
    [
        (["prepare", "--source", "p5", "--path", "{tmp}/missing", "--out", "{tmp}/out"], r"is not a folder"),
        (["prepare", "--source", "netflix", "--path", "{tmp}", "--out", "{tmp}/out"], r"unknown --source 'netflix'"),
        (["prepare", "--source", "amazon2014", "--path", "{tmp}", "--out", "{tmp}/out"], r"reviews_<Category>_5\.json\.gz"),
        (["enrich", "--items", "{beauty}", "--out", "{tmp}/sig", "--signals", "scenario,mood"], r"mood"),
        (["enrich", "--items", "{beauty}", "--out", "{tmp}/sig", "--generator", "nobody/no-such-model"],
         r"no-such-model|couldn't find them in the cached files"),
        (["evaluate", "--model", "{tmp}/no-model", "--dataset", "{beauty}"], r"no-model"),
        (["report", "--dataset", "{tmp}/missing", "--out", "{tmp}/report"], r"is not a folder"),
    ],
)
def test_user_mistakes_give_one_clear_line_and_exit_2(argv, message, tmp_path, capsys):
    beauty = tmp_path / "beauty"
    assert lamar(["prepare", "--source", "p5", "--path", str(tiny_p5_layout(tmp_path / "raw", users=6, items=8)),
                  "--out", str(beauty)]) == 0
    capsys.readouterr()
    argv = [arg.format(tmp=tmp_path, beauty=beauty) for arg in argv]
    assert lamar(argv) == 2
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith(f"lamar {argv[0]}: error:")]
    assert len(errors) == 1, stderr
    assert re.search(message, errors[0]), errors[0]
    assert "Traceback" not in stderr
