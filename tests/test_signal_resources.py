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
