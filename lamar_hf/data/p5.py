"""Readers for the prepared P5 / S3Rec benchmark files (see each ``PROVENANCE.md`` in ``../shared/data``).

- Amazon Beauty: ``s3rec/Beauty.txt`` (sequences), ``p5_llm-recsys-id/datamaps.json`` (id ↔ ASIN) and
  ``plrec/item_description.csv`` (metadata, keyed by the rank of the ASIN among the sorted ASINs).
- Amazon Toys: ``p5_rdrec/sequential.txt`` + ``datamaps.json``, and TransRec's ``title_maps.npy`` /
  ``category_map.npy``, joined through TransRec's relabeled ``sequential_data.txt``.
- Amazon Sports: ``s3rec/Sports_and_Outdoors.txt`` + ``p5_llm-recsys-id/datamaps.json`` (ids and ASINs as for
  Beauty); brand and categories from S3Rec's ``Sports_and_Outdoors_item2attributes.json``, whose attribute ids are
  decoded to P5's attribute names by the frequency alignment of its ``PROVENANCE.md``. There are no titles: IDGenRec's
  machine-made textual ids in ``idgenrec/`` are model output, not titles, and are not read.

The sequence files are chronological already; the ids of the files are kept (items 1..N, users 1..U).
"""

from __future__ import annotations

import ast
import csv
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from .benchmark import Benchmark
from .errors import DataError
from .items import item_row, items_dataset
from .splits import leave_one_out

TRANSREC_PLACEHOLDER_TITLE = re.compile(r"^title_\d+$")


def read_sequence_file(path: Path) -> dict[int, list[int]]:
    """``user item item ...`` per line → ``{user: [items]}``, in file order."""
    sequences: dict[int, list[int]] = {}
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                user, *items = (int(token) for token in line.split())
            except ValueError:
                raise DataError(f"expected integer ids 'user item item ...', got {line[:60]!r}", path, line_number)
            if user in sequences:
                raise DataError(f"user {user} appears twice", path, line_number)
            sequences[user] = items
    if not sequences:
        raise DataError("empty sequence file", path)
    return sequences


def read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise DataError(f"not valid JSON: {error.msg}", path, error.lineno) from None


def check_items_known(sequences: dict[int, list[int]], known: set[int], path: Path) -> None:
    """Every item in the sequence file must be in the id map; the error names the line (= user order)."""
    for line_number, (user, items) in enumerate(sequences.items(), start=1):
        missing = [item for item in items if item not in known]
        if missing:
            raise DataError(f"user {user} names item {missing[0]}, which is missing from the id map", path, line_number)


def parse_category_path(text: str, path: Path, line_number: int) -> list[str]:
    """RecBole ``token_seq`` of quoted names, e.g. ``'Beauty', 'Hair Care', 'Creams, Gels & Lotions'``."""
    if not text.strip():
        return []
    try:
        value = ast.literal_eval(f"[{text}]")
    except (ValueError, SyntaxError):
        raise DataError(f"field 'categories' is not a list of quoted names: {text[:60]!r}", path, line_number) from None
    return [str(name) for name in value]


def read_beauty(root: Path, name: str) -> Benchmark:
    sequences_path = root / "s3rec" / "Beauty.txt"
    datamaps_path = root / "p5_llm-recsys-id" / "datamaps.json"
    metadata_path = root / "plrec" / "item_description.csv"
    sequences = read_sequence_file(sequences_path)
    id2item = {int(item): asin for item, asin in read_json(datamaps_path)["id2item"].items()}
    check_items_known(sequences, set(id2item), sequences_path)
    # item_description.csv keys rows by the rank of the ASIN among all ASINs sorted as strings.
    asin_by_rank = sorted(id2item.values())
    item_by_asin = {asin: item for item, asin in id2item.items()}
    rows = {}
    with open(metadata_path, encoding="utf-8", newline="") as handle:
        # Titles spanning lines are quoted; a quote inside a title is literal unless it opens the field.
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None:
            raise DataError("empty metadata file", metadata_path)
        columns = [column.split(":")[0] for column in header]
        for values in reader:
            line_number = reader.line_num
            if len(values) != len(columns):
                raise DataError(f"expected {len(columns)} tab-separated fields, got {len(values)}", metadata_path, line_number)
            record = dict(zip(columns, values))
            rank = int(record["item_id"])
            if not 1 <= rank <= len(asin_by_rank):
                raise DataError(f"field 'item_id' {rank} is outside 1..{len(asin_by_rank)}", metadata_path, line_number)
            asin = asin_by_rank[rank - 1]
            item_id = item_by_asin[asin]
            rows[item_id] = item_row(
                item_id,
                asin,
                title=record["title"],
                brand=record["brand"],
                categories=parse_category_path(record["categories"], metadata_path, line_number),
                price=record["price"],
            )
    for item_id, asin in id2item.items():
        rows.setdefault(item_id, item_row(item_id, asin))
    source = {"kind": "p5", "files": [str(p) for p in (sequences_path, datamaps_path, metadata_path)]}
    return Benchmark(name, items_dataset(list(rows.values())), leave_one_out(sequences, sequences_path), source=source)


def read_toys(root: Path, name: str) -> Benchmark:
    sequences_path = root / "p5_rdrec" / "sequential.txt"
    datamaps_path = root / "p5_rdrec" / "datamaps.json"
    transrec_path = root / "transrec" / "sequential_data.txt"
    sequences = read_sequence_file(sequences_path)
    id2item = {int(item): asin for item, asin in read_json(datamaps_path)["id2item"].items()}
    check_items_known(sequences, set(id2item), sequences_path)
    # Both sequence files list the same users in the same order with the same lengths: pair them position by position.
    relabeled = read_sequence_file(transrec_path)
    transrec_id: dict[int, int] = {}
    for line_number, (items, other) in enumerate(zip(sequences.values(), relabeled.values()), start=1):
        if len(items) != len(other):
            raise DataError("sequence lengths differ from p5_rdrec/sequential.txt", transrec_path, line_number)
        for item, tid in zip(items, other):
            if transrec_id.setdefault(item, tid) != tid:
                raise DataError(f"item {item} maps to two TransRec ids", transrec_path, line_number)
    # 0-d object arrays holding a dict; PROVENANCE.md checked that the pickles reference numpy classes only.
    titles = np.load(root / "transrec" / "title_maps.npy", allow_pickle=True).item()["id2title"]
    categories = np.load(root / "transrec" / "category_map.npy", allow_pickle=True).item()["id2category"]
    rows = []
    for item_id, asin in id2item.items():
        tid = str(transrec_id.get(item_id, ""))
        title = titles.get(tid)
        if title and TRANSREC_PLACEHOLDER_TITLE.match(title):
            title = None
        paths = categories.get(tid) or [[]]
        rows.append(item_row(item_id, asin, title=title, categories=paths[0]))
    source = {"kind": "p5", "files": [str(sequences_path), str(datamaps_path), str(root / "transrec")]}
    return Benchmark(name, items_dataset(rows), leave_one_out(sequences, sequences_path), source=source)


# S3Rec's Sports attributes keep the category roots that P5's names drop. Id 2 is in every item (the root
# "Sports & Outdoors", also the first category of every item in SeqDens' Sports.item); id 23 fills the brand slot of
# items without a brand. The other unnamed ids are roots of further paths whose names are only guessed: not used.
SPORTS_ROOT_ATTRIBUTE = 2
SPORTS_ROOT_NAME = "Sports & Outdoors"


def align_attribute_ids(item2attributes: dict[str, list[int]], datamaps: dict) -> dict[int, int]:
    """Pair S3Rec attribute ids with P5 attribute ids (the decode of ``amazon_sports/PROVENANCE.md``).

    Both files number the same attributes in the same order, but S3Rec keeps ids that P5 dropped. With ``S`` the
    occurrence counts of S3Rec ids 1..n (duplicates within an item counted) and ``P`` P5's ``attributeid2num`` for
    ids 1..m, the longest common subsequence of ``S`` and ``P`` (a match needs equal counts; the traceback skips an
    S3Rec id on ties) pairs S3Rec id ``a`` with P5 id ``p``; ``a``'s name is P5's ``id2attribute[p]``. Returns
    ``{a: p}``; ids left unpaired are absent.
    """
    counts = Counter(attribute for attributes in item2attributes.values() for attribute in attributes)
    s3rec = np.array([counts.get(a, 0) for a in range(1, max(counts, default=0) + 1)], dtype=np.int64)
    p5 = np.array([int(datamaps["attributeid2num"][str(p)]) for p in range(1, len(datamaps["attributeid2num"]) + 1)])
    n, m = len(s3rec), len(p5)
    # lcs[i, j]: LCS length of s3rec[:i] and p5[:j]; a row is the running maximum of its candidates.
    lcs = np.zeros((n + 1, m + 1), dtype=np.int32)
    for i in range(1, n + 1):
        candidates = np.maximum(lcs[i - 1, 1:], lcs[i - 1, :-1] + (p5 == s3rec[i - 1]))
        lcs[i, 1:] = np.maximum.accumulate(candidates)
    pairs, i, j = {}, n, m
    while i > 0 and j > 0:
        if s3rec[i - 1] == p5[j - 1]:
            pairs[i] = j
            i, j = i - 1, j - 1
        elif lcs[i - 1, j] >= lcs[i, j - 1]:
            i -= 1
        else:
            j -= 1
    return pairs


def sports_category_path(attributes: list[int], names: dict[int, str]) -> list[str]:
    """The ``Sports & Outdoors`` path of one item: the root, then the named levels up to the next root."""
    if SPORTS_ROOT_ATTRIBUTE not in attributes:
        return []
    path = [SPORTS_ROOT_NAME]
    for attribute in attributes[attributes.index(SPORTS_ROOT_ATTRIBUTE) + 1 :]:
        if attribute not in names:  # an unnamed id starts another path
            break
        path.append(names[attribute])
    return path


def read_sports(root: Path, name: str) -> Benchmark:
    sequences_path = root / "s3rec" / "Sports_and_Outdoors.txt"
    attributes_path = root / "s3rec" / "Sports_and_Outdoors_item2attributes.json"
    datamaps_path = root / "p5_llm-recsys-id" / "datamaps.json"
    sequences = read_sequence_file(sequences_path)
    datamaps = read_json(datamaps_path)
    id2item = {int(item): asin for item, asin in datamaps["id2item"].items()}
    check_items_known(sequences, set(id2item), sequences_path)
    item2attributes = read_json(attributes_path)
    for item, attributes in item2attributes.items():
        if not (item.isdigit() and int(item) in id2item):
            raise DataError(f"item {item!r} is not in the id map {datamaps_path}", attributes_path)
        if not (isinstance(attributes, list) and attributes and all(isinstance(a, int) and a > 0 for a in attributes)):
            raise DataError(f"item {item}: attributes must be a non-empty list of positive integer ids", attributes_path)
    names = {a: datamaps["id2attribute"][str(p)] for a, p in align_attribute_ids(item2attributes, datamaps).items()}
    rows = []
    for item_id, asin in id2item.items():
        attributes = item2attributes.get(str(item_id))
        if attributes is None:
            rows.append(item_row(item_id, asin))
            continue
        # The first slot is the brand; '' is P5's name for an empty brand, which item_row turns into None.
        brand = names.get(attributes[0])
        rows.append(item_row(item_id, asin, brand=brand, categories=sports_category_path(attributes, names)))
    source = {"kind": "p5", "files": [str(p) for p in (sequences_path, datamaps_path, attributes_path)]}
    return Benchmark(name, items_dataset(rows), leave_one_out(sequences, sequences_path), source=source)


LAYOUTS = {
    "amazon_beauty": (("s3rec", "Beauty.txt"), read_beauty),
    "amazon_toys": (("p5_rdrec", "sequential.txt"), read_toys),
    "amazon_sports": (("s3rec", "Sports_and_Outdoors.txt"), read_sports),
}


def read_p5(path, name: str | None = None) -> Benchmark:
    """Read a prepared P5/S3Rec benchmark folder (Amazon Beauty, Toys or Sports layout, detected from its files)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError("benchmark folder not found", root)
    for layout, (marker, reader) in LAYOUTS.items():
        if (root.joinpath(*marker)).is_file():
            return reader(root, name or layout)
    expected = ", ".join("/".join(marker) for marker, _ in LAYOUTS.values())
    raise DataError(f"not a P5/S3Rec benchmark folder: expected one of {expected}", root)
