"""benchmarks/compare_signal_versions.py: the same random items for every version (signal text and status only),
recommender gains from results files of benchmarks/experiment.py, refusal across devices or splits, the chart."""

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import compare_signal_versions as compare  # noqa: E402

FINGERPRINT = "sha256:" + "cd" * 32
# Real rows of lamar_hf/resources/signals/amazon_beauty-v1 / -v2 (items 19..24; 23 failed in v1).
V1 = [
    (19, "a fashion boutique offering exclusive, high-end eyeliner", "add a bold, chunky, 118 style to a collection",
     "eye liner for the most discerning", "retried"),
    (20, "get a new eyeliner", "add a bright, bold, and sleek color to eyes", "100% natural, 100+", "ok"),
    (21, "remove eyelashes with a lash curler", "use a hair-dryer to create a smooth, waxy finish",
     "100% natural ingredients", "ok"),
    (22, "a hair color that is not only healthy but also a", "a new, high-end", "100% natural", "ok"),
    (23, None, "get a pair of eye makeup for a budget", "single color, 100%", "failed"),
    (24, "using a fake eyelash to create a false one", "make a new eye with a different shape",
     "makeup for a person with a missing", "ok"),
]
V2 = [
    (19, "a friend with dark lashes", "make them look like they're grown out", "synthetic eyelash glue", "ok"),
    (20, "a wedding makeup artist for the bride's first date", "make the eyes look more glamorous",
     "egg-shaped eyeliner with an extra layer", "ok"),
    (21, "applying a clear eyeliner without an eye primer", "create smooth lines", "adhesive-free lash lineer", "ok"),
    (22, "a hair color that's both bright and healthy", "add brightness to your look",
     "natural, high-quality blonde in chocolate", "ok"),
    (23, "applying a double-sided makeup primer", "cover and conceal overnight", "adhesive sticker tape with fork", "ok"),
    (24, "creating false eyelashes without a mirror", "create fake eyes with natural lash lines",
     "artificial eye-making tools", "ok"),
]
# Upstream metadata: it feeds novelty and must appear in no written file.
UPSTREAM = "Qzxv"
ITEMS = [{"item_id": item_id, "asin": f"B{item_id:09d}", "title": f"{UPSTREAM} Eyeliner Pencil {item_id}",
          "brand": f"{UPSTREAM}Brand", "categories": ["Beauty", "Makeup", f"{UPSTREAM} Eyes"], "price": 4.5,
          "description": None} for item_id in range(19, 28)]


def write_signals(path: Path, rows, extra=(), upstream_column: bool = False) -> Path:
    rows = list(rows) + list(extra)
    columns = {"item_id": pa.array([row[0] for row in rows], pa.int32()),
               **{kind: [row[index] for row in rows] for index, kind in enumerate(compare.SIGNALS, start=1)},
               "status": [row[4] for row in rows], "status_detail": [None] * len(rows)}
    if upstream_column:  # a column the samples must never carry
        columns["title"] = [f"{UPSTREAM} title {row[0]}" for row in rows]
    pq.write_table(pa.table(columns), path)
    return path


def result_row(backbone, variant, recall, std=0.001, setting="reference", missing=False):
    row = {"backbone": backbone, "variant": variant, "setting": {"name": setting}, "missing": missing,
           "seeds": [0, 1, 2]}
    if not missing:
        row |= {"validation": {"recall@20": recall + 0.02, "recall@20_std": std},
                "test": {"recall@20": recall, "recall@20_std": std, "ndcg@10": recall / 3}}
    return row


def write_results(path: Path, rows, device="AMD EPYC", fingerprint=FINGERPRINT) -> Path:
    path.write_text(json.dumps({"experiment": path.stem, "dataset": "amazon_beauty", "device": device,
                                "split_fingerprint": fingerprint, "rows": rows}))
    return path


@pytest.fixture(scope="module")
def encoder():
    from sentence_transformers import SentenceTransformer

    from lamar_hf.text_embeddings import default_encoder_path

    return SentenceTransformer(str(default_encoder_path()), device="cpu")


def test_every_version_shows_the_same_random_shared_items_and_no_upstream_text(tmp_path, encoder):
    paths = {"v1": write_signals(tmp_path / "v1.parquet", V1, extra=[(25, "only in v1", "x", "y", "ok")],
                                 upstream_column=True),
             "v2": write_signals(tmp_path / "v2.parquet", V2, extra=[(26, "only in v2", "x", "y", "ok")])}
    gains = compare.version_gains("v1", write_results(tmp_path / "v1_variants.json", [
        result_row("sasrec", "id-only", 0.10), result_row("sasrec", "signals+metadata", 0.11)]))
    out = tmp_path / "results" / "signal_versions.json"
    compare.write(paths, ITEMS, encoder, {"remove a stain"}, gains, out, samples=4, sample_seed=3, command="cmd")

    results = json.loads(out.read_text())
    samples = results["samples"]
    assert samples["drawn_from"] == 6 and len(samples["item_ids"]) == 4 and len(set(samples["item_ids"])) == 4
    assert set(samples["item_ids"]) <= {19, 20, 21, 22, 23, 24}  # never 25 or 26, each in one version only
    assert [item["item_id"] for item in samples["items"]] == samples["item_ids"]
    by_id = {"v1": {row[0]: row for row in V1}, "v2": {row[0]: row for row in V2}}
    for item in samples["items"]:
        assert list(item["versions"]) == ["v1", "v2"]
        for name, shown in item["versions"].items():
            assert set(shown) == {"scenario", "intent", "topic", "status"}  # no title or other upstream column
            assert tuple(shown.values()) == by_id[name][item["item_id"]][1:]
    # Same seed, same ids; another seed draws from the same shared items.
    assert compare.shared_samples(paths, 4, 3)["item_ids"] == samples["item_ids"]
    assert set(compare.shared_samples(paths, 10, 1)["item_ids"]) == {19, 20, 21, 22, 23, 24}

    text = (out.with_suffix(".md").read_text(), out.read_text())
    assert all(UPSTREAM not in written for written in text)
    md = text[0]
    for item_id in samples["item_ids"]:
        for name in ("v1", "v2"):
            row = by_id[name][item_id]
            assert f"| {item_id} | {name} | {row[4]} | {row[1] or '-'} | {row[2]} | {row[3]} |" in md
    assert "No recommender run for: v2" in md and "| v1 | signals+metadata | sasrec | reference |" in md
    assert "+10.0%" in md
    versions = results["versions"]
    # v1: 7 rows (item 25 too), item 23 failed
    assert versions["v1"]["validity"] == pytest.approx(6 / 7) and versions["v2"]["validity"] == pytest.approx(1.0)
    quality = versions["v1"]["quality"]
    assert quality["distinct_2"] == pytest.approx(
        sum(versions["v1"]["signals"][kind]["distinct_2"] for kind in compare.SIGNALS) / 3)
    assert 0 < quality["mean_pairwise_similarity"] < 1 and 0 < quality["novelty_2"] <= 1

    import matplotlib.image

    picture = matplotlib.image.imread(out.with_suffix(".png"))
    assert picture.shape[0] > 100 and picture.shape[1] > 400 and picture.std() > 0


def test_the_chart_draws_one_labelled_point_per_version_and_variant_on_each_quality_axis(tmp_path):
    versions = {"v1": {"quality": {"validity": 0.97, "distinct_2": 0.18, "novelty_2": 0.95,
                                   "mean_pairwise_similarity": 0.25}},
                "v2": {"quality": {"validity": 0.99, "distinct_2": 0.28, "novelty_2": 0.93,
                                   "mean_pairwise_similarity": None}},
                "v3": {"quality": {"validity": 0.98, "distinct_2": 0.30, "novelty_2": 0.90,
                                   "mean_pairwise_similarity": 0.2}}}  # no recommender run: a line, no point
    gains = [{"version": "v1", "variant": "signals", "backbone": "sasrec", "gain": 0.05},
             {"version": "v1", "variant": "signals+metadata", "backbone": "sasrec", "gain": 0.074},
             {"version": "v2", "variant": "signals", "backbone": "sasrec", "gain": -0.02}]
    references = [{"version": "v1", "variant": "metadata", "backbone": "sasrec", "gain": 0.119}]
    points = compare.gain_chart(versions, gains, tmp_path / "chart.png", references)
    assert (tmp_path / "chart.png").stat().st_size > 0
    assert ("novelty_2", "v1 signals+metadata", 0.95, pytest.approx(7.4)) in points
    assert ("validity", "v2 signals", 0.99, pytest.approx(-2.0)) in points
    # v2 has no similarity figure: no point there, every other panel has all three.
    assert [key for key, *_ in points].count("mean_pairwise_similarity") == 2
    assert len(points) == 3 * 4 - 1


def test_gains_are_each_signal_variant_over_the_id_only_row_of_its_backbone(tmp_path):
    rows = [result_row("sasrec", "id-only", 0.10), result_row("sasrec", "metadata", 0.13),
            result_row("sasrec", "signals", 0.12, std=0.002), result_row("sasrec", "signals+metadata", 0.095),
            result_row("gru4rec", "id-only", 0.08), result_row("gru4rec", "signals", 0.09),
            result_row("gru4rec", "signals+metadata", 0.0, missing=True)]
    path = write_results(tmp_path / "variants.json", rows)
    gains = {(gain["backbone"], gain["variant"]): gain for gain in compare.version_gains("v1", path)}
    assert set(gains) == {("sasrec", "signals"), ("sasrec", "signals+metadata"), ("gru4rec", "signals")}
    assert gains["sasrec", "signals"]["gain"] == pytest.approx(0.12 / 0.10 - 1)
    assert gains["sasrec", "signals+metadata"]["gain"] == pytest.approx(-0.05)
    assert gains["gru4rec", "signals"]["gain"] == pytest.approx(0.125)
    assert gains["sasrec", "signals"]["test_recall@20_std"] == pytest.approx(0.002)
    assert gains["sasrec", "signals"]["id_only_test_recall@20"] == pytest.approx(0.10)
    assert gains["sasrec", "signals"]["baseline_file"] == gains["sasrec", "signals"]["file"] == str(path)

    # An id-only file of the same device and split: its rows, not the variants file's own, are the baseline.
    baseline = write_results(tmp_path / "id_only.json", [result_row("sasrec", "id-only", 0.08, setting="wide"),
                                                         result_row("gru4rec", "id-only", 0.06)])
    gains = {(gain["backbone"], gain["variant"]): gain for gain in compare.version_gains("v1", path, baseline)}
    assert gains["sasrec", "signals"]["gain"] == pytest.approx(0.5)
    assert gains["gru4rec", "signals"]["gain"] == pytest.approx(0.5)
    assert gains["sasrec", "signals"]["id_only_setting"] == "wide"
    assert gains["sasrec", "signals"]["baseline_file"] == str(baseline)
    references = compare.version_gains("v1", path, baseline, compare.REFERENCE_VARIANTS, required=False)
    assert [(gain["variant"], gain["gain"]) for gain in references] == [("metadata", pytest.approx(0.625))]
    md = compare.markdown({}, None, list(gains.values()), "cmd", references=references)
    assert "| v1 | signals | sasrec | reference | 0.1200 ± 0.0020 | 0.0800 ± 0.0010 (wide) | +50.0% |" in md
    assert "`metadata` sasrec 0.1300 (+62.5%" in md


def test_a_missing_id_only_row_is_an_error_that_points_at_baseline(tmp_path):
    path = write_results(tmp_path / "variants.json", [result_row("sasrec", "signals", 0.12)])
    with pytest.raises(compare.ComparisonError, match="no id-only row of backbone 'sasrec'.*--baseline"):
        compare.version_gains("v1", path)
    only_metadata = write_results(tmp_path / "metadata.json", [result_row("sasrec", "id-only", 0.1),
                                                               result_row("sasrec", "metadata", 0.12)])
    with pytest.raises(compare.ComparisonError, match="no row of a signal variant"):
        compare.version_gains("v1", only_metadata)


@pytest.mark.parametrize("key, other", [("device", {"device": "Intel Xeon"}),
                                        ("split_fingerprint", {"fingerprint": "sha256:" + "ef" * 32})])
def test_a_baseline_of_another_device_or_split_is_refused_naming_both_files(tmp_path, capsys, key, other):
    variants = write_results(tmp_path / "variants.json", [result_row("sasrec", "id-only", 0.1),
                                                          result_row("sasrec", "signals", 0.12)])
    baseline = write_results(tmp_path / "id_only.json", [result_row("sasrec", "id-only", 0.1)], **other)
    with pytest.raises(compare.ComparisonError, match=key) as error:
        compare.version_gains("v1", variants, baseline)
    assert str(variants) in str(error.value) and str(baseline) in str(error.value)

    # The command line refuses before any analysis (no items folder, no encoder needed).
    signals = write_signals(tmp_path / "v1.parquet", V1)
    with pytest.raises(SystemExit) as exit_:
        compare.main(["--version", f"v1={signals}", "--items", str(tmp_path / "absent"), "--gain", f"v1={variants}",
                      "--baseline", str(baseline), "--out", str(tmp_path / "out.json")])
    assert exit_.value.code == 2
    message = capsys.readouterr().err
    assert str(variants) in message and str(baseline) in message and "not allowed" in message
    assert not (tmp_path / "out.json").exists()


def test_a_gain_for_a_version_that_was_not_analysed_is_refused(tmp_path, capsys):
    signals = write_signals(tmp_path / "v1.parquet", V1)
    variants = write_results(tmp_path / "variants.json", [result_row("sasrec", "id-only", 0.1),
                                                          result_row("sasrec", "signals", 0.12)])
    with pytest.raises(SystemExit):
        compare.main(["--version", f"v1={signals}", "--gain", f"v3={variants}", "--out", str(tmp_path / "o.json")])
    assert "--gain v3: no --version of that name" in capsys.readouterr().err
