"""Item texts and their sentence embeddings with the packaged all-MiniLM-L6-v2 (offline), and their cache."""

import numpy as np
import pytest

from lamar_hf.text_embeddings import (
    cached_item_text_embeddings,
    default_encoder_path,
    embed_texts,
    item_texts,
    load_encoder,
    load_text_embeddings,
    metadata_text,
    read_signals,
    save_text_embeddings,
)

ITEMS = [
    {"item_id": 1, "title": "OPI Nail Lacquer", "brand": "OPI", "categories": ["Beauty", "Makeup", "Nails"]},
    {"item_id": 2, "title": None, "brand": None, "categories": ["Beauty", "Hair Care"]},
    {"item_id": 3, "title": "Matrix Conditioning Balm", "brand": "", "categories": []},
]
SIGNALS = [
    {"item_id": 1, "scenario": "getting ready for a party", "topic": "nail polish", "status": "ok"},
    {"item_id": 3, "scenario": "after washing hair", "topic": "conditioner", "status": "failed"},
    {"item_id": 2, "scenario": "a salon day", "topic": "", "status": "retried"},
]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


def test_metadata_text_joins_the_parts_that_exist():
    assert metadata_text(ITEMS[0]) == "OPI Nail Lacquer. Brand: OPI. Categories: Beauty > Makeup > Nails"
    assert metadata_text(ITEMS[1]) == "Categories: Beauty > Hair Care"
    assert metadata_text(ITEMS[2]) == "Matrix Conditioning Balm"


def test_item_texts_index_by_item_id_and_skip_failed_signal_rows():
    assert item_texts(ITEMS, "metadata")[0] == ""
    assert item_texts(ITEMS, "scenario", SIGNALS) == ["", "getting ready for a party", "a salon day", ""]
    assert item_texts(ITEMS, "topic", SIGNALS) == ["", "nail polish", "", ""]
    with pytest.raises(ValueError, match="no column 'intent'"):
        item_texts(ITEMS, "intent", SIGNALS)
    with pytest.raises(ValueError, match="needs a signals dataset"):
        item_texts(ITEMS, "scenario")
    with pytest.raises(ValueError, match="signals row 0 names item_id 9"):
        item_texts(ITEMS, "scenario", [{"item_id": 9, "scenario": "x"}])
    with pytest.raises(ValueError, match="item_id 1..2"):
        item_texts([{"item_id": 1}, {"item_id": 3}], "metadata")


def test_read_signals_reads_parquet_and_names_a_missing_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(SIGNALS), tmp_path / "signals.parquet")
    assert read_signals(tmp_path / "signals.parquet") == SIGNALS
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        read_signals(tmp_path / "nope.parquet")
    pq.write_table(pa.table({"id": [1]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="no item_id column"):
        read_signals(tmp_path / "bad.parquet")


def test_embeddings_come_from_the_packaged_minilm_normalised_with_zero_rows_for_missing_texts(encoder):
    assert (default_encoder_path() / "model.safetensors").is_file()
    vectors = embed_texts(["", "nail polish", "a salon day", "nail polish"], encoder, show_progress=False)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert not vectors[0].any()
    np.testing.assert_allclose(np.linalg.norm(vectors[1:], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[1], vectors[3], atol=1e-6)
    # Similar meanings are closer than unrelated ones: the encoder is real, not random.
    nails, lacquer, balm = embed_texts(["nail polish", "nail lacquer", "hair conditioner"], encoder, show_progress=False)
    assert nails @ lacquer > nails @ balm


def test_the_cache_re_embeds_only_the_texts_that_changed(tmp_path, encoder):
    cache = tmp_path / "cache.safetensors"
    first = cached_item_text_embeddings(ITEMS, ["metadata", "scenario"], cache, SIGNALS)
    assert first["scenario"].shape == (4, 384)
    changed = [dict(row, scenario=row["scenario"] + "!") if row["item_id"] == 1 else row for row in SIGNALS]
    second = cached_item_text_embeddings(ITEMS, ["metadata", "scenario"], cache, changed)
    np.testing.assert_array_equal(second["metadata"], first["metadata"])
    np.testing.assert_array_equal(second["scenario"][2:], first["scenario"][2:])
    assert not np.allclose(second["scenario"][1], first["scenario"][1])
    # Read back from the cache, the values are exactly those a fresh run returned (float16-rounded both times).
    again = cached_item_text_embeddings(ITEMS, ["scenario"], cache, changed)
    np.testing.assert_array_equal(again["scenario"], second["scenario"])
    fresh = embed_texts(["getting ready for a party!"], encoder, show_progress=False)[0]
    np.testing.assert_allclose(again["scenario"][1], fresh, atol=2e-3)


def test_save_and_load_round_trip_and_name_missing_kinds(tmp_path):
    matrix = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    path = save_text_embeddings(tmp_path / "e.safetensors", {"topic": matrix}, {"encoder": "x"})
    loaded, metadata = load_text_embeddings(path)
    np.testing.assert_allclose(loaded["topic"], matrix, atol=1e-2)
    assert metadata == {"encoder": "x"}
    with pytest.raises(ValueError, match="no text embeddings for intent"):
        load_text_embeddings(path, ["intent"])
