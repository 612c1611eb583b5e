"""The recommender training script's work, shared by ``training/train.py`` and ``lamar train``.

Reads a benchmark (a prepared folder or a Hub dataset), embeds the item texts the model fuses (cached), reads the
signal attribute ids it learns (``--signal_attributes``: the signals file's ``<kind>_cluster`` columns) and embeds
each user's signal for a user token (``--user_signals_file``: a ``user_signals`` table, written from each user's
training history), trains with :func:`lamar_hf.training.train_recommender`, saves the best model and its results,
and publishes it as a versioned Hub release with a model card (:func:`lamar_hf.hub.publish_model`) when
``--push_to_hub`` is given.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from transformers import HfArgumentParser

from lamar_hf.text_embeddings import (
    METADATA,
    cached_item_text_embeddings,
    cached_text_embeddings,
    default_text_embeddings_cache,
    read_signals,
    read_user_signals,
)

from .arguments import ModelArguments, RecommenderTrainingArguments
from .data import ATTRIBUTE_COLUMN, RecommendationData, UserTextEmbeddings, item_attribute_ids
from .guards import (
    TrainingRefused,
    listed,
    refuse_duplicate_signal_rows,
    refuse_low_signal_coverage,
    refuse_non_finite_text_embeddings,
    refuse_to_overwrite_a_model,
    strict_json,
)
from .trainer import TrainingResult, attribute_kinds, checkpoint_to_resume, train_recommender

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"


@dataclass
class ScriptArguments:
    """Where the data comes from."""

    dataset: str = field(
        metadata={"help": "A prepared benchmark folder (`lamar prepare`) or a Hub dataset id with items/sequences configs."}
    )
    dataset_revision: str | None = field(
        default=None, metadata={"help": "Hub revision (tag, branch or commit) of --dataset; recorded on the model card."}
    )
    signals_file: str | None = field(
        default=None,
        metadata={"help": "A signals parquet file (item_id + signal columns); default: the dataset's signals config."},
    )
    text_embeddings_cache: str | None = field(
        default=None,
        metadata={"help": "Cache file of the item-text embeddings (default: one per dataset under ~/.cache/lamar_hf)."},
    )
    min_signal_coverage: float = field(
        default=0.95,
        metadata={"help": "Refuse to train on a signal (or a --signal_attributes kind) that has a usable row (an "
                  "attribute id) for fewer than this fraction of the items."},
    )
    user_signals_file: str | None = field(
        default=None,
        metadata={"help": "A user_signals parquet file (`lamar enrich_users`: user_id, intent, status, ...): the model "
                  "reads each user's --user_signal, embedded by --text_encoder, as a user token (default: none)."},
    )
    user_signal: str = field(
        default="intent", metadata={"help": "The column of --user_signals_file the user token embeds."}
    )
    min_user_signal_coverage: float = field(
        default=0.95,
        metadata={"help": "Refuse to train when fewer than this fraction of the training users have a usable user "
                  "signal (the others read a zero vector)."},
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "Replace the model, results and checkpoints already in --output_dir (refused otherwise)."},
    )
    max_users: int | None = field(default=None, metadata={"help": "Use only the first N users (smoke runs)."})
    hub_version: str = field(
        default="v1.0.0", metadata={"help": "With --push_to_hub: the version tag of the release (an existing one is refused)."}
    )
    hub_changes: str = field(default="", metadata={"help": "With --push_to_hub: what changed, for the card's changelog."})
    hub_dataset_id: str | None = field(
        default=None,
        metadata={"help": "With --push_to_hub: the Hub id of --dataset when that is a local folder (cards name Hub ids only)."},
    )


ARGUMENT_CLASSES = (ScriptArguments, ModelArguments, RecommenderTrainingArguments)


def argument_parser(**kwargs) -> HfArgumentParser:
    """The parser of every option of the training script (``kwargs`` go to ``argparse.ArgumentParser``)."""
    return HfArgumentParser(ARGUMENT_CLASSES, **kwargs)


def arguments_from_namespace(namespace, skip=("debug",)) -> tuple:
    """``(script_args, model_args, training_args)`` from an ``argparse.Namespace`` filled by :func:`argument_parser`
    (as a parent parser of ``lamar train``). Keys of other parsers are ignored, and so are those in ``skip``
    (``lamar``'s own ``--debug`` shadows ``TrainingArguments.debug``)."""
    values = {key: value for key, value in vars(namespace).items() if key not in skip}
    return tuple(
        cls(**{f.name: values[f.name] for f in fields(cls) if f.init and f.name in values}) for cls in ARGUMENT_CLASSES
    )


def parse_args(argv: list[str] | None = None):
    """``(script_args, model_args, training_args)`` from the command line (or one ``.json`` / ``.yaml`` file)."""
    parser = argument_parser()
    if argv and len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        loader = parser.parse_json_file if argv[0].endswith(".json") else parser.parse_yaml_file
        return loader(argv[0])
    return parser.parse_args_into_dataclasses(args=argv)


def load_benchmark(dataset: str, revision: str | None = None):
    """A :class:`lamar_hf.data.Benchmark` from a prepared folder, or from a Hub dataset repository that has the
    ``items`` and ``sequences`` configs (and optionally ``signals``)."""
    from lamar_hf.data import Benchmark, load_prepared

    path = Path(dataset).expanduser()
    if path.is_dir():
        return load_prepared(path)
    if path.is_absolute() or dataset.startswith((".", "~")) or path.exists() or dataset.count("/") != 1:
        raise FileNotFoundError(f"prepared benchmark folder not found: {dataset} (run `lamar prepare` first)")
    from datasets import get_dataset_config_names, load_dataset

    try:
        configs = get_dataset_config_names(dataset, revision=revision)
    except Exception as error:  # offline, unknown repository, bad revision: say what was tried
        raise ValueError(f"{dataset} is not a folder here, and reading it as a Hub dataset failed: {error}") from error
    missing = [name for name in ("items", "sequences") if name not in configs]
    if missing:
        raise ValueError(f"{dataset} is neither a folder nor a Hub dataset with configs items and sequences (it has {configs})")
    return Benchmark(
        name=dataset,
        items=load_dataset(dataset, "items", split="train", revision=revision),
        sequences=load_dataset(dataset, "sequences", revision=revision),
        signals=load_dataset(dataset, "signals", split="train", revision=revision) if "signals" in configs else None,
        source={"hub": dataset, "revision": revision},
    )


def signals_source(script_args: ScriptArguments) -> str:
    """Where the training signals come from, in words for error messages: a file, or the dataset's signals config."""
    from lamar_hf.data.benchmark import parquet_path

    if script_args.signals_file:
        return str(script_args.signals_file)
    folder = Path(script_args.dataset).expanduser()
    if folder.is_dir():
        return str(parquet_path(folder, "signals", "train"))
    return f"the signals config of {script_args.dataset}"


def training_signals(benchmark, script_args: ScriptArguments, wanted: str):
    """The signals rows (``--signals_file`` or the dataset's signals config), checked for items named twice;
    ``wanted`` says in the error what asked for them.

    Raises:
        ValueError: when there are none; TrainingRefused for an item with two rows.
    """
    signals = read_signals(script_args.signals_file) if script_args.signals_file else benchmark.signals
    if signals is None:
        raise ValueError(f"{wanted} were asked for, but {script_args.dataset} has no signals config: pass --signals_file PATH")
    refuse_duplicate_signal_rows(signals, signals_source(script_args))
    return signals


def text_embeddings_for(benchmark, kinds: list[str], script_args: ScriptArguments, model_args, training_args) -> dict:
    """The embeddings of every text kind the model fuses; the main process computes them, the others read its cache.

    Raises:
        TrainingRefused: for signals that name an item twice or cover fewer than ``--min_signal_coverage`` of the
            items, and for embeddings holding NaN or inf (whether just computed or read from the cache).
    """
    signal_kinds = [kind for kind in kinds if kind != METADATA]
    signals = None
    if signal_kinds:
        signals = training_signals(benchmark, script_args, f"signals {', '.join(signal_kinds)}")
        source = signals_source(script_args)
        refuse_low_signal_coverage(
            benchmark.items, signal_kinds, signals, script_args.min_signal_coverage, source, script_args.dataset
        )
    cache = Path(script_args.text_embeddings_cache or default_text_embeddings_cache(benchmark.name))
    with training_args.main_process_first(desc="embedding item texts"):
        embeddings = cached_item_text_embeddings(benchmark.items, kinds, cache, signals, model_args.text_encoder)
    refuse_non_finite_text_embeddings(embeddings, f"{cache} (encoder {model_args.text_encoder})")
    return embeddings


def item_attributes_for(benchmark, kinds: list[str], script_args: ScriptArguments) -> tuple[dict, dict]:
    """``({kind: [num_items + 1] attribute ids}, summary)`` of ``--signal_attributes`` from the signals file's
    ``<kind>_cluster`` columns; ``summary`` (per kind its column, largest id and items with an id) goes into
    ``results.json``.

    Raises:
        TrainingRefused: naming the signals file, for a missing ``<kind>_cluster`` column, bad ids, an item with two
            rows, or a kind that gives fewer than ``--min_signal_coverage`` of the items an attribute id.
    """
    signals = training_signals(benchmark, script_args, f"signal attributes {', '.join(kinds)}")
    source = signals_source(script_args)
    num_items = len(benchmark.items)
    try:
        attributes = item_attribute_ids(signals, kinds, num_items, source)
    except ValueError as error:
        raise TrainingRefused(str(error)) from error
    minimum = script_args.min_signal_coverage
    summary = {}
    for kind, ids in attributes.items():
        column, covered = ATTRIBUTE_COLUMN.format(kind=kind), int((ids[1:] > 0).sum())
        if num_items and covered / num_items < minimum:
            raise TrainingRefused(
                f"{column} gives {covered} of {num_items} items an attribute id ({covered / num_items:.1%}) in "
                f"{source}, below --min_signal_coverage {minimum:g}: enrich the missing items and run `lamar "
                "attributes` again, or lower --min_signal_coverage"
            )
        summary[kind] = {"column": column, "largest_id": int(ids.max()), "items_with_id": covered}
    return attributes, {"signals": source, "kinds": summary}


def training_history_leaks(path: Path, data: RecommendationData) -> str | None:
    """Where a user signal was written from more than its user's training sequence, by the table's
    ``history_items`` (the items its prompt showed; a table without that column is not checked): None if nowhere."""
    import pyarrow.parquet as pq

    if "history_items" not in pq.read_schema(path).names:
        return None
    table = pq.read_table(path, columns=["user_id", "history_items"])
    training = {user: set(sequence) for user, sequence in zip(data.users_of("train"), data.training_sequences())}
    for user, shown in zip(table.column("user_id").to_pylist(), table.column("history_items").to_pylist()):
        if user in training and not set(shown or ()) <= training[user]:
            outside = sorted(set(shown) - training[user])
            return f"user {user}'s signal was written from item {listed(outside)}, outside its training sequence"
    return None


def user_text_embeddings_for(benchmark, data: RecommendationData, script_args: ScriptArguments, model_args,
                             training_args) -> UserTextEmbeddings:
    """The embedding of each user's ``--user_signal`` (users of ``data``, every split), by ``--text_encoder`` through
    the item-text cache; a user without a usable signal gets a zero vector. The main process embeds, the others
    read its cache.

    Raises:
        TrainingRefused: naming the file, for a missing column, a user with two rows, a signal written from items
            outside the user's training sequence, fewer than ``--min_user_signal_coverage`` of the training users
            with a usable signal, or non-finite embeddings.
    """
    path = Path(script_args.user_signals_file)
    column, minimum = script_args.user_signal, script_args.min_user_signal_coverage
    if not 0.0 <= minimum <= 1.0:
        raise TrainingRefused(f"--min_user_signal_coverage must be between 0 and 1, got {minimum}")
    try:
        texts = read_user_signals(path, column)
        leak = training_history_leaks(path, data)
    except ValueError as error:
        raise TrainingRefused(str(error)) from error
    if leak:
        raise TrainingRefused(f"{path}: {leak}; user signals must be written from the training history only "
                              "(lamar enrich_users)")
    users = list(dict.fromkeys(user for split in ("train", "validation", "test") for user in data.users_of(split)))
    cache = Path(script_args.text_embeddings_cache or default_text_embeddings_cache(benchmark.name))
    with training_args.main_process_first(desc="embedding user signals"):
        vectors = cached_text_embeddings([texts.get(user, "") for user in users], cache, model_args.text_encoder)
    refuse_non_finite_text_embeddings({f"user {column}": vectors}, f"{cache} (encoder {model_args.text_encoder})")
    training_users = data.users_of("train")
    embeddings = UserTextEmbeddings(users, vectors)
    covered, total = embeddings.coverage(training_users)
    if total and covered / total < minimum:
        raise TrainingRefused(
            f"the user signal {column!r} covers {covered} of {total} training users ({covered / total:.1%}) in {path}, "
            f"below --min_user_signal_coverage {minimum:g}: enrich the missing users (lamar enrich_users) or lower "
            "--min_user_signal_coverage"
        )
    embeddings.source = {"file": str(path), "column": column, "encoder": model_args.text_encoder,
                         "training_users": total, "training_users_with_signal": covered}
    return embeddings


def save_outputs(result: TrainingResult, script_args, model_args, training_args, data: RecommendationData,
                 extra: dict | None = None) -> dict:
    """Save the best model (with its code) and ``results.json`` (strict JSON, written whole) into the output folder;
    ``extra`` (e.g. where the attribute ids and user signals came from) joins the results.

    Raises:
        NonFiniteValue: when a result is NaN or inf; then nothing is saved.
    """
    trainer, output_dir = result.trainer, Path(training_args.output_dir)
    results = {
        "dataset": script_args.dataset,
        "dataset_revision": script_args.dataset_revision,
        "split_fingerprint": data.source.get("split_fingerprint"),  # read by publish_model for the card
        "validation": result.validation,
        "test": result.test,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "train_seconds": result.train_seconds,
        "model_args": asdict(model_args),
        "seed": training_args.seed,
        "processes": training_args.world_size,
        "train_batch_size": training_args.per_device_train_batch_size * training_args.world_size,
        "learning_rate": training_args.learning_rate,
        "repeat_score_learning_rate": training_args.repeat_score_learning_rate,
        **(extra or {}),
    }
    text = strict_json(results, str(output_dir / RESULTS_FILE))
    trainer.save_model(str(output_dir))
    if trainer.is_world_process_zero():
        partial = output_dir / f".{RESULTS_FILE}.tmp"
        partial.write_text(text)
        os.replace(partial, output_dir / RESULTS_FILE)
    return results


def publish(script_args: ScriptArguments, training_args: RecommenderTrainingArguments, results: dict) -> str:
    """Publish the saved model as version ``--hub_version`` of ``--hub_model_id``; its card's ``model-index``
    carries the test and validation metrics on ``--dataset`` at ``--dataset_revision``. Returns the revision."""
    from huggingface_hub import HfApi

    from lamar_hf.hub import publish_model

    if not training_args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id ORG/NAME")
    metrics = {split: {k: v for k, v in results[split].items() if k != "loss"} for split in ("test", "validation")}
    published = publish_model(
        training_args.output_dir,
        training_args.hub_model_id,
        script_args.hub_version,
        eval_results=metrics,
        dataset=script_args.hub_dataset_id or script_args.dataset,
        dataset_revision=script_args.dataset_revision,
        changes=script_args.hub_changes,
        api=HfApi(token=training_args.hub_token),
    )
    return published.revision


def main(script_args: ScriptArguments, model_args: ModelArguments, training_args: RecommenderTrainingArguments) -> dict:
    """Train, save and (optionally) publish one recommender; returns the results written to ``results.json``.

    Raises:
        TrainingRefused: before training, for an output folder that holds a model (without ``--overwrite``) and
            for bad signals, attribute ids, user signals or text embeddings; during training, for a non-finite loss
            or metric.
    """
    refuse_to_overwrite_a_model(training_args.output_dir, script_args.overwrite, checkpoint_to_resume(training_args))
    benchmark = load_benchmark(script_args.dataset, script_args.dataset_revision)
    data = RecommendationData.from_benchmark(benchmark, script_args.dataset_revision)
    if script_args.max_users:
        data = data.first_users(script_args.max_users)
    kinds = model_args.text_kinds()
    text_embeddings = text_embeddings_for(benchmark, kinds, script_args, model_args, training_args) if kinds else None
    extra, item_attributes, user_embeddings = {}, None, None
    if attribute_kinds(model_args):
        item_attributes, extra["item_attributes"] = item_attributes_for(benchmark, attribute_kinds(model_args),
                                                                        script_args)
    if script_args.user_signals_file:
        user_embeddings = user_text_embeddings_for(benchmark, data, script_args, model_args, training_args)
        extra["user_signals"] = user_embeddings.source
    result = train_recommender(data, model_args, training_args, text_embeddings, item_attributes=item_attributes,
                               user_embeddings=user_embeddings)
    results = save_outputs(result, script_args, model_args, training_args, data, extra)
    if result.trainer.is_world_process_zero():
        logger.info("test: %s", json.dumps({k: round(v, 4) for k, v in result.test.items()}))
        if training_args.push_to_hub:
            results["hub_revision"] = publish(script_args, training_args, results)
    return results
