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
  ``benchmark/5core/timestamp_w_his/`` holds the timestamp split in the same format: every interaction before
  ``VALIDATION_FROM`` is in ``train``, from ``TEST_FROM`` on in ``test``, in between in ``valid``.
- ``raw/review_categories/<C>.jsonl`` (only with ``from_reviews=True``): one review per line; ``user_id``,
  ``parent_asin``, ``timestamp`` (ms), ``rating``, ``title``, ``text``, ...

Sequences come from the published split files, checked to agree with each other (under ``last_out``, a user's
sequence is the ``test`` row's history followed by its item; every ``valid`` and ``train`` row must be a prefix of
it; under ``timestamp``, each row must lie in its file's period and its history be the user's earlier rows). With
``from_reviews=True`` they are rebuilt from the reviews file the way the release's ``benchmark_scripts`` do it (per
user, the earliest review of each item; k-core; chronological order, ties in file order); both give the same
benchmark for a release's files. ``last_out`` becomes the schema's leave-one-out splits; ``timestamp`` the splits of
:func:`lamar_hf.data.splits.timestamp_split` (one ``train`` row per user, one ``validation`` / ``test`` row per
interaction of those periods that has an earlier item).

Ids as for the 2014 reader: users 1..U in the order of their first review (under ``timestamp``: first the users whose
first interaction is in the train period, then valid, then test, each group in that order), items 1..N by first
appearance along those users' sequences; ``asin`` holds the ``parent_asin``. Item fields: ``title``;
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
from .splits import leave_one_out, timestamp_split

HUB_REPO = "McAuley-Lab/Amazon-Reviews-2023"
BENCHMARK_COLUMNS = ["user_id", "parent_asin", "rating", "timestamp", "history"]
# The release's split files are named train / valid / test; the schema's splits are train / validation / test.
RELEASE_SPLITS = ("train", "valid", "test")
PUBLISHED_K_CORES = (0, 5)
SPLIT_KINDS = ("last_out", "timestamp")
# The release's two split times (ms), the same for every category (benchmark_scripts/timestamp_split.py).
VALIDATION_FROM, TEST_FROM = 1628643414042, 1658002729837


def meta_file(category: str) -> str:
    return f"raw/meta_categories/meta_{category}.jsonl"


def reviews_file(category: str) -> str:
    return f"raw/review_categories/{category}.jsonl"


def split_file(category: str, split: str, k: int = 5, kind: str = "last_out") -> str:
    return f"benchmark/{k}core/{kind}_w_his/{category}.{split}.csv"


def release_files(category: str, from_reviews: bool = False, k: int = 5, split: str = "last_out") -> list[str]:
    """The paths in the Hub repository that :func:`read_amazon2023` reads for ``category``."""
    if from_reviews:
        return [reviews_file(category), meta_file(category)]
    return [split_file(category, name, k, split) for name in RELEASE_SPLITS] + [meta_file(category)]


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


def read_split_file(path: Path) -> list[tuple[int, str, str, list[str], int]]:
    """``(line number, user_id, parent_asin, history, timestamp)`` of every row of a ``*_w_his`` benchmark CSV."""
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
                message = f"expected {len(BENCHMARK_COLUMNS)} comma-separated fields, got {len(values)}"
                raise DataError(message, path, line_number)
            user, item, _, timestamp, history = values
            if not user or not item:
                raise DataError("empty 'user_id' or 'parent_asin'", path, line_number)
            rows.append((line_number, user, item, history.split(), millisecond_timestamp(timestamp, path, line_number)))
    return rows


def sequences_from_splits(root: Path, category: str, k: int) -> list[tuple[str, str, int]]:
    """Each user's sequence from the published leave-one-out files, as ``(user, item, position)`` in user order.

    Raises:
        DataError: a ``valid`` or ``train`` row disagrees with the user's sequence of the ``test`` file, names an
            unknown user, or a user's ``valid`` / ``train`` rows are missing or extra (the message names file and line).
    """
    paths = {split: root / split_file(category, split, k) for split in RELEASE_SPLITS}
    sequences: dict[str, list[str]] = {}
    for line_number, user, item, history, _ in read_split_file(paths["test"]):
        if user in sequences:
            raise DataError(f"user {user} has a second test row", paths["test"], line_number)
        sequences[user] = history + [item]
    # valid rows predict the second-to-last item; train rows the items before it, one row each, in order.
    rows_read = {"valid": Counter(), "train": Counter()}
    for split in ("valid", "train"):
        for line_number, user, item, history, _ in read_split_file(paths[split]):
            if user not in sequences:
                raise DataError(f"user {user} has no row in {paths['test'].name}", paths[split], line_number)
            sequence, count = sequences[user], rows_read[split][user]
            position = len(sequence) - 2 if split == "valid" else count
            limit = 1 if split == "valid" else len(sequence) - 2
            if count >= limit or sequence[: position + 1] != history + [item]:
                message = f"user {user}: row disagrees with the user's sequence in {paths['test'].name}"
                raise DataError(message, paths[split], line_number)
            rows_read[split][user] += 1
    for split in ("valid", "train"):
        for user, sequence in sequences.items():
            expected = 1 if split == "valid" else len(sequence) - 2
            if len(sequence) >= 3 and rows_read[split][user] != expected:
                raise DataError(f"user {user} has {rows_read[split][user]} rows; the test row implies {expected}", paths[split])
    # The position stands in for the time, so number_sequences numbers these as it numbers reviews.
    return [(user, item, position) for user, sequence in sequences.items() for position, item in enumerate(sequence)]


def interactions_from_timestamp_files(root: Path, category: str, k: int) -> list[tuple[str, str, int]]:
    """Every row of the published timestamp split as ``(user, item, time)``, train rows first.

    Raises:
        DataError: a row lies in the wrong file for its time, or its history is not the items the user's rows before
            it name (the message names file and line).
    """
    bounds = {"train": (None, VALIDATION_FROM), "valid": (VALIDATION_FROM, TEST_FROM), "test": (TEST_FROM, None)}
    rows = []
    for split in RELEASE_SPLITS:
        path = root / split_file(category, split, k, "timestamp")
        low, high = bounds[split]
        for line_number, user, item, history, time in read_split_file(path):
            if (low is not None and time < low) or (high is not None and time >= high):
                raise DataError(f"timestamp {time} lies outside the {split} period [{low}, {high})", path, line_number)
            rows.append((path, line_number, user, item, history, time))
    by_user: dict[str, list] = {}
    for order, row in enumerate(rows):
        by_user.setdefault(row[2], []).append((row[5], order, row))
    for entries in by_user.values():
        entries.sort()
        sequence = [row[3] for _, _, row in entries]
        for position, (_, _, (path, line_number, user, _, history, _)) in enumerate(entries):
            if history != sequence[:position]:
                raise DataError(f"user {user}: history disagrees with the user's earlier rows", path, line_number)
    return [(user, item, time) for _, _, user, item, _, time in rows]


def users_by_first_period(interactions: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Reorder (stably) so that users whose first interaction is in the train period come first, then valid, then
    test: the order in which the timestamp files name them, from the reviews file as from the split files."""
    first: dict[str, int] = {}
    for user, _, time in interactions:
        first[user] = min(time, first.get(user, time))
    period = {user: (time >= VALIDATION_FROM) + (time >= TEST_FROM) for user, time in first.items()}
    return sorted(interactions, key=lambda interaction: period[interaction[0]])


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


def read_amazon2023(
    path, category: str, split: str = "last_out", k: int = 5, from_reviews: bool = False, name: str | None = None
) -> Benchmark:
    """Prepare a benchmark from a folder in the Hub layout of ``McAuley-Lab/Amazon-Reviews-2023`` (module docstring).

    ``split`` is ``"last_out"`` (leave-one-out, :func:`~lamar_hf.data.leave_one_out`) or ``"timestamp"`` (the
    release's two absolute split times, :func:`~lamar_hf.data.splits.timestamp_split`). ``k`` is the k-core of the
    published split files (``5core``; the release also has ``0core``, whose users may have fewer than the 3
    interactions leave-one-out needs), or the k of the filter with ``from_reviews=True``.

    Raises:
        DataError: a missing file, a bad line (the message names file and line) or split files that disagree.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError("Amazon Reviews 2023 folder not found", root)
    if split not in SPLIT_KINDS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_KINDS)}", root)
    if not from_reviews and k not in PUBLISHED_K_CORES:
        published = " and ".join(map(str, PUBLISHED_K_CORES))
        raise DataError(f"the release publishes {published}-core splits, not {k}-core (rebuild from the reviews)", root)
    files = [root / name_ for name_ in release_files(category, from_reviews, k, split)]
    for required in files:
        if not required.is_file():
            raise DataError("missing Amazon Reviews 2023 file (download_amazon2023 fetches it)", required)
    if from_reviews:
        interactions = k_core(earliest_review_per_item(read_reviews_2023(files[0])), k)
        if not interactions:
            raise DataError(f"no review survives {k}-core filtering", files[0])
    elif split == "last_out":
        interactions = sequences_from_splits(root, category, k)
    else:
        interactions = interactions_from_timestamp_files(root, category, k)
    if split == "timestamp":
        interactions = users_by_first_period(interactions)
    sequences, item_ids, times = number_sequences(interactions)
    meta = read_meta_2023(files[-1], set(item_ids))
    rows = [item_row(item_id, asin, **meta.get(asin, {})) for asin, item_id in item_ids.items()]
    if split == "last_out":
        sequence_file = files[0] if from_reviews else root / split_file(category, "test", k)
        splits = leave_one_out(sequences, sequence_file)
    else:
        splits = timestamp_split(sequences, times, VALIDATION_FROM, TEST_FROM)
    source = {
        "kind": "amazon2023",
        "category": category,
        "k_core": k,
        "split": split,
        "sequences_from": "reviews" if from_reviews else "published split",
        "files": [str(file) for file in files],
    }
    return Benchmark(name or f"amazon2023_{category.lower()}", items_dataset(rows), splits, source=source)


def download_amazon2023(
    category: str,
    dest=None,
    revision: str | None = None,
    split: str = "last_out",
    from_reviews: bool = False,
    k: int = 5,
    repo_id: str = HUB_REPO,
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
    for filename in release_files(category, from_reviews, k, split):
        try:
            local = hf_hub_download(repo_id, filename, repo_type="dataset", revision=revision, local_dir=dest)
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as error:
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DataError(f"download of {filename} from dataset {repo_id} failed: {first_line}") from None
        folder = Path(local).parents[filename.count("/")]
    return folder
