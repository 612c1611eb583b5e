"""Dataset, model and adapter cards: YAML metadata the Hub and the libraries read, and prose for people.

The enriched-dataset template lives in ``dataset_cards/`` at the top of the repository (with the
upstream sources and their citations); the model and adapter templates ship inside the package.
All three are Jinja templates rendered by ``huggingface_hub``'s ``RepoCard.from_template``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from .loading import is_local_path

logger = logging.getLogger(__name__)

# The repository's top-level dataset_cards/ in a source checkout; the copy that setup.py puts in a wheel otherwise.
_PACKAGED_DATASET_CARDS = Path(__file__).resolve().parents[1] / "dataset_cards"
DATASET_CARDS_DIR = (_PACKAGED_DATASET_CARDS if _PACKAGED_DATASET_CARDS.is_dir()
                     else Path(__file__).resolve().parents[2] / "dataset_cards")
ENRICHED_DATASET_TEMPLATE = DATASET_CARDS_DIR / "enriched_dataset.md"
UPSTREAM_SOURCES = DATASET_CARDS_DIR / "upstream_sources.json"
PACKAGE_TEMPLATES = Path(__file__).resolve().parent / "templates"

LAMAR_CITATION = """@misc{valizadeh2025lamar,
  title = {Language Models as Semantic Augmenters for Sequential Recommenders},
  author = {Valizadeh and Dong and Tuo and Caverlee},
  year = {2025},
  eprint = {2510.18046},
  archivePrefix = {arXiv},
  url = {https://arxiv.org/abs/2510.18046}
}"""

# What each default signal of DESIGN.md says about an item (other signals are described by the caller).
SIGNAL_DESCRIPTIONS = {
    "scenario": "a usage scenario: the situation in which someone would use the item",
    "intent": "the item intent: the need or goal that leads a customer to choose it",
    "topic": "a topical summary: what the item is about, in a few words",
}

DATASET_TAGS = ["recommendation", "sequential-recommendation", "llm-generated", "semantic-signals", "lamar"]
MODEL_TAGS = ["recommendation", "sequential-recommendation", "lamar", "custom_code"]
# What the card says each backbone is (by its config's model_type).
BACKBONE_DESCRIPTIONS = {
    "lamar_sasrec": "a SASRec-style causal self-attention model",
    "lamar_gru4rec": "a GRU4Rec-style recurrent (GRU) model",
    "lamar_bert4rec": "a BERT4Rec-style bidirectional self-attention model, trained by masked-item prediction,",
}
ADAPTER_TAGS = ["lora", "peft", "lamar", "semantic-signals", "text-generation"]

# Hub task ids (huggingface.js pipelines.ts): the Hub has no recommendation task, so the model-index says "other"
# and names the task in words.
RECOMMENDATION_TASK = "other"
DATASET_TASKS = ["text-generation", "feature-extraction"]

# Trainer bookkeeping that is not an evaluation result.
NOT_METRICS = {"runtime", "samples_per_second", "steps_per_second", "epoch"}


def upstream_source(benchmark_name: str) -> dict:
    """The upstream description, terms and citations of a benchmark, from ``dataset_cards/upstream_sources.json``."""
    sources = json.loads(UPSTREAM_SOURCES.read_text(encoding="utf-8"))
    if benchmark_name in sources:
        return sources[benchmark_name]
    if benchmark_name.startswith("amazon_"):
        return sources["amazon_2014"]
    return sources["default"]


def hub_dataset_id(dataset: str | None) -> str | None:
    """``dataset`` when it can be a Hub dataset id; ``None`` for a local path (cards name datasets by Hub id only)."""
    if not dataset:
        return None
    try:
        validate_repo_id(dataset)
        valid = not is_local_path(dataset)
    except HFValidationError:
        valid = False
    if not valid:
        logger.warning("%s is a local path, not a Hub dataset id: the card does not name it (give the Hub id, "
                       "--dataset ORG/NAME)", dataset)
        return None
    return dataset


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` bucket for a number of rows (``1K<n<10K`` ...)."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    return next((label for bound, label in bounds if rows < bound), "n>1T" if rows > 10**12 else "1B<n<10B")


def table_cell(value) -> str:
    """A value as one Markdown table cell (numbers rounded, structures as JSON, pipes escaped)."""
    if isinstance(value, float):
        text = "nan" if math.isnan(value) else f"{value:.4g}"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def analysis_table(analysis: dict | None) -> tuple[list[str], list[list[str]]]:
    """Header and rows for the signal-analysis figures.

    ``{signal: {figure: value}}`` gives one row per signal and one column per figure; a flat
    ``{figure: value}`` gives one row per figure.
    """
    if not analysis:
        return [], []
    if all(isinstance(value, dict) for value in analysis.values()):
        figures = list(dict.fromkeys(name for values in analysis.values() for name in values))
        rows = [[f"`{signal}`", *(table_cell(values.get(name, "")) for name in figures)] for signal, values in analysis.items()]
        return ["signal", *figures], rows
    return ["figure", "value"], [[str(name), table_cell(value)] for name, value in analysis.items()]


def dataset_card(
    *,
    repo_id: str,
    version: str,
    date: str,
    lamar_hf_version: str,
    benchmark_name: str,
    pretty_name: str | None,
    configs: dict[str, dict[str, dict]],
    default_config: str,
    statistics: dict,
    signals: dict[str, str],
    generation: dict[str, str],
    status_counts: dict[str, int],
    analysis: dict | None,
    changelog: list[dict],
    dataset_info_yaml: list[dict],
    license: str | None = None,
    split_fingerprint: str | None = None,
) -> DatasetCard:
    """Render the enriched-dataset card.

    ``configs`` maps each config to its splits, each ``{"path": ..., "rows": ..., "columns": [...]}``;
    ``signals`` maps each signal column to what it says; ``generation`` the provenance settings;
    ``split_fingerprint`` (``sha256:<hex>`` over the three sequence splits, when the benchmark records it).
    """
    upstream = upstream_source(benchmark_name)
    pretty_name = pretty_name or f"{upstream.get('pretty_name', benchmark_name)} enriched with LaMAR semantic signals"
    max_rows = max(split["rows"] for splits in configs.values() for split in splits.values())
    card_data = DatasetCardData(
        pretty_name=pretty_name,
        license=license or upstream["license"],
        license_name=None if license else upstream.get("license_name"),
        license_link=None if license else upstream.get("license_link"),
        language=upstream.get("language", ["en"]),
        task_categories=DATASET_TASKS,
        size_categories=[size_category(max_rows)],
        source_datasets=upstream["source_datasets"],
        annotations_creators=["machine-generated"],
        language_creators=["found", "machine-generated"],
        multilinguality=["monolingual"],
        tags=DATASET_TAGS,
        configs=[
            {
                "config_name": config,
                **({"default": True} if config == default_config else {}),
                "data_files": [{"split": split, "path": info["path"]} for split, info in splits.items()],
            }
            for config, splits in configs.items()
        ],
        dataset_info=dataset_info_yaml,
    )
    header, rows = analysis_table(analysis)
    return DatasetCard.from_template(
        card_data,
        template_path=str(ENRICHED_DATASET_TEMPLATE),
        repo_id=repo_id,
        version=version,
        date=date,
        lamar_hf_version=lamar_hf_version,
        upstream=upstream,
        signal_names=[f"`{name}`" for name in signals],
        signals=[{"name": name, "description": table_cell(text)} for name, text in signals.items()],
        config_rows=[
            {"config": config, "split": split, "rows": info["rows"], "columns": ", ".join(f"`{c}`" for c in info["columns"])}
            for config, splits in configs.items()
            for split, info in splits.items()
        ],
        statistics=statistics,
        split_fingerprint=split_fingerprint,
        generation_rows=[{"name": table_cell(name), "value": table_cell(value)} for name, value in generation.items()],
        status_rows=[{"status": status, "count": count} for status, count in status_counts.items()],
        analysis_header=header,
        analysis_rows=rows,
        lamar_citation=LAMAR_CITATION,
        changelog=changelog,
    )


def eval_results(
    results: dict | None,
    *,
    task_type: str,
    task_name: str,
    dataset_type: str,
    dataset_name: str,
    dataset_config: str | None = None,
    dataset_revision: str | None = None,
    split: str = "test",
) -> list[EvalResult]:
    """``model-index`` entries from ``{metric: value}`` or ``{split: {metric: value}}``.

    Trainer-style keys (``eval_ndcg@10``, ``test_recall@10``) lose their prefix, and bookkeeping such as
    ``eval_runtime`` is left out.
    """
    if not results:
        return []
    by_split = results if all(isinstance(v, dict) for v in results.values()) else {split: results}
    entries = []
    for split_name, metrics in by_split.items():
        for key, value in metrics.items():
            name = key.split("_", 1)[1] if key.startswith(("eval_", "test_")) else key
            if name in NOT_METRICS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            entries.append(
                EvalResult(
                    task_type=task_type,
                    task_name=task_name,
                    dataset_type=dataset_type,
                    dataset_name=dataset_name,
                    dataset_config=dataset_config,
                    dataset_split=split_name,
                    dataset_revision=dataset_revision,
                    metric_type=name.lower(),
                    metric_name=name,
                    metric_value=float(value),
                )
            )
    return entries


def model_card(
    *,
    repo_id: str,
    version: str,
    date: str,
    lamar_hf_version: str,
    model_type: str,
    config: dict,
    num_parameters: int | None,
    results: list[EvalResult],
    dataset: str | None,
    dataset_revision: str | None,
    changelog: list[dict],
    license: str = "apache-2.0",
    split_fingerprint: str | None = None,
) -> ModelCard:
    """Render the card of a recommender: ``model-index`` carries its evaluation results.

    ``dataset`` must be a Hub dataset id (see :func:`hub_dataset_id`); without one the results are shown in the
    text only, since a ``model-index`` entry names its dataset. ``split_fingerprint`` identifies the sequence
    splits the model was trained and evaluated on.
    """
    card_data = ModelCardData(
        model_name=repo_id.split("/")[-1],
        library_name="transformers",
        license=license,
        tags=MODEL_TAGS + [model_type.removeprefix("lamar_")],
        datasets=[dataset] if dataset else None,
        eval_results=(results or None) if dataset else None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(PACKAGE_TEMPLATES / "model_card.md"),
        repo_id=repo_id,
        title=repo_id.split("/")[-1],
        version=version,
        date=date,
        lamar_hf_version=lamar_hf_version,
        model_type=model_type,
        backbone_description=BACKBONE_DESCRIPTIONS.get(model_type, "a sequential recommender"),
        config_rows=[{"name": k, "value": table_cell(v)} for k, v in config.items()],
        num_parameters=num_parameters,
        results=[{"split": r.dataset_split, "metric": r.metric_name, "value": table_cell(r.metric_value)} for r in results],
        dataset=dataset,
        dataset_revision=dataset_revision,
        split_fingerprint=split_fingerprint,
        lamar_citation=LAMAR_CITATION,
        changelog=changelog,
    )


def adapter_card(
    *,
    repo_id: str,
    version: str,
    date: str,
    lamar_hf_version: str,
    base_model: str | None,
    adapter_config: dict,
    results: list[EvalResult],
    dataset: str | None,
    changelog: list[dict],
    license: str = "apache-2.0",
) -> ModelCard:
    """Render the card of a LoRA signal-generator adapter (``library_name: peft``, ``base_model``); ``dataset`` is a Hub
    dataset id or ``None``, as for :func:`model_card`."""
    card_data = ModelCardData(
        model_name=repo_id.split("/")[-1],
        library_name="peft",
        base_model=base_model,
        pipeline_tag="text-generation",
        license=license,
        tags=ADAPTER_TAGS,
        datasets=[dataset] if dataset else None,
        eval_results=(results or None) if dataset else None,
    )
    shown = ("peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "target_modules", "bias")
    return ModelCard.from_template(
        card_data,
        template_path=str(PACKAGE_TEMPLATES / "adapter_card.md"),
        repo_id=repo_id,
        title=repo_id.split("/")[-1],
        version=version,
        date=date,
        lamar_hf_version=lamar_hf_version,
        base_model=base_model,
        config_rows=[{"name": k, "value": table_cell(adapter_config[k])} for k in shown if k in adapter_config],
        results=[{"split": r.dataset_split, "metric": r.metric_name, "value": table_cell(r.metric_value)} for r in results],
        dataset=dataset,
        lamar_citation=LAMAR_CITATION,
        changelog=changelog,
    )
