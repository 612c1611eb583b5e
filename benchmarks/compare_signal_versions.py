"""Side-by-side analysis of versions of a committed signals resource (e.g. Beauty v1: base model few-shot, v2: base +
LoRA adapter zero-shot), over every item, with the same random items of every version and, for the versions a
recommender was trained on, its gain against signal quality::

    .venv/bin/python benchmarks/compare_signal_versions.py \\
        --version v1=lamar_hf/resources/signals/amazon_beauty-v1.parquet \\
        --version v2=lamar_hf/resources/signals/amazon_beauty-v2.parquet --items outputs/beauty \\
        --gain v1=benchmarks/results/amazon_beauty/beauty_sasrec_study.json \\
        --gain v2=benchmarks/results/amazon_beauty/beauty_sasrec_v2_variants.json \\
        --baseline benchmarks/results/amazon_beauty/beauty_sasrec_study.json

Per version: status counts and validity, and per signal distinct-1/2, novelty against the item's own metadata, mean
pairwise MiniLM similarity (a 2,000-phrase sample, lower is more diverse), mean words, and copies as
``compare_adapter.py`` counts them (first answers the validator flagged as a prompt exemplar's, final phrases equal to
a hand-written one of ``training/data`` or the shipped few-shot exemplars); the generation figures
(items/s, device) come from each parquet's ``.json`` provenance file.

Samples (``--samples N``, ``--sample_seed``): the same N item ids, drawn from the items every version has, with each
version's scenario / intent / topic and status. Only the item id and the project's own signal text and status are
written: no title, brand, category or other upstream text.

Gains (``--gain VERSION=RESULTS_JSON``, repeatable; a results file of ``benchmarks/experiment.py``): test Recall@20 of
the version's signal variants (``signals``, ``signals+metadata``, whichever rows are there) relative to the ``id-only``
row of the same backbone, taken from ``--baseline RESULTS_JSON`` or else from the same file. Two files whose
``device`` or ``split_fingerprint`` differ are refused: a gain across devices or splits means nothing.

Writes ``benchmarks/results/signal_versions.json``, ``.md`` and ``.png`` (gain against four quality figures).
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
RESULTS = ROOT / "benchmarks" / "results"
SIGNALS = ("scenario", "intent", "topic")
PER_SIGNAL = ("distinct_1", "distinct_2", "novelty_2", "mean_pairwise_similarity", "mean_words")
# The variants of benchmarks/experiment.py that read this version's signal texts of every kind.
SIGNAL_VARIANTS = ("signals", "signals+metadata", "attributes", "metadata+attributes")
# A variant that reads no signals, shown beside them for reference (the item's metadata text alone).
REFERENCE_VARIANTS = ("metadata",)
BASELINE_VARIANT = "id-only"
GAIN_METRIC = "recall@20"
# The x axes of the chart: (key of a version's "quality", axis label).
QUALITY = (("validity", "validity (ok + retried)"), ("distinct_2", "distinct-2, mean of 3 kinds"),
           ("novelty_2", "novelty-2, mean of 3 kinds"),
           ("mean_pairwise_similarity", "mean pairwise similarity, mean of 3 kinds (lower: more diverse)"))


class ComparisonError(ValueError):
    """Inputs that cannot be compared (a results file without the rows a gain needs, files of two devices)."""


def shown(path: Path | str) -> str:
    """A path as the committed files show it: relative to the repository when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def quality(version: dict) -> dict:
    """The figures the chart puts on its x axes: validity and the per-signal figures averaged over the three kinds."""
    figures = {"validity": version["validity"]}
    for key in ("distinct_2", "novelty_2", "mean_pairwise_similarity"):
        values = [version["signals"][name][key] for name in SIGNALS]
        figures[key] = statistics.fmean(values) if all(value is not None for value in values) else None
    return figures


def analyse(path: Path, items, encoder, hand_written: set[str]) -> dict:
    from compare_adapter import copy_figures
    from datasets import load_dataset

    from lamar_hf.enrich import PromptBuilder
    from lamar_hf.enrich.analysis import analyze_signals

    signals = load_dataset("parquet", data_files=[str(path)], split="train")
    report = analyze_signals(signals, items, encoder=encoder, sample=2000)
    copies = copy_figures(signals, PromptBuilder(), hand_written)  # the builder names the signals: scenario, intent, topic
    provenance_file = path.with_suffix(".json")
    provenance = json.loads(provenance_file.read_text()) if provenance_file.is_file() else {}
    version = {
        "file": shown(path), "items": report["items"], "status": report["status"], "validity": report["validity"],
        "signals": {name: {key: report["signals"][name].get(key) for key in PER_SIGNAL} for name in SIGNALS},
        **copies,
        "generator": provenance.get("generator"), "prompt_version": provenance.get("prompt_version"),
        "device": provenance.get("device"), "items_per_s": provenance.get("items_per_s_this_run"),
    }
    version["quality"] = quality(version)
    return version


def shared_samples(paths: dict[str, Path], count: int = 10, seed: int = 0) -> dict:
    """The same ``count`` random item ids for every version, drawn from the ids all versions have, in id order.

    Per item and version only the signal text of each kind and the row's status are kept (never upstream text).
    """
    import pyarrow.parquet as pq

    rows = {}
    for name, path in paths.items():
        table = pq.read_table(path, columns=["item_id", *SIGNALS, "status"]).to_pylist()
        rows[name] = {row["item_id"]: row for row in table}
    shared = sorted(set.intersection(*(set(by_id) for by_id in rows.values()))) if rows else []
    ids = sorted(random.Random(seed).sample(shared, min(count, len(shared))))
    return {
        "seed": seed, "drawn_from": len(shared), "item_ids": ids,
        "items": [{"item_id": item_id,
                   "versions": {name: {key: by_id[item_id][key] for key in (*SIGNALS, "status")}
                                for name, by_id in rows.items()}}
                  for item_id in ids],
    }


def read_results(path: Path) -> dict:
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ComparisonError(f"{path}: cannot read a results JSON ({error})") from error
    missing = [key for key in ("device", "split_fingerprint", "rows") if key not in results]
    if missing:
        raise ComparisonError(f"{path} is not a results file of benchmarks/experiment.py (no {', '.join(missing)})")
    return results


def version_gains(version: str, path: Path, baseline_path: Path | None = None,
                  variants: tuple[str, ...] = SIGNAL_VARIANTS, required: bool = True) -> list[dict]:
    """One entry per row of ``path`` of one of ``variants`` (the signal variants): its test Recall@20 relative to the
    id-only row of its backbone.

    The id-only rows come from ``baseline_path`` when given, else from ``path`` itself. Raises
    :class:`ComparisonError` when the two files' device or split fingerprint differ, when ``path`` has no row of
    ``variants`` (unless not ``required``), or when a backbone has no id-only row.
    """
    results = read_results(path)
    baseline = read_results(baseline_path) if baseline_path is not None else results
    where = baseline_path if baseline_path is not None else path
    for key in ("device", "split_fingerprint"):
        if results[key] != baseline[key]:
            raise ComparisonError(f"{path} ({key} {results[key]!r}) and {baseline_path} ({key} {baseline[key]!r}) "
                                  f"differ in {key}: a gain across devices or splits is not allowed")
    usable = [row for row in results["rows"] if not row.get("missing") and row.get("test", {}).get(GAIN_METRIC)]
    signal_rows = [row for row in usable if row["variant"] in variants]
    if not signal_rows and required:
        raise ComparisonError(f"{path} has no row of a signal variant ({', '.join(variants)}) with a test "
                              f"{GAIN_METRIC}")
    gains = []
    for row in signal_rows:
        base = next((other for other in baseline["rows"] if other["backbone"] == row["backbone"]
                     and other["variant"] == BASELINE_VARIANT and not other.get("missing")
                     and other.get("test", {}).get(GAIN_METRIC)), None)
        if base is None:
            raise ComparisonError(f"{where} has no {BASELINE_VARIANT} row of backbone {row['backbone']!r} with a test "
                                  f"{GAIN_METRIC}" + ("" if baseline_path else "; pass --baseline RESULTS_JSON"))
        value, reference = row["test"][GAIN_METRIC], base["test"][GAIN_METRIC]
        gains.append({
            "version": version, "variant": row["variant"], "backbone": row["backbone"],
            "setting": row["setting"]["name"], "seeds": row.get("seeds"),
            "test_recall@20": value, "test_recall@20_std": row["test"].get(f"{GAIN_METRIC}_std"),
            "id_only_setting": base["setting"]["name"], "id_only_seeds": base.get("seeds"),
            "id_only_test_recall@20": reference, "id_only_test_recall@20_std": base["test"].get(f"{GAIN_METRIC}_std"),
            "gain": value / reference - 1,
            "file": shown(path), "baseline_file": shown(where),
            "device": results["device"], "split_fingerprint": results["split_fingerprint"],
        })
    return gains


def parse_pairs(specs: list[str] | None, option: str) -> dict[str, Path]:
    pairs = {}
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ComparisonError(f"{option} {spec}: expected NAME=FILE")
        if not Path(path).is_file():
            raise ComparisonError(f"{option} {spec}: {path} is not a file")
        if name in pairs:
            raise ComparisonError(f"{option} {name} is given twice")
        pairs[name] = Path(path)
    return pairs


def gain_chart(versions: dict[str, dict], gains: list[dict], path: Path, references: list[dict] = ()) -> list[tuple]:
    """Gain in % Recall@20 (y) against each quality figure (x, one panel each), one labelled marker per version x
    variant (x backbone). A version without a gain is a dotted vertical line at its quality; a reference gain (the
    metadata variant) a dotted horizontal one. Returns the points drawn as ``(figure, label, x, y)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {variant: marker for variant, marker in zip(SIGNAL_VARIANTS, "os^D")}
    colours = {name: f"C{index}" for index, name in enumerate(versions)}
    several_backbones = len({gain["backbone"] for gain in [*gains, *references]}) > 1
    without = [name for name in versions if name not in {gain["version"] for gain in gains}]
    shown_references = {(gain["variant"], gain["backbone"]): gain for gain in references}
    figure, axes = plt.subplots(1, len(QUALITY), figsize=(4.2 * len(QUALITY), 3.8), sharey=True)
    points = []
    for axis, (key, label) in zip(axes, QUALITY):
        for gain in gains:
            x = versions[gain["version"]]["quality"][key]
            if x is None:
                continue
            y = 100 * gain["gain"]
            name = f"{gain['version']} {gain['variant']}" + (f" ({gain['backbone']})" if several_backbones else "")
            axis.scatter([x], [y], marker=markers.get(gain["variant"], "^"), color=colours[gain["version"]], s=50)
            points.append((key, name, x, y))
        for name in without:
            x = versions[name]["quality"][key]
            if x is not None:
                axis.axvline(x, color=colours[name], linewidth=1, linestyle=":")
                axis.annotate(f"{name} (no recommender run)", (x, 0), xycoords=("data", "axes fraction"),
                              xytext=(3, 4), textcoords="offset points", fontsize=7, color=colours[name], rotation=90)
        for (variant, backbone), gain in shown_references.items():
            axis.axhline(100 * gain["gain"], color="grey", linewidth=0.8, linestyle=":")
            axis.annotate(f"{variant}" + (f" ({backbone})" if several_backbones else "") + ", no signals",
                          (0, 100 * gain["gain"]), xycoords=("axes fraction", "data"), xytext=(3, 3),
                          textcoords="offset points", fontsize=7, color="grey")
        axis.axhline(0, color="grey", linewidth=0.8, linestyle="--")
        axis.set_xlabel(label, fontsize=8)
        axis.margins(x=0.3, y=0.3)
        # Labels once the limits are known: those in the right half go to the left of their marker, inside the panel.
        low, high = axis.get_xlim()
        for figure_key, name, x, y in points:
            if figure_key == key:
                right = x > (low + high) / 2
                axis.annotate(name, (x, y), textcoords="offset points", xytext=(-6 if right else 6, 5), fontsize=7,
                              ha="right" if right else "left")
        axis.tick_params(labelsize=7)
    axes[0].set_ylabel("gain over id-only, % test Recall@20", fontsize=8)
    figure.suptitle("Recommender gain against signal quality" +
                    (f" (no recommender run: {', '.join(without)})" if without else ""), fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return points


def cell(text) -> str:
    """Signal text as a markdown table cell."""
    return "-" if text is None or text == "" else str(text).replace("|", "\\|").replace("\n", " ")


def markdown(versions: dict[str, dict], samples: dict | None = None, gains: list[dict] | None = None,
             command: str = "", chart: str | None = None, references: list[dict] = ()) -> str:
    names = list(versions)
    lines = ["# Beauty signals: versions side by side", "",
             "Every item of Amazon Beauty; figures of `lamar analyze` (MiniLM similarity on a 2,000-phrase sample).", "",
             "| figure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def row(label, value):
        lines.append(f"| {label} | " + " | ".join(value(versions[name]) for name in names) + " |")

    row("generator", lambda v: f"{v['generator']['generator']}" + (" + adapter" if v["generator"].get("adapter") else "")
        if v["generator"] else "-")
    row("prompt version", lambda v: str(v["prompt_version"]))
    row("status ok / retried / failed", lambda v: " / ".join(f"{v['status'].get(k, 0):,}" for k in ("ok", "retried", "failed")))
    row("validity", lambda v: f"{v['validity']:.1%}")
    row("first answers copying a prompt exemplar (validator flag, then retried)",
        lambda v: f"{v['first_answer_copies_of_prompt_exemplar']:,}")
    row("final phrases equal to a hand-written exemplar phrase",
        lambda v: f"{v['final_copies_of_hand_written_phrase']:,} (copy rate of both kinds over all "
                  f"{v['signal_slots']:,} signal slots: {v['copy_rate']:.2%})")
    for key in PER_SIGNAL:
        row(f"{key.replace('_', ' ')} (scenario / intent / topic)",
            lambda v, key=key: " / ".join(f"{v['signals'][name][key]:.3f}" for name in SIGNALS))
    for key, label in QUALITY[1:]:
        row(label.split(" (")[0], lambda v, key=key: "-" if v["quality"][key] is None else f"{v['quality'][key]:.3f}")
    row("generation items/s (device)", lambda v: f"{v['items_per_s']} ({v['device']})")

    if gains is not None:
        lines += ["", "## Recommender gain against signal quality", "",
                  f"Test Recall@20 of each version's signal variants ({', '.join(f'`{v}`' for v in SIGNAL_VARIANTS)}) "
                  f"relative to the `{BASELINE_VARIANT}` row of the same backbone (mean ± std over seeds; both rows from "
                  "results files of `benchmarks/experiment.py` with the same device and split fingerprint).", ""]
        if gains:
            lines += ["| version | variant | backbone | setting | test Recall@20 | id-only Recall@20 | gain | source file |",
                      "|---|---|---|---|---|---|---|---|"]
            for gain in gains:
                std = gain["test_recall@20_std"]
                base_std = gain["id_only_test_recall@20_std"]
                source = f"`{gain['file']}`" + ("" if gain["baseline_file"] == gain["file"]
                                                else f" (id-only: `{gain['baseline_file']}`)")
                base_setting = ("" if gain["id_only_setting"] == gain["setting"]
                                else f" ({gain['id_only_setting']})")
                lines.append(
                    f"| {gain['version']} | {gain['variant']} | {gain['backbone']} | {gain['setting']} | "
                    f"{gain['test_recall@20']:.4f}" + ("" if std is None else f" ± {std:.4f}") + " | "
                    f"{gain['id_only_test_recall@20']:.4f}" + ("" if base_std is None else f" ± {base_std:.4f}")
                    + f"{base_setting} | {100 * gain['gain']:+.1f}% | {source} |")
            if references:
                lines += ["", "For reference, the variant without signals of the same files: " + "; ".join(
                    f"`{gain['variant']}` {gain['backbone']} {gain['test_recall@20']:.4f} "
                    f"({100 * gain['gain']:+.1f}%, `{gain['file']}`)" for gain in references) + "."]
            devices = sorted({(gain["device"], gain["split_fingerprint"]) for gain in gains})
            lines += ["", "Device and split: " + "; ".join(f"{device}, `{fingerprint}`" for device, fingerprint in devices)
                      + "."]
        without = [name for name in names if name not in {gain["version"] for gain in gains}]
        if without:
            lines += ["", "No recommender run for: " + ", ".join(without) + " (no `--gain` results file)."]
        if chart:
            lines += ["", f"![gain against quality]({chart})"]

    if samples is not None:
        lines += ["", f"## {len(samples['item_ids'])} random items, every version", "",
                  f"The same item ids for every version, drawn with seed {samples['seed']} from the "
                  f"{samples['drawn_from']:,} items all versions have; signal text and status only.", "",
                  "| item id | version | status | scenario | intent | topic |", "|---|---|---|---|---|---|"]
        for item in samples["items"]:
            for name, signals in item["versions"].items():
                lines.append(f"| {item['item_id']} | {name} | {cell(signals['status'])} | "
                             + " | ".join(cell(signals[kind]) for kind in SIGNALS) + " |")
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="append", required=True, metavar="NAME=PARQUET",
                        help="a version and its signals parquet (repeat)")
    parser.add_argument("--items", type=Path, default=ROOT / "outputs" / "beauty", help="a lamar prepare folder")
    parser.add_argument("--samples", type=int, default=10, help="random items shown for every version (default 10)")
    parser.add_argument("--sample_seed", type=int, default=0, help="seed of the random items (default 0)")
    parser.add_argument("--gain", action="append", metavar="VERSION=RESULTS_JSON",
                        help="a results file of benchmarks/experiment.py with the version's signal variants (repeat)")
    parser.add_argument("--baseline", type=Path, metavar="RESULTS_JSON",
                        help="the results file holding the id-only rows (default: each --gain file itself)")
    parser.add_argument("--out", type=Path, default=RESULTS / "signal_versions.json")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.samples < 0:
        parser.error("--samples must be 0 or more")

    # Everything that can be refused is checked before the minutes of analysis.
    try:
        paths = parse_pairs(args.version, "--version")
        gain_files = parse_pairs(args.gain, "--gain")
        unknown = [name for name in gain_files if name not in paths]
        if unknown:
            raise ComparisonError(f"--gain {', '.join(unknown)}: no --version of that name")
        if args.baseline is not None and not args.baseline.is_file():
            raise ComparisonError(f"--baseline {args.baseline} is not a file")
        gains = [gain for name, path in gain_files.items() for gain in version_gains(name, path, args.baseline)]
        # Each file's metadata row once (two versions may share a file), over the same id-only rows.
        references = list({(gain["file"], gain["backbone"], gain["variant"]): gain
                           for name, path in gain_files.items()
                           for gain in version_gains(name, path, args.baseline, REFERENCE_VARIANTS, required=False)
                           }.values())
    except ComparisonError as error:
        parser.error(str(error))

    from sentence_transformers import SentenceTransformer

    from compare_adapter import hand_written_phrases, load_tuner
    from lamar_hf.data import load_prepared
    from lamar_hf.text_embeddings import default_encoder_path

    items = load_prepared(args.items).items
    hand_written = hand_written_phrases(load_tuner(), items)
    encoder = SentenceTransformer(str(default_encoder_path()), device="cpu")
    command = "python benchmarks/compare_signal_versions.py " + shlex.join(argv)
    write(paths, items, encoder, hand_written, gains, args.out, args.samples, args.sample_seed, command, references)
    print(args.out.with_suffix(".md").read_text())
    return 0


def write(paths: dict[str, Path], items, encoder, hand_written: set[str], gains: list[dict], out: Path,
          samples: int = 10, sample_seed: int = 0, command: str = "", references: list[dict] = ()) -> dict:
    """Analyse every version, draw the shared samples, chart the gains; write ``out`` (.json) and its .md and .png."""
    versions = {name: analyse(path, items, encoder, hand_written) for name, path in paths.items()}
    drawn = shared_samples(paths, samples, sample_seed)
    chart = out.with_suffix(".png") if gains else None  # no recommender run at all: nothing to chart
    if chart:
        gain_chart(versions, gains, chart, references)
    results = {"versions": versions, "samples": drawn, "gains": gains, "reference_gains": list(references),
               "versions_without_gain": [name for name in versions if name not in {g["version"] for g in gains}],
               "chart": shown(chart) if chart else None, "command": command}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(versions, drawn, gains, command, chart.name if chart else None,
                                                 references))
    return results


if __name__ == "__main__":
    sys.exit(main())
