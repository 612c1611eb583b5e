"""Few-shot exemplars: built by zero-shot chain of thought (Auto-CoT), or read from a fixed file.

Auto-CoT (Zhang et al. 2023, as LaMAR uses it): pick ``k`` diverse items, one per cluster of
category paths; ask the LLM to reason about each ("Let's think step by step"), then to give the
answer lines after its reasoning; keep an exemplar only when its answer validates. A fixed
exemplar file (jsonl) makes runs reproducible without that step.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from .config import DecodingSettings
from .generator import Generator
from .parsing import find_problems, parse_answer
from .prompts import Exemplar, PromptBuilder, clean_text

logger = logging.getLogger(__name__)

RATIONALE_DECODING = DecodingSettings(max_new_tokens=72, repetition_penalty=1.3)
ANSWER_DECODING = DecodingSettings(max_new_tokens=80)
ANSWER_REQUEST = "Now write only the final answer lines."
METADATA_KEYS = ("title", "brand", "categories", "price", "description")


def category_cluster(item: dict, depth: int = 2) -> str:
    """The cluster of an item: its category path cut to ``depth`` levels (``Beauty > Skin Care``)."""
    path = [clean_text(level) for level in (item.get("categories") or []) if clean_text(level)]
    return " > ".join(path[:depth]) or "(no category)"


def select_exemplar_items(items, k: int = 4, depth: int = 2, per_cluster: int = 3, seed: int = 0) -> list[list[dict]]:
    """Candidates for ``k`` diverse exemplars: for each of the ``k`` largest category clusters,
    up to ``per_cluster`` items with a title and a brand, in a seeded random order.

    With fewer clusters than ``k``, the largest clusters give more than one exemplar.
    """
    rows = items.to_list() if hasattr(items, "to_list") else list(items)
    clusters: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        title = clean_text(row.get("title"))
        if title and clean_text(row.get("brand")) and 3 <= len(title.split()) <= 16:
            clusters[category_cluster(row, depth)].append(row)
    if not clusters:  # nothing with title and brand: fall back to anything with a title
        for row in rows:
            if clean_text(row.get("title")):
                clusters[category_cluster(row, depth)].append(row)
    if not clusters:
        raise ValueError("no item has a title to build exemplars from")
    ordered = sorted(clusters.items(), key=lambda pair: (-len(pair[1]), pair[0]))
    rng = random.Random(seed)
    picks: list[list[dict]] = []
    for number in range(k):
        name, members = ordered[number % len(ordered)]
        members = sorted(members, key=lambda row: row["item_id"])
        rng.shuffle(members)
        offset = (number // len(ordered)) * per_cluster
        picks.append(members[offset : offset + per_cluster] or members[:per_cluster])
    return picks


def first_sentences(text: str, count: int = 3) -> str:
    """The first ``count`` sentences: a small model's reasoning tends to loop after a few."""
    sentences = re.split(r"(?<=[.!?])\s+", " ".join((text or "").split()))
    return " ".join(sentences[:count]).strip()


def build_exemplars(
    items,
    generator: Generator,
    builder: PromptBuilder | None = None,
    k: int = 4,
    depth: int = 2,
    per_cluster: int = 3,
    seed: int = 0,
) -> list[Exemplar]:
    """Auto-CoT: exemplars whose signals the LLM wrote after zero-shot chain-of-thought reasoning.

    For each cluster the first candidate whose answer validates (see
    :func:`~lamar_hf.enrich.parsing.find_problems`, also against the exemplars kept so far) is
    kept; clusters with no valid candidate are skipped, so fewer than ``k`` may come back.
    """
    builder = builder or PromptBuilder()
    candidates = select_exemplar_items(items, k, depth, per_cluster, seed)
    flat = [item for cluster in candidates for item in cluster]
    reasoning = [builder.cot_messages(item) for item in flat]
    rationales = [first_sentences(result.text or "")
                  for result in generator.generate_rows(reasoning, RATIONALE_DECODING)]
    answering = [conversation + [{"role": "assistant", "content": rationale},
                                 {"role": "user", "content": ANSWER_REQUEST}]
                 for conversation, rationale in zip(reasoning, rationales)]
    answers = generator.generate_rows(answering, ANSWER_DECODING, answer_signals=builder.signals)

    kept: list[Exemplar] = []
    position = 0
    for cluster in candidates:
        chosen = None
        for item in cluster:
            rationale, answer = rationales[position], answers[position]
            position += 1
            if chosen is not None:
                continue
            signals = parse_answer(answer.text, builder.signals, last=True)
            answers_so_far = [str(value) for exemplar in kept for value in exemplar.signals.values()]
            problems = find_problems(signals, builder.signals, clean_text(item.get("title")), answers_so_far)
            if problems:
                logger.info("exemplar candidate %s rejected: %s", item.get("item_id"), problems)
                continue
            chosen = Exemplar(item={key: item.get(key) for key in METADATA_KEYS}, signals=signals,
                              rationale=rationale or None, item_id=item.get("item_id"))
        if chosen is not None:
            kept.append(chosen)
    if len(kept) < k:
        logger.warning("Auto-CoT kept %d of %d exemplars (the others gave no valid answer)", len(kept), k)
    return kept


def save_exemplars(exemplars: Sequence[Exemplar], path, with_metadata: bool = True) -> Path:
    """Write exemplars as jsonl. ``with_metadata=False`` stores only ``item_id`` and the signals
    (the metadata is joined back from the benchmark by :func:`load_exemplars`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for exemplar in exemplars:
            row = exemplar.to_dict()
            if not with_metadata:
                if exemplar.item_id is None:
                    raise ValueError("an exemplar without item_id needs its metadata stored")
                row.pop("item")
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def load_exemplars(path, items=None, signal_names: Sequence[str] | None = None) -> list[Exemplar]:
    """Read exemplars from jsonl.

    A line is either ``{"item": {...metadata}, "signals": {...}}`` or refers to an item by id,
    ``{"item_id": 18, "signals": {...}}`` or ``{"item_id": 18, "scenario": ..., "intent": ...}``;
    id references need ``items`` (a Dataset or a list of item rows) to join the metadata. If a
    line has an ``asin``, it must match the joined item's.
    """
    path = Path(path)
    by_id = None
    exemplars = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not valid JSON ({error})") from error
        signals = row.get("signals")
        if signals is None:
            skip = {"item", "item_id", "asin", "rationale"}
            signals = {key: value for key, value in row.items() if key not in skip}
        if signal_names is not None:
            missing = [name for name in signal_names if name not in signals]
            if missing:
                raise ValueError(f"{path}:{number}: exemplar has no {missing}")
            signals = {name: signals[name] for name in signal_names}
        item = row.get("item")
        if item is None:
            if "item_id" not in row:
                raise ValueError(f"{path}:{number}: an exemplar needs 'item' (metadata) or 'item_id'")
            if items is None:
                raise ValueError(f"{path}:{number}: exemplar refers to item {row['item_id']}; pass the items")
            if by_id is None:
                rows = items.to_list() if hasattr(items, "to_list") else list(items)
                by_id = {entry["item_id"]: entry for entry in rows}
            if row["item_id"] not in by_id:
                raise ValueError(f"{path}:{number}: item {row['item_id']} is not among the items")
            joined = by_id[row["item_id"]]
            if row.get("asin") and joined.get("asin") and row["asin"] != joined["asin"]:
                raise ValueError(f"{path}:{number}: item {row['item_id']} is {joined['asin']}, not {row['asin']}")
            item = {key: joined.get(key) for key in METADATA_KEYS}
        exemplars.append(Exemplar(item=item, signals=signals, rationale=row.get("rationale"),
                                  item_id=row.get("item_id")))
    if not exemplars:
        raise ValueError(f"{path}: no exemplars")
    return exemplars
