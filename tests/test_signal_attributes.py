"""Signals as learned attributes: k-means over the packaged all-MiniLM-L6-v2 embeddings of each signal kind's
phrases, ``<kind>_cluster`` columns (0: no usable signal), provenance, atomic writing and ``lamar attributes``."""

import json
import logging

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, load_dataset

from lamar_hf.enrich.attributes import (
    assign_attributes,
    attributes_centres_file,
    attributes_sidecar,
    cluster_column,
    embed_phrases,
    kmeans,
    read_attribute_centres,
    read_attribute_provenance,
    signal_attributes,
    write_attributes,
)
from lamar_hf.enrich.pipeline import signal_features

# Three topics the encoder tells apart; each group is one attribute when k = 3.
NAILS = ["painting nails before a party", "a manicure at the nail salon", "polishing fingernails at home"]
HAIR = ["washing hair after the gym", "shampooing greasy hair in the shower", "conditioning dry curly hair"]
SKIN = ["moisturizing dry skin in winter", "applying sunscreen on the face at the beach",
        "a night cream for wrinkled skin"]
GROUP = {**dict.fromkeys(NAILS, "nails"), **dict.fromkeys(HAIR, "hair"), **dict.fromkeys(SKIN, "skin")}


def signal_rows() -> list[dict]:
    """Rows as lamar enrich writes them; phrases repeat, some rows are unusable."""
    scenarios = NAILS + HAIR + SKIN + [NAILS[0], NAILS[0], HAIR[1], "Painting nails before a party"]
    rows = []
    for number, scenario in enumerate(scenarios, start=1):
        rows.append({"item_id": number, "scenario": scenario, "intent": f"look good {GROUP.get(scenario.lower(), '')}",
                     "topic": GROUP.get(scenario.lower(), "nails") + " care",
                     "status": "ok" if number % 4 else "retried",
                     "status_detail": None, "generator": "tiny", "generator_revision": "v1", "adapter": None,
                     "prompt_version": "p1", "decoding": "{}", "lamar_hf_version": "0.1.0"})
    unusable = [("invalid", "painting nails before a party"), ("unavailable", None), ("failed", "old failed row"),
                ("ok", ""), ("ok", None), ("retried", "   ")]
    for status, scenario in unusable:
        rows.append({**rows[0], "item_id": len(rows) + 1, "scenario": scenario, "status": status})
    return rows


@pytest.fixture(scope="module")
def encoder():
    from lamar_hf.text_embeddings import load_encoder

    return load_encoder()


@pytest.fixture
def signals_parquet(tmp_path):
    path = tmp_path / "signals.parquet"
    Dataset.from_list(signal_rows(), features=signal_features(["scenario", "intent", "topic"])).to_parquet(str(path))
    return path


def read(path) -> Dataset:
    return Dataset(pq.read_table(path))


def test_same_phrase_same_id_ids_in_range_and_unusable_rows_get_zero(signals_parquet, encoder):
    table, provenance, _ = signal_attributes(read(signals_parquet), clusters=3, encoder=encoder, progress=False)
    rows = table.to_list()
    assert table.column_names[-3:] == ["scenario_cluster", "intent_cluster", "topic_cluster"]
    assert table.features["scenario_cluster"].dtype == "int32"
    assert [row["scenario"] for row in rows] == [row["scenario"] for row in signal_rows()]  # columns kept
    by_phrase: dict[str, set] = {}
    for row in rows:
        usable = row["status"] in ("ok", "retried") and (row["scenario"] or "").strip()
        if not usable:
            assert row["scenario_cluster"] == 0, row
            continue
        assert 1 <= row["scenario_cluster"] <= 3
        by_phrase.setdefault(row["scenario"], set()).add(row["scenario_cluster"])
    assert all(len(ids) == 1 for ids in by_phrase.values())
    # The encoder is uncased: a phrase in other case is the same point, so the same attribute.
    assert by_phrase["Painting nails before a party"] == by_phrase[NAILS[0]]
    # The three topics are the three attributes, numbered by rows held (nails has the most).
    pairs = {(GROUP[phrase.lower()], ids.pop()) for phrase, ids in by_phrase.items()}
    assert pairs == {("nails", 1), ("hair", 2), ("skin", 3)}
    figures = provenance["kinds"]["scenario"]
    assert figures["unusable_rows"] == 6 and figures["usable_rows"] == 13 and figures["distinct_phrases"] == 10
    assert figures["sizes"] == {"1": 6, "2": 4, "3": 3} and figures["examples"]["1"][0] == NAILS[0]
    assert provenance["encoder"] == "sentence-transformers/all-MiniLM-L6-v2" and provenance["seed"] == 0
    assert provenance["requested_clusters"] == 3 and figures["clusters"] == 3


def test_rerun_with_the_same_seed_is_identical_whatever_the_row_order(signals_parquet, encoder):
    first, provenance, _ = signal_attributes(read(signals_parquet), clusters=4, seed=7, encoder=encoder, progress=False)
    again, provenance_again, _ = signal_attributes(read(signals_parquet), clusters=4, seed=7, encoder=encoder,
                                                progress=False)
    assert again.to_list() == first.to_list() and provenance_again == provenance
    shuffled = read(signals_parquet).shuffle(seed=3)
    reordered, _, _ = signal_attributes(shuffled, clusters=4, seed=7, encoder=encoder, progress=False)
    ids = {row["item_id"]: row["scenario_cluster"] for row in first.to_list()}
    assert {row["item_id"]: row["scenario_cluster"] for row in reordered.to_list()} == ids


def test_kmeans_finds_weighted_centres_and_is_seeded():
    points = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 10.0], [10.0, 11.0]])
    assignment, centres, info = kmeans(points, 2, weights=[3.0, 1.0, 1.0, 1.0], seed=0)
    assert assignment[0] == assignment[1] != assignment[2] == assignment[3] and info["converged"]
    low = centres[assignment[0]]
    assert low == pytest.approx([0.0, 0.25])  # the weighted mean: three times (0, 0), once (0, 1)
    assert info["inertia"] == pytest.approx(3 * 0.25**2 + 0.75**2 + 2 * 0.5**2)
    again = kmeans(points, 2, weights=[3.0, 1.0, 1.0, 1.0], seed=0)
    assert (again[0] == assignment).all() and np.array_equal(again[1], centres)
    with pytest.raises(ValueError, match="1 <= clusters <= the 2 distinct points"):
        kmeans(np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]]), 3)


def test_more_clusters_than_distinct_phrases_are_capped_with_a_warning(signals_parquet, encoder, caplog):
    with caplog.at_level(logging.WARNING, logger="lamar_hf.enrich.attributes"):
        table, provenance, _ = signal_attributes(read(signals_parquet), kinds=["topic"], clusters=64, encoder=encoder,
                                              progress=False)
    figures = provenance["kinds"]["topic"]
    assert figures["distinct_phrases"] == 3 and figures["clusters"] == 3 and provenance["requested_clusters"] == 64
    assert "fewer than --clusters 64; using 3 clusters" in caplog.text
    assert set(table["topic_cluster"]) == {0, 1, 2, 3}
    assert "scenario_cluster" not in table.column_names  # only the kinds asked for


def test_bad_input_gets_clear_errors(signals_parquet, encoder):
    table = read(signals_parquet)
    with pytest.raises(ValueError, match=r"signals.parquet: no column 'mood' to cluster \(columns: item_id, scenario"):
        signal_attributes(table, kinds=["mood"], encoder=encoder, where=str(signals_parquet), progress=False)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="clusters must be a whole number of at least 1"):
            signal_attributes(table, clusters=bad, encoder=encoder, progress=False)
    with pytest.raises(ValueError, match="no signal column scenario, intent, topic"):
        signal_attributes(table.select_columns(["item_id", "status"]), encoder=encoder, progress=False)
    with pytest.raises(ValueError, match="has no rows"):
        signal_attributes(table.select([]), encoder=encoder, progress=False)
    # A kind without a single usable phrase is all zeros, not an error.
    nothing = table.map(lambda row: {"status": "invalid"})
    result, provenance, _ = signal_attributes(nothing, kinds=["intent"], encoder=encoder, progress=False)
    assert set(result["intent_cluster"]) == {0} and provenance["kinds"]["intent"]["clusters"] == 0


def test_write_attributes_is_atomic_and_carries_the_provenance(signals_parquet, encoder, tmp_path):
    table, provenance, _ = signal_attributes(read(signals_parquet), clusters=3, encoder=encoder, progress=False)
    out = tmp_path / "out" / "signals-attributes.parquet"
    assert write_attributes(table, provenance, out) == out
    assert read_attribute_provenance(out) == provenance
    assert json.loads(attributes_sidecar(out).read_text()) == provenance
    assert attributes_sidecar(out).name == "signals-attributes.attributes.json"
    loaded = load_dataset("parquet", data_files=str(out), split="train")
    assert loaded.to_list() == table.to_list() and loaded.features == table.features
    with pytest.raises(FileExistsError, match="exists; pass --overwrite"):
        write_attributes(table, provenance, out)
    write_attributes(table.select(range(3)), provenance, out, overwrite=True)
    assert pq.read_metadata(out).num_rows == 3
    assert sorted(path.name for path in out.parent.iterdir()) == sorted([out.name, attributes_sidecar(out).name])
    with pytest.raises(ValueError, match="no attribute provenance"):
        read_attribute_provenance(signals_parquet)


def test_cached_embeddings_equal_fresh_ones(encoder, tmp_path):
    phrases = NAILS + HAIR
    fresh = embed_phrases(phrases, encoder, progress=False)
    cache = tmp_path / "phrases.safetensors"
    first = embed_phrases(phrases[:3], encoder, cache_path=cache, progress=False)
    cached = embed_phrases(phrases, encoder, cache_path=cache, progress=False)
    assert np.array_equal(first, fresh[:3]) and np.array_equal(cached, fresh)
    assert fresh.shape == (6, 384) and np.linalg.norm(fresh, axis=1) == pytest.approx(np.ones(6), abs=1e-3)


def test_lamar_attributes_command(signals_parquet, tmp_path, capsys):
    from lamar_hf.cli import main

    out = tmp_path / "with-attributes.parquet"
    args = ["attributes", "--signals", str(signals_parquet), "--clusters", "3", "--out", str(out),
            "--embedding-cache", str(tmp_path / "cache.safetensors")]
    assert main(args) == 0
    assert "scenario_cluster: 10 distinct phrases clustered into 3 clusters, 13 rows (6 without a usable signal get " \
        "0)" in capsys.readouterr().out
    written = read(out)
    provenance = read_attribute_provenance(out)
    assert provenance["source"] == str(signals_parquet) and provenance["requested_clusters"] == 3
    assert main(args) == 2 and "exists; pass --overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--no-embedding-cache"]) == 0
    assert read(out).to_list() == written.to_list()  # with or without the cache, the same ids
    assert main(["attributes", "--signals", str(signals_parquet), "--clusters", "0", "--out",
                 str(tmp_path / "x.parquet")]) == 2
    assert "--clusters 0: give at least 1" in capsys.readouterr().err
    assert main(["attributes", "--signals", str(tmp_path / "missing"), "--out", str(tmp_path / "y.parquet")]) == 2
    assert "no signals parquet files" in capsys.readouterr().err
    assert main(["attributes", "--signals", str(signals_parquet), "--kinds", "mood", "--out",
                 str(tmp_path / "z.parquet")]) == 2
    assert "no column 'mood'" in capsys.readouterr().err


def test_a_signals_table_with_attribute_ids_is_analysed_and_summarised_as_signals_plus_ids(signals_parquet, encoder):
    from lamar_hf.enrich.analysis import analyze_signals, signal_names
    from lamar_hf.hub.dataset import provenance_summary

    table, _, _ = signal_attributes(read(signals_parquet), clusters=3, encoder=encoder, progress=False)
    names = signal_names(table.column_names)
    assert names == ["scenario", "intent", "topic"]
    figures = analyze_signals(table)
    assert set(figures["signals"]) == {"scenario", "intent", "topic"}
    assert not any(column.endswith("_cluster") for column in provenance_summary(table, names))


def new_item_rows() -> list[dict]:
    """Items that were not clustered: new phrases near one group each, a phrase clustered before, an unusable row."""
    base = signal_rows()[0]
    phrases = [("getting a pedicure before a wedding", "nails"), ("rinsing hair dye out in the shower", "hair"),
               ("a face cream against dry winter skin", "skin"), (NAILS[1], "nails"), (None, None)]
    return [{**base, "item_id": 100 + number, "scenario": phrase, "status": "ok" if phrase else "unavailable"}
            for number, (phrase, _) in enumerate(phrases)]


def test_published_centres_give_clustered_phrases_their_ids_and_new_phrases_the_nearest(signals_parquet, encoder,
                                                                                         tmp_path):
    table, provenance, centres = signal_attributes(read(signals_parquet), clusters=3, encoder=encoder, progress=False)
    assert {kind: value.shape for kind, value in centres.items()} == {
        kind: (figures["clusters"], 384) for kind, figures in provenance["kinds"].items()}
    out = tmp_path / "signals-attributes.parquet"
    write_attributes(table, provenance, out, centres=centres)
    stored, made_with = read_attribute_centres(attributes_centres_file(out))
    assert made_with == provenance["encoder"] and set(stored) == set(centres)
    assert all(np.array_equal(stored[kind], centres[kind]) for kind in centres)

    again, assigned = assign_attributes(read(signals_parquet), attributes_centres_file(out), encoder=encoder,
                                        progress=False)
    for kind in ("scenario", "intent", "topic"):
        assert list(again[cluster_column(kind)]) == list(table[cluster_column(kind)]), kind
    assert assigned["assigned_from"] == str(attributes_centres_file(out))

    scenario_id = {row["scenario"]: row["scenario_cluster"] for row in table.to_list() if row["scenario_cluster"]}
    new, _ = assign_attributes(new_item_rows(), stored, kinds=["scenario"], encoder=encoder, progress=False)
    expected = [scenario_id[NAILS[0]], scenario_id[HAIR[0]], scenario_id[SKIN[0]], scenario_id[NAILS[1]], 0]
    assert list(new["scenario_cluster"]) == expected and len(set(expected[:3])) == 3
    assert "scenario_cluster" in new.column_names and "intent_cluster" not in new.column_names


def test_assigning_refuses_centres_that_do_not_fit(signals_parquet, encoder, tmp_path):
    table, provenance, centres = signal_attributes(read(signals_parquet), clusters=3, encoder=encoder, progress=False)
    with pytest.raises(ValueError, match="has no centres for 'mood'"):
        assign_attributes(new_item_rows(), centres, kinds=["mood"], encoder=encoder, progress=False)
    with pytest.raises(ValueError, match=r"the scenario centres have shape \(3, 5\), expected \[clusters, 384\]"):
        assign_attributes(new_item_rows(), {"scenario": np.zeros((3, 5))}, encoder=encoder, progress=False)
    with pytest.raises(ValueError, match="no such centres file"):
        assign_attributes(new_item_rows(), tmp_path / "missing.attributes.safetensors", encoder=encoder)
    other = tmp_path / "other-encoder.parquet"
    write_attributes(table, {**provenance, "encoder": "someone/another-encoder"}, other, centres=centres)
    with pytest.raises(ValueError, match="made with the encoder someone/another-encoder"):
        assign_attributes(new_item_rows(), attributes_centres_file(other), encoder=encoder, progress=False)
    not_centres = tmp_path / "plain.safetensors"
    from safetensors.numpy import save_file

    save_file({"scenario": np.zeros((3, 384), dtype=np.float32)}, str(not_centres))
    with pytest.raises(ValueError, match="not attribute centres"):
        read_attribute_centres(not_centres)
    # A table written again without centres takes the old centres file with it: they describe ids it does not hold.
    write_attributes(table, provenance, other, overwrite=True)
    assert not attributes_centres_file(other).exists()


def test_lamar_attributes_assigns_new_items_to_published_centres(signals_parquet, tmp_path, capsys):
    from lamar_hf.cli import main

    clustered = tmp_path / "clustered.parquet"
    assert main(["attributes", "--signals", str(signals_parquet), "--clusters", "3", "--out", str(clustered),
                 "--no-embedding-cache"]) == 0
    assert attributes_centres_file(clustered).is_file()
    new_items = tmp_path / "new-items.parquet"
    Dataset.from_list(new_item_rows(), features=signal_features(["scenario", "intent", "topic"])).to_parquet(
        str(new_items))
    capsys.readouterr()
    out = tmp_path / "new-items-attributes.parquet"
    assert main(["attributes", "--signals", str(new_items), "--centres", str(attributes_centres_file(clustered)),
                 "--out", str(out), "--no-embedding-cache"]) == 0
    assert "scenario_cluster: 4 distinct phrases assigned to the nearest of 3 clusters, 4 rows (1 without a usable " \
           "signal get 0)" in capsys.readouterr().out
    ids = {row["scenario"]: row["scenario_cluster"] for row in read(clustered).to_list()}
    assert list(read(out)["scenario_cluster"])[3:] == [ids[NAILS[1]], 0]
    assert read_attribute_provenance(out)["assigned_from"] == str(attributes_centres_file(clustered))
    assert not attributes_centres_file(out).exists()  # assigned ids publish no centres of their own
    assert main(["attributes", "--signals", str(new_items), "--centres", str(tmp_path / "nothing.safetensors"),
                 "--out", str(tmp_path / "never.parquet")]) == 2
    assert "no such centres file" in capsys.readouterr().err and not (tmp_path / "never.parquet").exists()
    kept = attributes_centres_file(clustered).read_bytes()
    assert main(["attributes", "--signals", str(new_items), "--centres", str(attributes_centres_file(clustered)),
                 "--out", str(clustered), "--overwrite"]) == 2
    assert "would replace the centres file" in capsys.readouterr().err
    assert attributes_centres_file(clustered).read_bytes() == kept and read(clustered).num_rows == 19
