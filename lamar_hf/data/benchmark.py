"""A prepared benchmark: the ``items`` and ``sequences`` configs of DESIGN.md, saved in the Hub layout."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict
from datasets.utils import disable_progress_bars, enable_progress_bars, are_progress_bars_disabled

from ..staging import recover_folder, staging_path, swap_in
from .errors import DataError
from .schema import ITEM_FEATURES, METADATA_FIELDS, SEQUENCE_FEATURES, SEQUENCE_SPLITS
from .splits import split_fingerprint, user_sequences

MANIFEST = "lamar_prepare.json"


def parquet_path(root: Path, config: str, split: str) -> Path:
    """Where a config's split lives in the Hub repository layout."""
    return Path(root) / config / f"{split}-00000-of-00001.parquet"


@dataclass
class Benchmark:
    """One sequential-recommendation benchmark in the lamar-hf schema.

    ``items`` has one row per item (``item_id`` 1..N, 0 is padding); ``sequences`` holds the leave-one-out splits
    ``train`` / ``validation`` / ``test``; ``signals`` (optional) the generated semantic signals per item.
    """

    name: str
    items: Dataset
    sequences: DatasetDict
    signals: Dataset | None = None
    source: dict = field(default_factory=dict)

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_users(self) -> int:
        return len(user_sequences(self.sequences))

    def configs(self) -> dict[str, DatasetDict]:
        """Every config as a ``DatasetDict`` (``items`` and ``signals`` have the single split ``train``)."""
        configs = {"items": DatasetDict({"train": self.items}), "sequences": self.sequences}
        if self.signals is not None:
            configs["signals"] = DatasetDict({"train": self.signals})
        return configs

    def statistics(self) -> dict:
        """Users, items, interactions, mean sequence length, density and metadata coverage per field."""
        lengths = [len(sequence) for sequence in user_sequences(self.sequences).values()]
        interactions = sum(lengths)
        users, items = len(lengths), self.num_items
        coverage = {}
        for name in METADATA_FIELDS:
            values = self.items[name]
            filled = sum(1 for value in values if value not in (None, "", []))
            coverage[name] = filled / items if items else 0.0
        return {
            "users": users,
            "items": items,
            "interactions": interactions,
            "mean_sequence_length": interactions / users if users else 0.0,
            "density": interactions / (users * items) if users and items else 0.0,
            "train_interactions": sum(len(h) + 1 for h in self.sequences["train"]["history"]),
            "metadata_coverage": coverage,
        }

    def save(self, out_dir, overwrite: bool = False) -> Path:
        """Write every config as parquet in the Hub layout (``{config}/{split}-00000-of-00001.parquet``), and
        ``lamar_prepare.json`` with the name, source, statistics and ``split_fingerprint`` (:func:`split_fingerprint`).

        The folder is written to a temporary sibling and swapped into place (:mod:`lamar_hf.staging`), so a
        failure never leaves a half-written or missing ``out_dir``; the next save cleans up after a kill. An existing non-empty ``out_dir`` is only replaced with ``overwrite=True``.
        """
        out_dir = Path(out_dir)
        prefix = f".{out_dir.name}."  # hidden siblings: .<name>.tmp-<pid>-<random>, .<name>.old-<pid>-<random>
        recover_folder(out_dir, prefix, complete=lambda folder: (folder / MANIFEST).is_file())
        if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
            raise DataError("output folder exists and is not empty (pass overwrite=True / --overwrite)", out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = staging_path(out_dir.parent, prefix)
        quiet = not are_progress_bars_disabled()
        if quiet:  # one bar per tiny parquet file is noise
            disable_progress_bars()
        try:
            for config, splits in self.configs().items():
                for split, dataset in splits.items():
                    path = parquet_path(staging, config, split)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    dataset.to_parquet(str(path))
            manifest = {
                "name": self.name,
                "source": self.source,
                "split_fingerprint": split_fingerprint(self),
                "statistics": self.statistics(),
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            swap_in(staging, out_dir, prefix)
        finally:
            if quiet:
                enable_progress_bars()
            if staging.exists():
                shutil.rmtree(staging)
        return out_dir


def read_parquet_dataset(path: Path, features=None) -> Dataset:
    """Read one parquet file into an in-memory ``Dataset`` (features come from the file's metadata)."""
    if not path.is_file():
        raise DataError("missing file of a prepared benchmark", path)
    dataset = Dataset(pq.read_table(path))
    if features is not None and dataset.features != features:
        dataset = dataset.cast(features)
    return dataset


def load_prepared(path) -> Benchmark:
    """Load a folder written by :meth:`Benchmark.save` (or ``lamar prepare``), including ``signals`` if present."""
    root = Path(path)
    if not root.is_dir():
        raise DataError("prepared benchmark folder not found (run `lamar prepare` first)", root)
    manifest_path = root / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    items = read_parquet_dataset(parquet_path(root, "items", "train"), ITEM_FEATURES)
    sequences = DatasetDict(
        {split: read_parquet_dataset(parquet_path(root, "sequences", split), SEQUENCE_FEATURES) for split in SEQUENCE_SPLITS}
    )
    signals_path = parquet_path(root, "signals", "train")
    signals = read_parquet_dataset(signals_path) if signals_path.is_file() else None
    return Benchmark(
        name=manifest.get("name", root.name),
        items=items,
        sequences=sequences,
        signals=signals,
        source=manifest.get("source", {}),
    )
