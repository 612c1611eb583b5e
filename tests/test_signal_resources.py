"""The signal resources committed with the package: complete, generated text only, and as their provenance says."""

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

RESOURCES = Path(__file__).resolve().parents[1] / "lamar_hf" / "resources" / "signals"
BEAUTY_ITEMS = 12101
SIGNALS = ("scenario", "intent", "topic")
UPSTREAM_TEXT = {"title", "brand", "categories", "description", "price", "asin"}


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_beauty_signals_cover_every_item_with_generated_text_only(version):
    path = RESOURCES / f"amazon_beauty-{version}.parquet"
    table = pq.read_table(path)
    assert not UPSTREAM_TEXT & set(table.column_names), "no upstream metadata text may be committed"
    rows = table.to_pylist()
    assert sorted(row["item_id"] for row in rows) == list(range(1, BEAUTY_ITEMS + 1))
    status = Counter(row["status"] for row in rows)
    assert set(status) <= {"ok", "retried", "failed"}
    for row in rows:
        if row["status"] != "failed":
            assert all(row[name] and row[name].strip() for name in SIGNALS), row["item_id"]
    provenance = json.loads(path.with_suffix(".json").read_text())
    assert provenance["items"] == BEAUTY_ITEMS and provenance["status"] == dict(status)
    assert provenance["validity"] == pytest.approx((status["ok"] + status["retried"]) / BEAUTY_ITEMS, abs=1e-4)
    adapters = {row["adapter"] for row in rows}
    # v1: the base model prompted few-shot; v2: the base model with the LoRA adapter, zero-shot.
    if version == "v1":
        assert adapters == {None} and provenance["generator"]["adapter"] is None
    else:
        assert len(adapters) == 1 and "adapter-beauty" in adapters.pop()
        assert provenance["generator"]["adapter"] and provenance["prompt"]["exemplars"] == []


def test_beauty_v1_attribute_ids_extend_v1_with_one_cluster_id_per_usable_signal():
    """``lamar attributes --signals amazon_beauty-v1.parquet --clusters 64`` (the ``attributes`` variant's input):
    v1's rows unchanged, plus ``<kind>_cluster`` ids 1..64 for each usable signal and 0 for each failed item."""
    path = RESOURCES / "amazon_beauty-v1-attributes.parquet"
    table = pq.read_table(path)
    assert not UPSTREAM_TEXT & set(table.column_names), "no upstream metadata text may be committed"
    rows = {row["item_id"]: row for row in table.to_pylist()}
    v1 = {row["item_id"]: row for row in pq.read_table(RESOURCES / "amazon_beauty-v1.parquet").to_pylist()}
    assert sorted(rows) == sorted(v1) == list(range(1, BEAUTY_ITEMS + 1))
    provenance = json.loads(path.with_name("amazon_beauty-v1-attributes.attributes.json").read_text())
    assert provenance["requested_clusters"] == 64
    for kind in SIGNALS:
        column = f"{kind}_cluster"
        assert provenance["kinds"][kind]["column"] == column
        for item, row in rows.items():
            assert row[kind] == v1[item][kind] and row["status"] == v1[item]["status"], item
            usable = row["status"] != "failed"
            assert (1 <= row[column] <= 64) if usable else row[column] == 0, (item, kind, row[column])
        sizes = Counter(row[column] for row in rows.values() if row[column])
        assert sizes == {int(cluster): size for cluster, size in provenance["kinds"][kind]["sizes"].items()}
        assert provenance["kinds"][kind]["unusable_rows"] == sum(row["status"] == "failed" for row in rows.values())


def test_beauty_v1_attribute_centres_give_v1_phrases_back_their_packaged_ids():
    """The centres published beside v1's attribute ids (64 per kind, MiniLM's 384 dimensions) assign a sample of v1's
    items the ids the packaged file gives them, so that a new item's phrases can be given ids a trained model reads."""
    import random

    from lamar_hf.enrich.attributes import assign_attributes, read_attribute_centres

    centres_file = RESOURCES / "amazon_beauty-v1-attributes.attributes.safetensors"
    centres, encoder = read_attribute_centres(centres_file)
    assert encoder == "sentence-transformers/all-MiniLM-L6-v2"
    assert {kind: value.shape for kind, value in centres.items()} == {kind: (64, 384) for kind in SIGNALS}
    packaged = pq.read_table(RESOURCES / "amazon_beauty-v1-attributes.parquet").to_pylist()
    sample = random.Random(0).sample(packaged, 60)
    assert sum(row["status"] == "failed" for row in packaged) and any(row["status"] != "failed" for row in sample)
    rows = [{key: row[key] for key in ("item_id", "status", *SIGNALS)} for row in sample]
    assigned, _ = assign_attributes(rows, centres_file, progress=False)
    for kind in SIGNALS:
        assert list(assigned[f"{kind}_cluster"]) == [row[f"{kind}_cluster"] for row in sample], kind
