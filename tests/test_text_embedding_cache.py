"""The text-embedding cache: keyed per text, written atomically, shared safely by two processes, rebuilt when corrupt.

A tiny real sentence encoder (a 1-layer BERT with a word-piece vocabulary built here, mean pooling) stands in for
all-MiniLM-L6-v2, so that the tests count exactly which texts reach the encoder.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from lamar_hf.text_embeddings import (
    cached_item_text_embeddings,
    encoder_identity,
    item_texts,
    read_embedding_cache,
    text_digest,
)

WORDS = ("a the for party nail polish salon day hair after washing lip care balm getting ready conditioner soft "
         "shine color gloss brush comb dry skin face mask night cream").split()
ITEMS = [{"item_id": i, "title": f"{WORDS[i % len(WORDS)]} {WORDS[(3 * i) % len(WORDS)]} {i}", "brand": None,
          "categories": ["Beauty"]} for i in range(1, 9)]
SIGNALS = [{"item_id": i, "scenario": f"{WORDS[(5 * i) % len(WORDS)]} {WORDS[(7 * i) % len(WORDS)]}", "status": "ok"}
           for i in range(1, 9)]


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory) -> Path:
    """A sentence-transformers folder of a tiny randomly initialised BERT with a vocabulary of WORDS and digits."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("encoder")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"0123456789"]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(root / "bert")
    BertTokenizerFast(vocab_file=str(root / "vocab.txt")).save_pretrained(root / "bert")
    folder = root / "encoder"
    SentenceTransformer(modules=[Transformer(str(root / "bert")), Pooling(16, "mean")], device="cpu").save(str(folder))
    return folder


@pytest.fixture
def counting_encoder(encoder_folder):
    """The tiny encoder, recording every text it is asked to embed."""
    from sentence_transformers import SentenceTransformer

    class CountingEncoder(SentenceTransformer):
        def encode(self, sentences, *args, **kwargs):
            self.seen.extend([sentences] if isinstance(sentences, str) else list(sentences))
            return super().encode(sentences, *args, **kwargs)

    encoder = CountingEncoder(str(encoder_folder), device="cpu")
    encoder.seen = []
    return encoder


def cache_files(folder: Path) -> list[str]:
    """The files beside a cache, less its lock file (which filelock may keep or remove)."""
    return sorted(path.name for path in folder.iterdir() if not path.name.endswith(".lock"))


def test_changing_one_text_re_embeds_only_that_text(tmp_path, counting_encoder):
    cache = tmp_path / "cache.safetensors"
    first = cached_item_text_embeddings(ITEMS, ["metadata", "scenario"], cache, SIGNALS, counting_encoder)
    distinct = {text for kind in ("metadata", "scenario") for text in item_texts(ITEMS, kind, SIGNALS) if text}
    assert sorted(counting_encoder.seen) == sorted(distinct)  # each distinct text once
    assert first["scenario"].shape == (len(ITEMS) + 1, 16) and not first["scenario"][0].any()

    counting_encoder.seen.clear()
    again = cached_item_text_embeddings(ITEMS, ["metadata", "scenario"], cache, SIGNALS, counting_encoder)
    assert counting_encoder.seen == []
    for kind in first:
        np.testing.assert_array_equal(again[kind], first[kind])  # the same float16 bytes read back

    changed = [dict(row, scenario="night cream for dry skin") if row["item_id"] == 4 else row for row in SIGNALS]
    second = cached_item_text_embeddings(ITEMS, ["metadata", "scenario"], cache, changed, counting_encoder)
    assert counting_encoder.seen == ["night cream for dry skin"]
    np.testing.assert_array_equal(np.delete(second["scenario"], 4, axis=0), np.delete(first["scenario"], 4, axis=0))
    np.testing.assert_array_equal(second["metadata"], first["metadata"])
    assert not np.allclose(second["scenario"][4], first["scenario"][4])
    # The vector of the new text is the encoder's own (float16-rounded as stored).
    fresh = counting_encoder.encode(["night cream for dry skin"], normalize_embeddings=True, convert_to_numpy=True)[0]
    torch.testing.assert_close(torch.from_numpy(second["scenario"][4]), torch.from_numpy(fresh), atol=2e-3, rtol=1e-3)
    # Nothing but the cache and its lock file is left beside it (the writes went through a replaced temp file).
    assert cache_files(tmp_path) == ["cache.safetensors"]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "unpaired"])
def test_a_corrupt_cache_is_rebuilt_with_a_warning(tmp_path, encoder_folder, counting_encoder, caplog, damage):
    cache = tmp_path / "cache.safetensors"
    good = cached_item_text_embeddings(ITEMS, ["scenario"], cache, SIGNALS, counting_encoder)
    data = cache.read_bytes()
    if damage == "truncated":
        cache.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        cache.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    elif damage == "empty":
        cache.write_bytes(b"")
    else:  # a readable file whose tensors do not pair up
        from safetensors.numpy import save_file

        save_file({"digests": np.zeros((3, 32), np.uint8), "vectors": np.zeros((2, 16), np.float16)}, str(cache),
                  metadata={"lamar": json.dumps({"format": "per-text-sha256/1", "encoder": encoder_identity(encoder_folder)})})
    counting_encoder.seen.clear()
    with caplog.at_level(logging.WARNING, logger="lamar_hf.text_embeddings"):
        rebuilt = cached_item_text_embeddings(ITEMS, ["scenario"], cache, SIGNALS, counting_encoder)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(cache) in warnings[0] and "corrupt" in warnings[0] and "rebuilding" in warnings[0]
    assert len(counting_encoder.seen) == len({row["scenario"] for row in SIGNALS})
    torch.testing.assert_close(torch.from_numpy(rebuilt["scenario"]), torch.from_numpy(good["scenario"]))
    # The rebuilt file reads back whole.
    assert len(read_embedding_cache(cache, encoder_identity(counting_encoder))) == len({row["scenario"] for row in SIGNALS})


def test_a_cache_of_another_encoder_is_not_used(tmp_path, encoder_folder, counting_encoder):
    cache = tmp_path / "cache.safetensors"
    cached_item_text_embeddings(ITEMS, ["scenario"], cache, SIGNALS, counting_encoder)
    assert read_embedding_cache(cache, "some/other-encoder") == {}
    assert encoder_identity(str(encoder_folder)) == encoder_identity(counting_encoder)


def test_a_failure_mid_run_keeps_the_kinds_already_written_and_no_partial_file(tmp_path, encoder_folder):
    from sentence_transformers import SentenceTransformer

    class FailingOnScenarios(SentenceTransformer):
        def encode(self, sentences, *args, **kwargs):
            if any(text in {row["scenario"] for row in SIGNALS} for text in sentences):
                raise RuntimeError("the encoder stopped")
            return super().encode(sentences, *args, **kwargs)

    cache = tmp_path / "cache.safetensors"
    with pytest.raises(RuntimeError, match="the encoder stopped"):
        cached_item_text_embeddings(ITEMS, ["metadata", "scenario"], cache, SIGNALS, FailingOnScenarios(str(encoder_folder), device="cpu"))
    kept = read_embedding_cache(cache, encoder_identity(encoder_folder))
    assert set(kept) == {text_digest(text) for text in item_texts(ITEMS, "metadata") if text}
    assert cache_files(tmp_path) == ["cache.safetensors"]


WRITER = r'''
import json, os, sys, time
from pathlib import Path

from lamar_hf.text_embeddings import cached_item_text_embeddings

cfg = json.loads(Path(sys.argv[1]).read_text())
ready = Path(cfg["ready"]) / sys.argv[2]
ready.write_text("")
deadline = time.monotonic() + 60
while not Path(cfg["go"]).exists():  # start both writers at the same moment
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.01)
signals = cfg["signals"][sys.argv[2]]
cached_item_text_embeddings(cfg["items"], ["scenario"], cfg["cache"], signals, cfg["encoder"])
'''


def test_two_processes_writing_the_cache_at_once_keep_every_vector(tmp_path, encoder_folder, counting_encoder):
    cache = tmp_path / "cache" / "shared.safetensors"
    # Each process embeds its own texts: without a lock, the last write would drop the other's vectors.
    signals = {name: [{"item_id": row["item_id"], "scenario": f"{name} {row['scenario']} {row['item_id']}", "status": "ok"}
                      for row in SIGNALS] for name in ("first", "second")}
    (tmp_path / "ready").mkdir()
    cfg = {"items": ITEMS, "signals": signals, "cache": str(cache), "encoder": str(encoder_folder),
           "ready": str(tmp_path / "ready"), "go": str(tmp_path / "go")}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    script = textwrap.dedent(WRITER)
    processes = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "cfg.json"), name], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in signals]
    try:
        import time

        deadline = time.monotonic() + 120
        while len(list((tmp_path / "ready").iterdir())) < 2 and time.monotonic() < deadline:
            if any(process.poll() is not None for process in processes):
                break
            time.sleep(0.05)
        (tmp_path / "go").write_text("")
        outcomes = [process.communicate(timeout=180) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, (_, stderr) in zip(processes, outcomes):
        assert process.returncode == 0, stderr[-3000:]
    kept = read_embedding_cache(cache, encoder_identity(encoder_folder))
    for rows in signals.values():
        assert {text_digest(row["scenario"]) for row in rows} <= set(kept)
    # Both sets of texts are served from the cache now: the encoder is not asked again.
    for rows in signals.values():
        cached_item_text_embeddings(ITEMS, ["scenario"], cache, rows, counting_encoder)
    assert counting_encoder.seen == []
    assert cache_files(cache.parent) == ["shared.safetensors"]
