"""EndpointGenerator against a real local chat-completions server (127.0.0.1, port 0) that answers with a tiny Llama."""

import json

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


# -- the answer discipline: what the in-process engine does to an answer, done for an endpoint's ------------------
from chat_server import RuleGenerator  # noqa: E402

from lamar_hf.enrich import DEFAULT_DECODING, SignalSpec  # noqa: E402
from lamar_hf.enrich.config import DEFAULT_SIGNALS  # noqa: E402
from lamar_hf.enrich.generator import (  # noqa: E402
    ENDPOINT_ANSWER_DISCIPLINE,
    answer_stops,
    clip_to_words,
    disciplined_answer,
)
from lamar_hf.enrich.parsing import parse_answer, words  # noqa: E402

LONG_SCENARIO = "a parent giving a toddler a bedtime bath before sleep every single night"  # 13 words; limit 11
SHORT_SPECS = (SignalSpec("scenario", "who uses it", 2), SignalSpec("intent", "why", 3), SignalSpec("topic", "what", 2))


class UnruledAnswers(RuleGenerator):
    """Answers as a chat model does when nothing steers it: an over-long first line, a decorated label,
    text after the last line (``copy_title_first=False``: otherwise RuleGenerator's well-formed answers)."""

    def generate(self, conversations, decoding=None, progress=None, answer_signals=None):
        texts = super().generate(conversations, decoding, progress)
        return ["\n".join([f"scenario: {LONG_SCENARIO}", "**Intent**: " + text.splitlines()[1].split(": ", 1)[1],
                           text.splitlines()[2], "*The price is now $12.00", "priceRange: $1.98-3.67 per bottle"])
                for text in texts]


class LabelledLines(TransformersGenerator):
    """A tiny Llama steered to labelled lines (``SHORT_SPECS``) whose lines are never clipped: what a
    server gives that the model follows the format but not the word limits."""

    def generate(self, conversations, decoding=GREEDY, progress=None, answer_signals=None):
        return super().generate(conversations, decoding.with_(clip_words=False), progress, answer_signals=SHORT_SPECS)


def test_clip_to_words_keeps_the_longest_start_within_the_limit_as_parsing_counts_words():
    assert clip_to_words(LONG_SCENARIO, 11) == "a parent giving a toddler a bedtime bath before sleep every"
    assert clip_to_words(LONG_SCENARIO, 13) == LONG_SCENARIO
    assert clip_to_words("don't stop, baby's   oil now", 3) == "don't stop, baby's"  # apostrophes inside words
    assert clip_to_words("0.5-fluid ounce", 2) == "0.5-"  # "0", "5": two words; the cut is before the third
    assert clip_to_words("Crème brûlée café", 2) == "Crème brûlée"


def test_disciplined_answer_rewrites_labelled_lines_clips_them_and_drops_what_follows_the_last():
    raw = (f"**Scenario**: \"{LONG_SCENARIO}.\"\nsome musing\nintent: get smooth skin\ntopic: bath soak\n"
           "*The price is now $12.00")
    assert disciplined_answer(raw, DEFAULT_SIGNALS, clip_words=True) == (
        "scenario: a parent giving a toddler a bedtime bath before sleep every\nsome musing\n"
        "intent: get smooth skin\ntopic: bath soak")
    assert disciplined_answer(raw, DEFAULT_SIGNALS, clip_words=False).splitlines()[0] == f"scenario: {LONG_SCENARIO}"
    # No labelled line at all: nothing to discipline, and no label is guessed.
    assert disciplined_answer("Sure! A bath product.", DEFAULT_SIGNALS, clip_words=True) == "Sure! A bath product."
    # The stops: the first label of each user turn, never a signal's own label.
    conversation = [{"role": "system", "content": "scenario: <...>"}, {"role": "user", "content": "Title: A\nBrand: B"},
                    {"role": "assistant", "content": "scenario: x"}, {"role": "user", "content": "Brand: C"},
                    {"role": "user", "content": "Scenario: not a stop"}, {"role": "user", "content": "no label here"}]
    assert answer_stops(conversation, DEFAULT_SIGNALS) == ["\nTitle:", "\nBrand:"]


def test_the_endpoint_clips_on_the_client_as_the_engine_does_and_sends_the_stops():
    tokenizer = tiny_tokenizer()
    local = TransformersGenerator(tiny_llama(tokenizer), tokenizer=tokenizer, device="cpu", dtype="float32")
    served = LabelledLines(tiny_llama(tokenizer), tokenizer=tokenizer, device="cpu", dtype="float32")
    conversations = [PromptBuilder(signals=SHORT_SPECS).messages(item) for item in ITEMS]
    decoding = GREEDY.with_(max_new_tokens=80, clip_words=True)
    in_process = local.generate(conversations, decoding, answer_signals=SHORT_SPECS)
    with ChatServer(served, lifetime=120) as running:
        endpoint = EndpointGenerator(running.url, requests_in_flight=2)
        raw = endpoint.generate(conversations, decoding)  # no answer_signals: the server's text as it came
        assert all("stop" not in request for request in running.requests)
        clipped = endpoint.generate(conversations, decoding, answer_signals=SHORT_SPECS)
        assert [request["stop"] for request in running.requests[len(conversations):]] == [["\nTitle:"]] * len(ITEMS)
        unclipped = endpoint.generate(conversations, decoding.with_(clip_words=False), answer_signals=SHORT_SPECS)
    limits = {spec.name: spec.max_words for spec in SHORT_SPECS}
    over = 0
    for raw_answer, answer, answer_unclipped, engine_answer in zip(raw, clipped, unclipped, in_process):
        raw_signals, signals = parse_answer(raw_answer, SHORT_SPECS), parse_answer(answer, SHORT_SPECS)
        for name, limit in limits.items():
            over += len(words(raw_signals[name])) > limit
            # Every line ends at its limit, and where it does the words are the server's own first ones.
            assert words(signals[name]) == words(raw_signals[name])[:limit]
        # The first line is written before any clipping, so it is the engine's clipped line exactly.
        assert signals["scenario"] == parse_answer(engine_answer, SHORT_SPECS)["scenario"]
        assert parse_answer(answer_unclipped, SHORT_SPECS) == raw_signals  # without clip_words nothing is cut
    assert over >= len(ITEMS)  # the test would see a client that did not clip


def test_enrich_items_rows_record_the_clipping_that_was_applied_and_no_older_rows_are_reused(tmp_path):
    from datasets import Dataset

    items = Dataset.from_list([{**item, "asin": str(item["item_id"]), "description": None} for item in ITEMS])
    with ChatServer(UnruledAnswers(), model="org/served", lifetime=60) as running:
        endpoint = EndpointGenerator(running.url, retry=QUICK)
        assert endpoint.provenance()["answer_discipline"] == ENDPOINT_ANSWER_DISCIPLINE

        # Rows an older endpoint client cached: same served model and URL, unclipped answers under clip_words=True.
        class OlderEndpointClient(UnruledAnswers):
            def provenance(self):
                return {"generator": "org/served", "generator_revision": None, "adapter": None,
                        "endpoint": running.url}

        older = enrich_items(items, OlderEndpointClient(), progress=False, cache_dir=tmp_path, retry_decoding=None)
        assert set(older["status"]) == {"invalid"}

        report: dict = {}
        signals = enrich_items(items, endpoint, progress=False, cache_dir=tmp_path, retry_decoding=None,
                               keep_answers=True, report=report)
        assert report["from_cache"] == 0 and report["generated"] == len(ITEMS)
        assert set(signals["status"]) == {"ok"}, signals["status_detail"]
        assert set(signals["scenario"]) == {"a parent giving a toddler a bedtime bath before sleep every"}
        assert all(json.loads(decoding)["clip_words"] is True for decoding in signals["decoding"])
        assert all(answer.splitlines()[1].startswith("intent: ") and answer.splitlines()[-1].startswith("topic: ")
                   for answer in signals["answer"])

        asked = len(running.requests)
        again: dict = {}
        cached = enrich_items(items, endpoint, progress=False, cache_dir=tmp_path, retry_decoding=None,
                              keep_answers=True, report=again)
        assert again["from_cache"] == len(ITEMS) and len(running.requests) == asked
        assert cached.to_list() == signals.to_list()

        # Asked not to clip, the same answers are invalid and their rows say clip_words false.
        unclipped = enrich_items(items, endpoint, progress=False, retry_decoding=None,
                                 decoding=DEFAULT_DECODING.with_(clip_words=False))
        assert set(unclipped["status"]) == {"invalid"}
        assert set(unclipped["status_detail"]) == {"scenario: 13 words, more than 11"}
        assert all(json.loads(decoding)["clip_words"] is False for decoding in unclipped["decoding"])
