"""Leave-one-out splits as plain Python lists, the training and evaluation examples built from them, and the
collator that pads a batch.

Nothing here needs the ``datasets`` library: :class:`RecommendationData` is built from a
:class:`lamar_hf.data.Benchmark` where one is at hand, or loaded from a small safetensors file
(:meth:`RecommendationData.save`), so that training runs on machines with only torch and transformers.

Examples are dicts ``{"input_ids": [...], "labels": [...]}`` of the same length: ``labels[i]`` is the item to
predict after ``input_ids[i]``, ``-100`` where nothing is predicted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

IGNORE_INDEX = -100
SPLITS = ("train", "validation", "test")


@dataclass
class RecommendationData:
    """The ``train`` / ``validation`` / ``test`` splits of a benchmark: per user a history and the next item.

    ``train`` rows hold each user's training sequence as ``history + [target]``; ``validation`` and ``test``
    predict the second-to-last and last item from everything before it.
    """

    name: str
    num_items: int
    histories: dict[str, list[list[int]]]
    targets: dict[str, list[int]]
    revision: str | None = None
    source: dict = field(default_factory=dict)

    def __post_init__(self):
        for split in SPLITS:
            if split not in self.histories or split not in self.targets:
                raise ValueError(f"split {split!r} is missing")
            if len(self.histories[split]) != len(self.targets[split]):
                raise ValueError(f"split {split!r} has {len(self.histories[split])} histories for {len(self.targets[split])} targets")

    @classmethod
    def from_benchmark(cls, benchmark, revision: str | None = None) -> RecommendationData:
        """Read the ``sequences`` of a :class:`lamar_hf.data.Benchmark` (or anything with ``name``, ``num_items``
        and a ``sequences`` mapping of datasets with ``history`` and ``target`` columns)."""
        histories, targets = {}, {}
        for split in SPLITS:
            table = benchmark.sequences[split].with_format("arrow")[:]
            histories[split] = table.column("history").to_pylist()
            targets[split] = table.column("target").to_pylist()
        from lamar_hf.data import split_fingerprint  # the caller has a Benchmark, so datasets is installed

        source = {**(getattr(benchmark, "source", {}) or {}), "split_fingerprint": split_fingerprint(benchmark)}
        return cls(benchmark.name, benchmark.num_items, histories, targets, revision, source)

    def training_sequences(self) -> list[list[int]]:
        """Each user's training sequence (the ``train`` history followed by its target)."""
        return [history + [target] for history, target in zip(self.histories["train"], self.targets["train"])]

    def item_counts(self) -> torch.Tensor:
        """``[num_items + 1]``: how often each item occurs in the training sequences (row 0, padding, is 0)."""
        items = torch.tensor([item for sequence in self.training_sequences() for item in sequence], dtype=torch.long)
        return torch.bincount(items, minlength=self.num_items + 1).float()

    def first_users(self, count: int) -> RecommendationData:
        """The same benchmark restricted to its first ``count`` users (for smoke runs); the item catalogue is kept."""
        subset = RecommendationData(
            f"{self.name} (first {count} users)",
            self.num_items,
            {split: rows[:count] for split, rows in self.histories.items()},
            {split: rows[:count] for split, rows in self.targets.items()},
            self.revision,
            self.source,
        )
        if "split_fingerprint" in self.source:  # the whole benchmark's fingerprint does not name this subset
            from lamar_hf.data import split_fingerprint

            subset.source = {**self.source, "split_fingerprint": split_fingerprint(subset)}
        return subset

    def save(self, path) -> Path:
        """Write the splits into one safetensors file (flat int32 items with per-row lengths)."""
        from safetensors.torch import save_file

        tensors = {}
        for split in SPLITS:
            histories = self.histories[split]
            tensors[f"{split}.items"] = torch.tensor([item for history in histories for item in history], dtype=torch.int32)
            tensors[f"{split}.lengths"] = torch.tensor([len(history) for history in histories], dtype=torch.int32)
            tensors[f"{split}.targets"] = torch.tensor(self.targets[split], dtype=torch.int32)
        header = {"name": self.name, "num_items": self.num_items, "revision": self.revision, "source": self.source}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata={"lamar": json.dumps(header)})
        return path

    @classmethod
    def load(cls, path) -> RecommendationData:
        """Read a file written by :meth:`save`."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"sequences file not found: {path}")
        histories, targets = {}, {}
        with safe_open(str(path), framework="pt") as handle:
            header = json.loads((handle.metadata() or {}).get("lamar", "{}"))
            for split in SPLITS:
                items = handle.get_tensor(f"{split}.items").tolist()
                lengths = handle.get_tensor(f"{split}.lengths").tolist()
                targets[split] = handle.get_tensor(f"{split}.targets").tolist()
                rows, start = [], 0
                for length in lengths:
                    rows.append(items[start : start + length])
                    start += length
                histories[split] = rows
        return cls(header["name"], header["num_items"], histories, targets, header.get("revision"), header.get("source", {}))


def next_item_windows(sequences: Sequence[Sequence[int]], max_history_length: int) -> list[dict]:
    """Training examples for a causal model: every sequence cut, from its most recent item back, into windows
    of at most ``max_history_length + 1`` items that overlap by one, so that every next-item step of every
    sequence is a target exactly once per epoch. Each window gives ``input_ids = window[:-1]`` and
    ``labels = window[1:]``; sequences of one item give nothing."""
    examples = []
    for sequence in sequences:
        end = len(sequence)
        while end > 1:
            start = max(0, end - max_history_length - 1)
            window = list(sequence[start:end])
            examples.append({"input_ids": window[:-1], "labels": window[1:]})
            end = start + 1
    return examples


def next_item_prefixes(sequences: Sequence[Sequence[int]], max_history_length: int) -> list[dict]:
    """Training examples one per next-item step, as RecBole builds them: every prefix of every sequence (its most
    recent ``max_history_length`` items) with the item that follows it as the label of its last position only.
    Each step is its own example (more, smaller optimizer steps per epoch than :func:`next_item_windows`)."""
    histories, targets = [], []
    for sequence in sequences:
        for end in range(1, len(sequence)):
            histories.append(sequence[:end])
            targets.append(sequence[end])
    return last_item_examples(histories, targets, max_history_length)


def last_item_examples(histories: Sequence[Sequence[int]], targets: Sequence[int], max_history_length: int) -> list[dict]:
    """Evaluation examples: each history's most recent ``max_history_length`` items, with the target as the label
    of the last position only.

    Raises:
        ValueError: for an empty history (nothing to predict from), naming its row.
    """
    examples = []
    for row, (history, target) in enumerate(zip(histories, targets)):
        if not history:
            raise ValueError(f"evaluation row {row} has an empty history: no next item can be predicted from it")
        history = list(history[-max_history_length:])
        examples.append({"input_ids": history, "labels": [IGNORE_INDEX] * (len(history) - 1) + [target]})
    return examples


@dataclass
class NextItemCollator:
    """Pads ``input_ids`` with 0 and ``labels`` with -100 on the right, to the longest example of the batch."""

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(example["input_ids"]) for example in examples)
        input_ids = [example["input_ids"] + [0] * (width - len(example["input_ids"])) for example in examples]
        labels = [example["labels"] + [IGNORE_INDEX] * (width - len(example["labels"])) for example in examples]
        return {"input_ids": torch.tensor(input_ids, dtype=torch.long), "labels": torch.tensor(labels, dtype=torch.long)}
