"""EndpointGenerator and enrich_items against a real llama.cpp server (llama-cpp-python's) serving the SmolLM2 GGUF.

Skips unless a llama.cpp server is installed: ``LAMAR_LLAMA_CPP_PYTHON`` names a python that has
``llama_cpp.server`` (llama-cpp-python compiles llama.cpp from source, so it usually lives in a venv
of its own), else the interpreter running the tests must have it. Run with::

    LAMAR_LLAMA_CPP_PYTHON=outputs/llamacpp/venv/bin/python .venv/bin/python -m pytest -q tests/test_llama_cpp_server.py
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ALIAS = "SmolLM2-135M-Instruct-Q4_1"  # what the server reports at /v1/models, instead of the GGUF's path
ITEMS = [
    {"title": "Hydrating Hyaluronic Acid Serum, 1 fl oz", "brand": "Glow Lab",
     "categories": ["Beauty", "Skin Care", "Face", "Serums"], "price": 18.99},
    {"title": "Matte Liquid Lipstick, Ruby Red", "brand": "Velvet Rouge",
     "categories": ["Beauty", "Makeup", "Lips", "Lipstick"], "price": 9.5},
    {"title": "Argan Oil Repair Shampoo, 13.5 oz", "brand": "Moroccan Mist",
     "categories": ["Beauty", "Hair Care", "Shampoos"], "price": 12.0},
    {"title": "Mineral Sunscreen SPF 50 for Sensitive Skin", "brand": "SunShield",
     "categories": ["Beauty", "Skin Care", "Sun", "Sunscreens"], "price": 15.25},
    {"title": "Lavender Bath Bombs, Set of 6", "brand": None,
     "categories": ["Beauty", "Bath & Body", "Bath", "Bath Bombs"], "price": None},
    {"title": "Waterproof Volumizing Mascara, Black", "brand": "LashPop",
     "categories": ["Beauty", "Makeup", "Eyes", "Mascara"], "price": 7.99},
]
USABLE_OR_INVALID = {"ok", "retried", "invalid"}


def llama_cpp_python() -> str:
    """A python that can run ``-m llama_cpp.server``, or a skip saying why none is here."""
    wanted = os.environ.get("LAMAR_LLAMA_CPP_PYTHON")
    python = wanted or sys.executable
    try:
        probe = subprocess.run([python, "-c", "import llama_cpp.server"], capture_output=True, timeout=60)
        found = probe.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        found = False
    if not found:
        pytest.skip(f"LAMAR_LLAMA_CPP_PYTHON={wanted} cannot import llama_cpp.server" if wanted else
                    "no llama.cpp server: set LAMAR_LLAMA_CPP_PYTHON to a python with "
                    "llama-cpp-python[server], or install it in this one")
    return python


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def llama_cpp_server():
    python = llama_cpp_python()
    from lamar_hf.enrich import smollm2_gguf_path

    try:
        gguf = smollm2_gguf_path()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryDirectory() as folder:
        log_path = Path(folder) / "server.log"
        with open(log_path, "wb") as log:
            server = subprocess.Popen([python, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", ALIAS,
                                       "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"],
                                      stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while True:
                if server.poll() is not None:
                    pytest.fail(f"llama.cpp server exited with {server.returncode}:\n{log_path.read_text()[-2000:]}")
                try:
                    listing = get_json(url + "/models")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"llama.cpp server not up at {url} after 90 s:\n{log_path.read_text()[-2000:]}")
                    time.sleep(0.5)
            yield url, listing
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def test_llama_cpp_enrichment_is_the_same_at_1_and_4_in_flight_clipped_and_names_the_model(llama_cpp_server):
    from datasets import Dataset

    from lamar_hf.enrich import (
        GENERIC_EXEMPLARS,
        EndpointGenerator,
        PromptBuilder,
        enrich_items,
        load_exemplars,
        status_counts,
    )
    from lamar_hf.enrich.parsing import parse_answer, words
    from lamar_hf.enrich.pipeline import validity

    url, listing = llama_cpp_server
    assert [entry["id"] for entry in listing["data"]] == [ALIAS]
    items = Dataset.from_list([{"item_id": number, "asin": f"B{number:09d}", "description": None, **item}
                               for number, item in enumerate(ITEMS, start=1)])
    builder = PromptBuilder(exemplars=load_exemplars(GENERIC_EXEMPLARS))
    runs = {}
    for in_flight in (1, 4):
        generator = EndpointGenerator(url, requests_in_flight=in_flight, timeout=60)
        assert generator.provenance()["generator"] == ALIAS and generator.provenance()["endpoint"] == url
        assert generator.provenance()["answer_discipline"]["clip_words"].startswith("on the client")
        runs[in_flight] = enrich_items(items, generator, prompt=builder, progress=False, keep_answers=True)

    for signals in runs.values():
        assert signals["item_id"] == list(range(1, len(ITEMS) + 1))
        assert set(signals["status"]) <= USABLE_OR_INVALID, signals["status_detail"]
        # The served model's name, not the URL nor the local GGUF path, is every row's provenance.
        assert set(signals["generator"]) == {ALIAS}
        assert set(signals["generator_revision"]) == {None}  # llama.cpp reports no revision
        assert all(answer and answer.strip() for answer in signals["answer"])
        # The endpoint's answer discipline: each labelled line within its word limit (clip_words of the
        # default decoding, applied on the client) and nothing after the last labelled line.
        for answer in signals["answer"]:
            lines = [parse_answer(line, builder.signals) for line in answer.splitlines()]
            labelled = [index for index, found in enumerate(lines) if any(v is not None for v in found.values())]
            assert labelled and labelled[-1] == len(lines) - 1, answer
            for spec in builder.signals:
                assert all(len(words(found[spec.name])) <= spec.max_words for found in lines
                           if found[spec.name] is not None), answer
        assert set(json.loads(decoding)["clip_words"] for decoding in signals["decoding"]) == {True}
    at_1, at_4 = (validity(status_counts(signals)) for signals in runs.values())
    assert at_1 == pytest.approx(at_4)
    assert at_1 > 0, runs[1]["answer"]
