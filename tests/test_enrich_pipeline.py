"""enrich_items: schema and provenance, the cache (a re-run generates nothing), resume after a kill,
deduplication, retries, bad input, writing the signals config, and ``lamar enrich``."""

import json

import pytest
from chat_server import RuleGenerator, tiny_llama, tiny_tokenizer
from datasets import Dataset, load_dataset

from lamar_hf.data.schema import ITEM_FEATURES
from lamar_hf.enrich import DEFAULT_DECODING, RETRY, Exemplar, PromptBuilder, enrich_items, status_counts, write_signals
from lamar_hf.enrich.pipeline import NO_METADATA, PROVENANCE_COLUMNS, RowCache

CATEGORIES = [["Beauty", "Skin Care", "Face"], ["Beauty", "Hair Care", "Shampoos"], ["Beauty", "Makeup", "Nails"]]


def items_dataset(count: int = 10, extra: list[dict] = ()) -> Dataset:
    rows = [{"item_id": n, "asin": f"B{n:05d}", "title": f"Product {n} gentle cream", "brand": f"Brand{n % 3}",
             "categories": CATEGORIES[n % 3], "price": 1.0 + n, "description": None} for n in range(1, count + 1)]
    for row in extra:
        rows.append({"item_id": len(rows) + 1, "asin": f"X{len(rows)}", "title": None, "brand": None, "categories": [],
                     "price": None, "description": None, **row})
    return Dataset.from_list(rows, features=ITEM_FEATURES)


def test_one_row_per_item_with_signals_status_and_provenance():
    items = items_dataset(6)
    generator = RuleGenerator()
    builder = PromptBuilder()
    signals = enrich_items(items, generator, prompt=builder, progress=False)
    assert signals.column_names == ["item_id", "scenario", "intent", "topic", "status", "status_detail",
                                    *PROVENANCE_COLUMNS]
    assert signals["item_id"] == list(range(1, 7))
    assert set(signals["status"]) == {"ok"} and set(signals["status_detail"]) == {None}
    first = signals[0]
    assert first["scenario"] == "a shopper using the cream at home" and first["topic"] == "shampoos item"
    assert first["generator"] == "rule-generator" and first["generator_revision"] == "v1"
    assert first["prompt_version"] == builder.version and first["lamar_hf_version"]
    assert json.loads(first["decoding"]) == DEFAULT_DECODING.to_dict()
    assert generator.prompts == 6


def test_rerun_loads_every_row_from_the_cache_without_generating(tmp_path):
    items = items_dataset(10)
    first = enrich_items(items, RuleGenerator(), cache_dir=tmp_path, chunk_size=4, progress=False)
    assert len(RowCache(tmp_path)) == 10
    again = RuleGenerator()
    second = enrich_items(items, again, cache_dir=tmp_path, chunk_size=4, progress=False)
    assert again.calls == 0 and again.prompts == 0
    assert second.to_list() == first.to_list()
    # Anything that shapes the output is in the fingerprint: other decoding settings generate anew.
    other = RuleGenerator()
    enrich_items(items, other, decoding=DEFAULT_DECODING.with_(repetition_penalty=1.1), cache_dir=tmp_path,
                 chunk_size=4, progress=False)
    assert other.prompts == 10


def test_a_killed_run_resumes_without_regenerating_finished_chunks(tmp_path):
    items = items_dataset(10)
    killed = RuleGenerator(interrupt_after=3)  # the third generate call dies: two chunks of 4 are done
    with pytest.raises(KeyboardInterrupt):
        enrich_items(items, killed, cache_dir=tmp_path, chunk_size=4, progress=False)
    assert killed.prompts == 8
    resumed = RuleGenerator()
    signals = enrich_items(items, resumed, cache_dir=tmp_path, chunk_size=4, progress=False)
    assert resumed.prompts == 2  # only the unfinished chunk
    assert signals["item_id"] == list(range(1, 11)) and set(signals["status"]) == {"ok"}
    assert signals.to_list() == enrich_items(items, RuleGenerator(), progress=False).to_list()


def test_identical_prompts_are_generated_once():
    items = items_dataset(4)
    twin = {**items[0], "item_id": 5, "asin": "TWIN"}  # same metadata as item 1
    items = Dataset.from_list(items.to_list() + [twin], features=ITEM_FEATURES)
    generator = RuleGenerator()
    signals = enrich_items(items, generator, progress=False)
    assert generator.prompts == 4
    assert signals[4]["item_id"] == 5 and signals[4]["scenario"] == signals[0]["scenario"]


def test_a_failed_answer_is_retried_once_with_the_retry_decoding():
    generator = RuleGenerator(copy_title_first=True)
    signals = enrich_items(items_dataset(3), generator, progress=False)
    assert signals["status"] == ["retried"] * 3
    assert all(detail == "first answer: scenario: copy of the title" for detail in signals["status_detail"])
    assert json.loads(signals[0]["decoding"]) == RETRY.to_dict()
    never = RuleGenerator(copy_title_first=True)
    signals = enrich_items(items_dataset(3), never, retry_decoding=None, progress=False)
    assert signals["status"] == ["invalid"] * 3 and signals["scenario"] == [None] * 3
    assert signals["intent"][0] == "get cream results"  # the valid signals of a failed row are kept
    assert never.prompts == 3


def test_bad_input_gets_a_per_row_status_and_nothing_is_lost():
    extra = [
        {"categories": ["Beauty", "Fragrance"]},  # no title and no brand
        {},  # nothing at all to describe
        {"title": "Long one", "description": "blah " * 5000},  # a very long description
        {"title": "Crème brûlée 香水 😀 lotion", "brand": "Ünïcode"},
        {"title": "EMPTY answer please", "brand": "Quiet"},
        {"title": "BOOM goes the backend", "brand": "Flaky"},
    ]
    items = items_dataset(3, extra)
    generator = RuleGenerator(raise_on="BOOM", empty_on="EMPTY")
    signals = enrich_items(items, generator, progress=False)
    assert len(signals) == len(items) and signals["item_id"] == items["item_id"]
    by_id = {row["item_id"]: row for row in signals.to_list()}
    assert by_id[4]["status"] == "ok" and by_id[4]["topic"] == "fragrance item"
    assert by_id[5]["status"] == "invalid" and by_id[5]["status_detail"] == NO_METADATA
    assert by_id[6]["status"] == "ok"
    long_prompt = next(c for c in generator.seen if "Long one" in c[-1]["content"])[-1]["content"]
    assert len(long_prompt.split()) < 80  # the description was cut to 60 words
    assert by_id[7]["status"] == "ok" and by_id[7]["scenario"] == "a shopper using the lotion at home"
    assert by_id[8]["status"] == "invalid" and by_id[8]["status_detail"] == "answer: empty"
    assert by_id[9]["status"] == "unavailable"  # an error is no answer, and is not taken for an invalid one
    assert by_id[9]["status_detail"] == "generator: RuntimeError: backend failure on 'BOOM'"
    assert status_counts(signals) == {"ok": 6, "retried": 0, "invalid": 2, "unavailable": 1}


def test_a_generator_that_returns_nothing_fails_its_rows_without_crashing():
    class Silent(RuleGenerator):
        def generate(self, conversations, decoding=None, progress=None, answer_signals=None):
            self.calls += 1
            return None

    signals = enrich_items(items_dataset(2), Silent(), progress=False)
    assert signals["status"] == ["unavailable", "unavailable"]
    assert signals["status_detail"][0].startswith("generator: RuntimeError: the generator returned nothing")


def test_exemplar_answers_copied_by_the_model_fail_validation():
    exemplar = Exemplar({"title": "Other thing"}, {"scenario": "a shopper using the cream at home", "intent": "x y",
                                                   "topic": "z"})
    signals = enrich_items(items_dataset(1), RuleGenerator(), exemplars=[exemplar], retry_decoding=None,
                           progress=False)
    assert signals[0]["status_detail"] == "scenario: copy of an exemplar answer"


def test_write_signals_is_atomic_and_loads_as_the_signals_config(tmp_path):
    signals = enrich_items(items_dataset(3), RuleGenerator(), progress=False)
    (tmp_path / "items").mkdir()
    path = write_signals(signals, tmp_path, manifest={"items": 3})
    assert path == tmp_path / "signals" / "train-00000-of-00001.parquet"
    with pytest.raises(FileExistsError, match="holds 3 rows and this run would write 2"):
        write_signals(signals.select(range(2)), tmp_path)  # fewer rows over a fuller config
    assert load_dataset("parquet", data_files=str(path), split="train")["item_id"] == [1, 2, 3]
    write_signals(signals.select(range(2)), tmp_path, overwrite=True)  # replaces the old config
    loaded = load_dataset("parquet", data_files=str(path), split="train")
    assert loaded["item_id"] == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items", "lamar_enrich.json", "signals"]
    assert json.loads((tmp_path / "lamar_enrich.json").read_text()) == {"items": 3}


def test_lamar_enrich_command_writes_the_signals_of_a_prepared_benchmark(tmp_path, capsys):
    from lamar_hf.cli import main

    tokenizer = tiny_tokenizer()
    model_dir = tmp_path / "tiny-model"
    tiny_llama(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    items_dir = tmp_path / "bench"
    (items_dir / "items").mkdir(parents=True)
    items_dataset(5).to_parquet(str(items_dir / "items" / "train-00000-of-00001.parquet"))
    out = tmp_path / "out"
    args = ["enrich", "--items", str(items_dir), "--out", str(out), "--generator", str(model_dir),
            "--signals", "scenario,topic", "--limit", "4", "--cache-dir", str(tmp_path / "cache"),
            "--dtype", "float32", "--max-new-tokens", "8", "--min-validity", "0"]
    assert main(args) == 0
    signals = load_dataset("parquet", data_files=str(out / "signals" / "train-00000-of-00001.parquet"), split="train")
    assert signals["item_id"] == [1, 2, 3, 4]
    assert {"scenario", "topic", "status"} <= set(signals.column_names) and "intent" not in signals.column_names
    assert signals[0]["generator"] == str(model_dir)
    manifest = json.loads((out / "lamar_enrich.json").read_text())
    assert manifest["items"] == 4 and manifest["generated"] == 4
    # Not the Beauty items: the shipped generic exemplars (invented products) make the prompt few-shot.
    assert [e["item"]["title"] for e in manifest["prompt"]["exemplars"]][0].startswith("Wooden Stacking")
    assert main(args) == 0  # the same run again comes from the cache
    assert json.loads((out / "lamar_enrich.json").read_text())["generated"] == 0
    assert main(["enrich", "--items", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "missing" in capsys.readouterr().err
