"""How good are the signals? Distinctness, diversity, novelty against the metadata, length, validity.

- distinct-n: distinct n-grams / all n-grams over every usable phrase of a signal (Li et al. 2016);
- diversity: mean pairwise cosine similarity of phrase embeddings on a sample (lower: more diverse);
- novelty-n: share of a signal's n-grams that are absent from its own item's title, brand and
  categories (unigrams without stop words; bigrams of all words) — what the LLM added;
- unique share, mean length in words, the most frequent phrases (a sign of mode collapse);
- validity: share of rows with status ``ok`` or ``retried``; per signal, share with a phrase.

Only rows whose status is ``ok`` or ``retried`` count as usable phrases.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from .parsing import words

USABLE = ("ok", "retried")
STOP_WORDS = frozenset(
    "a an the and or of for to in on at by with from your you it its is are be as this that into".split())
PROVENANCE_OR_STATUS = {"item_id", "status", "status_detail", "generator", "generator_revision", "adapter",
                        "prompt_version", "decoding", "lamar_hf_version", "answer"}


# Attribute ids of a signal kind (``scenario_cluster``, lamar_hf.enrich.attributes): integers, not signal text.
CLUSTER_SUFFIX = "_cluster"


def signal_names(columns: Sequence[str]) -> list[str]:
    """The signal columns of a ``signals`` table (everything that is not id, status, provenance or attribute ids)."""
    return [name for name in columns if name not in PROVENANCE_OR_STATUS and not name.endswith(CLUSTER_SUFFIX)]


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[index : index + n]) for index in range(len(tokens) - n + 1)]


def distinct_n(phrases: Sequence[str], n: int) -> float | None:
    """Distinct n-grams divided by all n-grams over ``phrases`` (``None`` when there are none)."""
    grams = [gram for phrase in phrases for gram in ngrams(words(phrase), n)]
    return len(set(grams)) / len(grams) if grams else None


def metadata_words(item: dict) -> list[str]:
    parts = [item.get("title") or "", item.get("brand") or "", " ".join(item.get("categories") or [])]
    return words(" ".join(parts))


def novelty(phrases: Sequence[str], items: Sequence[dict], n: int) -> float | None:
    """Share of the phrases' n-grams that do not occur in their own item's metadata.

    For ``n == 1`` stop words are left out (an article is never informative); bigrams use all words.
    """
    novel = total = 0
    for phrase, item in zip(phrases, items):
        tokens = words(phrase)
        known_tokens = metadata_words(item)
        if n == 1:
            grams = [(token,) for token in tokens if token not in STOP_WORDS]
            known = {(token,) for token in known_tokens}
        else:
            grams = ngrams(tokens, n)
            known = set(ngrams(known_tokens, n))
        total += len(grams)
        novel += sum(gram not in known for gram in grams)
    return novel / total if total else None


def mean_pairwise_similarity(embeddings) -> float | None:
    """Mean cosine similarity over all pairs of distinct rows of ``embeddings`` (a numpy array)."""
    import numpy as np

    vectors = np.asarray(embeddings, dtype=np.float64)
    count = len(vectors)
    if count < 2:
        return None
    vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    total = vectors.sum(axis=0)
    # sum over i != j of v_i . v_j = |sum v|^2 - sum |v_i|^2
    return float((total @ total - count) / (count * (count - 1)))


def analyze_signals(signals, items=None, encoder=None, sample: int = 2000, seed: int = 0, top: int = 5) -> dict:
    """All figures for a ``signals`` dataset (or list of rows).

    ``items`` (the benchmark's items, dataset or rows) enables novelty; ``encoder`` (anything with a
    sentence-transformers ``encode``) enables the embedding diversity, on ``sample`` phrases per signal.
    """
    rows = signals.to_list() if hasattr(signals, "to_list") else list(signals)
    names = signal_names(list(rows[0]) if rows else [])
    by_id = {}
    if items is not None:
        item_rows = items.to_list() if hasattr(items, "to_list") else list(items)
        by_id = {row["item_id"]: row for row in item_rows}
    statuses = Counter(row.get("status") for row in rows)
    usable = [row for row in rows if row.get("status") in USABLE]
    report = {
        "items": len(rows),
        "status": dict(statuses),
        "validity": (statuses["ok"] + statuses["retried"]) / len(rows) if rows else None,
        "signals": {},
    }
    rng = random.Random(seed)
    for name in names:
        kept = [row for row in usable if row.get(name)]
        phrases = [row[name] for row in kept]
        lengths = [len(words(phrase)) for phrase in phrases]
        figures = {
            "phrases": len(phrases),
            "coverage": len(phrases) / len(rows) if rows else None,
            "mean_words": sum(lengths) / len(lengths) if lengths else None,
            "distinct_1": distinct_n(phrases, 1),
            "distinct_2": distinct_n(phrases, 2),
            "unique_share": len(set(map(str.lower, phrases))) / len(phrases) if phrases else None,
            "top": Counter(phrase.lower() for phrase in phrases).most_common(top),
        }
        if by_id:
            joined = [(row[name], by_id[row["item_id"]]) for row in kept if row["item_id"] in by_id]
            figures["novelty_1"] = novelty([p for p, _ in joined], [i for _, i in joined], 1)
            figures["novelty_2"] = novelty([p for p, _ in joined], [i for _, i in joined], 2)
        if encoder is not None and len(phrases) >= 2:
            chosen = rng.sample(phrases, min(sample, len(phrases)))
            figures["mean_pairwise_similarity"] = mean_pairwise_similarity(
                encoder.encode(chosen, batch_size=256, show_progress_bar=False))
            figures["similarity_sample"] = len(chosen)
        report["signals"][name] = figures
        report["length_histogram_" + name] = dict(sorted(Counter(lengths).items()))
    return report


def format_table(report: dict) -> str:
    """The figures as a plain-text table, one row per signal."""
    columns = [("phrases", "{:d}"), ("coverage", "{:.1%}"), ("mean_words", "{:.2f}"), ("distinct_1", "{:.3f}"),
               ("distinct_2", "{:.3f}"), ("unique_share", "{:.3f}"), ("novelty_1", "{:.3f}"),
               ("novelty_2", "{:.3f}"), ("mean_pairwise_similarity", "{:.3f}")]
    present = [(name, fmt) for name, fmt in columns
               if any(figures.get(name) is not None for figures in report["signals"].values())]
    header = ["signal"] + [name.replace("mean_pairwise_similarity", "pairwise_sim") for name, _ in present]
    lines = [header]
    for signal, figures in report["signals"].items():
        cells = [signal]
        for name, fmt in present:
            value = figures.get(name)
            cells.append("-" if value is None or (isinstance(value, float) and math.isnan(value))
                         else fmt.format(value))
        lines.append(cells)
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = "\n".join("  ".join(cell.rjust(width) if column else cell.ljust(width)
                               for column, (cell, width) in enumerate(zip(line, widths))) for line in lines)
    status = ", ".join(f"{key} {value}" for key, value in sorted(report["status"].items(), key=str))
    validity = report["validity"]
    return f"{text}\n\n{report['items']} items; status: {status}; validity {validity:.1%}" if validity is not None \
        else text


def plot_report(report: dict, out_dir) -> list[Path]:
    """Write PNG plots: word-length histograms, status counts, and distinct/novelty per signal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    names = list(report["signals"])

    figure, axes = plt.subplots(1, max(len(names), 1), figsize=(4 * max(len(names), 1), 3), squeeze=False)
    for axis, name in zip(axes[0], names):
        histogram = report["length_histogram_" + name]
        axis.bar([int(k) for k in histogram], list(histogram.values()), color="#4C72B0")
        axis.set_title(f"{name}: words per phrase")
        axis.set_xlabel("words")
    axes[0][0].set_ylabel("phrases")
    figure.tight_layout()
    written.append(out_dir / "signal_lengths.png")
    figure.savefig(written[-1], dpi=100)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(4, 3))
    colours = {"ok": "#55A868", "retried": "#DD8452", "invalid": "#C44E52", "unavailable": "#8172B3",
               "failed": "#C44E52"}  # "failed": files written before invalid and unavailable were told apart
    statuses = [status for status in colours if report["status"].get(status)]
    axis.bar(statuses, [report["status"][status] for status in statuses], color=[colours[s] for s in statuses])
    axis.set_title(f"status (validity {report['validity']:.1%})" if report["validity"] is not None else "status")
    figure.tight_layout()
    written.append(out_dir / "signal_status.png")
    figure.savefig(written[-1], dpi=100)
    plt.close(figure)

    metrics = [metric for metric in ("distinct_1", "distinct_2", "novelty_1", "novelty_2", "unique_share")
               if any(report["signals"][name].get(metric) is not None for name in names)]
    figure, axis = plt.subplots(figsize=(1.6 * len(metrics) + 2, 3.5))
    width = 0.8 / max(len(names), 1)
    for offset, name in enumerate(names):
        values = [report["signals"][name].get(metric) or 0.0 for metric in metrics]
        axis.bar([index + offset * width for index in range(len(metrics))], values, width, label=name)
    axis.set_xticks([index + width * (len(names) - 1) / 2 for index in range(len(metrics))], metrics)
    axis.set_ylim(0, 1)
    axis.legend(fontsize=8)
    axis.set_title("distinctness and novelty per signal")
    figure.tight_layout()
    written.append(out_dir / "signal_quality.png")
    figure.savefig(written[-1], dpi=100)
    plt.close(figure)
    return written
