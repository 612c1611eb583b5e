"""The batched decoding engine and TransformersGenerator, on a tiny Llama built in code (float32)."""

import json

import pytest
import torch
from chat_server import tiny_llama, tiny_tokenizer

from lamar_hf.enrich import GREEDY, DecodingSettings, PromptBuilder, SignalSpec, TransformersGenerator
from lamar_hf.enrich.engine import common_prefix_length
from lamar_hf.enrich.parsing import words

SIGNALS = (SignalSpec("scenario", "when it is used", 4), SignalSpec("intent", "why", 3), SignalSpec("topic", "what", 2))
ITEMS = [{"title": f"Crème {n} " + "lotion " * n, "brand": "Acme", "categories": ["Beauty", "Skin Care"], "price": 3.5}
         for n in range(7)]


@pytest.fixture(scope="module")
def tiny():
    tokenizer = tiny_tokenizer()
    return tiny_llama(tokenizer), tokenizer


def generator(tiny, **options):
    model, tokenizer = tiny
    return TransformersGenerator(model, tokenizer=tokenizer, device="cpu", dtype="float32", **options)


def reference(tiny, conversations, max_new_tokens):
    """What plain ``model.generate`` gives, one conversation at a time (greedy)."""
    model, tokenizer = tiny
    texts = []
    for conversation in conversations:
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
        output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                do_sample=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        texts.append(tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True).strip())
    return texts


def test_batched_greedy_equals_model_generate_with_and_without_the_shared_prefix(tiny):
    conversations = [PromptBuilder().messages(item) for item in ITEMS]
    expected = reference(tiny, conversations, 12)
    assert len(set(expected)) > 3  # the tiny model says different things for different items
    decoding = GREEDY.with_(max_new_tokens=12)
    shared = generator(tiny, batch_size=3)
    assert shared.engine.shared_attention
    assert shared.generate(conversations, decoding) == expected
    # The shared system prompt was computed once, not once per prompt.
    assert shared.stats.prefix_builds == 1
    assert shared.stats.computed_prompt_tokens < shared.stats.prompt_tokens / 2
    copied = generator(tiny, batch_size=3)
    copied.engine.shared_attention = False  # the fallback: the prefix cache copied per row
    assert copied.generate(conversations, decoding) == expected
    plain = generator(tiny, batch_size=3, use_prefix_cache=False)
    assert plain.generate(conversations, decoding) == expected
    assert plain.stats.computed_prompt_tokens == plain.stats.prompt_tokens


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[5], [6]]) == 0
    assert common_prefix_length([]) == 0


def test_answer_signals_make_the_engine_write_the_labels_and_clip_words_bounds_every_line(tiny):
    conversations = [PromptBuilder(signals=SIGNALS).messages(item) for item in ITEMS]
    free = generator(tiny).generate(conversations, GREEDY.with_(max_new_tokens=30), answer_signals=SIGNALS)
    clipped = generator(tiny).generate(conversations, GREEDY.with_(max_new_tokens=60, clip_words=True),
                                       answer_signals=SIGNALS)
    for text in free:
        assert text.startswith("scenario:")  # a random model would never start so on its own
    for text in clipped:
        lines = text.split("\n")
        assert [line.split(":")[0] for line in lines] == ["scenario", "intent", "topic"], text
        for line, spec in zip(lines, SIGNALS):
            assert len(words(line.split(":", 1)[1])) <= spec.max_words, line


def test_sampling_is_seeded_and_the_repetition_penalty_changes_the_answer(tiny):
    conversations = [PromptBuilder().messages(item) for item in ITEMS[:4]]
    sampled = DecodingSettings(max_new_tokens=10, do_sample=True, temperature=1.0, top_p=0.9, seed=5)
    first = generator(tiny).generate(conversations, sampled)
    assert generator(tiny).generate(conversations, sampled) == first
    assert generator(tiny).generate(conversations, sampled.with_(seed=6)) != first
    greedy = generator(tiny).generate(conversations, GREEDY.with_(max_new_tokens=10))
    assert first != greedy
    penalised = generator(tiny).generate(conversations, GREEDY.with_(max_new_tokens=10, repetition_penalty=3.0))
    assert penalised != greedy


def test_generate_rows_turns_a_backend_failure_into_per_row_errors(tiny):
    class Flaky(TransformersGenerator):
        def generate(self, conversations, decoding=GREEDY, progress=None, answer_signals=None):
            if any("FAIL" in conversation[-1]["content"] for conversation in conversations):
                raise RuntimeError("backend down")
            return super().generate(conversations, decoding, progress, answer_signals)

    model, tokenizer = tiny
    flaky = Flaky(model, tokenizer=tokenizer, dtype="float32")
    conversations = [PromptBuilder().messages(item) for item in [ITEMS[0], {"title": "FAIL"}, ITEMS[1]]]
    rows = flaky.generate_rows(conversations, GREEDY.with_(max_new_tokens=4))
    assert [row.error for row in rows] == [None, "RuntimeError: backend down", None]
    assert rows[0].text is not None and rows[1].text is None


def test_adapter_is_merged_and_its_prompt_file_becomes_the_generators_prompt(tiny, tmp_path):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny
    base_dir = tmp_path / "base"
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    peft_model = get_peft_model(tiny_llama(tokenizer), LoraConfig(r=2, target_modules=["q_proj", "v_proj"],
                                                                   init_lora_weights=False))
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    prompt = PromptBuilder(signals=SIGNALS, system="Short system prompt:\n{lines}").zero_shot()
    prompt.save(adapter_dir)

    tuned = TransformersGenerator(base_dir, adapter=adapter_dir, device="cpu", dtype="float32")
    assert tuned.prompt.to_dict() == prompt.to_dict()
    assert tuned.adapter.startswith(str(adapter_dir)) and "sha256:" in tuned.adapter
    assert tuned.revision.startswith("sha256:")
    conversations = [tuned.prompt.messages(item) for item in ITEMS[:3]]
    decoding = GREEDY.with_(max_new_tokens=8)
    merged = peft_model.merge_and_unload().eval()
    assert tuned.generate(conversations, decoding) == reference((merged, tokenizer), conversations, 8)
    base = TransformersGenerator(base_dir, device="cpu", dtype="float32")
    assert base.prompt is None and base.adapter is None
    assert base.generate(conversations, decoding) != tuned.generate(conversations, decoding)
    assert json.loads((adapter_dir / "lamar_prompt.json").read_text())["format"] == "lamar-prompt"


def test_dtype_and_device_choices(tiny):
    model, tokenizer = tiny
    assert generator(tiny).provenance()["dtype"] == "float32"
    bf16 = TransformersGenerator(tiny_llama(tokenizer), tokenizer=tokenizer, device="cpu", dtype="bfloat16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16 and bf16.device == "cpu"
    assert len(bf16.generate([PromptBuilder().messages(ITEMS[0])], GREEDY.with_(max_new_tokens=3))) == 1
    with pytest.raises(ValueError, match="unknown dtype"):
        TransformersGenerator(model, tokenizer=tokenizer, dtype="float8")
    with pytest.raises(ValueError, match="tokenizer"):
        TransformersGenerator(model)


def test_the_explicit_attention_used_off_cpu_matches_the_cpu_flash_kernel():
    from lamar_hf.enrich.engine import _additive_mask, _attend, _attend_explicit

    torch.manual_seed(0)
    query, key, value = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8)
    own = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])
    mask = _additive_mask(own, 5, torch.float32)
    flash_out, flash_lse = _attend(query, key, value, mask, 0.35)
    out, lse = _attend_explicit(query, key, value, mask, 0.35)
    assert torch.allclose(out, flash_out, atol=1e-5) and torch.allclose(lse, flash_lse, atol=1e-5)


def test_shared_prefix_decoding_through_the_explicit_attention_equals_model_generate(tiny, monkeypatch):
    from lamar_hf.enrich import engine

    monkeypatch.setattr(engine, "_attend", engine._attend_explicit)  # the path GPUs take
    conversations = [PromptBuilder().messages(item) for item in ITEMS[:4]]
    assert generator(tiny, batch_size=2).generate(conversations, GREEDY.with_(max_new_tokens=8)) == reference(
        tiny, conversations, 8)
