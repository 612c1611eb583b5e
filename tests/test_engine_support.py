"""Which models lamar's decoding engine runs, and transformers' own ``generate`` for all others.

A tiny Gemma 3 (sliding-window layers, logit softcapping) and a tiny Llama, both built in code (float32).
"""

import pytest
import torch
from chat_server import tiny_llama, tiny_tokenizer

from lamar_hf.enrich import GREEDY, PromptBuilder, SignalSpec, TransformersGenerator
from lamar_hf.enrich import engine as engine_module
from lamar_hf.enrich.engine import DecodingEngine, LibraryDecoder, UnsupportedModelError, engine_support, make_decoder
from lamar_hf.enrich.parsing import words

SIGNALS = (SignalSpec("scenario", "when it is used", 4), SignalSpec("intent", "why", 3), SignalSpec("topic", "what", 2))
ITEMS = [{"title": f"Crème {n} " + "lotion " * n, "brand": "Acme", "categories": ["Beauty", "Skin Care"], "price": 3.5}
         for n in range(5)]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def tiny_gemma3(tokenizer):
    """A random 2-layer Gemma 3: one sliding-window layer (window 4, far shorter than any prompt), one full."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, sliding_window=4, layer_types=["sliding_attention", "full_attention"],
        final_logit_softcapping=30.0, max_position_embeddings=4096, initializer_range=0.02,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return Gemma3ForCausalLM(config).eval()


def library_generator(model, tokenizer, **options):
    return TransformersGenerator(model, tokenizer=tokenizer, device="cpu", dtype="float32", batch_size=8, **options)


def test_engine_refuses_gemma3_with_one_clear_line(tokenizer):
    model = tiny_gemma3(tokenizer)
    with pytest.raises(UnsupportedModelError) as refused:
        DecodingEngine(model, [tokenizer.eos_token_id], tokenizer.pad_token_id)
    message = str(refused.value)
    assert "\n" not in message
    assert "Gemma3ForCausalLM" in message and "'gemma3_text'" in message and "decoder='transformers'" in message
    assert model.config._attn_implementation != engine_module.PREFIX_ATTENTION  # the model was left as it was
    with pytest.raises(UnsupportedModelError, match="does not support Gemma3ForCausalLM"):
        library_generator(model, tokenizer, decoder="engine")


def test_engine_support_names_what_it_does_not_implement(tokenizer):
    llama = tiny_llama(tokenizer)
    assert engine_support(llama.config) is None
    config = llama.config.to_dict()
    from transformers import LlamaConfig

    windowed = LlamaConfig(**{**config, "sliding_window": 8})
    assert "sliding_window=8" in engine_support(windowed)
    capped = LlamaConfig(**{**config, "attn_logit_softcapping": 50.0})
    assert "attn_logit_softcapping=50.0" in engine_support(capped)
    assert "model type 'gemma3_text'" in engine_support(tiny_gemma3(tokenizer).config)
    with pytest.raises(ValueError, match="unknown decoder 'fast'"):
        make_decoder(llama, [tokenizer.eos_token_id], tokenizer.pad_token_id, decoder="fast")
    chosen = make_decoder(llama, [tokenizer.eos_token_id], tokenizer.pad_token_id)
    assert isinstance(chosen, DecodingEngine if engine_module.ENGINE_BY_DEFAULT else LibraryDecoder)


def test_generator_decodes_gemma3_with_transformers_generate(tokenizer):
    from transformers import GenerationConfig

    model = tiny_gemma3(tokenizer)
    generator = library_generator(model, tokenizer)  # decoder="auto"
    assert isinstance(generator.engine, LibraryDecoder)
    conversations = [PromptBuilder().messages(item) for item in ITEMS]
    texts = generator.generate(conversations, GREEDY.with_(max_new_tokens=10))

    # The same batch (sorted by length, left-padded) through plain greedy `generate`: same shapes, same kernels.
    prompts = [generator.encode(conversation) for conversation in conversations]
    assert min(len(prompt) for prompt in prompts) > 4 * model.config.sliding_window
    order = sorted(range(len(prompts)), key=lambda index: len(prompts[index]))
    width = max(len(prompt) for prompt in prompts)
    input_ids = torch.full((len(prompts), width), tokenizer.pad_token_id)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, index in enumerate(order):
        input_ids[row, width - len(prompts[index]):] = torch.tensor(prompts[index])
        attention_mask[row, width - len(prompts[index]):] = 1
    config = GenerationConfig(max_new_tokens=10, do_sample=False, eos_token_id=[tokenizer.eos_token_id],
                              pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
    expected = [None] * len(prompts)
    for row, index in enumerate(order):
        answer = output[row, width:].tolist()
        if tokenizer.eos_token_id in answer:
            answer = answer[: answer.index(tokenizer.eos_token_id)]
        expected[index] = tokenizer.decode(answer, skip_special_tokens=True).strip()
    assert texts == expected
    assert len(set(texts)) > 1  # the tiny model says different things for different items
    assert generator.stats.computed_prompt_tokens == generator.stats.prompt_tokens == sum(map(len, prompts))


def test_library_path_keeps_the_answer_format_word_limits_and_seeded_sampling(tokenizer):
    generator = library_generator(tiny_gemma3(tokenizer), tokenizer)
    conversations = [PromptBuilder(signals=SIGNALS).messages(item) for item in ITEMS]
    clipped = generator.generate(conversations, GREEDY.with_(max_new_tokens=60, clip_words=True),
                                 answer_signals=SIGNALS)
    for text in clipped:
        lines = text.split("\n")
        assert [line.split(":")[0] for line in lines] == ["scenario", "intent", "topic"], text
        for line, spec in zip(lines, SIGNALS):
            assert len(words(line.split(":", 1)[1])) <= spec.max_words, line
    sampling = GREEDY.with_(do_sample=True, temperature=1.0, seed=3, repetition_penalty=1.3, max_new_tokens=12)
    first = generator.generate(conversations, sampling)
    assert generator.generate(conversations, sampling) == first  # seeded per row
    assert generator.generate(conversations, sampling.with_(seed=4)) != first
