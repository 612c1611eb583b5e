"""Amazon Sports from the P5/S3Rec files: ids as for Beauty, brand and categories through the attribute decode of
``amazon_sports/PROVENANCE.md``, no titles (IDGenRec's textual ids are not read as titles).

The tiny layout runs everywhere; the real-data tests check the figures PROVENANCE.md states and skip when
``../shared/data/amazon_sports`` is absent.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from lamar_hf.data import DataError, read_p5
from lamar_hf.data.p5 import align_attribute_ids

SPORTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon_sports"

# P5 keeps names below the roots: S3Rec ids 2 (the root) and 5 (the no-brand placeholder) have no P5 name.
P5_NAMES = ["Acme", "Camping", "Tents", "Bolt&#39;s", "", "Cycling"]
ITEM2ATTRIBUTES = {
    "1": [1, 2, 3, 4],  # Acme | Sports & Outdoors > Camping > Tents
    "2": [5, 2, 8],  # no brand | Sports & Outdoors > Cycling
    "3": [6, 2, 3, 4, 2, 8],  # Bolt's | two paths under the root: the first one is kept
    "4": [7, 2, 3],  # P5's empty brand name
    "5": [1, 2, 8],
}


def tiny_sports_layout(root: Path, item2attributes=ITEM2ATTRIBUTES) -> Path:
    counts = Counter(a for attributes in ITEM2ATTRIBUTES.values() for a in attributes)
    s3rec_to_p5 = {1: 1, 3: 2, 4: 3, 6: 4, 7: 5, 8: 6}
    datamaps = {
        "user2id": {f"U{u}": str(u) for u in (1, 2, 3)},
        "id2user": {str(u): f"U{u}" for u in (1, 2, 3)},
        "item2id": {f"ASIN{i}": str(i) for i in range(1, 6)},
        "id2item": {str(i): f"ASIN{i}" for i in range(1, 6)},
        "attribute2id": {name: p for p, name in enumerate(P5_NAMES, start=1)},
        "id2attribute": {str(p): name for p, name in enumerate(P5_NAMES, start=1)},
        "attributeid2num": {str(p): counts[a] for a, p in s3rec_to_p5.items()},
    }
    (root / "s3rec").mkdir(parents=True)
    (root / "p5_llm-recsys-id").mkdir()
    (root / "s3rec" / "Sports_and_Outdoors.txt").write_text("1 1 2 3 4\n2 5 4 3\n3 2 1 5\n")
    (root / "s3rec" / "Sports_and_Outdoors_item2attributes.json").write_text(json.dumps(item2attributes))
    (root / "p5_llm-recsys-id" / "datamaps.json").write_text(json.dumps(datamaps))
    return root


def test_sports_decode_on_a_tiny_layout(tmp_path):
    benchmark = read_p5(tiny_sports_layout(tmp_path / "sports"))
    assert benchmark.name == "amazon_sports"
    root = "Sports & Outdoors"
    assert benchmark.items.to_list() == [
        {"item_id": 1, "asin": "ASIN1", "title": None, "brand": "Acme", "categories": [root, "Camping", "Tents"], "price": None, "description": None},
        {"item_id": 2, "asin": "ASIN2", "title": None, "brand": None, "categories": [root, "Cycling"], "price": None, "description": None},
        {"item_id": 3, "asin": "ASIN3", "title": None, "brand": "Bolt's", "categories": [root, "Camping", "Tents"], "price": None, "description": None},
        {"item_id": 4, "asin": "ASIN4", "title": None, "brand": None, "categories": [root, "Camping"], "price": None, "description": None},
        {"item_id": 5, "asin": "ASIN5", "title": None, "brand": "Acme", "categories": [root, "Cycling"], "price": None, "description": None},
    ]
    assert benchmark.sequences["test"].to_dict() == {"user_id": [1, 2, 3], "history": [[1, 2, 3], [5, 4], [2, 1]], "target": [4, 3, 5]}


def test_attributes_of_an_unknown_item_are_an_error(tmp_path):
    root = tiny_sports_layout(tmp_path / "sports", {**ITEM2ATTRIBUTES, "9": [1, 2]})
    with pytest.raises(DataError, match=r"Sports_and_Outdoors_item2attributes\.json: item '9' is not in the id map"):
        read_p5(root)


@pytest.fixture(scope="module")
def sports():
    if not (SPORTS / "s3rec" / "Sports_and_Outdoors.txt").is_file():
        pytest.skip(f"real Amazon Sports data not found at {SPORTS} (../shared/data/amazon_sports beside the checkout)")
    return read_p5(SPORTS)


@pytest.fixture(scope="module")
def sports_files(sports):
    item2attributes = json.loads((SPORTS / "s3rec" / "Sports_and_Outdoors_item2attributes.json").read_text())
    datamaps = json.loads((SPORTS / "p5_llm-recsys-id" / "datamaps.json").read_text())
    return item2attributes, datamaps


def test_sports_statistics_match_provenance(sports):
    stats = sports.statistics()
    assert (stats["users"], stats["items"], stats["interactions"]) == (35_598, 18_357, 296_337)
    assert sports.items["item_id"] == list(range(1, 18_358))
    counts = Counter(item for row in sports.sequences["test"] for item in row["history"] + [row["target"]])
    assert counts.most_common(1) == [(820, 1_042)]
    assert sports.items[819]["asin"] == "B001HBHNHE"
    # No titles, prices or descriptions exist for Sports; nothing else stands in for a title.
    assert set(sports.items["title"]) == set(sports.items["price"]) == set(sports.items["description"]) == {None}


def test_attribute_decode_matches_provenance(sports, sports_files):
    item2attributes, datamaps = sports_files
    pairs = align_attribute_ids(item2attributes, datamaps)
    assert len(pairs) == 2_264
    assert set(range(1, 2_278)) - set(pairs) == {2, 23, 143, 273, 727, 835, 851, 1335, 1418, 1565, 1762, 1828, 2263}
    counts = Counter(a for attributes in item2attributes.values() for a in attributes)
    assert all(counts[a] == datamaps["attributeid2num"][str(p)] for a, p in pairs.items())
    p5_ids = [pairs[a] for a in sorted(pairs)]
    assert p5_ids == sorted(p5_ids)  # order-preserving
    assert all(2 in attributes for attributes in item2attributes.values())  # the root, in every item
    brand_names = [datamaps["id2attribute"][str(pairs[a[0]])] for a in item2attributes.values() if a[0] in pairs]
    named_brand = sum(1 for name in brand_names if name)  # P5's '' is an empty brand
    named_level = sum(1 for attributes in item2attributes.values() if any(a in pairs for a in attributes[1:]))
    assert (named_brand, named_level) == (11_040, 18_112)
    assert sum(1 for brand in sports.items["brand"] if brand) == 11_040


@pytest.mark.parametrize(
    ("item_id", "brand", "categories"),
    [
        (1, "Ghost", ["Hunting & Fishing", "Hunting", "Gun Maintenance", "Gunsmithing Tools"]),
        (2, "Tipton", ["Hunting & Fishing", "Hunting", "Gun Maintenance", "Gun Cleaning Kits"]),
        (64, "Razor", ["Action Sports", "Scooters & Equipment", "Scooters", "Kick Scooters"]),
        (820, "MagLula", ["Hunting & Fishing", "Hunting", "Gun Accessories", "Magazine Loaders"]),
        (5000, None, ["Exercise & Fitness", "Strength Training Equipment", "Home Gyms"]),
        (18340, "Schwinn", ["Exercise & Fitness", "Cardio Training", "Elliptical Trainers"]),
    ],
)
def test_decoded_items_named_in_provenance(sports, item_id, brand, categories):
    row = sports.items[item_id - 1]
    assert (row["brand"], row["categories"]) == (brand, ["Sports & Outdoors", *categories])


def test_names_are_unescaped(sports):
    texts = [b for b in sports.items["brand"] if b] + [c for path in sports.items["categories"] for c in path]
    assert not [text for text in texts if re.search(r"&(#\d+|[a-z]+);", text)]
    assert any("'" in text for text in texts)  # P5 writes apostrophes as &#39;


def brand_word_rate(brands: dict[int, str | None], textual_ids: dict[int, str]) -> tuple[int, int]:
    """Items whose brand has a word of 3+ letters, and how many of those have such a word in their textual id."""
    with_word = found = 0
    for item, brand in brands.items():
        words = [word.lower() for word in re.findall(r"[A-Za-z]{3,}", brand or "")]
        if words:
            with_word += 1
            found += any(word in textual_ids[item].lower().split() for word in words)
    return found, with_word


def test_decode_agrees_with_idgenrec_textual_ids(sports, sports_files):
    """An independent check: IDGenRec's textual ids were made from each item's own text, so a correctly decoded brand
    shows up in them far more often than the brand of a decode shifted by one P5 id."""
    item2attributes, datamaps = sports_files
    item_of_asin = {asin: int(item) for item, asin in datamaps["id2item"].items()}
    textual_ids = {}
    for line in (SPORTS / "idgenrec" / "item_generative_indexing_phase_0.txt").read_text(encoding="utf-8").splitlines():
        asin, _, text = line.partition(" ")
        textual_ids[item_of_asin[asin]] = text
    assert len(textual_ids) == 18_357
    decoded = dict(zip(sports.items["item_id"], sports.items["brand"]))
    pairs = align_attribute_ids(item2attributes, datamaps)
    shifted = {}
    for item, attributes in item2attributes.items():
        neighbour = datamaps["id2attribute"].get(str(pairs[attributes[0]] + 1)) if attributes[0] in pairs else None
        shifted[int(item)] = html.unescape(neighbour) if neighbour else None
    found, total = brand_word_rate(decoded, textual_ids)
    found_shifted, total_shifted = brand_word_rate(shifted, textual_ids)
    assert total > 10_000 and found / total > 0.70
    assert found_shifted / total_shifted < 0.10
