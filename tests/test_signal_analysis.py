"""Signal analysis: metric functions against values worked out by hand, the report, the table, plots and ``lamar analyze``."""

import json

import pytest
from datasets import Dataset

from lamar_hf.enrich.analysis import (
    analyze_signals,
    distinct_n,
    format_table,
    mean_pairwise_similarity,
    novelty,
    plot_report,
    signal_names,
)

ITEMS = [
    {"item_id": 1, "title": "Red Nail Polish", "brand": "OPI", "categories": ["Beauty", "Nails"]},
    {"item_id": 2, "title": "Argan Hair Oil", "brand": "Moroccan", "categories": ["Beauty", "Hair Care"]},
    {"item_id": 3, "title": "Rose Perfume", "brand": None, "categories": ["Beauty", "Fragrance"]},
]
ROWS = [
    {"item_id": 1, "scenario": "a red carpet party", "topic": "nail polish", "status": "ok", "status_detail": None,
     "generator": "g", "prompt_version": "p"},
    {"item_id": 2, "scenario": "a morning routine", "topic": "hair oil", "status": "retried",
     "status_detail": "first answer: topic: missing", "generator": "g", "prompt_version": "p"},
    {"item_id": 3, "scenario": "never used", "topic": None, "status": "failed", "status_detail": "topic: missing",
     "generator": "g", "prompt_version": "p"},
]


def test_distinct_n_by_hand():
    assert distinct_n(["a b a", "a c"], 1) == pytest.approx(3 / 5)
    assert distinct_n(["a b a", "a c"], 2) == pytest.approx(3 / 3)
    assert distinct_n(["same phrase", "same phrase"], 2) == pytest.approx(1 / 2)
    assert distinct_n(["single"], 2) is None


def test_novelty_counts_ngrams_absent_from_the_items_own_metadata():
    # unigrams without stop words: red (in the title), lipstick (new) -> 1/2
    assert novelty(["the red lipstick"], [ITEMS[0]], 1) == pytest.approx(1 / 2)
    # bigrams: "the red", "red lipstick" are both absent from "red nail polish opi beauty nails" -> 2/2
    assert novelty(["the red lipstick"], [ITEMS[0]], 2) == pytest.approx(1.0)
    assert novelty(["nail polish", "hair oil"], ITEMS[:2], 2) == pytest.approx(0.0)
    assert novelty(["OPI nails", "argan treatment"], ITEMS[:2], 1) == pytest.approx(1 / 4)


def test_mean_pairwise_similarity_by_hand():
    vectors = [[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]
    # cosines: (1,2) 0, (1,3) 1/sqrt2, (2,3) 1/sqrt2 -> mean sqrt2/3
    assert mean_pairwise_similarity(vectors) == pytest.approx(2 ** 0.5 / 3)
    assert mean_pairwise_similarity([[1.0, 1.0]]) is None


def test_report_uses_only_usable_rows_and_prints_a_table(tmp_path):
    report = analyze_signals(Dataset.from_list(ROWS), ITEMS)
    assert signal_names(list(ROWS[0])) == ["scenario", "topic"]
    assert report["items"] == 3 and report["status"] == {"ok": 1, "retried": 1, "failed": 1}
    assert report["validity"] == pytest.approx(2 / 3)
    scenario, topic = report["signals"]["scenario"], report["signals"]["topic"]
    assert scenario["phrases"] == 2 and scenario["coverage"] == pytest.approx(2 / 3)
    assert scenario["mean_words"] == pytest.approx((4 + 3) / 2)
    assert topic["novelty_2"] == pytest.approx(0.0) and topic["distinct_1"] == pytest.approx(1.0)
    assert report["length_histogram_scenario"] == {3: 1, 4: 1}
    table = format_table(report)
    assert table.splitlines()[0].split()[:4] == ["signal", "phrases", "coverage", "mean_words"]
    assert "validity 66.7%" in table and "pairwise_sim" not in table
    written = plot_report(report, tmp_path)
    assert [path.name for path in written] == ["signal_lengths.png", "signal_status.png", "signal_quality.png"]
    assert all(path.read_bytes()[:4] == b"\x89PNG" for path in written)


def test_embedding_diversity_with_the_shipped_minilm_encoder():
    from sentence_transformers import SentenceTransformer

    from lamar_hf.text_embeddings import default_encoder_path

    encoder = SentenceTransformer(str(default_encoder_path()), device="cpu")
    same = [{**row, "status": "ok", "scenario": "a red carpet party"} for row in ROWS]
    report = analyze_signals(same, ITEMS, encoder=encoder)
    assert report["signals"]["scenario"]["mean_pairwise_similarity"] == pytest.approx(1.0, abs=1e-4)
    varied = analyze_signals(ROWS[:2], ITEMS, encoder=encoder)
    assert varied["signals"]["scenario"]["mean_pairwise_similarity"] < 0.9


def test_lamar_analyze_prints_writes_json_and_plots(tmp_path, capsys):
    from lamar_hf.cli import main

    (tmp_path / "bench" / "signals").mkdir(parents=True)
    (tmp_path / "bench" / "items").mkdir()
    Dataset.from_list(ROWS).to_parquet(str(tmp_path / "bench" / "signals" / "train-00000-of-00001.parquet"))
    Dataset.from_list(ITEMS).to_parquet(str(tmp_path / "bench" / "items" / "train-00000-of-00001.parquet"))
    assert main(["analyze", "--signals", str(tmp_path / "bench"), "--out", str(tmp_path / "report"),
                 "--no-embeddings"]) == 0
    printed = capsys.readouterr().out
    assert "novelty_1" in printed and "validity 66.7%" in printed
    report = json.loads((tmp_path / "report" / "analysis.json").read_text())
    assert report["signals"]["topic"]["phrases"] == 2
    assert (tmp_path / "report" / "signal_quality.png").is_file()
    assert main(["analyze", "--signals", str(tmp_path / "nothing")]) == 2
