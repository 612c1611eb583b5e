"""Publish an enriched benchmark (``items``, ``sequences``, ``signals``) as a versioned Hub dataset."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

from datasets import Dataset, DatasetInfo, SplitDict, SplitInfo
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCardData, HfApi

from .. import __version__
from ..enrich.analysis import CLUSTER_SUFFIX
from ..data import Benchmark, load_prepared
from ..data.benchmark import MANIFEST as PREPARE_MANIFEST
from ..data.benchmark import parquet_path
from ..text_embeddings import USABLE_SIGNAL_STATUSES
from . import cards
from .release import MANIFEST, PublishError, PublishResult, Release, RepoHistory, publish

SIGNALS_CONFIG = "signals"
# Where a release puts the cluster centres of the signals config's attribute ids (lamar attributes).
ATTRIBUTE_CENTRES = "signals/attribute_centres.safetensors"
# The least share of signal rows with a usable answer (status ok / retried) that is published by default.
DEFAULT_MIN_VALIDITY = 0.9

def is_row_key(column: str) -> bool:
    """Columns of the signals config that are neither a signal nor provenance: the id, the row status and the
    signal attribute ids (``<kind>_cluster``)."""
    return column == "item_id" or column.startswith("status") or column.endswith(CLUSTER_SUFFIX)


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


def check_signals(benchmark: Benchmark, min_validity: float = DEFAULT_MIN_VALIDITY, where: str | Path | None = None) -> Dataset:
    """The benchmark's ``signals`` config, checked against its items: one row per item (every item, none twice,
    no unknown id) and at least ``min_validity`` of the rows usable (status ok / retried). Errors name the file
    (``where``, default the config's path in the repository), the field and the counts."""
    where = where or parquet_name(SIGNALS_CONFIG, "train")
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
    if len(ids) != benchmark.num_items:
        missing = sorted(set(range(1, benchmark.num_items + 1)) - set(ids))
        raise PublishError(
            f"{where}: {len(ids):,} signal rows for the {benchmark.num_items:,} items of {benchmark.name} "
            f"({len(missing):,} items have none, e.g. item_id {missing[0]}); the signals config must have one row per "
            "item: enrich every item (lamar enrich without --limit) before publishing"
        )
    if "status" not in signals.column_names:
        raise PublishError(f"{where}: missing field 'status', so the validity of the signals is unknown")
    usable = sum(1 for status in signals["status"] if status in USABLE_SIGNAL_STATUSES)
    if usable < min_validity * len(ids):
        raise PublishError(
            f"{where}: only {usable:,} of {len(ids):,} signal rows are valid (status {' / '.join(USABLE_SIGNAL_STATUSES)}), "
            f"validity {usable / len(ids):.1%} < {min_validity:.0%}; regenerate the rows that are not valid, or lower the "
            "threshold with --min-validity"
        )
    return signals


def recorded_split_fingerprint(prepared: Benchmark | str | Path, benchmark: Benchmark) -> str | None:
    """The ``split_fingerprint`` that ``lamar prepare`` wrote into the folder's ``lamar_prepare.json`` (or that a
    ``Benchmark``'s ``source`` carries), or ``None`` when it was not recorded."""
    manifest_path = None if isinstance(prepared, Benchmark) else Path(prepared) / PREPARE_MANIFEST
    if manifest_path is not None and manifest_path.is_file():
        try:
            fingerprint = json.loads(manifest_path.read_text(encoding="utf-8")).get("split_fingerprint")
        except (json.JSONDecodeError, AttributeError) as error:
            raise PublishError(f"{manifest_path}: not a valid JSON object ({error})") from None
        if fingerprint:
            return fingerprint
    return benchmark.source.get("split_fingerprint")


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


def check_attribute_centres(benchmark: Benchmark, path: str | Path) -> str:
    """Check that ``path`` (``lamar attributes``' ``.attributes.safetensors``) holds the centres of the signals
    config's attribute ids: a ``<kind>_cluster`` column for each kind, and a centre for every id it uses. Returns
    the centres' encoder. Raises PublishError naming the file otherwise."""
    from ..enrich.attributes import read_attribute_centres

    try:
        centres, encoder = read_attribute_centres(path)
    except ValueError as error:
        raise PublishError(str(error)) from None
    columns = benchmark.signals.column_names
    for kind, value in centres.items():
        column = kind + CLUSTER_SUFFIX
        if column not in columns:
            raise PublishError(f"{path}: centres for {kind!r}, but the signals config has no {column} column "
                               f"(its columns are {', '.join(columns)})")
        highest = max(benchmark.signals[column], default=0)
        if highest > len(value):
            raise PublishError(f"{path}: {len(value)} {kind} centres, but the signals config's {column} uses id "
                               f"{highest}: these are not the centres of its ids")
    return encoder or "(encoder not recorded)"


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
    min_validity: float = DEFAULT_MIN_VALIDITY,
    split_fingerprint: str | None = None,
    attribute_centres: str | Path | None = None,
) -> None:
    """Write the repository tree of an enriched benchmark: every config as parquet, README.md, the manifest, and
    ``attribute_centres`` (checked by :func:`check_attribute_centres`) as :data:`ATTRIBUTE_CENTRES`.

    The card and the manifest state ``split_fingerprint`` (default: the one the benchmark's ``source`` carries)."""
    split_fingerprint = split_fingerprint or benchmark.source.get("split_fingerprint")
    check_signals(benchmark, min_validity)
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
    if attribute_centres is not None:
        encoder = check_attribute_centres(benchmark, attribute_centres)
        shutil.copyfile(attribute_centres, stage / ATTRIBUTE_CENTRES)
        generation["attribute centres"] = (
            f"`{ATTRIBUTE_CENTRES}` ({encoder}; row i - 1 is attribute id i): `lamar attributes --centres` gives a "
            "new item's signals the ids of the nearest centres")
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
        split_fingerprint=split_fingerprint,
    )
    card.save(stage / "README.md")
    manifest = release.manifest(
        "dataset",
        history,
        benchmark=benchmark.name,
        source={**benchmark.source, "files": [Path(f).name for f in benchmark.source.get("files", [])]},
        statistics=statistics,
        split_fingerprint=split_fingerprint,
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
    min_validity: float = DEFAULT_MIN_VALIDITY,
    dry_run: str | Path | None = None,
    api: HfApi | None = None,
    attribute_centres: str | Path | None = None,
) -> PublishResult:
    """Publish an enriched benchmark as version ``version`` (``vMAJOR.MINOR.PATCH``) of the dataset ``repo_id``.

    ``prepared`` is a :class:`~lamar_hf.data.Benchmark` with signals, or a prepared folder holding
    ``signals/train-00000-of-00001.parquet``. ``analysis`` holds the signal-analysis figures for the
    card (``{signal: {figure: value}}``); ``provenance`` adds generation settings to the ones read from
    the signals' provenance columns. A signals config without one row per item, or with less than
    ``min_validity`` of its rows valid, is refused (:func:`check_signals`). The version is refused if it is
    already tagged (nothing is pushed). With ``dry_run``, the exact repository tree is written to that folder instead.
    The card states the split fingerprint recorded in the folder's ``lamar_prepare.json``, when there is one.
    ``attribute_centres``, a ``.attributes.safetensors`` file of ``lamar attributes``, is published beside the
    signals config whose ``<kind>_cluster`` ids it made (:func:`check_attribute_centres`).
    """
    release = Release(repo_id, "dataset", version, changes)
    if not 0.0 <= min_validity <= 1.0:
        raise PublishError(f"the least validity must be a share between 0 and 1, got {min_validity}")
    benchmark = prepared if isinstance(prepared, Benchmark) else load_prepared(prepared)
    where = None if isinstance(prepared, Benchmark) else parquet_path(Path(prepared), SIGNALS_CONFIG, "train")
    signal_columns(check_signals(benchmark, min_validity, where), signals)  # bad input fails before the Hub is asked
    if attribute_centres is not None:
        check_attribute_centres(benchmark, attribute_centres)
    split_fingerprint = recorded_split_fingerprint(prepared, benchmark)

    def build(stage: Path, history: RepoHistory) -> None:
        write_dataset_tree(
            stage, benchmark, release, history, signals=signals, signal_descriptions=signal_descriptions,
            analysis=analysis, provenance=provenance, pretty_name=pretty_name, license=license,
            min_validity=min_validity, split_fingerprint=split_fingerprint, attribute_centres=attribute_centres,
        )

    return publish(release, build, dry_run=dry_run, api=api)
