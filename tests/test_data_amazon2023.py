"""Amazon Reviews 2023 (``lamar prepare --source amazon2023``): a fixture in the release's exact formats.

The files follow the release's Hub layout and formats (``McAuley-Lab/Amazon-Reviews-2023``; its
``benchmark_scripts``): review and metadata JSON lines, and the ``last_out_w_his`` CSV files with the header
``user_id,parent_asin,rating,timestamp,history`` and one row per interaction. Five users each review the five items
A..E (so everything survives 5-core); a sixth user with two reviews and an item F with one are filtered out; one
user reviews an item twice (the earlier review counts) and one reviews two items in the same millisecond (file order
breaks the tie).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hub_server import Blob, HubServer

from lamar_hf.cli import main as lamar
from lamar_hf.data import DataError, load_prepared, read_amazon2023, split_fingerprint
from lamar_hf.data.amazon2023 import HUB_REPO, TEST_FROM, VALIDATION_FROM, meta_file, release_files, reviews_file, split_file

CATEGORY = "All_Beauty"
ROOT = Path(__file__).resolve().parents[1]
T0 = 1_600_000_000_000  # milliseconds
USERS = {name: f"A{name}XKQZ2MOCKUSER" for name in ("U1", "U2", "U3", "U4", "U5", "U6")}
ITEMS = {name: f"B0{name}TESTAS" for name in "ABCDEF"}

# The chronological sequences of the 5-core users, and their order of first review in the reviews file.
SEQUENCES = {
    "U2": "BADCE",
    "U1": "ABCDE",
    "U3": "CDEAB",
    "U5": "ACEBD",
    "U4": "EDCBA",
}
# What read_amazon2023 must number: users by first review, items by first appearance along those sequences.
EXPECTED_ITEM_IDS = {"B": 1, "A": 2, "D": 3, "C": 4, "E": 5}
LATE = TEST_FROM + 10**9  # after every other review


def default_times(user: str, rank: int) -> list[int]:
    """All before the release's validation time; U5 reviews its 2nd and 3rd items in the same millisecond."""
    times = [T0 + 1000 * rank + 10 * position for position in range(5)]
    if user == "U5":
        times[2] = times[1]
    return times


# Times around the release's two split times: U1 only trains, U3 has no train interaction (and its first one, with
# nothing before it, cannot be predicted), U5 keeps its tie.
V, T = VALIDATION_FROM, TEST_FROM
TIMESTAMP_TIMES = {
    "U2": [V - 5000, V - 4000, V + 10, T + 5, T + 6],
    "U1": [V - 9000, V - 8000, V - 7000, V - 6000, V - 5500],
    "U3": [V + 100, V + 200, T + 1, T + 2, T + 3],
    "U5": [V - 3000, V - 2000, V - 2000, T + 50, T + 60],
    "U4": [V - 100, V + 300, V + 400, V + 500, T + 100],
}


def timestamp_times(user: str, rank: int) -> list[int]:
    return TIMESTAMP_TIMES[user]


def review(user: str, item: str, time: int, rating: float = 5.0, asin: str | None = None) -> dict:
    """One review line as the release writes it (``asin`` is the variant, ``parent_asin`` the product)."""
    return {
        "rating": rating, "title": f"review of {item}", "text": "Works well.", "images": [],
        "asin": asin or ITEMS[item], "parent_asin": ITEMS[item], "user_id": USERS[user], "timestamp": time,
        "helpful_vote": 0, "verified_purchase": True,
    }


def review_lines(times_of=default_times) -> list[dict]:
    """Reviews in file order: users appear first in the order of SEQUENCES; within a user, lines are not sorted."""
    lines = []
    for rank, (user, items) in enumerate(SEQUENCES.items()):
        times = dict(zip(items, times_of(user, rank)))
        order = list(items) if user == "U5" else list(items[1:] + items[:1])  # U5: its tie is broken by file order
        lines += [review(user, item, times[item], asin=f"{ITEMS[item]}-v2" if item == "D" else None) for item in order]
    lines.insert(3, review("U6", "A", T0 - 5))  # a user with two reviews: below 5-core
    lines.append(review("U6", "B", T0 + 99_000))
    lines.append(review("U1", "F", T0 + 98_000))  # an item with one review: below 5-core
    lines.append(review("U3", "C", LATE, rating=1.0))  # a later second review of C: the earlier one counts
    return lines


def meta_lines() -> list[dict]:
    base = {"average_rating": 4.5, "rating_number": 12, "images": [], "videos": [], "bought_together": None}
    return [
        {**base, "main_category": "All Beauty", "title": "Lip &amp; Cheek Tint", "features": ["Buildable colour"],
         "description": [], "price": "18.00", "store": "Glossier Store", "categories": [],
         "details": {"Brand": "Glossier", "Item Form": "Cream"}, "parent_asin": ITEMS["A"]},
        {**base, "main_category": "All Beauty", "title": "Mascara", "features": [],
         "description": ["Lengthens lashes.", "Washes off with warm water."], "price": None, "store": "e.l.f.",
         "categories": ["Beauty & Personal Care", "Makeup", "Eyes", "Mascara"], "details": {}, "parent_asin": ITEMS["B"]},
        {**base, "main_category": "All Beauty", "title": "Nail Polish Remover", "features": ["Acetone free"],
         "description": [], "price": "None", "store": None, "categories": [], "details": {"Volume": "100 ml"},
         "parent_asin": ITEMS["C"]},
        {**base, "main_category": None, "title": "Hair Brush", "features": [], "description": ["Boar bristles."],
         "price": 7.5, "store": "Mason Pearson", "categories": ["Beauty & Personal Care", "Hair Care"],
         "details": {"Brand": ""}, "parent_asin": ITEMS["D"]},
        # E has no metadata line; F is filtered out by 5-core; Z is not reviewed at all.
        {**base, "main_category": "All Beauty", "title": "Filtered", "features": [], "description": [], "price": "1.00",
         "store": "X", "categories": [], "details": {}, "parent_asin": ITEMS["F"]},
        {**base, "main_category": "All Beauty", "title": "Never reviewed", "features": [], "description": [],
         "price": "2.00", "store": "Y", "categories": [], "details": {}, "parent_asin": "B0ZZZZZZZZ"},
    ]


def split_rows(kind: str, times_of=default_times) -> dict[str, list[str]]:
    """The ``<kind>_w_his`` files as the release's ``last_out_split.py`` / ``timestamp_split.py`` write them (plus the
    header the files have on the Hub)."""
    rows = {"train": [], "valid": [], "test": []}
    for rank, (user, items) in enumerate(SEQUENCES.items()):
        times, asins = times_of(user, rank), [ITEMS[item] for item in items]
        line = lambda i: f"{USERS[user]},{asins[i]},5.0,{times[i]},{' '.join(asins[:i])}"  # noqa: E731
        for i in range(len(asins)):
            if kind == "last_out":
                split = "test" if i == len(asins) - 1 else "valid" if i == len(asins) - 2 else "train"
            else:
                split = "test" if times[i] >= TEST_FROM else "valid" if times[i] >= VALIDATION_FROM else "train"
            rows[split].append(line(i))
    return rows


def write_release(root: Path, files: dict[str, bytes] | None = None) -> Path:
    """Write the fixture in the release's Hub layout under ``root``; return ``root``."""
    for path, content in (files or release_contents()).items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return root


def release_contents(times_of=default_times) -> dict[str, bytes]:
    header = "user_id,parent_asin,rating,timestamp,history\n"
    contents = {
        split_file(CATEGORY, split, kind=kind): (header + "".join(line + "\n" for line in lines)).encode()
        for kind in ("last_out", "timestamp")
        for split, lines in split_rows(kind, times_of).items()
    }
    contents[reviews_file(CATEGORY)] = "".join(json.dumps(line) + "\n" for line in review_lines(times_of)).encode()
    contents[meta_file(CATEGORY)] = "".join(json.dumps(line) + "\n" for line in meta_lines()).encode()
    return contents


def sequences_of(benchmark) -> dict[str, list]:
    return {split: benchmark.sequences[split].to_dict() for split in ("train", "validation", "test")}


def test_published_split_gives_the_expected_ids_splits_and_items(tmp_path):
    benchmark = read_amazon2023(write_release(tmp_path), CATEGORY)

    ids = EXPECTED_ITEM_IDS
    full = {user: [ids[item] for item in items] for user, items in enumerate(SEQUENCES.values(), start=1)}
    assert full == {1: [1, 2, 3, 4, 5], 2: [2, 1, 4, 3, 5], 3: [4, 3, 5, 2, 1], 4: [2, 4, 5, 1, 3], 5: [5, 3, 4, 1, 2]}
    assert sequences_of(benchmark) == {
        "train": {"user_id": [1, 2, 3, 4, 5], "history": [s[:2] for s in full.values()], "target": [s[2] for s in full.values()]},
        "validation": {"user_id": [1, 2, 3, 4, 5], "history": [s[:3] for s in full.values()], "target": [s[3] for s in full.values()]},
        "test": {"user_id": [1, 2, 3, 4, 5], "history": [s[:4] for s in full.values()], "target": [s[4] for s in full.values()]},
    }
    assert benchmark.items.to_list() == [
        {"item_id": 1, "asin": ITEMS["B"], "title": "Mascara", "brand": "e.l.f.",
         "categories": ["Beauty & Personal Care", "Makeup", "Eyes", "Mascara"], "price": None,
         "description": "Lengthens lashes.\nWashes off with warm water."},
        {"item_id": 2, "asin": ITEMS["A"], "title": "Lip & Cheek Tint", "brand": "Glossier", "categories": ["All Beauty"],
         "price": 18.0, "description": None},
        {"item_id": 3, "asin": ITEMS["D"], "title": "Hair Brush", "brand": "Mason Pearson",
         "categories": ["Beauty & Personal Care", "Hair Care"], "price": 7.5, "description": "Boar bristles."},
        {"item_id": 4, "asin": ITEMS["C"], "title": "Nail Polish Remover", "brand": None, "categories": ["All Beauty"],
         "price": None, "description": None},
        {"item_id": 5, "asin": ITEMS["E"], "title": None, "brand": None, "categories": [], "price": None, "description": None},
    ]
    assert benchmark.name == "amazon2023_all_beauty"
    assert benchmark.source["kind"] == "amazon2023" and benchmark.source["split"] == "last_out"


def test_sequences_rebuilt_from_the_reviews_equal_the_published_split(tmp_path):
    root = write_release(tmp_path)
    published = read_amazon2023(root, CATEGORY)
    rebuilt = read_amazon2023(root, CATEGORY, from_reviews=True)
    assert sequences_of(rebuilt) == sequences_of(published)
    assert rebuilt.items.to_list() == published.items.to_list()
    assert split_fingerprint(rebuilt) == split_fingerprint(published)


def test_timestamp_split_gives_the_expected_rows(tmp_path):
    root = write_release(tmp_path, release_contents(timestamp_times))
    benchmark = read_amazon2023(root, CATEGORY, split="timestamp")
    # Users with a train interaction first (U2, U1, U5, U4 in order of first review), then U3; items as before.
    assert sequences_of(benchmark) == {
        "train": {"user_id": [1, 2, 3, 4], "history": [[1], [2, 1, 4, 3], [2, 4], []], "target": [2, 5, 5, 5]},
        "validation": {"user_id": [1, 4, 4, 4, 5], "history": [[1, 2], [5], [5, 3], [5, 3, 4], [4]], "target": [3, 3, 4, 1, 3]},
        "test": {
            "user_id": [1, 1, 3, 3, 4, 5, 5, 5],
            "history": [[1, 2, 3], [1, 2, 3, 4], [2, 4, 5], [2, 4, 5, 1], [5, 3, 4, 1], [4, 3], [4, 3, 5], [4, 3, 5, 2]],
            "target": [4, 5, 1, 3, 2, 5, 2, 1],
        },
    }
    stats = benchmark.statistics()
    assert (stats["users"], stats["items"], stats["interactions"], stats["train_interactions"]) == (5, 5, 25, 11)
    assert benchmark.source["split"] == "timestamp"
    rebuilt = read_amazon2023(root, CATEGORY, split="timestamp", from_reviews=True)
    assert sequences_of(rebuilt) == sequences_of(benchmark)
    # The same interactions split leave-one-out: users in order of first review, as always under last_out.
    assert read_amazon2023(root, CATEGORY).sequences["test"]["target"] == [5, 5, 1, 3, 2]


def test_timestamp_row_in_the_wrong_period_is_named(tmp_path):
    contents = release_contents(timestamp_times)
    path = split_file(CATEGORY, "valid", kind="timestamp")
    lines = contents[path].decode().splitlines()
    moved = lines[1].replace(f",{V + 10},", f",{T + 10},")
    root = write_release(tmp_path, corrupt(contents, path, 2, moved))
    with pytest.raises(DataError, match=rf"All_Beauty\.valid\.csv:2: timestamp {T + 10} lies outside the valid period"):
        read_amazon2023(root, CATEGORY, split="timestamp")


def corrupt(contents: dict[str, bytes], path: str, line: int, text: str) -> dict[str, bytes]:
    lines = contents[path].decode().splitlines(keepends=True)
    lines[line - 1] = text + "\n"
    return {**contents, path: "".join(lines).encode()}


@pytest.mark.parametrize(
    ("path", "line", "text", "from_reviews", "message"),
    [
        (meta_file(CATEGORY), 3, '{"parent_asin": "B0CTESTAS", "title": "cut off', False, r"meta_All_Beauty\.jsonl:3: not a JSON object"),
        (meta_file(CATEGORY), 2, json.dumps({"parent_asin": "B0BTESTAS", "categories": "Makeup"}), False,
         r"meta_All_Beauty\.jsonl:2: field 'categories' is not a list of strings"),
        (split_file(CATEGORY, "test"), 1, "user_id,parent_asin,rating,timestamp", False, r"All_Beauty\.test\.csv:1: expected the header"),
        (split_file(CATEGORY, "valid"), 3, f"{USERS['U3']},{ITEMS['B']},5.0,{T0},{ITEMS['C']} {ITEMS['D']}", False,
         r"All_Beauty\.valid\.csv:3: user AU3XKQZ2MOCKUSER: row disagrees"),
        (split_file(CATEGORY, "test"), 3, f"{USERS['U1']},{ITEMS['E']},5.0", False,
         r"All_Beauty\.test\.csv:3: expected 5 comma-separated fields, got 3"),
        (split_file(CATEGORY, "train"), 4, f"{USERS['U2']},{ITEMS['A']},5.0,soon,", False,
         r"All_Beauty\.train\.csv:4: field 'timestamp' is not an integer"),
        (reviews_file(CATEGORY), 5, json.dumps({"user_id": USERS["U1"], "parent_asin": ITEMS["A"], "timestamp": "x"}), True,
         r"review_categories/All_Beauty\.jsonl:5: field 'timestamp'"),
        (reviews_file(CATEGORY), 2, json.dumps({"user_id": USERS["U1"], "timestamp": T0}), True,
         r"All_Beauty\.jsonl:2: field 'parent_asin' is missing"),
    ],
)
def test_a_bad_line_is_one_error_naming_file_and_line(tmp_path, path, line, text, from_reviews, message):
    root = write_release(tmp_path, corrupt(release_contents(), path, line, text))
    with pytest.raises(DataError, match=message):
        read_amazon2023(root, CATEGORY, from_reviews=from_reviews)


def test_prepare_on_a_bad_file_keeps_the_prepared_folder_untouched(tmp_path, capsys):
    good = write_release(tmp_path / "good")
    out = tmp_path / "prepared"
    assert lamar(["prepare", "--source", "amazon2023", "--category", CATEGORY, "--path", str(good), "--out", str(out)]) == 0
    before = {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()}
    bad = write_release(tmp_path / "bad", corrupt(release_contents(), meta_file(CATEGORY), 2, "not json"))
    capsys.readouterr()
    code = lamar(["prepare", "--source", "amazon2023", "--category", CATEGORY, "--path", str(bad), "--out", str(out), "--overwrite"])
    assert code == 2
    assert "meta_All_Beauty.jsonl:2: not a JSON object" in capsys.readouterr().err
    assert {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()} == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["bad", "good", "prepared"]  # no staging folder left


def test_missing_category_is_named(tmp_path):
    root = write_release(tmp_path)
    with pytest.raises(DataError, match=r"Toys_and_Games\.train\.csv: missing Amazon Reviews 2023 file"):
        read_amazon2023(root, "Toys_and_Games")


DOWNLOADER = r'''
import contextlib, io, json, sys
from lamar_hf.cli import main
results = {}
for name, argv in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
        code = main(argv)
    results[name] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
print(json.dumps(results))
'''


def test_prepare_through_the_local_hub_equals_prepare_from_local_files(tmp_path):
    local = tmp_path / "from_files"
    assert lamar(["prepare", "--source", "amazon2023", "--category", CATEGORY, "--path", str(write_release(tmp_path / "release")),
                  "--out", str(local)]) == 0
    with HubServer() as hub:
        repo = hub.state.create_repo("dataset", HUB_REPO)
        files = {**repo.resolve("main").files, **{path: Blob(content, lfs=False) for path, content in release_contents().items()}}
        hub.state.commit(repo, "main", "Add the release files", "", files)
        runs = {
            "download": ["prepare", "--source", "amazon2023", "--category", CATEGORY, "--out", str(tmp_path / "from_hub")],
            "unknown": ["prepare", "--source", "amazon2023", "--category", "Toys_and_Games", "--out", str(tmp_path / "toys")],
        }
        env = {key: value for key, value in os.environ.items() if not key.endswith("_OFFLINE")}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0",
                   HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(ROOT))
        process = subprocess.run([sys.executable, "-c", textwrap.dedent(DOWNLOADER), json.dumps(runs)], env=env,
                                 cwd=tmp_path, capture_output=True, text=True, timeout=240)
        assert process.returncode == 0, process.stderr[-3000:]
        requested = [path for method, path in hub.requests if "/resolve/" in path]
    results = json.loads(process.stdout.strip().splitlines()[-1])
    assert results["download"]["code"] == 0, results["download"]["stderr"]
    # Only the files the published split needs were fetched: not the (large) reviews file.
    fetched = {path.split("/resolve/main/", 1)[1] for path in requested if "All_Beauty" in path}
    assert fetched == set(release_files(CATEGORY))
    assert results["unknown"]["code"] == 2
    assert "Toys_and_Games.train.csv" in results["unknown"]["stderr"] and HUB_REPO in results["unknown"]["stderr"]
    assert not (tmp_path / "toys").exists()

    from_hub, from_files = load_prepared(tmp_path / "from_hub"), load_prepared(local)
    assert sequences_of(from_hub) == sequences_of(from_files)
    assert from_hub.items.to_list() == from_files.items.to_list()
    manifests = [json.loads((folder / "lamar_prepare.json").read_text()) for folder in (tmp_path / "from_hub", local)]
    assert manifests[0]["split_fingerprint"] == manifests[1]["split_fingerprint"] == split_fingerprint(from_files)
    assert f"split fingerprint    {split_fingerprint(from_files)}" in results["download"]["stdout"]
