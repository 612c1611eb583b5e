"""EndpointGenerator against a real local chat-completions server (127.0.0.1, port 0) that answers with a tiny Llama."""

import pytest
from chat_server import ChatServer, tiny_llama, tiny_tokenizer

from lamar_hf.enrich import (
    GREEDY,
    DecodingSettings,
    EndpointGenerator,
    PromptBuilder,
    TransformersGenerator,
    enrich_items,
    load_generator,
)

ITEMS = [{"item_id": n, "title": f"Sérum {n} " + "glow " * n, "brand": "Acme", "categories": ["Beauty", "Skin Care"],
          "price": 9.0} for n in range(1, 5)]


@pytest.fixture(scope="module")
def server():
    from huggingface_hub import constants

    # The tests run with HF_HUB_OFFLINE=1, which blocks all of huggingface_hub's HTTP; this server is local.
    offline, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, False
    tokenizer = tiny_tokenizer()
    local = TransformersGenerator(tiny_llama(tokenizer), tokenizer=tokenizer, device="cpu", dtype="float32")
    try:
        with ChatServer(local) as running:
            yield running, local
    finally:
        constants.HF_HUB_OFFLINE = offline


def test_offline_mode_is_refused_with_a_clear_message(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE=1"):
        EndpointGenerator("http://127.0.0.1:9/v1")


def test_endpoint_answers_equal_the_local_model_and_the_server_sees_the_chat(server):
    running, local = server
    conversations = [PromptBuilder().messages(item) for item in ITEMS]
    decoding = GREEDY.with_(max_new_tokens=10)
    endpoint = EndpointGenerator(running.url, max_workers=3)
    expected = local.generate(conversations, decoding)
    assert len(set(expected)) > 1
    before = len(running.requests)
    assert endpoint.generate(conversations, decoding) == expected
    sent = running.requests[before:]
    assert sorted(request["messages"][-1]["content"] for request in sent) == sorted(
        conversation[-1]["content"] for conversation in conversations)
    assert all(request["max_tokens"] == 10 and request["temperature"] == 0.0 for request in sent)
    assert endpoint.model_id == f"tiny-llama @ {running.url}"  # the served model's name is provenance


def test_sampling_settings_travel_and_a_failing_request_fails_only_its_row(server):
    running, _ = server
    endpoint = load_generator(running.url)
    assert isinstance(endpoint, EndpointGenerator)
    conversations = [PromptBuilder().messages(item) for item in [ITEMS[0], {"title": "FAIL-ME please"}, ITEMS[1]]]
    before = len(running.requests)
    rows = endpoint.generate_rows(conversations, DecodingSettings(max_new_tokens=6, do_sample=True, temperature=0.8,
                                                                  top_p=0.9, seed=7, repetition_penalty=1.2))
    assert rows[0].error is None and rows[2].error is None and rows[1].text is None
    assert "500" in rows[1].error
    request = next(r for r in running.requests[before:] if "FAIL-ME" not in r["messages"][-1]["content"])
    assert (request["temperature"], request["top_p"], request["seed"]) == (0.8, 0.9, 7)
    assert request["frequency_penalty"] == pytest.approx(0.2)


def test_enrich_items_through_the_endpoint_gives_a_status_per_row(server):
    running, _ = server
    from datasets import Dataset

    items = Dataset.from_list([{**item, "asin": str(item["item_id"]), "description": None} for item in ITEMS]
                              + [{"item_id": 9, "asin": "9", "title": "FAIL-ME", "brand": None, "categories": [],
                                  "price": None, "description": None}])
    signals = enrich_items(items, EndpointGenerator(running.url), progress=False,
                           decoding=GREEDY.with_(max_new_tokens=8), retry_decoding=None)
    assert signals["item_id"] == [1, 2, 3, 4, 9]
    assert signals[4]["status"] == "failed" and signals[4]["status_detail"].startswith("generator:")
    assert all(status in {"ok", "failed"} for status in signals["status"])
    assert signals[0]["generator"].startswith("tiny-llama @ http://127.0.0.1:")
