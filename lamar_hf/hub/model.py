"""Publish a recommender (a ``PreTrainedModel`` with its remote code) or a LoRA adapter as a versioned Hub model."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCard

from .. import __version__
from . import cards
from .loading import ModelLoadError, check_model_weights
from .release import MANIFEST, REPO_ID_PATTERN, PublishError, PublishResult, Release, RepoHistory, publish

logger = logging.getLogger(__name__)

# Files a training run leaves beside the model that do not belong in a release.
TRAINING_LEFTOVERS = re.compile(
    r"README\.md|training_args\.bin|trainer_state\.json|optimizer\.pt|scheduler\.pt|scaler\.pt|rng_state.*\.pth"
)
MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# transformers' own bookkeeping in config.json, left off the card.
GENERIC_CONFIG_KEYS = {"architectures", "auto_map", "model_type", "torch_dtype", "dtype", "transformers_version"}


def copy_release_files(folder: Path, stage: Path) -> None:
    """Copy the top-level files of a saved model folder, leaving out checkpoints and trainer state; its weights
    must read (a truncated or corrupt ``*.safetensors`` is refused by its path)."""
    if not folder.is_dir():
        raise PublishError(f"model folder not found: {folder}")
    try:
        check_model_weights(folder)
    except ModelLoadError as error:
        raise PublishError(str(error)) from None
    skipped = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and not TRAINING_LEFTOVERS.fullmatch(path.name):
            shutil.copy2(path, stage / path.name)
        else:
            skipped.append(path.name)
    if skipped:
        logger.info("not published from %s: %s", folder, ", ".join(skipped))


def read_config(stage: Path, name: str, folder) -> dict:
    path = stage / name
    if not path.is_file():
        raise PublishError(f"{folder}: no {name}; save the model with save_pretrained first")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PublishError(f"{folder}/{name}: not valid JSON ({error})") from None


def check_remote_code(stage: Path, config: dict, folder) -> None:
    """A model whose type transformers does not know must carry its code: ``auto_map`` and its modules."""
    from transformers import CONFIG_MAPPING
    from transformers.dynamic_module_utils import get_relative_imports

    auto_map = config.get("auto_map") or {}
    if not auto_map and config.get("model_type") not in CONFIG_MAPPING:
        raise PublishError(
            f"{folder}/config.json: model_type {config.get('model_type')!r} is not part of transformers and there is no "
            "auto_map; call register_for_auto_class() on the config and model classes before save_pretrained so that "
            "AutoModel.from_pretrained(..., trust_remote_code=True) can load it"
        )
    needed = {reference.split("--")[-1].rsplit(".", 1)[0] + ".py" for reference in auto_map.values() if isinstance(reference, str)}
    for module in sorted(needed):
        if not (stage / module).is_file():
            raise PublishError(f"{folder}: config.json's auto_map needs {module}, which is not in the folder")
        for imported in get_relative_imports(str(stage / module)):
            if not (stage / f"{imported}.py").is_file():
                raise PublishError(f"{folder}/{module} imports .{imported}, which is not in the folder")


def count_parameters(stage: Path) -> int | None:
    """Parameters (and buffers) stored in the safetensors weights, or None for other formats."""
    from safetensors import safe_open

    total, files = 0, sorted(stage.glob("*.safetensors"))
    for file in files:
        with safe_open(str(file), framework="pt") as weights:
            for key in weights.keys():
                total += math.prod(weights.get_slice(key).get_shape())
    return total if files else None


def eval_results_from_card(folder: Path) -> list[EvalResult]:
    """The ``model-index`` results of a card the training run left in the folder (none if absent or unreadable)."""
    readme = folder / "README.md"
    if not readme.is_file():
        return []
    try:
        return ModelCard.load(readme).data.eval_results or []
    except ValueError as error:
        logger.warning("ignoring %s: its metadata does not parse (%s)", readme, error)
        return []


def split_fingerprint_from_results(folder: Path) -> str | None:
    """The ``split_fingerprint`` that ``results.json`` of a training run records (top level or in its data
    ``source``), or ``None``."""
    path = folder / "results.json"
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PublishError(f"{path}: not valid JSON ({error})") from None
    source = results.get("source") if isinstance(results.get("source"), dict) else {}
    return results.get("split_fingerprint") or source.get("split_fingerprint")


def config_summary(config: dict) -> dict:
    """The model's own hyper-parameters (scalars and short lists) for the card."""
    return {
        key: value for key, value in config.items()
        if key not in GENERIC_CONFIG_KEYS and not key.startswith("_")
        and (isinstance(value, (int, float, str, bool)) or (isinstance(value, list) and len(value) <= 8))
    }


def write_model_tree(
    stage: Path,
    model,
    release: Release,
    history: RepoHistory,
    *,
    eval_results: dict | None = None,
    dataset: str | None = None,
    dataset_revision: str | None = None,
    license: str = "apache-2.0",
    split_fingerprint: str | None = None,
) -> None:
    """Write a recommender's repository tree: weights, config.json with ``auto_map``, its code, README.md, manifest.

    Without ``eval_results``, the results in the ``model-index`` of a card found in the model folder (as the
    training script writes it) are carried over; without ``split_fingerprint``, the one its ``results.json``
    records. A ``dataset`` that is a local path is left off the card (see :func:`cards.hub_dataset_id`).
    """
    folder = getattr(model, "name_or_path", None) or "model"
    carried: list[EvalResult] = []
    if isinstance(model, (str, Path)):
        folder = Path(model)
        copy_release_files(folder, stage)
        carried = [] if eval_results else eval_results_from_card(folder)
        split_fingerprint = split_fingerprint or split_fingerprint_from_results(folder)
    else:
        model.save_pretrained(stage)
    config = read_config(stage, "config.json", folder)
    if not any((stage / name).is_file() for name in MODEL_WEIGHTS):
        raise PublishError(f"{folder}: no weights ({', '.join(MODEL_WEIGHTS)})")
    check_remote_code(stage, config, folder)
    if carried:
        # "unknown" is the placeholder older cards wrote when no dataset was given.
        dataset = dataset or (carried[0].dataset_type if carried[0].dataset_type != "unknown" else None)
        dataset_revision = dataset_revision or carried[0].dataset_revision
        eval_results = {}
        for result in carried:
            eval_results.setdefault(result.dataset_split or "test", {})[result.metric_type] = result.metric_value
    dataset = cards.hub_dataset_id(dataset)
    if eval_results and not dataset:
        logger.warning("the evaluation results are shown in the card's text but not in its model-index, which needs "
                       "the Hub id of the dataset (--dataset ORG/NAME)")
    results = cards.eval_results(
        eval_results,
        task_type=cards.RECOMMENDATION_TASK,
        task_name="Sequential recommendation (next item, full ranking)",
        dataset_type=dataset or "unknown",
        dataset_name=dataset or "unknown",
        dataset_config="sequences",
        dataset_revision=dataset_revision,
    )
    card = cards.model_card(
        repo_id=release.repo_id, version=release.version, date=release.date, lamar_hf_version=__version__,
        model_type=config.get("model_type", "unknown"), config=config_summary(config),
        num_parameters=count_parameters(stage), results=results, dataset=dataset,
        dataset_revision=dataset_revision, changelog=release.changelog(history), license=license,
        split_fingerprint=split_fingerprint,
    )
    card.save(stage / "README.md")
    manifest = release.manifest(
        "model", history, model_type=config.get("model_type"), dataset=dataset,
        dataset_revision=dataset_revision, split_fingerprint=split_fingerprint, eval_results=eval_results,
    )
    (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def write_adapter_tree(
    stage: Path,
    adapter,
    release: Release,
    history: RepoHistory,
    *,
    base_model: str | None = None,
    eval_results: dict | None = None,
    dataset: str | None = None,
    license: str = "apache-2.0",
) -> None:
    """Write a LoRA adapter's repository tree: adapter weights, adapter_config.json naming a Hub base model, card."""
    folder = adapter if isinstance(adapter, (str, Path)) else "adapter"
    if isinstance(adapter, (str, Path)):
        copy_release_files(Path(adapter), stage)
    else:
        adapter.save_pretrained(stage)
        (stage / "README.md").unlink(missing_ok=True)  # peft's generic card; ours replaces it
    config = read_config(stage, "adapter_config.json", folder)
    if not any((stage / name).is_file() for name in ADAPTER_WEIGHTS):
        raise PublishError(f"{folder}: no adapter weights ({', '.join(ADAPTER_WEIGHTS)})")
    base_model = base_model or config.get("base_model_name_or_path")
    if not base_model or not REPO_ID_PATTERN.fullmatch(base_model) or os.path.isabs(base_model) or Path(base_model).exists():
        raise PublishError(
            f"{folder}/adapter_config.json names the base model {base_model!r}, which users cannot download; "
            "give its Hub id with --base-model (base_model=...)"
        )
    if config.get("base_model_name_or_path") != base_model:
        config["base_model_name_or_path"] = base_model  # so that AutoPeftModel finds the base on the Hub
        (stage / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    dataset = cards.hub_dataset_id(dataset)
    results = cards.eval_results(
        eval_results, task_type="text-generation", task_name="Semantic signal generation",
        dataset_type=dataset or "unknown", dataset_name=dataset or "unknown", split="validation",
    )
    card = cards.adapter_card(
        repo_id=release.repo_id, version=release.version, date=release.date, lamar_hf_version=__version__,
        base_model=base_model, adapter_config=config, results=results, dataset=dataset,
        changelog=release.changelog(history), license=license,
    )
    card.save(stage / "README.md")
    manifest = release.manifest("adapter", history, base_model=base_model, dataset=dataset, eval_results=eval_results)
    (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def publish_model(
    model,
    repo_id: str,
    version: str,
    *,
    eval_results: dict | None = None,
    dataset: str | None = None,
    dataset_revision: str | None = None,
    split_fingerprint: str | None = None,
    changes: str = "",
    license: str = "apache-2.0",
    dry_run: str | Path | None = None,
    api: HfApi | None = None,
) -> PublishResult:
    """Publish a recommender as version ``version`` of the model ``repo_id``.

    ``model`` is a ``PreTrainedModel`` or a folder written by ``save_pretrained``. Its ``config.json`` must carry
    ``auto_map`` (and the folder the code it names) unless transformers knows its type, so that users load it with
    ``AutoModel.from_pretrained(repo_id, trust_remote_code=True, revision=version)``. ``eval_results``
    (``{metric: value}`` or ``{split: {metric: value}}``) go into the card's ``model-index``, measured on
    ``dataset`` (a Hub dataset id; a local path is left off the card) at ``dataset_revision``. ``split_fingerprint``
    (default: the one the folder's ``results.json`` records) is stated on the card. An existing version is refused
    before anything is pushed.
    """
    release = Release(repo_id, "model", version, changes)

    def build(stage: Path, history: RepoHistory) -> None:
        write_model_tree(stage, model, release, history, eval_results=eval_results, dataset=dataset,
                         dataset_revision=dataset_revision, license=license, split_fingerprint=split_fingerprint)

    return publish(release, build, dry_run=dry_run, api=api)


def publish_adapter(
    adapter,
    repo_id: str,
    version: str,
    *,
    base_model: str | None = None,
    eval_results: dict | None = None,
    dataset: str | None = None,
    changes: str = "",
    license: str = "apache-2.0",
    dry_run: str | Path | None = None,
    api: HfApi | None = None,
) -> PublishResult:
    """Publish a LoRA adapter (a ``PeftModel`` or a folder written by its ``save_pretrained``) as a versioned model.

    ``base_model`` is the Hub id of the model the adapter applies to (default: ``base_model_name_or_path`` of
    ``adapter_config.json``, which must then be a Hub id). Users load it with
    ``PeftModel.from_pretrained(base, repo_id, revision=version)``.
    """
    release = Release(repo_id, "model", version, changes)

    def build(stage: Path, history: RepoHistory) -> None:
        write_adapter_tree(stage, adapter, release, history, base_model=base_model, eval_results=eval_results,
                           dataset=dataset, license=license)

    return publish(release, build, dry_run=dry_run, api=api)
