"""Side-by-side analysis of versions of a committed signals resource (e.g. Beauty v1: base model few-shot, v2: base +
LoRA adapter zero-shot), over every item::

    .venv/bin/python benchmarks/compare_signal_versions.py \\
        --version v1=lamar_hf/resources/signals/amazon_beauty-v1.parquet \\
        --version v2=lamar_hf/resources/signals/amazon_beauty-v2.parquet --items outputs/beauty

Per version: status counts and validity, and per signal distinct-1/2, novelty against the item's own metadata, mean
pairwise MiniLM similarity (a 2,000-phrase sample, lower is more diverse), mean words, and copies as
``compare_adapter.py`` counts them (first answers the validator flagged as a prompt exemplar's, final phrases equal to
a hand-written one of ``training/data`` or the shipped few-shot exemplars); the generation figures
(items/s, device) come from each parquet's ``.json`` provenance file. Writes
``benchmarks/results/signal_versions.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
RESULTS = ROOT / "benchmarks" / "results"
SIGNALS = ("scenario", "intent", "topic")
PER_SIGNAL = ("distinct_1", "distinct_2", "novelty_2", "mean_pairwise_similarity", "mean_words")


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
    return {
        "file": str(path), "items": report["items"], "status": report["status"], "validity": report["validity"],
        "signals": {name: {key: report["signals"][name].get(key) for key in PER_SIGNAL} for name in SIGNALS},
        **copies,
        "generator": provenance.get("generator"), "prompt_version": provenance.get("prompt_version"),
        "device": provenance.get("device"), "items_per_s": provenance.get("items_per_s_this_run"),
    }


def markdown(versions: dict[str, dict]) -> str:
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
    row("generation items/s (device)", lambda v: f"{v['items_per_s']} ({v['device']})")
    lines += ["", "Command: `python benchmarks/compare_signal_versions.py " + shlex.join(sys.argv[1:]) + "`", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="append", required=True, metavar="NAME=PARQUET",
                        help="a version and its signals parquet (repeat)")
    parser.add_argument("--items", type=Path, default=ROOT / "outputs" / "beauty", help="a lamar prepare folder")
    parser.add_argument("--out", type=Path, default=RESULTS / "signal_versions.json")
    args = parser.parse_args(argv)

    from sentence_transformers import SentenceTransformer

    from compare_adapter import hand_written_phrases, load_tuner
    from lamar_hf.data import load_prepared
    from lamar_hf.text_embeddings import default_encoder_path

    items = load_prepared(args.items).items
    hand_written = hand_written_phrases(load_tuner(), items)
    encoder = SentenceTransformer(str(default_encoder_path()), device="cpu")
    versions = {}
    for spec in args.version:
        name, _, path = spec.partition("=")
        if not Path(path).is_file():
            parser.error(f"--version {spec}: {path} is not a file")
        versions[name] = analyse(Path(path), items, encoder, hand_written)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(versions, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(versions))
    print(args.out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
