"""Item metadata rows in the lamar-hf schema."""

from __future__ import annotations

import html
import math

from datasets import Dataset

from .schema import ITEM_FEATURES


def clean_text(value) -> str | None:
    """Unescape HTML entities (twice, for double-escaped text) and strip; empty text becomes ``None``."""
    if value is None:
        return None
    text = html.unescape(html.unescape(str(value))).strip()
    return text or None


def clean_price(value) -> float | None:
    if value in (None, ""):
        return None
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
    return price if math.isfinite(price) else None


def item_row(item_id: int, asin: str, title=None, brand=None, categories=(), price=None, description=None) -> dict:
    """One cleaned ``items`` row; ``categories`` is a single path, coarse to fine."""
    return {
        "item_id": item_id,
        "asin": asin,
        "title": clean_text(title),
        "brand": clean_text(brand),
        "categories": [text for text in map(clean_text, categories or ()) if text],
        "price": clean_price(price),
        "description": clean_text(description),
    }


def items_dataset(rows: list[dict]) -> Dataset:
    """Rows (any order) → ``items`` sorted by ``item_id``, checked to run 1..N without gaps."""
    rows = sorted(rows, key=lambda row: row["item_id"])
    for expected, row in enumerate(rows, start=1):
        if row["item_id"] != expected:
            raise ValueError(f"item ids must run 1..N without gaps; expected {expected}, found {row['item_id']}")
    columns = {name: [row[name] for row in rows] for name in ITEM_FEATURES}
    return Dataset.from_dict(columns, features=ITEM_FEATURES, split="train")
