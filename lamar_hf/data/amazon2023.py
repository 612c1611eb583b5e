"""Reader for the Amazon Reviews 2023 release (McAuley lab, Hub dataset ``McAuley-Lab/Amazon-Reviews-2023``) and
its download through ``huggingface_hub``.

The folder holds the release's files at their paths in the Hub repository (``<C>`` is a category such as
``Sports_and_Outdoors``):

- ``raw/meta_categories/meta_<C>.jsonl``: one item per line; ``parent_asin``, ``title``, ``main_category``,
  ``categories`` (list, coarse to fine), ``features`` and ``description`` (lists of strings), ``details`` (an object),
  ``store``, ``price`` (a number, text or null), images, ratings, ...
- ``benchmark/5core/last_out_w_his/<C>.{train,valid,test}.csv``: the published leave-one-out split (5-core,
  user/item pairs deduplicated), header ``user_id,parent_asin,rating,timestamp,history``, one row per interaction,
  ``history`` the space-separated ``parent_asin`` s the user interacted with before, ``timestamp`` in milliseconds.
- ``raw/review_categories/<C>.jsonl`` (only with ``from_reviews=True``): one review per line; ``user_id``,
  ``parent_asin``, ``timestamp`` (ms), ``rating``, ``title``, ``text``, ...

Sequences come from the published split: a user's sequence is the ``test`` row's history followed by its item, and
the ``valid`` and ``train`` rows are checked to agree with it. With ``from_reviews=True`` they are rebuilt from the
reviews file the way the release's ``benchmark_scripts`` do it (per user, the earliest review of each item; k-core;
chronological order, ties in file order); both give the same benchmark for a release's files.

Ids as for the 2014 reader: users 1..U in the order of the ``test`` file (the order of their first review),
items 1..N by first appearance along those sequences; ``asin`` holds the ``parent_asin``. Item fields: ``title``;
``brand`` from ``details["Brand"]``, else ``store``; ``categories`` from ``categories``, else ``[main_category]``;
``price`` where it reads as a number; ``description`` the ``description`` paragraphs joined by newlines (``features``
has no field of its own in the schema and is not used).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from .amazon2014 import k_core, number_sequences
from .benchmark import Benchmark
from .errors import DataError
from .items import item_row, items_dataset
from .splits import leave_one_out

HUB_REPO = "McAuley-Lab/Amazon-Reviews-2023"
BENCHMARK_COLUMNS = ["user_id", "parent_asin", "rating", "timestamp", "history"]
# The release's split files are named train / valid / test; the schema's splits are train / validation / test.
RELEASE_SPLITS = ("train", "valid", "test")
PUBLISHED_K_CORES = (0, 5)


def meta_file(category: str) -> str:
    return f"raw/meta_categories/meta_{category}.jsonl"


def reviews_file(category: str) -> str:
    return f"raw/review_categories/{category}.jsonl"


def split_file(category: str, split: str, k: int = 5) -> str:
    return f"benchmark/{k}core/last_out_w_his/{category}.{split}.csv"


def release_files(category: str, from_reviews: bool = False, k: int = 5) -> list[str]:
    """The paths in the Hub repository that :func:`read_amazon2023` reads for ``category``."""
    if from_reviews:
        return [reviews_file(category), meta_file(category)]
    return [split_file(category, split, k) for split in RELEASE_SPLITS] + [meta_file(category)]


def iter_json_lines(path: Path):
    """Yield ``(line_number, object)`` for every non-blank line; a line that is not a JSON object raises."""
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(tqdm(handle, desc=f"reading {path.name}", unit=" lines"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"not a JSON object ({error.msg})", path, line_number) from None
            if not isinstance(record, dict):
                raise DataError("not a JSON object", path, line_number)
            yield line_number, record


def text_field(record: dict, name: str, path: Path, line_number: int) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value:
        raise DataError(f"field {name!r} is missing or not a non-empty string", path, line_number)
    return value


def millisecond_timestamp(value, path: Path, line_number: int) -> int:
    try:
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"field 'timestamp' is not an integer (milliseconds): {value!r}", path, line_number) from None


def read_reviews_2023(path: Path) -> list[tuple[str, str, int]]:
    """``(user_id, parent_asin, timestamp)`` of every review line, in file order."""
    reviews = []
    for line_number, record in iter_json_lines(path):
        user = text_field(record, "user_id", path, line_number)
        item = text_field(record, "parent_asin", path, line_number)
        reviews.append((user, item, millisecond_timestamp(record.get("timestamp"), path, line_number)))
    if not reviews:
        raise DataError("no reviews in file", path)
    return reviews


def earliest_review_per_item(reviews: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Keep each user's earliest review of each item (ties: the first line), in file order."""
    earliest: dict[tuple[str, str], int] = {}
    for index, (user, item, time) in enumerate(reviews):
        kept = earliest.get((user, item))
        if kept is None or time < reviews[kept][2]:
            earliest[(user, item)] = index
    return [reviews[index] for index in sorted(earliest.values())]


def read_split_file(path: Path) -> list[tuple[int, str, str, list[str]]]:
    """``(line number, user_id, parent_asin, history)`` of every row of a ``*_w_his`` benchmark CSV."""
    if not path.is_file():
        raise DataError("missing Amazon Reviews 2023 file", path)
    rows = []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != BENCHMARK_COLUMNS:
            raise DataError(f"expected the header {','.join(BENCHMARK_COLUMNS)}, got {header}", path, 1)
        for values in reader:
            line_number = reader.line_num
            if not values:
                continue
            if len(values) != len(BENCHMARK_COLUMNS):
                raise DataError(f"expected {len(BENCHMARK_COLUMNS)} comma-separated fields, got {len(values)}", path, line_number)
            user, item, _, timestamp, history = values
            if not user or not item:
                raise DataError("empty 'user_id' or 'parent_asin'", path, line_number)
            millisecond_timestamp(timestamp, path, line_number)
            rows.append((line_number, user, item, history.split()))
    return rows


def sequences_from_splits(root: Path, category: str, k: int) -> list[tuple[str, str, int]]:
    """Each user's sequence from the published leave-one-out files, as ``(user, item, position)`` in user order.

    Raises:
        DataError: a ``valid`` or ``train`` row disagrees with the user's sequence of the ``test`` file, names an
            unknown user, or a user's ``valid`` / ``train`` rows are missing or extra (the message names file and line).
    """
    paths = {split: root / split_file(category, split, k) for split in RELEASE_SPLITS}
    sequences: dict[str, list[str]] = {}
    for line_number, user, item, history in read_split_file(paths["test"]):
        if user in sequences:
            raise DataError(f"user {user} has a second test row", paths["test"], line_number)
        sequences[user] = history + [item]
    # valid rows predict the second-to-last item; train rows the items before it, one row each, in order.
    rows_read = {"valid": Counter(), "train": Counter()}
    for split in ("valid", "train"):
        for line_number, user, item, history in read_split_file(paths[split]):
            if user not in sequences:
                raise DataError(f"user {user} has no row in {paths['test'].name}", paths[split], line_number)
            sequence, count = sequences[user], rows_read[split][user]
            position = len(sequence) - 2 if split == "valid" else count
            limit = 1 if split == "valid" else len(sequence) - 2
            if count >= limit or sequence[: position + 1] != history + [item]:
                raise DataError(f"user {user}: row disagrees with the user's sequence in {paths['test'].name}", paths[split], line_number)
            rows_read[split][user] += 1
    for split in ("valid", "train"):
        for user, sequence in sequences.items():
            expected = 1 if split == "valid" else len(sequence) - 2
            if len(sequence) >= 3 and rows_read[split][user] != expected:
                raise DataError(f"user {user} has {rows_read[split][user]} rows; the test row implies {expected}", paths[split])
    # The position stands in for the time, so number_sequences numbers these as it numbers reviews.
    return [(user, item, position) for user, sequence in sequences.items() for position, item in enumerate(sequence)]


def brand_of(record: dict):
    details = record.get("details")
    if isinstance(details, str):  # the datasets loading script stores ``details`` as JSON text
        try:
            details = json.loads(details)
        except json.JSONDecodeError:
            details = None
    brand = details.get("Brand") if isinstance(details, dict) else None
    return brand or record.get("store")


def price_of(value):
    """``19.99``, ``"19.99"`` or ``"$1,299.00"`` → float; anything else (``None``, ``"None"``, ranges) → None."""
    if isinstance(value, str):
        value = value.strip().removeprefix("$").replace(",", "")
    return value


def text_list(record: dict, name: str, path: Path, line_number: int) -> list[str]:
    value = record.get(name) or []
    if not isinstance(value, list) or not all(isinstance(text, str) for text in value):
        raise DataError(f"field {name!r} is not a list of strings", path, line_number)
    return value


def read_meta_2023(path: Path, wanted: set[str]) -> dict[str, dict]:
    """Metadata records of the ``wanted`` parent ASINs."""
    if not path.is_file():
        raise DataError("missing Amazon Reviews 2023 file", path)
    meta = {}
    for line_number, record in iter_json_lines(path):
        asin = text_field(record, "parent_asin", path, line_number)
        if asin not in wanted:
            continue
        categories = text_list(record, "categories", path, line_number)
        main_category = record.get("main_category")
        meta[asin] = {
            "title": record.get("title"),
            "brand": brand_of(record),
            "categories": categories or ([main_category] if main_category else []),
            "price": price_of(record.get("price")),
            "description": "\n".join(text_list(record, "description", path, line_number)) or None,
        }
    return meta


def read_amazon2023(path, category: str, k: int = 5, from_reviews: bool = False, name: str | None = None) -> Benchmark:
    """Prepare a benchmark from a folder in the Hub layout of ``McAuley-Lab/Amazon-Reviews-2023`` (module docstring).

    ``k`` is the k-core of the published split (its ``5core`` files; the release also has ``0core``, whose users may
    have fewer than the 3 interactions leave-one-out needs), or the k of the filter with ``from_reviews=True``.

    Raises:
        DataError: a missing file, a bad line (the message names file and line) or split files that disagree.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError("Amazon Reviews 2023 folder not found", root)
    if not from_reviews and k not in PUBLISHED_K_CORES:
        raise DataError(f"the release publishes {' and '.join(map(str, PUBLISHED_K_CORES))}-core splits, not {k}-core (or pass from_reviews)", root)
    files = [root / name_ for name_ in release_files(category, from_reviews, k)]
    for required in files:
        if not required.is_file():
            raise DataError(f"missing Amazon Reviews 2023 file (download it with `lamar prepare --source amazon2023 --category {category}` without --path)", required)
    if from_reviews:
        interactions = k_core(earliest_review_per_item(read_reviews_2023(files[0])), k)
        if not interactions:
            raise DataError(f"no review survives {k}-core filtering", files[0])
    else:
        interactions = sequences_from_splits(root, category, k)
    sequence_file = files[0] if from_reviews else root / split_file(category, "test", k)
    sequences, item_ids = number_sequences(interactions)
    meta = read_meta_2023(files[-1], set(item_ids))
    rows = [item_row(item_id, asin, **meta.get(asin, {})) for asin, item_id in item_ids.items()]
    source = {
        "kind": "amazon2023",
        "category": category,
        "k_core": k,
        "split": "reviews, leave-one-out" if from_reviews else "last_out",
        "files": [str(file) for file in files],
    }
    benchmark_name = name or f"amazon2023_{category.lower()}"
    return Benchmark(benchmark_name, items_dataset(rows), leave_one_out(sequences, sequence_file), source=source)


def download_amazon2023(
    category: str, dest=None, revision: str | None = None, from_reviews: bool = False, k: int = 5, repo_id: str = HUB_REPO
) -> Path:
    """Download the files :func:`read_amazon2023` needs from the Hub (``HF_ENDPOINT`` is honoured) and return the folder.

    Files go to ``dest`` (in the Hub layout) or, without it, to the Hugging Face cache; ``huggingface_hub`` writes each
    to a temporary name first, so an interrupted download leaves no half-written file.

    Raises:
        DataError: the repository, revision or a file is not on the Hub, or the Hub cannot be reached.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    folder = None
    for filename in release_files(category, from_reviews, k):
        try:
            local = hf_hub_download(repo_id, filename, repo_type="dataset", revision=revision, local_dir=dest)
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as error:
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DataError(f"download of {filename} from dataset {repo_id} failed: {first_line}") from None
        folder = Path(local).parents[filename.count("/")]
    return folder
