"""benchmarks/experiment.py: grids of settings chosen on validation, run records with provenance, honest tables."""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lamar_hf.training import RecommendationData
from test_train import chain_benchmark

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "experiment.py"
sys.path.insert(0, str(REPO / "benchmarks"))
import experiment  # noqa: E402

FINGERPRINT = "sha256:" + "ab" * 32  # as `lamar prepare` records it; the runner only carries it


def run_experiment(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600, cwd=REPO)


def write_grid(path: Path, **spec) -> Path:
    spec = {"backbones": ["sasrec"], "variants": ["id-only"], "seeds": [0, 1], **spec}
    path.write_text(json.dumps(spec))
    return path


def save_inputs(folder: Path, fingerprint: str | None = FINGERPRINT) -> Path:
    data = RecommendationData.from_benchmark(chain_benchmark())
    data.source.pop("split_fingerprint", None)
    if fingerprint:
        data.source["split_fingerprint"] = fingerprint
    data.save(folder / experiment.SEQUENCES_FILE)
    return folder


def figures(value: float) -> dict:
    return {metric: value for metric in (*experiment.REPORTED, "mrr@20")}


def write_rigged_run(work: Path, grid, name: str, seed: int, validation: float, test: float, variant="id-only",
                     device="Test CPU Model 1", fingerprint=FINGERPRINT) -> Path:
    """A run record written by the runner's own code, with figures chosen by the test."""
    job = experiment.make_job(grid, "sasrec", variant, name, seed, split_fingerprint=fingerprint, device=device,
                              dataset="chains")
    result = {"validation": figures(validation), "test": figures(test), "test_excluding_history": figures(test + 0.01),
              "epochs": 3.0, "reached_max_epochs": False, "stopped_by_time_budget": False}
    return experiment.write_record(work, job, result, {"versions": experiment.library_versions()})


def rigged_grid(tmp_path):
    return experiment.load_grid(write_grid(tmp_path / "rigged.json", variants=["id-only", "metadata"], base={
        "hidden_size": 16}, settings=[{"name": "reference"}, {"name": "two blocks", "num_hidden_layers": 2},
                                      {"name": "wide", "hidden_size": 32}]))


def test_a_tiny_grid_trains_every_setting_and_seed_records_provenance_and_reuses_finished_runs(tmp_path):
    inputs, work, results = save_inputs(tmp_path / "inputs"), tmp_path / "runs", tmp_path / "results"
    grid = write_grid(tmp_path / "tiny.json", base={"hidden_size": 16, "num_train_epochs": 2, "loss_type": "ce"},
                      settings=[{"name": "reference"}, {"name": "no dropout", "hidden_dropout_prob": 0.0,
                                                         "attention_dropout_prob": 0.0}])
    command = ["run", "--config", str(grid), "--inputs", str(inputs), "--work", str(work), "--results_dir",
               str(results), "--jobs", "2"]
    first = run_experiment(*command)
    assert first.returncode == 0, first.stderr
    assert "0 runs already done, 4 to run" in first.stdout

    records = experiment.read_records([work])
    assert sorted((r["setting_name"], r["seed"]) for r in records) == [
        ("no dropout", 0), ("no dropout", 1), ("reference", 0), ("reference", 1)]
    for record in records:
        assert record["device"] == experiment.device_name("cpu") and record["split_fingerprint"] == FINGERPRINT
        assert record["provenance"]["versions"]["torch"] == torch.__version__
        assert set(record["provenance"]["versions"]) >= {"torch", "transformers", "lamar-hf"}
        assert record["setting"]["hidden_size"] == 16 and record["setting"]["num_train_epochs"] == 2
        assert record["result"]["epochs"] == 2.0 and record["result"]["reached_max_epochs"] is True
    assert [r["setting"]["hidden_dropout_prob"] for r in records if r["setting_name"] == "no dropout"] == [0.0, 0.0]

    written = json.loads((results / "tiny.json").read_text())
    assert written["split_fingerprint"] == FINGERPRINT and written["device"] == experiment.device_name("cpu")
    assert written["grid"]["file"] == str(grid) and list(written["grid"]["settings"]) == ["reference", "no dropout"]
    [row] = written["rows"]
    assert set(row) >= {"backbone", "variant", "setting", "selected_on", "seeds", "validation", "test"}
    assert row["selected_on"] == "validation" and row["seeds"] == [0, 1]
    chosen_runs = sorted((r for r in records if r["setting_name"] == row["setting"]["name"]), key=lambda r: r["seed"])
    assert row["train_seconds"] == [r["result"]["train_seconds"] for r in chosen_runs] and all(row["train_seconds"])
    assert row["threads"] == [r["provenance"]["threads"] for r in chosen_runs]
    by_setting = {name: [r for r in records if r["setting_name"] == name] for name in ("reference", "no dropout")}
    chosen = max(by_setting, key=lambda name: statistics.fmean(r["result"]["validation"]["ndcg@10"]
                                                               for r in by_setting[name]))
    assert row["setting"]["name"] == chosen
    for part in ("validation", "test"):
        values = [r["result"][part]["recall@20"] for r in by_setting[chosen]]
        torch.testing.assert_close(row[part]["recall@20"], statistics.fmean(values))
        torch.testing.assert_close(row[part]["recall@20_std"], statistics.stdev(values))
    table = (results / "tiny.md").read_text()
    assert "validation NDCG@10" in table and "test Recall@10" in table and f"| sasrec | id-only | {chosen} |" in table
    assert FINGERPRINT in table and str(grid) in table and "reached the epoch limit" in table
    assert (results / "tiny.png").stat().st_size > 0

    again = run_experiment(*command)
    assert again.returncode == 0, again.stderr
    assert "4 runs already done, 0 to run" in again.stdout
    assert json.loads((results / "tiny.json").read_text())["rows"] == written["rows"]


def test_without_work_the_records_go_beside_the_table_and_git_keeps_the_records_only(tmp_path, monkeypatch):
    inputs = save_inputs(tmp_path / "inputs")
    grid = write_grid(tmp_path / "tiny.json", seeds=[0], base={"hidden_size": 8, "num_train_epochs": 1,
                                                              "loss_type": "ce"}, settings=[{"name": "reference"}])
    monkeypatch.setattr(experiment, "RESULTS", tmp_path / "results")
    experiment.main(["run", "--config", str(grid), "--inputs", str(inputs), "--name", "tiny_study"])
    folder = tmp_path / "results" / "chains" / "runs" / "tiny_study"
    [record] = experiment.read_records([folder])
    assert record["setting_name"] == "reference" and Path(record["path"]).with_suffix(".log").is_file()
    assert (tmp_path / "results" / "chains" / "tiny_study.json").is_file()

    if subprocess.run(["git", "-C", str(REPO), "rev-parse"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: the .gitignore rule cannot be checked")
    in_repo = "benchmarks/results/amazon_beauty/runs/beauty_sasrec/"
    names = [in_repo + Path(record["path"]).name, in_repo + Path(record["path"]).with_suffix(".log").name,
             in_repo + Path(record["path"]).stem + "/checkpoint-1/trainer_state.json", in_repo + "a.json.tmp"]
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "--no-index", *names], capture_output=True,
                             text=True).stdout.split()
    assert ignored == names[1:]


def test_the_grid_chooses_on_validation_even_where_test_would_choose_otherwise(tmp_path):
    grid, work, results = rigged_grid(tmp_path), tmp_path / "runs", tmp_path / "results"
    for seed in (0, 1):
        write_rigged_run(work, grid, "reference", seed, validation=0.30 + seed / 100, test=0.05 + seed / 100)
        write_rigged_run(work, grid, "two blocks", seed, validation=0.20, test=0.40)  # best on test, not chosen
    # The best on validation, but one seed short: not a candidate, and shown as missing a seed.
    write_rigged_run(work, grid, "wide", 0, validation=0.90, test=0.90)
    experiment.main(["collect", "--config", grid.path, "--runs", str(work), "--results_dir", str(results)])

    written = json.loads((results / "rigged.json").read_text())
    chosen, missing = written["rows"]
    assert chosen["variant"] == "id-only" and chosen["setting"]["name"] == "reference"
    assert chosen["setting"]["values"] == {"hidden_size": 16}
    torch.testing.assert_close(chosen["validation"]["ndcg@10"], 0.305)
    torch.testing.assert_close(chosen["test"]["recall@20"], 0.055)
    torch.testing.assert_close(chosen["test_excluding_history"]["ndcg@10"], 0.065)
    assert chosen["settings_complete"] == 2 and chosen["settings_declared"] == 3
    assert missing == {**missing, "variant": "metadata", "missing": True, "setting": None}
    study = {(s["variant"], s["setting"]): s for s in written["settings"]}
    assert study[("id-only", "wide")]["missing_seeds"] == [1] and not study[("id-only", "wide")]["chosen"]
    assert study[("metadata", "reference")]["missing_seeds"] == [0, 1]
    table = (results / "rigged.md").read_text()
    assert "| sasrec | id-only | reference (among 2 of 3 settings) | 2 | 0.3050 ± 0.0071 |" in table
    assert "| sasrec | metadata | missing: no setting has all seeds (0 of 3 complete) |" in table
    assert "| sasrec | id-only | wide | hidden_size 32 | 0 (missing 1) |" in table
    assert "0.4000" not in table  # the test figures of a setting that was not chosen are never shown


@pytest.mark.parametrize("key, values, label", [
    ("device", ("Test CPU Model 1", "NVIDIA H200"), "devices"),
    ("fingerprint", (FINGERPRINT, "sha256:" + "cd" * 32), "split fingerprints"),
])
def test_collect_refuses_to_mix_devices_or_splits_and_names_the_runs_on_each_side(tmp_path, key, values, label):
    grid, work = rigged_grid(tmp_path), tmp_path / "runs"
    first = write_rigged_run(work, grid, "reference", 0, 0.3, 0.3, **{key: values[0]})
    second = write_rigged_run(work, grid, "reference", 1, 0.3, 0.3, **{key: values[1]})
    with pytest.raises(SystemExit) as refused:
        experiment.main(["collect", "--config", grid.path, "--runs", str(work), "--results_dir", str(tmp_path / "r")])
    message = str(refused.value)
    assert f"refusing to put runs of different {label} in one table" in message
    assert f"{values[0]!r}: {first.name}" in message and f"{values[1]!r}: {second.name}" in message
    assert not (tmp_path / "r").exists()
    if key == "device":  # one device's runs can still be collected on their own
        experiment.main(["collect", "--config", grid.path, "--runs", str(work), "--results_dir", str(tmp_path / "r"),
                         "--only_device", values[1]])
        assert json.loads((tmp_path / "r" / "rigged.json").read_text())["device"] == values[1]


def test_runs_of_another_grid_are_left_out_and_a_file_that_is_not_a_run_record_is_refused(tmp_path):
    grid, work = rigged_grid(tmp_path), tmp_path / "runs"
    other = experiment.load_grid(write_grid(tmp_path / "other.json", settings=[{"hidden_size": 8}]))
    write_rigged_run(work, other, "hidden_size=8", 0, 0.9, 0.9, device="Another CPU")
    for seed in (0, 1):
        write_rigged_run(work, grid, "reference", seed, 0.3, 0.3)
    experiment.main(["collect", "--config", grid.path, "--runs", str(work), "--results_dir", str(tmp_path / "r")])
    assert len(json.loads((tmp_path / "r" / "rigged.json").read_text())["rows"][0]["runs"]) == 2

    (work / "summary.json").write_text(json.dumps({"summary": {}}))
    with pytest.raises(SystemExit, match=r"summary.json is not a run record of benchmarks/experiment.py"):
        experiment.main(["collect", "--config", grid.path, "--runs", str(work), "--results_dir", str(tmp_path / "r2")])


@pytest.mark.parametrize("spec, message", [
    ({"settings": [{"hidden_size": 8, "colour": "red"}]}, r"setting 'hidden_size=8, colour=red': 'colour' is neither"),
    ({"settings": [{"mask_prob": 0.4}]}, r"'mask_prob' does not apply to the sasrec backbone"),
    ({"base": {"seed": 3}, "settings": [{}]}, r"base: 'seed' is set by the runner"),
    ({"variants": ["captions"], "settings": [{}]}, r"unknown variant 'captions'"),
    ({"settings": [{"name": "a"}, {"name": "a", "hidden_size": 8}]}, r"two settings are named 'a'"),
])
def test_a_wrong_grid_file_is_refused_naming_the_file_and_the_field(tmp_path, spec, message):
    path = write_grid(tmp_path / "wrong.json", **spec)
    with pytest.raises(SystemExit, match=message) as refused:
        experiment.load_grid(path)
    assert str(path) in str(refused.value)


def test_a_value_the_model_rejects_stops_the_batch_before_any_run(tmp_path):
    inputs = save_inputs(tmp_path / "inputs")
    grid = write_grid(tmp_path / "bad.json", settings=[
        {"name": "ok"}, {"name": "popular negatives", "loss_type": "sampled_softmax", "num_negatives": 4,
                         "negative_sampling": "popularity"},
        {"name": "unknown loss", "loss_type": "hinge"}])
    with pytest.raises(SystemExit, match=r"bad.json, setting 'unknown loss' for sasrec: .*hinge"):
        experiment.main(["run", "--config", str(grid), "--inputs", str(inputs), "--work", str(tmp_path / "runs"),
                         "--results_dir", str(tmp_path / "results")])
    assert not (tmp_path / "runs").exists()


def test_inputs_without_a_split_fingerprint_are_refused(tmp_path):
    inputs = save_inputs(tmp_path / "inputs", fingerprint=None)
    grid = write_grid(tmp_path / "grid.json", base={"hidden_size": 8, "num_train_epochs": 1}, settings=[{}])
    with pytest.raises(SystemExit, match=r"records no split_fingerprint"):
        experiment.main(["run", "--config", str(grid), "--inputs", str(inputs), "--work", str(tmp_path / "runs"),
                         "--results_dir", str(tmp_path / "results")])
    assert not (tmp_path / "runs").exists()


def test_the_shipped_grids_are_valid_and_the_repeat_score_is_one_of_the_sasrec_settings():
    grids = {path.stem: experiment.load_grid(path) for path in sorted((REPO / "benchmarks" / "configs").glob("*.yaml"))}
    assert {"beauty_sasrec", "beauty_bert4rec", "beauty_gru4rec"} <= set(grids)
    sasrec = grids["beauty_sasrec"]
    assert sasrec.resolved("reference") == {
        "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 1, "hidden_dropout_prob": 0.2,
        "attention_dropout_prob": 0.2, "max_history_length": 50, "loss_type": "sampled_softmax", "num_negatives": 256,
        "negative_sharing": "sequence", "repeat_bias": False, "learning_rate": 0.001, "per_device_train_batch_size": 128,
        "num_train_epochs": 200, "early_stopping_patience": 20}
    assert sasrec.settings["repeat score"] == {"repeat_bias": True, "repeat_score_learning_rate": 0.01}
    assert sorted(s["mask_prob"] for s in grids["beauty_bert4rec"].settings.values() if "mask_prob" in s) == [0.2, 0.4, 0.6]


def test_a_reduced_grid_or_a_smoke_override_is_written_beside_the_study_never_over_it(tmp_path):
    grid = rigged_grid(tmp_path)
    smoke = experiment.reduce_grid(grid, seeds="0", overrides=["num_train_epochs=2"])
    assert smoke.seeds == [0] and all(smoke.resolved(name)["num_train_epochs"] == 2 for name in smoke.settings)
    assert smoke.resolved("wide") == {"hidden_size": 32, "num_train_epochs": 2}
    options = experiment.argparse.Namespace(name=None, results_dir=str(tmp_path), max_users=None, time_budget=None)
    assert experiment.results_path(options, grid, grid, "chains") == tmp_path / "rigged.json"
    assert experiment.results_path(options, grid, smoke, "chains") == tmp_path / "rigged_reduced.json"
    options.max_users = 300
    assert experiment.results_path(options, grid, grid, "chains") == tmp_path / "rigged_reduced.json"
    with pytest.raises(SystemExit, match=r"--override: 'mask_prob' does not apply to the sasrec backbone"):
        experiment.reduce_grid(grid, overrides=["mask_prob=0.4"])
    with pytest.raises(SystemExit, match=r"--settings 'deep' is not in .*rigged.json"):
        experiment.reduce_grid(grid, settings="reference,deep")


def test_runs_of_the_variants_of_before_keep_their_identity_and_record_names(tmp_path):
    # The names the runner wrote before attribute and user-signal variants existed (same job, same digest).
    grid = rigged_grid(tmp_path)
    names = {}
    for variant in ("id-only", "metadata"):
        job = experiment.make_job(grid, "sasrec", variant, "two blocks", 1, split_fingerprint=FINGERPRINT,
                                  device="Test CPU Model 1", dataset="chains", texts="sha256:" + "cd" * 32,
                                  attributes="sha256:" + "ef" * 32, user_signals="sha256:" + "01" * 32)
        assert set(experiment.identity_of(job)) == set(experiment.IDENTITY)
        names[variant] = experiment.record_path(tmp_path, experiment.identity_of(job)).name
    assert names == {"id-only": "sasrec-id-only-seed1-377844fd9dc4.json",
                     "metadata": "sasrec-metadata-seed1-e29bdac15fc0.json"}
    job = experiment.make_job(grid, "sasrec", "attributes", "two blocks", 1, split_fingerprint=FINGERPRINT,
                              device="Test CPU Model 1", dataset="chains", texts="sha256:" + "cd" * 32,
                              attributes="sha256:" + "ef" * 32)
    assert experiment.identity_of(job)["attributes"] == "sha256:" + "ef" * 32 and job["texts"] is None


def test_fusion_settings_apply_to_text_variants_only_and_multiview_to_two_or_more_texts(tmp_path):
    grid = experiment.load_grid(write_grid(tmp_path / "fusions.json", variants=["id-only", "intent", "signals"],
                                           settings=[{"name": "reference"}, {"name": "gate", "fusion": "gate"},
                                                     {"name": "multiview", "fusion": "multiview"}]))
    assert experiment.variant_setting(grid, "gate", "id-only") == {}
    assert experiment.variant_setting(grid, "gate", "intent") == {"fusion": "gate"}
    assert [(v, n) for _, v, n in experiment.applicable_runs(grid)] == [
        ("id-only", "reference"), ("intent", "reference"), ("intent", "gate"), ("signals", "reference"),
        ("signals", "gate"), ("signals", "multiview")]
    reasons = {(part["variant"], part["setting"]): part["reason"] for part in experiment.not_applicable_parts(grid)}
    assert set(reasons) == {("id-only", "gate"), ("id-only", "multiview"), ("intent", "multiview")}
    assert reasons["id-only", "gate"].startswith("the same run as setting 'reference'")


def test_a_variant_without_its_inputs_or_a_text_variant_with_fusion_none_stops_the_batch_before_any_run(tmp_path):
    from safetensors.torch import save_file

    inputs = save_inputs(tmp_path / "inputs")  # no texts, attribute ids or user embeddings
    data = RecommendationData.load(inputs / experiment.SEQUENCES_FILE)
    # As an older prepare wrote it: no user ids.
    RecommendationData(data.name, data.num_items, data.histories, data.targets, data.revision, data.source).save(
        inputs / experiment.SEQUENCES_FILE)

    def refused(variants, settings=({"name": "reference"},)):
        grid = write_grid(tmp_path / f"{variants[0]}.json", variants=variants, seeds=[0],
                          base={"hidden_size": 8, "num_train_epochs": 1}, settings=list(settings))
        with pytest.raises(SystemExit) as stopped:
            experiment.main(["run", "--config", str(grid), "--inputs", str(inputs), "--work", str(tmp_path / "runs"),
                             "--results_dir", str(tmp_path / "results")])
        return str(stopped.value)

    assert "setting 'no texts' for sasrec, variant intent: --fusion none cannot use item texts (intent)" in refused(
        ["intent"], [{"name": "no texts", "fusion": "none"}])
    assert f"{inputs / experiment.ATTRIBUTES_FILE} is missing" in refused(["attributes"])
    save_file({"scenario": torch.zeros(31, dtype=torch.int64)}, str(inputs / experiment.ATTRIBUTES_FILE))
    assert f"{inputs / experiment.ATTRIBUTES_FILE} has no attribute ids of intent, topic" in refused(["attributes"])
    assert f"{inputs / experiment.USER_EMBEDDINGS_FILE} is missing" in refused(["user-signals"])
    from lamar_hf.training.data import UserTextEmbeddings

    UserTextEmbeddings([1], torch.ones(1, 4)).save(inputs / experiment.USER_EMBEDDINGS_FILE)
    assert "carries no user ids (written by an older prepare)" in refused(["user-signals"])
    assert not (tmp_path / "runs").exists()


def test_metadata_with_signal_attributes_trains_on_both_and_records_them(tmp_path):
    """``metadata+attributes``: the fused metadata text and the signal attribute ids in one model, end to end."""
    import numpy as np
    from safetensors.torch import save_file

    from lamar_hf.text_embeddings import save_text_embeddings

    inputs = save_inputs(tmp_path / "inputs")
    num_items = RecommendationData.load(inputs / experiment.SEQUENCES_FILE).num_items
    rng = np.random.default_rng(0)
    save_text_embeddings(inputs / experiment.TEXTS_FILE, {"metadata": rng.normal(size=(num_items + 1, 384))})
    save_file({kind: torch.arange(num_items + 1, dtype=torch.int64) % 4 for kind in experiment.SIGNALS},
              str(inputs / experiment.ATTRIBUTES_FILE))
    grid = write_grid(tmp_path / "both.json", variants=["metadata+attributes"], seeds=[0],
                      base={"hidden_size": 16, "num_train_epochs": 1, "loss_type": "ce"},
                      settings=[{"name": "init", "fusion": "init"}])
    done = run_experiment("run", "--config", str(grid), "--inputs", str(inputs), "--work", str(tmp_path / "runs"),
                          "--results_dir", str(tmp_path / "results"))
    assert done.returncode == 0, done.stderr
    [record] = experiment.read_records([tmp_path / "runs"])
    assert record["variant"] == "metadata+attributes" and record["setting"]["fusion"] == "init"
    assert record["result"]["text_kinds"] == ["metadata"]
    assert record["result"]["attribute_kinds"] == list(experiment.SIGNALS)
    assert record["result"]["attribute_vocab_sizes"] == [3, 3, 3]
    assert record["attributes"].startswith("sha256:") and record["texts"].startswith("sha256:")


def test_a_run_killed_midway_continues_from_its_checkpoint_and_ends_as_an_uninterrupted_run(tmp_path):
    """The runner process is killed once the first checkpoint is written; started again, it resumes that run (model,
    optimizer and RNG states) and records the same figures as the same run trained without a stop."""
    import signal
    import time

    inputs = save_inputs(tmp_path / "inputs")
    grid = write_grid(tmp_path / "grid.json", seeds=[0], settings=[{"name": "reference"}],
                      base={"hidden_size": 16, "num_train_epochs": 30, "early_stopping_patience": 0, "loss_type": "ce"})

    def command(work):
        return [sys.executable, str(SCRIPT), "run", "--config", str(grid), "--inputs", str(inputs), "--work",
                str(work), "--results_dir", str(tmp_path / "results"), "--jobs", "1", "--threads", "1"]

    uninterrupted = subprocess.run(command(tmp_path / "whole"), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    cut = tmp_path / "cut"
    process = subprocess.Popen(command(cut), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(cut.glob("*/checkpoint-*/trainer_state.json")) and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.02)
    time.sleep(0.05)  # trainer_state.json is the checkpoint's last file: let it be written whole
    os.killpg(process.pid, signal.SIGKILL)  # the runner and its worker process
    process.wait()
    assert not list(cut.glob("*.json")), "the run finished before it could be killed"
    checkpoint = max(cut.glob("*/checkpoint-*/trainer_state.json"), key=lambda path: int(path.parent.name.split("-")[1])).parent
    resumed = subprocess.run(command(cut), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr
    [whole] = experiment.read_records([tmp_path / "whole"])
    [again] = experiment.read_records([cut])
    assert whole["result"]["resumed_from"] is None and again["result"]["resumed_from"] == checkpoint.name
    assert again["result"]["epochs"] == whole["result"]["epochs"] == 30
    for part in ("validation", "test"):
        for metric, value in whole["result"][part].items():
            assert again["result"][part][metric] == pytest.approx(value, rel=1e-4, abs=1e-6), (part, metric)
