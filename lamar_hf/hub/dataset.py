"""Publish an enriched benchmark (``items``, ``sequences``, ``signals``) as a versioned Hub dataset."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from datasets import Dataset, DatasetInfo, SplitDict, SplitInfo
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCardData, HfApi

from .. import __version__
from ..data import Benchmark, load_prepared
from . import cards
from .release import MANIFEST, PublishError, PublishResult, Release, RepoHistory, publish

SIGNALS_CONFIG = "signals"

def is_row_key(column: str) -> bool:
    """Columns of the signals config that are neither a signal nor provenance: the id and the row status."""
    return column == "item_id" or column.startswith("status")


def parquet_name(config: str, split: str) -> str:
    """The Hub layout of one split: ``{config}/{split}-00000-of-00001.parquet``."""
    return f"{config}/{split}-00000-of-00001.parquet"


def signal_columns(signals: Dataset, requested: list[str] | None = None) -> list[str]:
    """The signal columns of the ``signals`` config: ``requested``, or the default signals it holds."""
    names = requested or [name for name in cards.SIGNAL_DESCRIPTIONS if name in signals.column_names]
    missing = [name for name in names if name not in signals.column_names]
    if missing or not names:
        raise PublishError(
            f"signals config: no column {', '.join(missing or cards.SIGNAL_DESCRIPTIONS)} "
            f"(its columns are {', '.join(signals.column_names)}); name the signal columns with --signals"
        )
    return names


def check_signals(benchmark: Benchmark) -> Dataset:
    """The benchmark's ``signals`` config, checked against its items; errors name the file and field."""
    where = f"{SIGNALS_CONFIG}/train-00000-of-00001.parquet"
    if benchmark.signals is None:
        raise PublishError(f"{benchmark.name}: no {where}; enrich the benchmark first (lamar enrich)")
    signals = benchmark.signals
    if "item_id" not in signals.column_names:
        raise PublishError(f"{where}: missing field 'item_id'")
    ids = signals["item_id"]
    duplicates = [item for item, count in Counter(ids).items() if count > 1]
    if duplicates:
        raise PublishError(f"{where}: field 'item_id' repeats item {duplicates[0]} ({len(duplicates)} items repeated)")
    unknown = [item for item in ids if item is None or not 1 <= item <= benchmark.num_items]
    if unknown:
        raise PublishError(f"{where}: field 'item_id' holds {unknown[0]}, not an item of {benchmark.name} (1..{benchmark.num_items})")
    return signals


def provenance_summary(signals: Dataset, signal_names: list[str]) -> dict[str, str]:
    """One line per provenance column: its single value, or its few values with counts."""
    summary = {}
    for column in signals.column_names:
        if column in signal_names or is_row_key(column):
            continue
        counts = Counter(json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v) for v in signals[column])
        if len(counts) == 1:
            summary[column] = next(iter(counts))
        elif len(counts) <= 3:
            summary[column] = ", ".join(f"{value} ({count:,} items)" for value, count in counts.most_common())
        else:
            summary[column] = f"{len(counts):,} distinct values"
    return summary


def dataset_infos(configs: dict) -> list[dict]:
    """The card's ``dataset_info``: features and split sizes of every config, as ``datasets`` writes them."""
    infos = DatasetInfosDict()
    for config, splits in configs.items():
        first = next(iter(splits.values()))
        split_dict = SplitDict({name: SplitInfo(name=name, num_bytes=ds.data.nbytes, num_examples=len(ds)) for name, ds in splits.items()})
        infos[config] = DatasetInfo(features=first.features, splits=split_dict, config_name=config,
                                    dataset_size=sum(ds.data.nbytes for ds in splits.values()))
    card_data = DatasetCardData()
    infos.to_dataset_card_data(card_data)
    info = card_data["dataset_info"]
    return info if isinstance(info, list) else [info]


def write_dataset_tree(
    stage: Path,
    benchmark: Benchmark,
    release: Release,
    history: RepoHistory,
    *,
    signals: list[str] | None = None,
    signal_descriptions: dict[str, str] | None = None,
    analysis: dict | None = None,
    provenance: dict | None = None,
    pretty_name: str | None = None,
    license: str | None = None,
) -> None:
    """Write the repository tree of an enriched benchmark: every config as parquet, README.md, the manifest."""
    check_signals(benchmark)
    configs = benchmark.configs()
    names = signal_columns(benchmark.signals, signals)
    layout = {}
    for config, splits in configs.items():
        layout[config] = {}
        for split, dataset in splits.items():
            path = parquet_name(config, split)
            (stage / path).parent.mkdir(parents=True, exist_ok=True)
            dataset.to_parquet(str(stage / path))
            layout[config][split] = {"path": path, "rows": len(dataset), "columns": dataset.column_names}
    descriptions = {**cards.SIGNAL_DESCRIPTIONS, **(signal_descriptions or {})}
    generation = {**provenance_summary(benchmark.signals, names), **(provenance or {})}
    status = dict(Counter(benchmark.signals["status"]).most_common()) if "status" in benchmark.signals.column_names else {}
    generation["items with signals"] = f"{len(benchmark.signals):,} of {benchmark.num_items:,}"
    statistics = benchmark.statistics()
    changelog = release.changelog(history)
    card = cards.dataset_card(
        repo_id=release.repo_id,
        version=release.version,
        date=release.date,
        lamar_hf_version=__version__,
        benchmark_name=benchmark.name,
        pretty_name=pretty_name,
        configs=layout,
        default_config=SIGNALS_CONFIG,
        statistics=statistics,
        signals={name: descriptions.get(name, "(no description given)") for name in names},
        generation=generation,
        status_counts=status,
        analysis=analysis,
        changelog=changelog,
        dataset_info_yaml=dataset_infos(configs),
        license=license,
    )
    card.save(stage / "README.md")
    manifest = release.manifest(
        "dataset",
        history,
        benchmark=benchmark.name,
        source={**benchmark.source, "files": [Path(f).name for f in benchmark.source.get("files", [])]},
        statistics=statistics,
        signals={"columns": names, "status": status, "provenance": generation},
        analysis=analysis,
    )
    (stage / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def publish_dataset(
    prepared: Benchmark | str | Path,
    repo_id: str,
    version: str,
    *,
    changes: str = "",
    signals: list[str] | None = None,
    signal_descriptions: dict[str, str] | None = None,
    analysis: dict | None = None,
    provenance: dict | None = None,
    pretty_name: str | None = None,
    license: str | None = None,
    dry_run: str | Path | None = None,
    api: HfApi | None = None,
) -> PublishResult:
    """Publish an enriched benchmark as version ``version`` (``vMAJOR.MINOR.PATCH``) of the dataset ``repo_id``.

    ``prepared`` is a :class:`~lamar_hf.data.Benchmark` with signals, or a prepared folder holding
    ``signals/train-00000-of-00001.parquet``. ``analysis`` holds the signal-analysis figures for the
    card (``{signal: {figure: value}}``); ``provenance`` adds generation settings to the ones read from
    the signals' provenance columns. The version is refused if it is already tagged (nothing is pushed).
    With ``dry_run``, the exact repository tree is written to that folder instead.
    """
    release = Release(repo_id, "dataset", version, changes)
    benchmark = prepared if isinstance(prepared, Benchmark) else load_prepared(prepared)
    signal_columns(check_signals(benchmark), signals)  # bad input fails before the Hub is asked

    def build(stage: Path, history: RepoHistory) -> None:
        write_dataset_tree(
            stage, benchmark, release, history, signals=signals, signal_descriptions=signal_descriptions,
            analysis=analysis, provenance=provenance, pretty_name=pretty_name, license=license,
        )

    return publish(release, build, dry_run=dry_run, api=api)
