"""Benchmark readers: raw Amazon 2014 files, the prepared P5/S3Rec files, splits, saving and bad input."""

import functools
import gzip
import http.server
import json
import re
import threading

import pytest

from lamar_hf.cli import main as lamar
from lamar_hf.data import DataError, download_amazon2014, load_prepared, read_amazon2014, read_p5, user_sequences

# (reviewer, asin, unixReviewTime) in file order. F has 4 reviews (< 5) and drops on the first k-core pass;
# I6 then has 4 reviewers left and drops only on the second pass. A reviews I3 and I2 at the same time.
REVIEWS = (
    [("B", "I5", 1), ("B", "I4", 2), ("B", "I3", 3), ("B", "I2", 4), ("B", "I1", 5), ("B", "I6", 6)]
    + [("A", "I1", 10), ("A", "I3", 20), ("A", "I2", 20), ("A", "I4", 30), ("A", "I5", 40), ("A", "I6", 50)]
    + [("F", "I1", 1), ("F", "I2", 2), ("F", "I3", 3), ("F", "I6", 4)]
    + [(user, asin, time) for user in "CD" for asin, time in [("I5", 1), ("I4", 2), ("I3", 3), ("I2", 4), ("I1", 5), ("I6", 6)]]
    + [("E", asin, time) for asin, time in [("I5", 1), ("I4", 2), ("I3", 3), ("I2", 4), ("I1", 5)]]
)

META = [
    "{'asin': 'I1', 'title': 'Rose Face Cream', 'price': 12.5, 'brand': 'Rosy', 'description': 'A rich cream.', "
    "'categories': [['Beauty', 'Skin Care', 'Face'], ['Beauty', 'Gifts']], 'salesRank': {'Beauty': 10}}",
    "{'asin': 'I2', 'title': 'Nail Polish Red', 'categories': [['Beauty', 'Makeup', 'Nails']]}",
    "{'asin': 'I3', 'title': 'Shampoo', 'brand': 'Suds', 'categories': [['Beauty', 'Hair Care']]}",
    "{'asin': 'I4', 'price': 3.0, 'categories': [['Beauty', 'Makeup']], 'imUrl': 'http://x/y.jpg'}",  # no title
    "{'asin': 'I5', 'title': 'L&#39;Or&eacute;al Shampoo &amp; Conditioner', 'brand': 'L&#39;Or&eacute;al', "
    "'categories': [['Beauty', 'Hair Care', 'Shampoo &amp; Conditioner']]}",
    "{'asin': 'I6', 'title': 'Dropped by the k-core', 'categories': [['Beauty']]}",
    "{'asin': 'ZZ', 'title': 'Never reviewed', 'categories': [['Beauty']]}",
]


def review_line(user, asin, time):
    return json.dumps(
        {"reviewerID": user, "asin": asin, "reviewerName": f"name {user}", "helpful": [0, 0], "reviewText": "ok",
         "overall": 5.0, "summary": "fine", "unixReviewTime": time, "reviewTime": "01 1, 2014"}
    )


def write_gzip_lines(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in lines)


@pytest.fixture
def raw_folder(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    write_gzip_lines(folder / "reviews_Test_5.json.gz", [review_line(*review) for review in REVIEWS])
    write_gzip_lines(folder / "meta_Test.json.gz", META)
    return folder


def test_amazon2014_ids_sequences_and_metadata(raw_folder):
    benchmark = read_amazon2014(raw_folder)
    # Users by first review line (B, A, C, D, E; F is gone); items by first appearance walking those users in time order.
    assert user_sequences(benchmark.sequences) == {
        1: [1, 2, 3, 4, 5],  # B: I5 I4 I3 I2 I1
        2: [5, 3, 4, 2, 1],  # A: I1, then I3 before I2 (same time, file order), I4, I5
        3: [1, 2, 3, 4, 5],
        4: [1, 2, 3, 4, 5],
        5: [1, 2, 3, 4, 5],
    }
    test, validation, train = (benchmark.sequences[split] for split in ("test", "validation", "train"))
    assert test[1] == {"user_id": 2, "history": [5, 3, 4, 2], "target": 1}
    assert validation[1] == {"user_id": 2, "history": [5, 3, 4], "target": 2}
    assert train[1] == {"user_id": 2, "history": [5, 3], "target": 4}
    items = {row["asin"]: row for row in benchmark.items}
    assert set(items) == {"I1", "I2", "I3", "I4", "I5"}
    assert [row["item_id"] for row in benchmark.items] == [1, 2, 3, 4, 5]
    assert items["I5"]["item_id"] == 1 and items["I1"]["item_id"] == 5
    assert items["I5"]["title"] == "L'Oréal Shampoo & Conditioner"
    assert items["I5"]["brand"] == "L'Oréal"
    assert items["I5"]["categories"] == ["Beauty", "Hair Care", "Shampoo & Conditioner"]
    assert items["I4"]["title"] is None and items["I4"]["price"] == 3.0
    assert items["I1"]["categories"] == ["Beauty", "Skin Care", "Face"]  # the first path only
    assert items["I1"]["description"] == "A rich cream." and items["I1"]["price"] == 12.5
    assert benchmark.source["k_core"] == 5


def test_k_core_is_repeated_until_stable(raw_folder):
    # With k=4, F (4 reviews) stays and so does I6 (5 reviewers).
    benchmark = read_amazon2014(raw_folder, k=4)
    assert benchmark.num_users == 6 and benchmark.num_items == 6


def test_save_and_load_round_trip(raw_folder, tmp_path):
    benchmark = read_amazon2014(raw_folder)
    out = benchmark.save(tmp_path / "saved" / "prepared")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet")) == [
        "items/train-00000-of-00001.parquet",
        "sequences/test-00000-of-00001.parquet",
        "sequences/train-00000-of-00001.parquet",
        "sequences/validation-00000-of-00001.parquet",
    ]
    loaded = load_prepared(out)
    assert loaded.items.features == benchmark.items.features
    assert loaded.items.to_list() == benchmark.items.to_list()
    for split in ("train", "validation", "test"):
        assert loaded.sequences[split].to_list() == benchmark.sequences[split].to_list()
    with pytest.raises(DataError, match="not empty"):
        benchmark.save(out)
    benchmark.save(out, overwrite=True)
    assert [p.name for p in out.parent.iterdir()] == ["prepared"]  # no staging or retired folder left


def test_beauty_from_the_prepared_files(shared_data):
    benchmark = read_p5(shared_data / "amazon_beauty")
    stats = benchmark.statistics()
    assert (stats["users"], stats["items"], stats["interactions"]) == (22_363, 12_101, 198_502)
    titles = [title for title in benchmark.items["title"] if title]
    assert len(titles) == 12_094
    assert not [title for title in titles if re.search(r"&(#\d+|#x[0-9a-f]+|[a-z]+);", title, re.I)]
    for split in ("validation", "test"):
        assert len(benchmark.sequences[split]) == 22_363
        assert len(set(benchmark.sequences[split]["user_id"])) == 22_363
    train_histories = benchmark.sequences["train"]["history"]
    assert stats["train_interactions"] == 153_776 == 198_502 - 2 * 22_363
    assert sum(len(history) for history in train_histories) == 131_413  # next-item targets inside training sequences
    first = benchmark.items[0]
    assert (first["asin"], first["brand"], first["categories"]) == ("B004756YJA", "OPI", ["Beauty", "Makeup", "Nails", "Nail Polish"])
    assert benchmark.sequences["test"][0] == {"user_id": 1, "history": [1, 2, 3, 4], "target": 5}


def test_toys_from_the_prepared_files(shared_data):
    benchmark = read_p5(shared_data / "amazon_toys")
    stats = benchmark.statistics()
    assert (stats["users"], stats["items"], stats["interactions"]) == (19_412, 11_924, 167_597)
    assert sum(1 for title in benchmark.items["title"] if title) == 11_865  # TransRec placeholders are missing titles
    assert benchmark.items[0]["title"] == "Hasbro Electronic Catch Phrase"
    assert benchmark.items[0]["categories"] == ["Toys & Games", "Games", "Handheld Games"]


# Bad input: one clear error naming the file and line, and no output folder left behind.


def assert_prepare_fails(source, path, out, capsys, pattern):
    assert lamar(["prepare", "--source", source, "--path", str(path), "--out", str(out)]) == 2
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("lamar prepare: error:")]
    assert len(errors) == 1 and re.search(pattern, errors[0]) and "Traceback" not in stderr, stderr
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


def test_truncated_gzip(raw_folder, tmp_path, capsys):
    reviews = raw_folder / "reviews_Test_5.json.gz"
    data = reviews.read_bytes()
    reviews.write_bytes(data[: len(data) // 2])
    assert_prepare_fails("amazon2014", raw_folder, tmp_path / "out", capsys, r"reviews_Test_5\.json\.gz:\d+: unreadable gzip")


def test_meta_line_that_is_not_a_literal_dict(raw_folder, tmp_path, capsys):
    write_gzip_lines(raw_folder / "meta_Test.json.gz", [META[0], "{'asin': 'I2', 'title': __import__('os')}", *META[2:]])
    assert_prepare_fails("amazon2014", raw_folder, tmp_path / "out", capsys, r"meta_Test\.json\.gz:2: not a Python literal dict")


def test_empty_reviews_file(raw_folder, tmp_path, capsys):
    write_gzip_lines(raw_folder / "reviews_Test_5.json.gz", [])
    assert_prepare_fails("amazon2014", raw_folder, tmp_path / "out", capsys, r"reviews_Test_5\.json\.gz: empty file")


def tiny_beauty_layout(root, sequence_lines):
    (root / "s3rec").mkdir(parents=True)
    (root / "p5_llm-recsys-id").mkdir()
    (root / "plrec").mkdir()
    (root / "s3rec" / "Beauty.txt").write_text("".join(line + "\n" for line in sequence_lines))
    asins = {"1": "B2", "2": "A9", "3": "C1"}
    (root / "p5_llm-recsys-id" / "datamaps.json").write_text(json.dumps({"id2item": asins, "item2id": {v: k for k, v in asins.items()}}))
    header = "item_id:token\ttitle:token\tsales_type:token\tsales_rank:float\tcategories:token_seq\tprice:float\tbrand:token\n"
    rows = [  # item_id here is the rank of the ASIN among sorted ASINs: A9=1, B2=2, C1=3
        "2\tGel &amp; Cream\tBeauty\t1.0\t'Beauty', 'Skin Care'\t4.5\tAcme\n",
        '1\t"Two-line\ntitle"\t\t\t\'Beauty\', \'Creams, Gels & Lotions\'\t\tZed\n',
        "3\t\tBeauty\t2.0\t'Beauty'\t\t\n",
    ]
    (root / "plrec" / "item_description.csv").write_text(header + "".join(rows))
    return root


def test_p5_join_recipe_on_a_tiny_layout(tmp_path):
    benchmark = read_p5(tiny_beauty_layout(tmp_path / "b", ["1 1 2 3", "2 3 2 1 2"]))
    rows = {row["item_id"]: row for row in benchmark.items}
    assert rows[1]["asin"] == "B2" and rows[1]["title"] == "Gel & Cream" and rows[1]["price"] == 4.5
    assert rows[2]["asin"] == "A9" and rows[2]["title"] == "Two-line\ntitle"
    assert rows[2]["categories"] == ["Beauty", "Creams, Gels & Lotions"]
    assert rows[3]["title"] is None and rows[3]["brand"] is None
    assert user_sequences(benchmark.sequences) == {1: [1, 2, 3], 2: [3, 2, 1, 2]}


def test_sequence_naming_an_unknown_item(tmp_path, capsys):
    folder = tiny_beauty_layout(tmp_path / "b", ["1 1 2 3", "2 3 7 1 2"])
    assert_prepare_fails("p5", folder, tmp_path / "out", capsys, r"Beauty\.txt:2: user 2 names item 7, which is missing from the id map")


def test_wrong_source_kind(raw_folder, tmp_path, capsys):
    assert_prepare_fails("p5", raw_folder, tmp_path / "out", capsys, r"not a P5/S3Rec benchmark folder")


def test_download_from_a_local_server(raw_folder, tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(raw_folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base_url = f"http://127.0.0.1:{server.server_address[1]}"
        dest = download_amazon2014("Test", tmp_path / "downloaded", base_url=base_url)
        assert (dest / "reviews_Test_5.json.gz").read_bytes() == (raw_folder / "reviews_Test_5.json.gz").read_bytes()
        assert read_amazon2014(dest).items.to_list() == read_amazon2014(raw_folder).items.to_list()
        with pytest.raises(DataError, match="download failed"):
            download_amazon2014("Missing", tmp_path / "missing", base_url=base_url)
        assert list((tmp_path / "missing").iterdir()) == []  # no partial file left
    finally:
        server.shutdown()
