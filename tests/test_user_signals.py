"""User signals: prompts from training history only (never a validation or test item), the ``user_signals``
table's schema, statuses and provenance, the row cache (resume after a kill), the validator, ``lamar enrich-users``."""

import json

import pytest
from chat_server import RuleGenerator, tiny_llama, tiny_tokenizer
from datasets import Dataset, DatasetDict, load_dataset

from lamar_hf.data.schema import ITEM_FEATURES, SEQUENCE_FEATURES
from lamar_hf.enrich import DEFAULT_DECODING, RETRY, Generator, TransformersGenerator
from lamar_hf.enrich.pipeline import PROVENANCE_COLUMNS, RowCache
from lamar_hf.enrich.user_signals import (
    NO_HISTORY,
    USER_INTENT,
    UserPromptBuilder,
    enrich_users,
    find_user_problems,
    training_histories,
    write_user_signals,
)

# Users and their whole sequences, oldest first; the last item is the test target, the one before the validation one.
SEQUENCES = {1: [1, 2, 3, 4, 5, 101, 102], 2: [3, 4, 6, 103, 104], 3: [2, 5, 6, 1, 3, 105, 106], 4: [7, 4, 107, 108],
             5: [6, 2, 1, 109, 110]}
HELD_OUT = {101, 102, 103, 104, 105, 106, 107, 108, 109, 110}


def title(item: int) -> str | None:
    if item in HELD_OUT:
        return f"Heldout{item}Qz unique serum"  # a title no training item shares
    return None if item == 7 else f"Gentle product {item} cream"


def items_dataset() -> Dataset:
    rows = [{"item_id": item, "asin": f"B{item:05d}", "title": title(item), "brand": None, "categories": ["Beauty"],
             "price": None, "description": None} for item in range(1, 111)]
    return Dataset.from_list(rows, features=ITEM_FEATURES)


def sequences_dataset() -> DatasetDict:
    """Leave-one-out splits as lamar_hf.data writes them."""
    splits = {"train": [], "validation": [], "test": []}
    for user, sequence in SEQUENCES.items():
        splits["train"].append({"user_id": user, "history": sequence[:-3], "target": sequence[-3]})
        splits["validation"].append({"user_id": user, "history": sequence[:-2], "target": sequence[-2]})
        splits["test"].append({"user_id": user, "history": sequence[:-1], "target": sequence[-1]})
    return DatasetDict({name: Dataset.from_list(rows, features=SEQUENCE_FEATURES) for name, rows in splits.items()})


class RecordingGenerator(TransformersGenerator):
    """The in-process generator, keeping every conversation it is asked to answer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[list[dict]] = []

    def generate(self, conversations, decoding=DEFAULT_DECODING, progress=None, answer_signals=None):
        self.seen.extend(conversations)
        return super().generate(conversations, decoding, progress=progress, answer_signals=answer_signals)


class TitleCopier(Generator):
    """A rule generator: a greedy answer copies the last title shown; a sampled one (the retry) is fine."""

    model_id, revision = "title-copier", "v1"

    def generate(self, conversations, decoding=DEFAULT_DECODING, progress=None, answer_signals=None):
        last = [conversation[-1]["content"].splitlines()[-1].removeprefix("- ") for conversation in conversations]
        if decoding.do_sample:
            return ["intent: pamper sensitive skin every day" for _ in conversations]
        return [f"intent: {text}" for text in last]


@pytest.fixture(scope="module")
def tiny_generator():
    tokenizer = tiny_tokenizer()
    return RecordingGenerator(tiny_llama(tokenizer), tokenizer=tokenizer, device="cpu", dtype="float32", batch_size=4)


def test_prompts_never_show_a_validation_or_test_item(tiny_generator):
    tiny_generator.seen.clear()
    table = enrich_users(sequences_dataset(), items_dataset(), tiny_generator, max_history=3,
                         decoding=DEFAULT_DECODING.with_(max_new_tokens=8),
                         retry_decoding=RETRY.with_(max_new_tokens=8),
                         progress=False)
    prompts = [message["content"] for conversation in tiny_generator.seen for message in conversation]
    assert prompts and not any(title(item) in text for item in HELD_OUT for text in prompts)
    assert not any("Heldout" in text for text in prompts)
    # The last max_history titled items of history + target of the train row; item 7 has no title.
    shown = dict(zip(table["user_id"], table["history_items"]))
    assert shown == {1: [3, 4, 5], 2: [3, 4, 6], 3: [6, 1, 3], 4: [4], 5: [6, 2, 1]}
    user_turns = {conversation[-1]["content"] for conversation in tiny_generator.seen}
    assert "Purchases, oldest first:\n- Gentle product 3 cream\n- Gentle product 4 cream\n- Gentle product 5 cream" \
        in user_turns
    assert len(table) == 5 and set(table["status"]) <= {"ok", "retried", "invalid"}
    assert all(row["status_detail"] is None for row in table.to_list() if row["status"] == "ok")
    assert table[0]["generator"] == tiny_generator.model_id and table[0]["generator_revision"].startswith("params:")


def test_table_schema_statuses_and_provenance():
    builder = UserPromptBuilder(max_history=4)
    table = enrich_users(sequences_dataset(), items_dataset(), RuleGenerator(), prompt=builder, progress=False)
    assert table.column_names == ["user_id", "intent", "status", "status_detail", "history_items",
                                  *PROVENANCE_COLUMNS]
    assert "title" not in table.column_names and table["user_id"] == [1, 2, 3, 4, 5]
    assert table["status"] == ["ok"] * 5 and table["intent"][0] == "get beauty results quickly"
    first = table[0]
    assert first["generator"] == "rule-generator" and first["generator_revision"] == "v1" and first["adapter"] is None
    assert first["prompt_version"] == builder.version and first["lamar_hf_version"]
    assert json.loads(first["decoding"]) == DEFAULT_DECODING.to_dict()
    both = enrich_users(sequences_dataset(), items_dataset(), RuleGenerator(), signals="intent,scenario",
                        progress=False)
    assert both.column_names[:3] == ["user_id", "intent", "scenario"]
    assert both["scenario"][0] == "a shopper using the beauty at home"


def test_resume_after_a_partial_run_regenerates_nothing_cached(tmp_path):
    sequences, items = sequences_dataset(), items_dataset()
    killed = RuleGenerator(interrupt_after=3)  # the third generate call dies: two chunks of 2 users are done
    with pytest.raises(KeyboardInterrupt):
        enrich_users(sequences, items, killed, cache_dir=tmp_path, chunk_size=2, progress=False)
    assert killed.prompts == 4 and len(RowCache(tmp_path)) == 4
    resumed, report = RuleGenerator(), {}
    table = enrich_users(sequences, items, resumed, cache_dir=tmp_path, chunk_size=2, progress=False, report=report)
    assert resumed.prompts == 1 and report["from_cache"] == 4 and report["generated"] == 1
    assert table.to_list() == enrich_users(sequences, items, RuleGenerator(), progress=False).to_list()
    again = RuleGenerator()
    assert enrich_users(sequences, items, again, cache_dir=tmp_path, chunk_size=3, progress=False).to_list() == \
        table.to_list()
    assert again.calls == 0
    # Another prompt (here a shorter history) is another row: generated anew.
    other = RuleGenerator()
    enrich_users(sequences, items, other, max_history=2, cache_dir=tmp_path, progress=False)
    assert other.prompts == 5


def test_resume_with_the_tiny_model_generates_nothing_cached(tiny_generator, tmp_path):
    options = {"decoding": DEFAULT_DECODING.with_(max_new_tokens=6), "retry_decoding": RETRY.with_(max_new_tokens=6),
               "cache_dir": tmp_path, "progress": False}
    first_report, second_report = {}, {}
    partial = enrich_users(sequences_dataset(), items_dataset(), tiny_generator, limit=2, report=first_report,
                           **options)
    assert len(partial) == 2 and first_report["generated"] == 2
    tiny_generator.seen.clear()
    table = enrich_users(sequences_dataset(), items_dataset(), tiny_generator, report=second_report, **options)
    assert second_report["from_cache"] == 2 and second_report["generated"] == 3
    assert table.select(range(2)).to_list() == partial.to_list()
    asked = {conversation[-1]["content"] for conversation in tiny_generator.seen}
    builder = UserPromptBuilder()
    histories = [builder.history_text([title(item) for item in items]) for items in table["history_items"]]
    assert asked == set(histories[2:])  # users 1 and 2 came from the cache


def test_a_copied_title_is_invalid_and_retried():
    table = enrich_users(sequences_dataset(), items_dataset(), TitleCopier(), progress=False)
    assert table["status"] == ["retried"] * 5 and table["intent"][0] == "pamper sensitive skin every day"
    assert table["status_detail"][0] == "first answer: intent: copy of a history title"
    assert json.loads(table["decoding"][0]) == RETRY.to_dict()
    never = enrich_users(sequences_dataset(), items_dataset(), TitleCopier(), retry_decoding=None, progress=False)
    assert never["status"] == ["invalid"] * 5 and never["intent"] == [None] * 5


def test_the_validator():
    titles = ["Gentle product 3 cream", "OPI Nail Lacquer, Simmer and Shimmer"]
    exemplars = UserPromptBuilder().exemplar_answers()

    def problems(text):
        return find_user_problems({"intent": text}, [USER_INTENT], titles, exemplars, min_words=2).get("intent")

    assert problems("look after dry skin at home") is None
    assert problems("OPI nail lacquer simmer and shimmer") == "copy of a history title"
    assert problems("buy the gentle product 3 cream again") == "copy of a history title"
    assert problems("cream") == "1 word, fewer than 2"
    assert problems("") == "empty" and problems(None) == "missing"
    assert problems(" ".join(["word"] * 2 + [f"w{n}" for n in range(12)])) == "14 words, more than 12"
    assert problems(exemplars[0]) == "copy of an exemplar answer"
    assert problems("make a makeup look that lasts all night") == "copy of an exemplar answer"
    assert problems("The shopper is trying to achieve a goal, which is to") == "copy of the instruction"


def test_bad_input_gets_clear_errors_and_users_without_titles_are_not_sent():
    sequences, items = sequences_dataset(), items_dataset()
    validation = load_dataset_split(sequences, "validation")
    with pytest.raises(ValueError, match="from the train split only"):
        enrich_users(validation, items, RuleGenerator(), progress=False)
    with pytest.raises(ValueError, match="no train split"):
        enrich_users(DatasetDict({"test": sequences["test"]}), items, RuleGenerator(), progress=False)
    unknown = Dataset.from_list([{"user_id": 9, "history": [1, 999], "target": 2}], features=SEQUENCE_FEATURES)
    with pytest.raises(ValueError, match=r"row 0 \(user 9\): item 999 is not an item"):
        training_histories(unknown, range(1, 111))
    twice = Dataset.from_list([{"user_id": 9, "history": [1], "target": 2}] * 2, features=SEQUENCE_FEATURES)
    with pytest.raises(ValueError, match="user 9 has a second training row"):
        enrich_users(twice, items, RuleGenerator(), progress=False)
    with pytest.raises(ValueError, match="unknown user signal 'mood'"):
        enrich_users(sequences, items, RuleGenerator(), signals="mood", progress=False)
    untitled = Dataset.from_list([{"user_id": 9, "history": [7], "target": 7}], features=SEQUENCE_FEATURES)
    generator = RuleGenerator()
    table = enrich_users(untitled, items, generator, progress=False)
    assert table["status"] == ["invalid"] and table["status_detail"] == [NO_HISTORY] and generator.prompts == 0


def load_dataset_split(sequences: DatasetDict, split: str) -> Dataset:
    """A split as ``load_dataset`` gives it, knowing its name."""
    return Dataset(sequences[split].data, split=split)


def test_write_user_signals_and_the_lamar_enrich_users_command(tmp_path, capsys):
    from lamar_hf.cli import main
    from lamar_hf.data import Benchmark

    table = enrich_users(sequences_dataset(), items_dataset(), RuleGenerator(), progress=False)
    path = write_user_signals(table, tmp_path / "direct", manifest={"users": 5})
    assert path == tmp_path / "direct" / "user_signals" / "train-00000-of-00001.parquet"
    assert load_dataset("parquet", data_files=str(path), split="train").to_list() == table.to_list()
    with pytest.raises(FileExistsError, match="holds 5 rows and this run would write 2"):
        write_user_signals(table.select(range(2)), tmp_path / "direct")

    tokenizer = tiny_tokenizer()
    model_dir = tmp_path / "tiny-model"
    tiny_llama(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    bench = Benchmark("tiny", items_dataset(), sequences_dataset()).save(tmp_path / "bench")
    out = tmp_path / "out"
    args = ["enrich-users", "--benchmark", str(bench), "--out", str(out), "--generator", str(model_dir),
            "--limit", "3", "--max-history", "2", "--cache-dir", str(tmp_path / "cache"), "--dtype", "float32",
            "--device", "cpu", "--max-new-tokens", "6"]
    assert main(args) == 0
    written = load_dataset("parquet", data_files=str(out / "user_signals" / "train-00000-of-00001.parquet"),
                           split="train")
    assert written["user_id"] == [1, 2, 3] and written["history_items"][0] == [4, 5]
    manifest = json.loads((out / "lamar_enrich_users.json").read_text())
    assert manifest["users"] == 3 and manifest["generated"] == 3 and manifest["prompt"]["max_history"] == 2
    assert "lamar enrich-users: 3 users (3 generated, 0 from the cache)" in capsys.readouterr().out
    assert main(args) == 0
    assert json.loads((out / "lamar_enrich_users.json").read_text())["generated"] == 0
    fewer = list(args)
    fewer[fewer.index("--limit") + 1] = "1"
    assert main(fewer) == 2  # fewer rows over a fuller config, refused before any model is loaded
    assert "holds 3 rows" in capsys.readouterr().err
    assert main(["enrich-users", "--benchmark", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "not a prepared benchmark" in capsys.readouterr().err
