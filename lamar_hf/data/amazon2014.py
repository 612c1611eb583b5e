"""Reader for the raw Amazon Reviews 2014 files (McAuley lab) and their download.

``reviews_<Category>_5.json.gz`` holds one JSON object per line (``reviewerID``, ``asin``, ``unixReviewTime``, ...);
``meta_<Category>.json.gz`` one *Python literal* dict per line (parsed with ``ast.literal_eval``, never ``eval``).

Preparation, in order:
1. k-core filtering (default 5): drop users and items with fewer than k reviews, repeated until nothing changes.
2. Chronological order per user by ``unixReviewTime``; ties keep the order of the lines in the reviews file (a stable sort).
3. Ids: users are numbered 1..U in order of their first review line in the file; items 1..N in order of first appearance
   when walking the users in that order through their chronological sequences (0 is padding). This is the numbering of
   the P5/S3Rec files.
4. Metadata: title, brand, the first category path (coarse to fine), price and description, HTML entities unescaped.
"""

from __future__ import annotations

import ast
import gzip
import json
import shutil
import urllib.request
import uuid
import zlib
from collections import Counter, defaultdict
from pathlib import Path

from tqdm.auto import tqdm

from .benchmark import Benchmark
from .errors import DataError
from .items import item_row, items_dataset
from .splits import leave_one_out

DEFAULT_BASE_URL = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles"


def reviews_file_name(category: str) -> str:
    return f"reviews_{category}_5.json.gz"


def meta_file_name(category: str) -> str:
    return f"meta_{category}.json.gz"


def iter_gzip_lines(path: Path, desc: str | None = None):
    """Yield ``(line_number, text)`` of a gzip text file; a truncated or corrupt file raises ``DataError``."""
    line_number = 0
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line_number, line in enumerate(tqdm(handle, desc=desc, unit=" lines", disable=desc is None), start=1):
                if line.strip():
                    yield line_number, line
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as error:
        raise DataError(f"unreadable gzip data after line {line_number} ({error})", path, line_number + 1) from None
    if line_number == 0:
        raise DataError("empty file", path)


def read_reviews(path: Path) -> list[tuple[str, str, int]]:
    """``(user, asin, unixReviewTime)`` per review line, in file order."""
    reviews = []
    for line_number, line in iter_gzip_lines(path, desc=f"reading {path.name}"):
        try:
            record = json.loads(line)
            reviews.append((str(record["reviewerID"]), str(record["asin"]), int(record["unixReviewTime"])))
        except json.JSONDecodeError as error:
            raise DataError(f"not a JSON object ({error.msg})", path, line_number) from None
        except KeyError as error:
            raise DataError(f"review lacks field {error.args[0]!r}", path, line_number) from None
        except (TypeError, ValueError):
            raise DataError("field 'unixReviewTime' is not an integer", path, line_number) from None
    return reviews


def k_core(reviews: list[tuple[str, str, int]], k: int) -> list[tuple[str, str, int]]:
    """Keep reviews whose user and item both have at least ``k`` reviews, repeating until stable."""
    while True:
        users = Counter(user for user, _, _ in reviews)
        items = Counter(item for _, item, _ in reviews)
        kept = [review for review in reviews if users[review[0]] >= k and items[review[1]] >= k]
        if len(kept) == len(reviews):
            return kept
        reviews = kept


def number_sequences(reviews: list[tuple[str, str, int]]) -> tuple[dict[int, list[int]], dict[str, int], dict[int, list[int]]]:
    """``(user, item, time)`` reviews in file order → chronological ``{user_id: [item_id, ...]}``, ``{item: item_id}``
    and the times of each user's sequence, ``{user_id: [time, ...]}``.

    Users are numbered 1..U by their first review line, items 1..N by first appearance when walking the users in that
    order through their sequences; ties in time keep the order of the lines (the P5/S3Rec numbering).
    """
    by_user: dict[str, list[tuple[int, int, str]]] = defaultdict(list)  # insertion order = first review line
    for line_order, (user, item, time) in enumerate(reviews):
        by_user[user].append((time, line_order, item))
    item_ids: dict[str, int] = {}
    sequences: dict[int, list[int]] = {}
    times: dict[int, list[int]] = {}
    for user_id, user in enumerate(by_user, start=1):
        chronological = sorted(by_user[user])  # (time, line order): ties keep file order
        sequences[user_id] = [item_ids.setdefault(item, len(item_ids) + 1) for _, _, item in chronological]
        times[user_id] = [time for time, _, _ in chronological]
    return sequences, item_ids, times


def read_meta(path: Path, wanted: set[str]) -> dict[str, dict]:
    """Metadata dicts of the ``wanted`` ASINs (each line a Python literal dict)."""
    meta = {}
    for line_number, line in iter_gzip_lines(path, desc=f"reading {path.name}"):
        try:
            record = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise DataError("not a Python literal dict", path, line_number) from None
        if not isinstance(record, dict) or "asin" not in record:
            raise DataError("not a metadata dict with an 'asin' field", path, line_number)
        if record["asin"] in wanted:
            meta[record["asin"]] = record
    return meta


def read_amazon2014(path, category: str | None = None, k: int = 5, name: str | None = None) -> Benchmark:
    """Prepare a benchmark from a folder holding ``reviews_<Category>_5.json.gz`` and ``meta_<Category>.json.gz``.

    ``category`` (e.g. ``"Beauty"``) may be left out when the folder holds exactly one reviews file.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError("Amazon 2014 folder not found", root)
    if category is None:
        found = sorted(root.glob("reviews_*_5.json.gz"))
        if len(found) != 1:
            raise DataError(f"expected one reviews_<Category>_5.json.gz file, found {len(found)}", root)
        category = found[0].name[len("reviews_") : -len("_5.json.gz")]
    reviews_path, meta_path = root / reviews_file_name(category), root / meta_file_name(category)
    for required in (reviews_path, meta_path):
        if not required.is_file():
            raise DataError("missing Amazon 2014 file", required)

    reviews = k_core(read_reviews(reviews_path), k)
    if not reviews:
        raise DataError(f"no review survives {k}-core filtering", reviews_path)
    sequences, item_ids, _ = number_sequences(reviews)
    meta = read_meta(meta_path, set(item_ids))
    rows = []
    for asin, item_id in item_ids.items():
        record = meta.get(asin, {})
        paths = record.get("categories") or [[]]
        rows.append(
            item_row(
                item_id,
                asin,
                title=record.get("title"),
                brand=record.get("brand"),
                categories=paths[0] if isinstance(paths[0], (list, tuple)) else paths,
                price=record.get("price"),
                description=record.get("description"),
            )
        )
    source = {"kind": "amazon2014", "category": category, "k_core": k, "files": [str(reviews_path), str(meta_path)]}
    return Benchmark(name or f"amazon_{category.lower()}", items_dataset(rows), leave_one_out(sequences, reviews_path), source=source)


def download_amazon2014(category: str, dest, base_url: str = DEFAULT_BASE_URL, overwrite: bool = False) -> Path:
    """Download the official reviews (5-core) and metadata files of ``category`` into ``dest``.

    Each file is streamed to a temporary name and renamed when complete, so an interrupted download leaves no
    half-written file. Existing files are kept unless ``overwrite``. Returns ``dest``.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for file_name in (reviews_file_name(category), meta_file_name(category)):
        target = dest / file_name
        if target.exists() and not overwrite:
            continue
        url = f"{base_url.rstrip('/')}/{file_name}"
        partial = dest / f".{file_name}.{uuid.uuid4().hex[:8]}.part"
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {file_name}") as progress:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        progress.update(len(chunk))
            partial.rename(target)
        except OSError as error:
            raise DataError(f"download failed from {url}: {error}", target) from None
        finally:
            if partial.exists():
                partial.unlink()
    return dest
