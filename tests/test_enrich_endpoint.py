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
from lamar_hf.enrich.config import RetryPolicy

ITEMS = [{"item_id": n, "title": f"Sérum {n} " + "glow " * n, "brand": "Acme", "categories": ["Beauty", "Skin Care"],
          "price": 9.0} for n in range(1, 5)]
QUICK = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, max_seconds=5.0)


@pytest.fixture(scope="module")
def server():
    tokenizer = tiny_tokenizer()
    local = TransformersGenerator(tiny_llama(tokenizer), tokenizer=tokenizer, device="cpu", dtype="float32")
    with ChatServer(local, model="org/tiny-llama", revision="abc123") as running:
        yield running, local


def test_endpoint_answers_equal_the_local_model_and_the_server_sees_the_chat(server):
    running, local = server
    conversations = [PromptBuilder().messages(item) for item in ITEMS]
    decoding = GREEDY.with_(max_new_tokens=10)
    endpoint = EndpointGenerator(running.url, requests_in_flight=3)
    expected = local.generate(conversations, decoding)
    assert len(set(expected)) > 1
    before = len(running.requests)
    assert endpoint.generate(conversations, decoding) == expected
    sent = running.requests[before:]
    assert sorted(request["messages"][-1]["content"] for request in sent) == sorted(
        conversation[-1]["content"] for conversation in conversations)
    assert all(request["max_tokens"] == 10 and request["temperature"] == 0.0 for request in sent)
    assert all(request["model"] == "org/tiny-llama" for request in sent)
    # The served model and its revision, from GET /v1/models, are the provenance (not the URL).
    assert endpoint.provenance()["generator"] == "org/tiny-llama"
    assert endpoint.provenance()["generator_revision"] == "abc123"
    assert endpoint.provenance()["endpoint"] == running.url


def test_sampling_settings_travel_and_a_failing_request_fails_only_its_row(server):
    running, _ = server
    endpoint = load_generator(running.url, retry=QUICK)
    assert isinstance(endpoint, EndpointGenerator)
    conversations = [PromptBuilder().messages(item) for item in [ITEMS[0], {"title": "FAIL-ME please"}, ITEMS[1]]]
    before = len(running.requests)
    rows = endpoint.generate_rows(conversations, DecodingSettings(max_new_tokens=6, do_sample=True, temperature=0.8,
                                                                  top_p=0.9, seed=7, repetition_penalty=1.2))
    assert rows[0].error is None and rows[2].error is None and rows[1].text is None
    assert "400" in rows[1].error
    sent = running.requests[before:]
    assert sum("FAIL-ME" in r["messages"][-1]["content"] for r in sent) == 1  # a 400 is not asked again
    request = next(r for r in sent if "FAIL-ME" not in r["messages"][-1]["content"])
    assert (request["temperature"], request["top_p"], request["seed"]) == (0.8, 0.9, 7)
    assert request["frequency_penalty"] == pytest.approx(0.2)


def test_no_token_is_sent_unless_one_is_given(server, monkeypatch):
    running, _ = server
    monkeypatch.setenv("HF_TOKEN", "hf_not_for_this_server")
    conversation = [PromptBuilder().messages(ITEMS[0])]
    before = len(running.authorizations)
    EndpointGenerator(running.url).generate(conversation, GREEDY.with_(max_new_tokens=2))
    EndpointGenerator(running.url, token="secret").generate(conversation, GREEDY.with_(max_new_tokens=2))
    assert running.authorizations[before:] == [None, "Bearer secret"]


def test_enrich_items_through_the_endpoint_gives_a_status_per_row(server):
    running, _ = server
    from datasets import Dataset

    items = Dataset.from_list([{**item, "asin": str(item["item_id"]), "description": None} for item in ITEMS]
                              + [{"item_id": 9, "asin": "9", "title": "FAIL-ME", "brand": None, "categories": [],
                                  "price": None, "description": None}])
    signals = enrich_items(items, EndpointGenerator(running.url, retry=QUICK), progress=False,
                           decoding=GREEDY.with_(max_new_tokens=8), retry_decoding=None)
    assert signals["item_id"] == [1, 2, 3, 4, 9]
    assert signals[4]["status"] == "unavailable" and signals[4]["status_detail"].startswith("generator: HTTPError")
    assert all(status in {"ok", "invalid"} for status in signals["status"][:4])
    assert set(signals["generator"]) == {"org/tiny-llama"} and set(signals["generator_revision"]) == {"abc123"}


def test_a_named_served_model_is_taken_and_an_unreachable_endpoint_is_one_clear_error(server):
    running, _ = server
    running.httpd.model_name = "other"
    try:
        assert EndpointGenerator(running.url, model="other").model_id == "other"
        with pytest.raises(ConnectionError, match="not reachable"):
            EndpointGenerator("http://127.0.0.1:9/v1", retry=QUICK)
    finally:
        running.httpd.model_name = "org/tiny-llama"


def test_the_revision_tgi_reports_at_info_is_taken_when_v1_models_has_none():
    from chat_server import RuleGenerator

    with ChatServer(RuleGenerator(), model="org/served", tgi_sha="0123abcd", lifetime=60) as tgi_like:
        assert EndpointGenerator(tgi_like.url).provenance()["generator_revision"] == "0123abcd"
    with ChatServer(RuleGenerator(), model="org/served", lifetime=60) as plain:  # /info answers 404
        endpoint = EndpointGenerator(plain.url, retry=QUICK)
        assert endpoint.provenance()["generator_revision"] is None
        assert endpoint.generate([PromptBuilder().messages(ITEMS[0])], GREEDY)[0].startswith("scenario:")
