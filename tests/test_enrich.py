"""Signal specs, prompt rendering (exact, through a chat template), serialisation, answer parsing and validation."""

import json

import pytest
from chat_server import tiny_tokenizer

from lamar_hf.enrich import (
    DEFAULT_SIGNALS,
    Exemplar,
    MetadataView,
    PromptBuilder,
    SignalSpec,
    find_problems,
    load_exemplars,
    parse_answer,
    render_metadata,
    resolve_signals,
    save_exemplars,
)
from lamar_hf.enrich.exemplars import category_cluster, select_exemplar_items
from lamar_hf.enrich.parsing import describe_problems

ITEM = {"item_id": 7, "title": "OPI Nail Lacquer, Simmer &amp; Shimmer, 0.5-Fluid Ounce", "brand": "OPI",
        "categories": ["Beauty", "Makeup", "Nails", "Nail Polish"], "price": 12.0, "description": None}
EXEMPLAR = Exemplar(item={"title": "Johnson's Baby Shampoo", "brand": "Johnson's", "categories": ["Beauty", "Hair Care"],
                          "price": 4.5, "description": None},
                    signals={"scenario": "a parent giving a toddler a bath", "intent": "wash hair without tears",
                             "topic": "gentle kids shampoo"}, item_id=3)
SPECS = DEFAULT_SIGNALS


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def test_metadata_block_decodes_entities_drops_the_root_category_and_formats_the_price():
    assert render_metadata(ITEM) == (
        "Title: OPI Nail Lacquer, Simmer & Shimmer, 0.5-Fluid Ounce\n"
        "Brand: OPI\n"
        "Category: Makeup > Nails > Nail Polish\n"
        "Price: $12.00"
    )


def test_metadata_view_controls_fields_depth_and_truncation():
    item = {**ITEM, "description": "word " * 100 + "end", "price": float("nan")}
    view = MetadataView(fields=("title", "categories", "description", "price"), category_depth=2,
                        skip_root_category=False, max_title_words=3, max_description_words=5)
    assert render_metadata(item, view) == (
        "Title: OPI Nail Lacquer, ...\n"
        "Category: Beauty > Makeup\n"
        "Description: word word word word word ..."
    )
    with pytest.raises(ValueError, match="unknown metadata field"):
        MetadataView(fields=("title", "colour"))


def test_item_without_title_and_brand_still_renders_what_it_has_and_non_ascii_survives():
    assert render_metadata({"title": None, "brand": "", "categories": ["Beauty", "Fragrance"]}) == "Category: Fragrance"
    assert render_metadata({"title": "Crème brûlée 香水 😀\x00 lotion"}) == "Title: Crème brûlée 香水 😀 lotion"
    assert render_metadata({"title": "  ", "categories": []}) == ""


def test_few_shot_prompt_renders_exactly_through_the_chat_template(tokenizer):
    builder = PromptBuilder(exemplars=[EXEMPLAR])
    system = (
        "You describe products of an online shop with short phrases in your own words. "
        "For the product the user gives, answer with exactly these lines:\n"
        "scenario: <a concrete situation in which someone uses the item (who, when, where); at most 11 words>\n"
        "intent: <what the buyer wants to achieve with it, as a verb phrase; at most 10 words>\n"
        "topic: <a short topical label of what the item is; at most 7 words>\n"
        "Infer what the title does not say. Do not repeat the title."
    )
    assert builder.mode == "few-shot"
    assert builder.render(ITEM, tokenizer) == (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        "<|im_start|>user\nTitle: Johnson's Baby Shampoo\nBrand: Johnson's\nCategory: Hair Care\nPrice: $4.50<|im_end|>\n"
        "<|im_start|>assistant\nscenario: a parent giving a toddler a bath\nintent: wash hair without tears\n"
        "topic: gentle kids shampoo<|im_end|>\n"
        "<|im_start|>user\nTitle: OPI Nail Lacquer, Simmer & Shimmer, 0.5-Fluid Ounce\nBrand: OPI\n"
        "Category: Makeup > Nails > Nail Polish\nPrice: $12.00<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    zero = builder.zero_shot()
    assert zero.mode == "zero-shot" and len(zero.messages(ITEM)) == 2
    assert zero.render(ITEM, tokenizer).startswith(f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\nTitle: OPI")


def test_training_example_is_the_prompt_plus_an_answer_the_parser_reads_back(tokenizer):
    builder = PromptBuilder().zero_shot()
    signals = {"scenario": "a manicure before a party", "intent": "add shimmer to nails", "topic": "glitter polish"}
    example = builder.training_example(ITEM, signals, tokenizer)
    assert example["prompt"] == builder.render(ITEM, tokenizer)
    assert example["completion"] == (
        "scenario: a manicure before a party\nintent: add shimmer to nails\ntopic: glitter polish<|im_end|>\n")
    # What a model tuned on it generates, decoded as the generators decode (special tokens dropped):
    generated = tokenizer.decode(tokenizer(example["completion"], add_special_tokens=False)["input_ids"],
                                 skip_special_tokens=True)
    assert parse_answer(generated, builder.signals) == signals


def test_prompt_builder_round_trips_through_dict_and_file_and_versions_change_with_content(tmp_path):
    custom = SignalSpec("audience", "who the item is for", 6)
    builder = PromptBuilder(signals=(*SPECS[:2], custom), metadata=MetadataView(category_depth=2),
                            exemplars=[Exemplar(EXEMPLAR.item, {**EXEMPLAR.signals, "audience": "parents"}, item_id=3)],
                            system="Answer:\n{lines}")
    again = PromptBuilder.from_dict(json.loads(json.dumps(builder.to_dict())))
    assert again.to_dict() == builder.to_dict() and again.version == builder.version
    path = builder.save(tmp_path)
    assert path.name == "lamar_prompt.json" and PromptBuilder.load(tmp_path).version == builder.version
    assert builder.zero_shot().version != builder.version
    assert PromptBuilder().version != PromptBuilder(metadata=MetadataView(max_title_words=5)).version
    with pytest.raises(ValueError, match="not a lamar prompt"):
        PromptBuilder.from_dict({"format": "something-else"})
    with pytest.raises(ValueError, match=r"exemplar 0 \(item 3\) has no \['audience'\]"):
        PromptBuilder(signals=(*SPECS, custom), exemplars=[EXEMPLAR])


def test_signal_specs_defaults_custom_and_errors():
    assert [spec.name for spec in resolve_signals(None)] == ["scenario", "intent", "topic"]
    assert [spec.name for spec in resolve_signals("topic,scenario")] == ["topic", "scenario"]
    custom = SignalSpec("season", "the season it suits", 3)
    assert resolve_signals(["intent", custom])[1] is custom
    with pytest.raises(ValueError, match="unknown signal 'mood'"):
        resolve_signals(["mood"])
    with pytest.raises(ValueError, match="distinct"):
        resolve_signals(["topic", "topic"])
    with pytest.raises(ValueError, match="lower-case"):
        SignalSpec("Bad Name", "x")
    with pytest.raises(ValueError, match="max_words"):
        SignalSpec("ok", "x", 0)


@pytest.mark.parametrize("text, expected", [
    ("scenario: a beach day\nintent: protect skin\ntopic: sunscreen",
     {"scenario": "a beach day", "intent": "protect skin", "topic": "sunscreen"}),
    ("**Scenario**: \"a beach day.\"\n- Intent: protect skin\n  3. TOPIC : sunscreen lotion.",
     {"scenario": "a beach day", "intent": "protect skin", "topic": "sunscreen lotion"}),
    ("scenario: a beach day\nintent: protect skin",  # partial: the answer stopped early
     {"scenario": "a beach day", "intent": "protect skin", "topic": None}),
    ("The product is a sunscreen. It is nice.\n\n!!!", {"scenario": None, "intent": None, "topic": None}),
    ("", {"scenario": None, "intent": None, "topic": None}),
    ("scenario: first\nscenario: second\ncolour: red\ntopic:", {"scenario": "first", "intent": None, "topic": ""}),
])
def test_parse_answer_well_formed_decorated_partial_and_garbage(text, expected):
    assert parse_answer(text, SPECS) == expected


def test_parse_answer_last_takes_the_final_lines_of_a_chain_of_thought():
    text = "First, scenario: someone at the beach.\nscenario: a beach day\nintent: protect skin\ntopic: sunscreen"
    assert parse_answer(text, SPECS)["scenario"] == "a beach day"  # a label mid-sentence is not a line
    text = "scenario: draft idea\nLet me refine.\nscenario: a beach day\nintent: protect skin\ntopic: sunscreen"
    assert parse_answer(text, SPECS)["scenario"] == "draft idea"
    assert parse_answer(text, SPECS, last=True)["scenario"] == "a beach day"


def test_find_problems_names_every_rule():
    title = "Neutrogena Ultra Sheer Dry Touch Sunscreen SPF 55"
    exemplars = ["a parent giving a toddler a bath"]
    good = {"scenario": "a day at the beach with kids", "intent": "avoid sunburn while swimming",
            "topic": "sport sunscreen"}
    assert find_problems(good, SPECS, title, exemplars) == {}
    bad = {"scenario": "A parent giving a toddler a bath!", "intent": "   ", "topic": None}
    assert find_problems(bad, SPECS, title, exemplars) == {
        "scenario": "copy of an exemplar answer", "intent": "empty", "topic": "missing"}
    copies = {"scenario": "neutrogena ultra sheer dry touch sunscreen spf 55", "intent": "Ultra Sheer Dry Touch formula",
              "topic": "sunscreen"}
    problems = find_problems(copies, SPECS, title, exemplars)
    assert problems["scenario"] == "copy of the title" and problems["intent"] == "copy of the title"
    assert "topic" not in problems  # one title word is not a copy
    assert find_problems({**good, "scenario": "the best " + title}, SPECS, title)["scenario"] == "copy of the title"
    long = {**good, "topic": "one two three four five six seven eight"}
    assert find_problems(long, SPECS, title)["topic"] == "8 words, more than 7"
    assert find_problems({**good, "intent": good["scenario"]}, SPECS, title)["intent"] == "same as scenario"
    assert find_problems({**good, "topic": "<a short topical label>"}, SPECS, title)["topic"] == "template placeholder"
    assert find_problems({**good, "topic": "10-10-10 gel"}, SPECS, title)["topic"] == "repeats a word three times"
    assert describe_problems({"intent": "empty", "topic": "missing"}) == "intent: empty; topic: missing"


def test_exemplar_file_with_metadata_or_item_ids(tmp_path):
    path = save_exemplars([EXEMPLAR], tmp_path / "with.jsonl")
    assert load_exemplars(path)[0] == EXEMPLAR
    ids_only = save_exemplars([EXEMPLAR], tmp_path / "ids.jsonl", with_metadata=False)
    assert "title" not in ids_only.read_text()
    items = [{"item_id": 3, "asin": "B1", **EXEMPLAR.item}]
    assert load_exemplars(ids_only, items)[0].item == EXEMPLAR.item
    flat = tmp_path / "flat.jsonl"
    flat.write_text(json.dumps({"item_id": 3, "asin": "B1", **EXEMPLAR.signals}) + "\n")
    assert load_exemplars(flat, items, signal_names=["topic"])[0].signals == {"topic": "gentle kids shampoo"}
    with pytest.raises(ValueError, match="pass the items"):
        load_exemplars(ids_only)
    flat.write_text(json.dumps({"item_id": 3, "asin": "B2", **EXEMPLAR.signals}) + "\n")
    with pytest.raises(ValueError, match=r"flat.jsonl:1: item 3 is B1, not B2"):
        load_exemplars(flat, items)
    flat.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"flat.jsonl:1: not valid JSON"):
        load_exemplars(flat, items)


def test_exemplar_candidates_come_from_the_largest_category_clusters():
    rows = []
    for cluster, count in (("Skin Care", 5), ("Hair Care", 3), ("Makeup", 2), ("Fragrance", 1)):
        for number in range(count):
            rows.append({"item_id": len(rows) + 1, "title": f"{cluster} product number {number}", "brand": "Acme",
                         "categories": ["Beauty", cluster, "Leaf"]})
    rows.append({"item_id": 99, "title": "No brand item here", "brand": None, "categories": ["Beauty", "Tools"]})
    picks = select_exemplar_items(rows, k=3, per_cluster=2, seed=0)
    assert [category_cluster(cluster[0]) for cluster in picks] == ["Beauty > Skin Care", "Beauty > Hair Care",
                                                                   "Beauty > Makeup"]
    assert all(len(cluster) == 2 for cluster in picks)
    assert picks == select_exemplar_items(rows, k=3, per_cluster=2, seed=0)  # seeded


def test_auto_cot_keeps_one_validated_exemplar_per_cluster():
    from lamar_hf.enrich import Generator, build_exemplars
    from lamar_hf.enrich.exemplars import ANSWER_REQUEST

    class Reasoner(Generator):
        """Reasons on the chain-of-thought prompt, then answers; copies the title for 'Bad' items."""

        model_id = "reasoner"

        def __init__(self):
            self.requests = []

        def generate(self, conversations, decoding=None, progress=None, answer_signals=None):
            texts = []
            for conversation in conversations:
                self.requests.append(conversation)
                title = conversation[1]["content"].splitlines()[0].removeprefix("Title: ")
                if conversation[-1]["content"] != ANSWER_REQUEST:
                    assert "Let's think step by step" in conversation[-1]["content"]
                    texts.append(f"People buy {title}. They use it daily. It helps. This sentence is cut.")
                elif title.startswith("Bad"):
                    texts.append(f"scenario: {title}\nintent: x\ntopic: y")
                else:
                    texts.append(f"Thinking done.\nscenario: using {title.split()[-1]} at home\n"
                                 f"intent: enjoy {title.split()[-1]}\ntopic: {title.split()[-1]} kit")
            return texts

    rows = [{"item_id": 1, "title": "Bad copied product one", "brand": "Acme", "categories": ["Beauty", "Skin"]},
            {"item_id": 2, "title": "Good face cream", "brand": "Acme", "categories": ["Beauty", "Skin"]},
            {"item_id": 3, "title": "Good hair gel", "brand": "Acme", "categories": ["Beauty", "Hair"]}]
    reasoner = Reasoner()
    exemplars = build_exemplars(rows, reasoner, k=2, per_cluster=2, seed=1)
    assert [exemplar.item_id for exemplar in exemplars] == [2, 3]
    assert exemplars[0].signals == {"scenario": "using cream at home", "intent": "enjoy cream", "topic": "cream kit"}
    assert exemplars[0].rationale == "People buy Good face cream. They use it daily. It helps."  # three sentences
    assert len(reasoner.requests) == 6  # 3 candidates, reasoning then answering
    builder = PromptBuilder(exemplars=exemplars)
    assert builder.mode == "few-shot" and "using cream at home" in builder.exemplar_answers()
