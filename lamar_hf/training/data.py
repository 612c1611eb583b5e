"""Leave-one-out splits as plain Python lists, the training and evaluation examples built from them, and the
collator that pads a batch.

Nothing here needs the ``datasets`` library: :class:`RecommendationData` is built from a
:class:`lamar_hf.data.Benchmark` where one is at hand, or loaded from a small safetensors file
(:meth:`RecommendationData.save`), so that training runs on machines with only torch and transformers.

Examples are dicts ``{"input_ids": [...], "labels": [...]}`` of the same length: ``labels[i]`` is the item to
predict after ``input_ids[i]``, ``-100`` where nothing is predicted. For a model with a user token each example
also carries ``user_index``, its user's row in a :class:`UserTextEmbeddings` table, which
:class:`UserEmbeddingCollator` turns into the batch's ``user_embeddings``.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

IGNORE_INDEX = -100
SPLITS = ("train", "validation", "test")
# The example key holding the row of the example's user in a UserTextEmbeddings table (0: no signal).
USER_INDEX = "user_index"
# The signals column of a kind's attribute ids, as lamar_hf.enrich.attributes.cluster_column names it (not imported:
# training needs neither datasets nor the enrichment code).
ATTRIBUTE_COLUMN = "{kind}_cluster"


@dataclass
class RecommendationData:
    """The ``train`` / ``validation`` / ``test`` splits of a benchmark: per user a history and the next item.

    ``train`` rows hold each user's training sequence as ``history + [target]``; ``validation`` and ``test``
    predict the second-to-last and last item from everything before it. ``users`` holds each row's ``user_id`` per
    split where the source had them (needed only by models with a user token).
    """

    name: str
    num_items: int
    histories: dict[str, list[list[int]]]
    targets: dict[str, list[int]]
    revision: str | None = None
    source: dict = field(default_factory=dict)
    users: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self):
        for split in SPLITS:
            if split not in self.histories or split not in self.targets:
                raise ValueError(f"split {split!r} is missing")
            if len(self.histories[split]) != len(self.targets[split]):
                raise ValueError(f"split {split!r} has {len(self.histories[split])} histories for {len(self.targets[split])} targets")
        if self.users:
            for split in SPLITS:
                if len(self.users.get(split, ())) != len(self.targets[split]):
                    raise ValueError(f"split {split!r} has {len(self.users.get(split, ()))} user ids for "
                                     f"{len(self.targets[split])} rows")

    def users_of(self, split: str) -> list[int]:
        """The ``user_id`` of every row of ``split``.

        Raises:
            ValueError: when these sequences carry no user ids (a sequences file written before they were kept).
        """
        if not self.users:
            raise ValueError(f"the sequences of {self.name} carry no user ids: read them again from the benchmark "
                             "(a sequences file written by an older lamar-hf lacks them; write it again)")
        return self.users[split]

    @classmethod
    def from_benchmark(cls, benchmark, revision: str | None = None) -> RecommendationData:
        """Read the ``sequences`` of a :class:`lamar_hf.data.Benchmark` (or anything with ``name``, ``num_items``
        and a ``sequences`` mapping of datasets with ``history`` and ``target`` columns)."""
        histories, targets, users = {}, {}, {}
        for split in SPLITS:
            table = benchmark.sequences[split].with_format("arrow")[:]
            histories[split] = table.column("history").to_pylist()
            targets[split] = table.column("target").to_pylist()
            if "user_id" in table.column_names:
                users[split] = table.column("user_id").to_pylist()
        from lamar_hf.data import split_fingerprint  # the caller has a Benchmark, so datasets is installed

        source = {**(getattr(benchmark, "source", {}) or {}), "split_fingerprint": split_fingerprint(benchmark)}
        users = users if len(users) == len(SPLITS) else {}
        return cls(benchmark.name, benchmark.num_items, histories, targets, revision, source, users)

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
            {split: rows[:count] for split, rows in self.users.items()},
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
            if self.users:
                tensors[f"{split}.users"] = torch.tensor(self.users[split], dtype=torch.int64)
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
        histories, targets, users = {}, {}, {}
        with safe_open(str(path), framework="pt") as handle:
            header = json.loads((handle.metadata() or {}).get("lamar", "{}"))
            keys = set(handle.keys())
            for split in SPLITS:
                if f"{split}.users" in keys:
                    users[split] = handle.get_tensor(f"{split}.users").tolist()
                items = handle.get_tensor(f"{split}.items").tolist()
                lengths = handle.get_tensor(f"{split}.lengths").tolist()
                targets[split] = handle.get_tensor(f"{split}.targets").tolist()
                rows, start = [], 0
                for length in lengths:
                    rows.append(items[start : start + length])
                    start += length
                histories[split] = rows
        return cls(header["name"], header["num_items"], histories, targets, header.get("revision"),
                   header.get("source", {}), users if len(users) == len(SPLITS) else {})


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


@dataclass
class UserEmbeddingCollator:
    """Wraps a backbone's collator (e.g. :class:`NextItemCollator`) for a model with a user token: takes each
    example's ``user_index`` out, collates the rest, and adds ``user_embeddings`` ``[batch, dim]``, the rows of
    ``table`` (a :meth:`UserTextEmbeddings.table`, row 0 the zero vector of users without a signal)."""

    collator: Callable
    table: torch.Tensor

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        missing = [row for row, example in enumerate(examples) if USER_INDEX not in example]
        if missing:
            raise ValueError(f"example {missing[0]} of the batch has no {USER_INDEX}: a model with a user token needs "
                             "examples built with their users")
        rows = torch.tensor([example[USER_INDEX] for example in examples], dtype=torch.long)
        batch = self.collator([{k: v for k, v in example.items() if k != USER_INDEX} for example in examples])
        batch["user_embeddings"] = self.table[rows]
        return batch


@dataclass
class UserTextEmbeddings:
    """One sentence embedding per user, of a user signal (e.g. the ``intent`` of the ``user_signals`` table), looked
    up by ``user_id``; a user without a usable signal, or not in the table, reads a zero vector.

    ``vectors`` is ``[len(user_ids), dim]`` (float32); ``source`` says where they came from (recorded with results).
    """

    user_ids: list[int]
    vectors: torch.Tensor
    source: dict = field(default_factory=dict)

    def __post_init__(self):
        self.user_ids = [int(user) for user in self.user_ids]
        self.vectors = torch.as_tensor(self.vectors, dtype=torch.float32)
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.user_ids):
            raise ValueError(f"user embeddings of shape {tuple(self.vectors.shape)} for {len(self.user_ids)} users")
        if len(set(self.user_ids)) != len(self.user_ids):
            raise ValueError("a user has two rows of user embeddings")
        self._rows = {user: row for row, user in enumerate(self.user_ids, start=1)}

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def table(self) -> torch.Tensor:
        """``[len(user_ids) + 1, dim]``: row 0 is the zero vector, row ``i + 1`` the vector of ``user_ids[i]``."""
        return torch.cat([torch.zeros(1, self.dim), self.vectors])

    def rows(self, users: Sequence[int]) -> list[int]:
        """Each user's row in :meth:`table` (0 for a user the table does not hold)."""
        return [self._rows.get(int(user), 0) for user in users]

    def for_users(self, users: Sequence[int]) -> torch.Tensor:
        """``[len(users), dim]``: the vector of each user (zeros for one the table does not hold)."""
        return self.table()[torch.tensor(self.rows(users), dtype=torch.long)]

    def coverage(self, users: Sequence[int]) -> tuple[int, int]:
        """``(users with a non-zero vector, users)`` among ``users``."""
        has_signal = torch.cat([torch.zeros(1, dtype=torch.bool), self.vectors.abs().sum(dim=1) > 0])
        rows = self.rows(users)
        return int(has_signal[torch.tensor(rows, dtype=torch.long)].sum()) if rows else 0, len(rows)

    def save(self, path) -> Path:
        """Write the user ids and vectors (float32) into one safetensors file, ``source`` in its header."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"user_ids": torch.tensor(self.user_ids, dtype=torch.int64), "vectors": self.vectors.contiguous()}
        save_file(tensors, str(path), metadata={"lamar": json.dumps(self.source)})
        return path

    @classmethod
    def load(cls, path) -> UserTextEmbeddings:
        """Read a file written by :meth:`save`."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"user embeddings file not found: {path}")
        with safe_open(str(path), framework="pt") as handle:
            source = json.loads((handle.metadata() or {}).get("lamar", "{}"))
            return cls(handle.get_tensor("user_ids").tolist(), handle.get_tensor("vectors"), source)


def item_attribute_ids(signals, kinds: Sequence[str], num_items: int, source: str) -> dict[str, torch.Tensor]:
    """``{kind: [num_items + 1] long}``: each item's attribute id of every kind, read from the signals column
    ``<kind>_cluster`` (written by ``lamar attributes``); items without a signals row, and padding, get 0.

    ``signals`` is a signals dataset, pyarrow table or list of row dicts; ``source`` names it in errors.

    Raises:
        ValueError: naming ``source``, for a missing ``<kind>_cluster`` column, an item id outside
            ``1..num_items``, or an attribute id that is not a whole number of at least 0.
    """
    rows = signals.to_pylist() if hasattr(signals, "to_pylist") else (
        signals.to_list() if hasattr(signals, "to_list") else list(signals)
    )
    columns = list(rows[0]) if rows else []
    attributes = {}
    for kind in kinds:
        column = ATTRIBUTE_COLUMN.format(kind=kind)
        if column not in columns:
            raise ValueError(
                f"{source}: no column {column!r} for the attribute {kind!r} (columns: {', '.join(columns) or 'none'}); "
                f"write it with `lamar attributes --signals {source} --out FILE` and train on FILE"
            )
        ids = torch.zeros(num_items + 1, dtype=torch.long)
        for number, row in enumerate(rows):
            item_id, value = row["item_id"], row[column]
            if not isinstance(item_id, numbers.Integral) or not 1 <= item_id <= num_items:
                raise ValueError(f"{source}: row {number} names item_id {item_id}, outside 1..{num_items}")
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{source}: row {number} (item {item_id}) has {column} {value!r}; attribute ids are "
                                 "whole numbers, 0 for none")
            ids[int(item_id)] = int(value)
        attributes[kind] = ids
    return attributes
