"""Checks that stop a training run rather than let it be wrong: an output folder that already holds a model,
signals that cover too few items or name an item twice, non-finite text embeddings, losses or metrics, and a
``results.json`` that would not be strict JSON. Each failure is a :class:`TrainingRefused` with a one-line message
naming what is wrong, where, and what to do."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
from transformers import TrainerCallback

from lamar_hf.text_embeddings import item_texts

# What a finished (or checkpointed) run leaves in its output folder.
MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "results.json")
CHECKPOINT_PREFIX = "checkpoint-"
# How many item ids an error message lists before "and N more".
SHOWN_IDS = 10


class TrainingRefused(ValueError):
    """A training run that would overwrite a model or run on wrong data; the message is one line."""


class NonFiniteValue(TrainingRefused):
    """A NaN or infinite text embedding, loss or metric."""


def listed(values, shown: int = SHOWN_IDS) -> str:
    """``"3, 5, 8"`` or ``"3, 5, ... and 12 more"``."""
    values = list(values)
    text = ", ".join(str(value) for value in values[:shown])
    return text + (f" and {len(values) - shown} more" if len(values) > shown else "")


def model_files_in(folder) -> list[str]:
    """The model files and checkpoint folders of a training run inside ``folder`` (none if it does not exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [name for name in MODEL_FILES if (folder / name).exists()]
    found += sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX))
    return found


def refuse_to_overwrite_a_model(output_dir, overwrite: bool, resume_checkpoint: str | None = None) -> None:
    """Raise unless ``output_dir`` holds no model, ``overwrite`` is set, or the run resumes from a checkpoint
    inside ``output_dir`` (continuing a run in its own folder is what resuming means).

    Raises:
        TrainingRefused: naming the folder, what it holds and ``--overwrite``.
    """
    if overwrite:
        return
    output_dir = Path(output_dir).resolve()
    if resume_checkpoint and output_dir in Path(resume_checkpoint).resolve().parents:
        return
    found = model_files_in(output_dir)
    if found:
        resume = any(name.startswith(CHECKPOINT_PREFIX) for name in found)
        raise TrainingRefused(
            f"{output_dir} already holds a model ({listed(found, 5)}); pass --overwrite to replace it, "
            + ("--resume_from_checkpoint last to continue it, " if resume else "")
            + "or choose another --output_dir"
        )


def refuse_duplicate_signal_rows(signals, source: str) -> None:
    """Raise if an item has more than one row in ``signals`` (a dataset, table or list of rows with ``item_id``).

    Raises:
        TrainingRefused: naming ``source`` and the duplicated item ids.
    """
    counts = Counter(signal_item_ids(signals))
    duplicated = sorted(item_id for item_id, count in counts.items() if count > 1)
    if duplicated:
        raise TrainingRefused(
            f"{source}: item_id {listed(duplicated)} appear in more than one signals row ({len(duplicated)} items); "
            "a signals file holds one row per item"
        )


def signal_item_ids(signals) -> list[int]:
    """The ``item_id`` column of a signals dataset, pyarrow table or list of row dicts."""
    if hasattr(signals, "column_names") and hasattr(signals, "column"):  # pyarrow.Table
        return signals.column("item_id").to_pylist()
    if hasattr(signals, "column_names"):  # datasets.Dataset
        return list(signals["item_id"])
    return [row["item_id"] for row in signals]


def signal_coverage(items, kinds, signals) -> dict[str, tuple[int, int]]:
    """``{kind: (items with a usable text of that kind, all items)}``: the rows :func:`item_texts` would embed."""
    # As rows once, rather than once per kind inside item_texts.
    items = items.to_list() if hasattr(items, "to_list") else list(items)
    signals = signals.to_pylist() if hasattr(signals, "to_pylist") else (
        signals.to_list() if hasattr(signals, "to_list") else list(signals)
    )
    coverage = {}
    for kind in kinds:
        texts = item_texts(items, kind, signals)[1:]
        coverage[kind] = (sum(1 for text in texts if text), len(texts))
    return coverage


def refuse_low_signal_coverage(items, kinds, signals, minimum: float, source: str, dataset: str) -> None:
    """Raise if a signal in ``kinds`` has a usable row for fewer than ``minimum`` (a fraction) of the items.

    Raises:
        TrainingRefused: naming the coverage, ``source`` and the fix.
    """
    if not 0.0 <= minimum <= 1.0:
        raise TrainingRefused(f"--min_signal_coverage must be between 0 and 1, got {minimum}")
    coverage = signal_coverage(items, kinds, signals)
    kind, (covered, total) = min(coverage.items(), key=lambda entry: entry[1][0] / max(entry[1][1], 1))
    if total and covered / total < minimum:
        raise TrainingRefused(
            f"the {kind} signal covers {covered} of {total} items ({covered / total:.1%}) in {source}, below "
            f"--min_signal_coverage {minimum:g}: enrich the missing items (lamar enrich --items {dataset} --out ...) "
            "or lower --min_signal_coverage"
        )


def refuse_non_finite_text_embeddings(embeddings: dict, source: str) -> None:
    """Raise if a ``[num_items + 1, dim]`` text-embedding matrix holds NaN or inf.

    Raises:
        NonFiniteValue: naming the text kind, the item ids and ``source``.
    """
    for kind, matrix in embeddings.items():
        bad_rows = np.flatnonzero(~np.isfinite(np.asarray(matrix)).all(axis=1))
        if bad_rows.size:
            raise NonFiniteValue(
                f"the {kind} text embeddings hold NaN or inf for {bad_rows.size} items (item_id {listed(bad_rows)}) "
                f"in {source}; nothing was trained"
            )


def non_finite_fields(value, path: str = "") -> list[str]:
    """The dotted paths of every NaN / inf float inside nested dicts and lists."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [path or "(value)"]
    if isinstance(value, dict):
        return [bad for key, item in value.items() for bad in non_finite_fields(item, f"{path}.{key}" if path else str(key))]
    if isinstance(value, (list, tuple)):
        return [bad for index, item in enumerate(value) for bad in non_finite_fields(item, f"{path}[{index}]")]
    return []


def strict_json(results: dict, where: str) -> str:
    """``results`` as strict JSON text (no ``NaN`` / ``Infinity``), indented.

    Raises:
        NonFiniteValue: naming the non-finite fields and ``where`` they were to be written.
    """
    bad = non_finite_fields(results)
    if bad:
        raise NonFiniteValue(f"{where} would hold non-finite values ({listed(bad, 5)}); nothing was saved")
    return json.dumps(results, indent=2, allow_nan=False) + "\n"


class StopOnNonFinite(TrainerCallback):
    """Stops training at the first logged non-finite training loss and at any non-finite evaluation metric, before
    the Trainer saves a checkpoint of it (it logs and evaluates before it saves).

    The Trainer's ``logging_nan_inf_filter`` (off in ``RecommenderTrainingArguments``) would hide non-finite losses
    from the log."""

    def __init__(self):
        self.last_logged_step = 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "train_loss"):
            value = (logs or {}).get(key)
            if isinstance(value, float) and not math.isfinite(value):
                raise NonFiniteValue(
                    f"the training loss is {value} at epoch {state.epoch:g} (steps {self.last_logged_step + 1}-"
                    f"{state.global_step}); training stopped, nothing of it saved in {args.output_dir}: check the "
                    "text embeddings and lower --learning_rate"
                )
        self.last_logged_step = state.global_step

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        bad = [key for key, value in (metrics or {}).items() if isinstance(value, float) and not math.isfinite(value)]
        if bad:
            during_training = f" at epoch {state.epoch:g} (step {state.global_step}); training stopped before " \
                "saving it" if state.epoch else ""
            raise NonFiniteValue(
                f"evaluation gave non-finite {listed(bad, 5)}: the model's outputs are not finite{during_training}"
            )
