"""Choose the Amazon Beauty items of the exemplar training set so that they cover the category tree.

    python training/data/select_items.py --data ../shared/data/amazon_beauty --n 210 > /tmp/chosen.tsv

Prints one tab-separated line per chosen item (P5 item id, ASIN, split, category path, brand,
price, title) for the people who write the signals; only ids and signals are stored in the jsonl.
Every level-3 category node gets at least two items, the rest are spread in proportion to node
size, and inside a node the picks rotate over its leaves. The validation split takes about 15% of
the items of every top category (stratified), so no item is in both splits.
"""

from __future__ import annotations

import argparse
import ast
import csv
import html
import json
import random
from collections import defaultdict
from pathlib import Path


def read_beauty_items(data_dir: Path) -> dict[int, dict]:
    """P5 item id -> {asin, title, brand, categories, price}, joined as PROVENANCE.md describes."""
    datamaps = json.loads((data_dir / "p5_llm-recsys-id" / "datamaps.json").read_text())
    asins = sorted(datamaps["item2id"])
    items = {}
    with open(data_dir / "plrec" / "item_description.csv", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        next(reader)
        for row in reader:
            asin = asins[int(row[0]) - 1]
            items[int(datamaps["item2id"][asin])] = {
                "asin": asin,
                "title": html.unescape(row[1]),
                "brand": html.unescape(row[6]),
                "categories": list(ast.literal_eval(f"[{row[4]}]")),
                "price": row[5],
            }
    return items


def choose(items: dict[int, dict], n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    nodes: dict[tuple, dict[tuple, list[int]]] = defaultdict(lambda: defaultdict(list))
    for item_id, item in sorted(items.items()):
        if not item["title"]:
            continue
        path = tuple(item["categories"])
        nodes[path[:3]][path].append(item_id)
    total = sum(len(ids) for leaves in nodes.values() for ids in leaves.values())
    chosen = []
    for node, leaves in sorted(nodes.items()):
        size = sum(len(ids) for ids in leaves.values())
        quota = max(2, round(n * size / total))
        pools = [rng.sample(ids, len(ids)) for _, ids in sorted(leaves.items(), key=lambda kv: -len(kv[1]))]
        picked = []
        while len(picked) < min(quota, size):
            for pool in pools:
                if pool and len(picked) < quota:
                    picked.append(pool.pop())
        chosen.extend(picked)
    return chosen


def split_validation(items: dict[int, dict], chosen: list[int], share: float, seed: int) -> set[int]:
    rng = random.Random(seed + 1)
    by_top = defaultdict(list)
    for item_id in chosen:
        by_top[items[item_id]["categories"][1]].append(item_id)
    validation = set()
    for _, ids in sorted(by_top.items()):
        validation.update(rng.sample(ids, max(1, round(share * len(ids)))))
    return validation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/amazon_beauty"))
    parser.add_argument("--n", type=int, default=210)
    parser.add_argument("--validation-share", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    items = read_beauty_items(args.data)
    chosen = choose(items, args.n, args.seed)
    validation = split_validation(items, chosen, args.validation_share, args.seed)
    for item_id in chosen:
        item = items[item_id]
        split = "validation" if item_id in validation else "train"
        path = " > ".join(item["categories"][1:])
        print(f"{item_id}\t{item['asin']}\t{split}\t{path}\t{item['brand']}\t{item['price']}\t{item['title']}")


if __name__ == "__main__":
    main()
