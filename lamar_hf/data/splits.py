"""Leave-one-out splits of chronological user sequences."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from datasets import Dataset, DatasetDict

from .errors import DataError
from .schema import SEQUENCE_FEATURES

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


def user_sequences(sequences: DatasetDict) -> dict[int, list[int]]:
    """Rebuild each user's full chronological sequence from the ``test`` split (history + target)."""
    test = sequences["test"]
    return {user: history + [target] for user, history, target in zip(test["user_id"], test["history"], test["target"])}
