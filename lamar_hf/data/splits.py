"""Leave-one-out splits of chronological user sequences."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence

import numpy as np
from datasets import Dataset, DatasetDict

from .errors import DataError
from .schema import SEQUENCE_FEATURES, SEQUENCE_SPLITS

MIN_SEQUENCE_LENGTH = 3


def leave_one_out(sequences: Mapping[int, Sequence[int]], source=None) -> DatasetDict:
    """Split each user's chronological item sequence by leave-one-out.

    For a sequence ``s``: ``test`` predicts ``s[-1]`` from ``s[:-1]``, ``validation`` predicts ``s[-2]`` from
    ``s[:-2]``, and ``train`` predicts ``s[-3]`` from ``s[:-3]`` (so ``history + [target]`` of a train row is the
    user's whole training sequence). Users keep the order of the mapping.

    Raises:
        DataError: a user has fewer than 3 interactions (``source`` names the file in the message).
    """
    columns = {split: {"user_id": [], "history": [], "target": []} for split in ("train", "validation", "test")}
    for user_id, items in sequences.items():
        if len(items) < MIN_SEQUENCE_LENGTH:
            raise DataError(
                f"user {user_id} has {len(items)} interactions; leave-one-out needs at least {MIN_SEQUENCE_LENGTH}",
                source,
            )
        for split, cut in (("train", len(items) - 3), ("validation", len(items) - 2), ("test", len(items) - 1)):
            columns[split]["user_id"].append(user_id)
            columns[split]["history"].append(list(items[:cut]))
            columns[split]["target"].append(items[cut])
    return DatasetDict(
        {split: Dataset.from_dict(values, features=SEQUENCE_FEATURES, split=split) for split, values in columns.items()}
    )


def timestamp_split(
    sequences: Mapping[int, Sequence[int]], times: Mapping[int, Sequence[int]], validation_from: int, test_from: int
) -> DatasetDict:
    """Split chronological user sequences at two absolute times (the ``timestamp`` split of Amazon Reviews 2023).

    ``train`` has one row per user with interactions before ``validation_from``, whose ``history + [target]`` is that
    part of the sequence (as under :func:`leave_one_out`). ``validation`` has one row per interaction at
    ``validation_from <= time < test_from`` and ``test`` one per interaction from ``test_from`` on, each predicted
    from all of the user's earlier items; an interaction with no earlier item has nothing to predict from and is left
    out. A user may thus have several ``validation`` / ``test`` rows, or none.
    """
    columns = {split: {"user_id": [], "history": [], "target": []} for split in SEQUENCE_SPLITS}

    def add(split: str, user_id: int, items: Sequence[int], position: int) -> None:
        columns[split]["user_id"].append(user_id)
        columns[split]["history"].append(list(items[:position]))
        columns[split]["target"].append(items[position])

    for user_id, items in sequences.items():
        stamps = times[user_id]
        before = sum(1 for time in stamps if time < validation_from)
        if before:
            add("train", user_id, items, before - 1)
        for position in range(max(before, 1), len(items)):
            add("validation" if stamps[position] < test_from else "test", user_id, items, position)
    return DatasetDict(
        {split: Dataset.from_dict(values, features=SEQUENCE_FEATURES, split=split) for split, values in columns.items()}
    )


def user_sequences(sequences: DatasetDict) -> dict[int, list[int]]:
    """Rebuild each user's full chronological sequence: the longest ``history + [target]`` among the user's rows of
    the three splits (under :func:`leave_one_out`, the ``test`` row). Users come in the order of ``test``, then of the
    other splits."""
    full: dict[int, list[int]] = {}
    for split in ("test", "validation", "train"):
        rows = sequences[split].with_format("arrow")[:]
        for user, history, target in zip(*(rows.column(name).to_pylist() for name in ("user_id", "history", "target"))):
            if len(history) + 1 > len(full.get(user, ())):
                full[user] = history + [target]
    return full


def split_arrays(data, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(history lengths, concatenated histories, targets)`` of one split, as int64 arrays in row order."""
    if hasattr(data, "histories") and hasattr(data, "targets"):  # training.data.RecommendationData
        histories, targets = data.histories[split], data.targets[split]
        lengths = np.fromiter(map(len, histories), dtype=np.int64, count=len(histories))
        items = np.fromiter(itertools.chain.from_iterable(histories), dtype=np.int64, count=int(lengths.sum()))
        return lengths, items, np.asarray(targets, dtype=np.int64).reshape(-1)
    sequences = getattr(data, "sequences", data)  # a Benchmark or its DatasetDict
    table = sequences[split].with_format("arrow")[:]
    history = table.column("history").combine_chunks()
    lengths = history.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
    items = history.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    return lengths, items, table.column("target").to_numpy().astype(np.int64)


def split_fingerprint(benchmark_or_sequences) -> str:
    """``"sha256:<hex>"`` over the ``train`` / ``validation`` / ``test`` histories and targets.

    Accepts a :class:`~lamar_hf.data.Benchmark`, its ``sequences`` ``DatasetDict`` or a
    :class:`lamar_hf.training.data.RecommendationData`; all three give the same value for the same splits. The
    serialisation, per split in that order: the line ``"<split> <rows>\\n"``, then the rows' history lengths, their
    concatenated histories and their targets, each as little-endian int64 in row order. User ids are not part of it.
    """
    digest = hashlib.sha256()
    for split in SEQUENCE_SPLITS:
        lengths, items, targets = split_arrays(benchmark_or_sequences, split)
        digest.update(f"{split} {len(targets)}\n".encode())
        for array in (lengths, items, targets):
            digest.update(array.astype("<i8").tobytes())
    return f"sha256:{digest.hexdigest()}"
