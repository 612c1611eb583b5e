"""Training and full-ranking evaluation of a recommender with the Hugging Face ``Trainer``.

Evaluation never holds the ``[users, items]`` score matrix: each batch's scores are reduced at once to the
rank of its target (``preprocess_logits_for_metrics``), and Recall/NDCG/MRR@K are computed from the ranks.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import SequentialSampler
from transformers import EarlyStoppingCallback, EvalPrediction, Trainer, set_seed

from lamar_hf.metrics import ranking_metrics, target_ranks

from .arguments import ModelArguments, RecommenderTrainingArguments
from .backbones import BACKBONES, Backbone, build_model, get_backbone
from .data import (
    IGNORE_INDEX,
    USER_INDEX,
    RecommendationData,
    UserEmbeddingCollator,
    UserTextEmbeddings,
    next_item_prefixes,
    next_item_windows,
)
from .guards import StopOnNonFinite
from .memory import ReleaseFreedMemory, reuse_freed_memory

logger = logging.getLogger(__name__)

# Trainer bookkeeping keys that are not metrics.
BOOKKEEPING = ("runtime", "samples_per_second", "steps_per_second", "epoch", "model_preparation_time")


def rank_targets(logits, labels):
    """``preprocess_logits_for_metrics`` hook: the 0-based full-ranking rank of each row's single target.

    ``logits`` are ``[rows, num_items + 1]`` (padding column ``-inf``); ``labels`` hold one target per row.
    """
    if isinstance(logits, tuple):
        logits = logits[0]
    scored = labels != IGNORE_INDEX
    if logits.shape[0] != labels.shape[0] or bool((scored.sum(dim=1) != 1).any()):
        raise ValueError("full-ranking evaluation needs exactly one labelled position per row")
    targets = labels.masked_fill(~scored, 0).sum(dim=1)
    return target_ranks(logits.float(), targets)


def last_position_targets(input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[rows]``: each evaluation row's target, which must be its only label, at its last real item. Raises
    ValueError for a row labelled elsewhere or more than once."""
    scored = labels != IGNORE_INDEX
    last = (input_ids != 0).sum(dim=1) - 1
    rows = torch.arange(labels.shape[0], device=labels.device)
    if bool((scored.sum(dim=1) != 1).any()) or not bool(scored[rows, last.clamp(min=0)].all()):
        raise ValueError("full-ranking evaluation needs exactly one labelled position per row, its last item")
    return labels[rows, last]


@dataclass
class RankingMetrics:
    """``compute_metrics`` hook: Recall/NDCG/MRR at every cut-off from the ranks of :func:`rank_targets`."""

    cutoffs: tuple[int, ...] = (10, 20)

    def __call__(self, prediction: EvalPrediction) -> dict[str, float]:
        ranks = prediction.predictions
        if isinstance(ranks, tuple):
            ranks = ranks[0]
        return ranking_metrics(np.asarray(ranks).reshape(-1), self.cutoffs)


def metrics_without_prefix(metrics: dict, prefix: str) -> dict[str, float]:
    """``{"test_ndcg@10": x, "test_runtime": ...}`` → ``{"ndcg@10": x, "loss": ...}``: metrics only, no prefix."""
    out = {}
    for key, value in metrics.items():
        name = key[len(prefix) + 1 :] if key.startswith(prefix + "_") else key
        if name not in BOOKKEEPING:
            out[name] = value
    return out


@contextlib.contextmanager
def item_table_fused_once(model):
    """Within the block, a text-fused model, or one with item attributes, computes its whole item table once instead
    of in every batch: while it evaluates, no weight changes. A model whose table is the embedding weight itself (no
    fusion, no attributes) is left as it is."""
    table = getattr(model, "item_table", None)
    has_attributes = getattr(table, "attribute_embeddings", None) is not None
    if getattr(table, "fusion", "none") == "none" and not has_attributes:
        yield
        return
    with torch.no_grad():
        fused = table()
    fuse = table.forward
    table.forward = lambda item_ids=None: fused if item_ids is None else fuse(item_ids)
    try:
        yield
    finally:
        del table.forward  # the class's own forward again


class RecommenderTrainer(Trainer):
    """``Trainer`` that can give a model's ``repeat_score`` (``repeat_bias=True``) a learning rate of its own
    (``args.repeat_score_learning_rate``): one scalar moves at most about the learning rate per Adam step, so at the
    rate that suits the embeddings it is still far from its optimum when early stopping ends the run."""

    def evaluation_loop(self, *args, **kwargs):
        with item_table_fused_once(self.model):
            return super().evaluation_loop(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """In training, the model's own loss. In evaluation, the full-softmax cross-entropy of the scores that
        ranking computes anyway: exact, and with no negatives drawn (a model's sampled loss, asked for with its
        labels, would gather ``[rows, num_negatives, hidden]`` item rows per batch, with 1024 negatives more than
        the ranking itself costs, and its figure would vary with the draw)."""
        if model.training or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs["labels"]
        targets = last_position_targets(inputs["input_ids"], labels)
        outputs = model(**{name: value for name, value in inputs.items() if name != "labels"})
        loss = F.cross_entropy(outputs.logits.float(), targets)
        return (loss, outputs) if return_outputs else loss

    def _get_eval_sampler(self, eval_dataset):
        # Evaluation examples come sorted by length (by_length): keep that order rather than the shuffled length
        # groups of group_by_length, whose every group still starts with a full-width batch.
        if eval_dataset is not None and self.args.world_size <= 1:
            return SequentialSampler(eval_dataset)
        return super()._get_eval_sampler(eval_dataset)

    def create_optimizer(self, *args, **kwargs):
        optimizer = super().create_optimizer(*args, **kwargs)
        learning_rate = getattr(self.args, "repeat_score_learning_rate", None)
        if learning_rate is None:
            return optimizer
        repeat_score = getattr(self.model, "repeat_score", None)
        if repeat_score is None:
            raise ValueError("--repeat_score_learning_rate needs a model with a repeat score (--repeat_bias true)")
        for group in optimizer.param_groups:
            group["params"] = [param for param in group["params"] if param is not repeat_score]
        optimizer.add_param_group({"params": [repeat_score], "lr": learning_rate, "weight_decay": 0.0})
        return optimizer


def recommender_trainer(
    model,
    backbone: Backbone,
    args: RecommenderTrainingArguments,
    train_dataset=None,
    eval_dataset=None,
    callbacks=(),
    user_embeddings: UserTextEmbeddings | None = None,
) -> Trainer:
    """A ``Trainer`` wired for full-ranking validation and early stopping on ``args.metric_for_best_model``; a
    non-finite training loss or metric stops it (:class:`~lamar_hf.training.guards.StopOnNonFinite`). With
    ``user_embeddings`` the examples carry ``user_index`` and every batch gets its ``user_embeddings``
    (:class:`~lamar_hf.training.data.UserEmbeddingCollator`).

    The Trainer itself never pushes to the Hub: the caller publishes once, with the model card, at the end. On
    glibc, the process keeps large freed blocks for reuse (:func:`~lamar_hf.training.memory.reuse_freed_memory`)
    and hands what it could not reuse back after every epoch and evaluation.
    """
    callbacks = [*callbacks, StopOnNonFinite()]
    if reuse_freed_memory():  # glibc: no page faults for the large blocks each step makes and frees
        callbacks.append(ReleaseFreedMemory())
    args = copy.copy(args)
    args.push_to_hub = False
    patience = getattr(args, "early_stopping_patience", 0)
    if train_dataset is not None and eval_dataset is not None and args.eval_strategy != "no" and patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=patience))
    collator = backbone.collator()
    if user_embeddings is not None:
        collator = UserEmbeddingCollator(collator, user_embeddings.table())
    return RecommenderTrainer(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        compute_metrics=RankingMetrics(tuple(getattr(args, "ranking_cutoffs", (10, 20)))),
        preprocess_logits_for_metrics=rank_targets,
        callbacks=callbacks,
    )


@dataclass
class TrainingResult:
    """What a training run produced: the best model, its validation and test metrics, and how training went."""

    model: object
    trainer: Trainer
    validation: dict[str, float]
    test: dict[str, float]
    epochs: float
    best_epoch: float | None
    train_seconds: float
    log_history: list[dict] = field(default_factory=list)


def best_epoch(log_history: list[dict], metric: str, greater_is_better: bool = True) -> float | None:
    """The epoch of the best ``eval_<metric>`` in a Trainer log history (the first one on ties)."""
    evaluations = [entry for entry in log_history if f"eval_{metric}" in entry]
    if not evaluations:
        return None
    sign = 1 if greater_is_better else -1
    best = max(evaluations, key=lambda entry: (sign * entry[f"eval_{metric}"], -entry.get("epoch", 0)))
    return best.get("epoch")


TRAIN_EXAMPLES = {"windows": next_item_windows, "prefixes": next_item_prefixes}


def training_examples(backbone: Backbone, args):
    """The function that builds training examples: ``--train_examples`` if given, else the backbone's own."""
    choice = getattr(args, "train_examples", None)
    if choice is None:
        return backbone.train_examples
    if choice not in TRAIN_EXAMPLES:
        raise ValueError(f"--train_examples must be one of {', '.join(TRAIN_EXAMPLES)}, got {choice!r}")
    return TRAIN_EXAMPLES[choice]


def by_length(examples: list[dict]) -> list[dict]:
    """Evaluation examples shortest first, so that each batch pads little; the metrics are means over users, which
    the order does not change."""
    return sorted(examples, key=lambda example: len(example["input_ids"]))


def attribute_kinds(model_args) -> list[str]:
    """The signal kinds of ``--signal_attributes``, in order.

    Raises:
        ValueError: for a kind named twice.
    """
    kinds = [kind.strip() for kind in (getattr(model_args, "signal_attributes", "") or "").split(",") if kind.strip()]
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"--signal_attributes names a kind twice: {','.join(kinds)}")
    return kinds


def examples_with_users(examples_per_row, user_rows: list[int]) -> list[dict]:
    """Tag the examples of each row (a list of examples per training sequence or evaluation row) with that row's
    ``user_index``."""
    return [{**example, USER_INDEX: row} for examples, row in zip(examples_per_row, user_rows, strict=True)
            for example in examples]


def user_rows_of(data: RecommendationData, split: str, user_embeddings: UserTextEmbeddings) -> list[int]:
    """The row in ``user_embeddings`` of every row of ``data``'s ``split`` (0 for a user without a signal)."""
    return user_embeddings.rows(data.users_of(split))


def training_dataset(backbone: Backbone, args, data: RecommendationData, length: int,
                     user_embeddings: UserTextEmbeddings | None = None) -> list[dict]:
    """The training examples of ``data`` (see :func:`training_examples`), each with its user's ``user_index`` when
    the model reads ``user_embeddings``."""
    build = training_examples(backbone, args)
    sequences = data.training_sequences()
    if user_embeddings is None:
        return build(sequences, length)
    # One sequence at a time, so that each example knows its user; the examples and their order are the same.
    return examples_with_users([build([sequence], length) for sequence in sequences],
                               user_rows_of(data, "train", user_embeddings))


def evaluation_dataset(backbone: Backbone, data: RecommendationData, split: str, length: int,
                       user_embeddings: UserTextEmbeddings | None = None) -> list[dict]:
    """The evaluation examples of ``split``, shortest first (:func:`by_length`), each with its user's
    ``user_index`` when the model reads ``user_embeddings``."""
    examples = backbone.eval_examples(data.histories[split], data.targets[split], length)
    if user_embeddings is not None:
        rows = user_rows_of(data, split, user_embeddings)
        if len(examples) != len(rows):
            raise ValueError(f"the {backbone.name} backbone made {len(examples)} {split} examples of {len(rows)} rows")
        examples = examples_with_users([[example] for example in examples], rows)
    return by_length(examples)


def check_user_embeddings(model, user_embeddings: UserTextEmbeddings | None) -> None:
    """Raise ValueError unless ``user_embeddings`` are given exactly when the model has a user token, of its width."""
    width = int(getattr(model.config, "user_text_embedding_dim", 0) or 0)
    if width and user_embeddings is None:
        raise ValueError(f"this model reads a user token (user_text_embedding_dim={width}): pass its users' "
                         "embeddings (--user_signals_file)")
    if not width and user_embeddings is not None:
        raise ValueError("this model reads no user token (user_text_embedding_dim=0): leave the user embeddings out")
    if width and user_embeddings.dim != width:
        raise ValueError(f"the user embeddings have {user_embeddings.dim} numbers, the model reads {width}")


def checkpoint_to_resume(args) -> str | None:
    """``--resume_from_checkpoint``: a checkpoint folder, or ``last`` for the newest whole one in the output folder
    (none there: start afresh). A checkpoint is whole once its ``trainer_state.json``, the last file the Trainer
    writes, is there: a process killed while saving leaves one without, which is passed over. Resuming continues the
    optimizer only if checkpoints keep it (``--save_only_model false``)."""
    wanted = getattr(args, "resume_from_checkpoint", None)
    if wanted != "last":
        return wanted
    if not os.path.isdir(args.output_dir):
        return None
    whole = [path for path in Path(args.output_dir).glob("checkpoint-*")
             if path.name.split("-")[-1].isdigit() and (path / "trainer_state.json").is_file()]
    return str(max(whole, key=lambda path: int(path.name.split("-")[-1]))) if whole else None


def train_recommender(
    data: RecommendationData,
    model_args: ModelArguments,
    training_args: RecommenderTrainingArguments,
    text_embeddings: dict | None = None,
    callbacks=(),
    item_attributes: dict | None = None,
    user_embeddings: UserTextEmbeddings | None = None,
) -> TrainingResult:
    """Train ``model_args.backbone`` on ``data``'s training sequences, validate by full ranking every epoch, stop
    early on the validation metric, keep the best model and evaluate it on the test split.

    ``text_embeddings`` maps each text kind the model fuses (see ``ModelArguments.text_kinds``) to its
    ``[num_items + 1, dim]`` matrix; ``item_attributes`` each kind of ``--signal_attributes`` to its
    ``[num_items + 1]`` attribute ids (:func:`~lamar_hf.training.data.item_attribute_ids`). With
    ``user_embeddings`` the model reads each example's user embedding as a user token (``data`` must carry user
    ids); without, it is the model of before.

    Raises:
        ValueError: when the attribute ids and ``--signal_attributes`` do not name the same kinds.
    """
    backbone = get_backbone(model_args.backbone)
    set_seed(training_args.seed)
    kinds = attribute_kinds(model_args)
    if sorted(kinds) != sorted(item_attributes or {}):
        raise ValueError(f"--signal_attributes asks for {', '.join(kinds) or 'none'}, but attribute ids were given "
                         f"for {', '.join(item_attributes or {}) or 'none'}")
    item_counts = data.item_counts() if model_args.negative_sampling == "popularity" else None
    model = build_model(
        model_args, data.num_items, text_embeddings, item_counts,
        item_attributes={kind: item_attributes[kind] for kind in kinds} if kinds else None,
        user_text_embedding_dim=user_embeddings.dim if user_embeddings is not None else 0,
    )
    length = model_args.max_history_length
    train_dataset = training_dataset(backbone, training_args, data, length, user_embeddings)
    validation = evaluation_dataset(backbone, data, "validation", length, user_embeddings)
    test = evaluation_dataset(backbone, data, "test", length, user_embeddings)
    logger.info(
        "training %s (%s%s%s) on %s: %d training windows, %d validation and %d test users, %d items",
        backbone.name, model.config.fusion if hasattr(model.config, "fusion") else "-",
        f", attributes {','.join(kinds)}" if kinds else "", ", user token" if user_embeddings is not None else "",
        data.name, len(train_dataset), len(validation), len(test), data.num_items,
    )
    trainer = recommender_trainer(model, backbone, training_args, train_dataset, validation, callbacks,
                                  user_embeddings=user_embeddings)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint_to_resume(training_args))
    train_seconds = time.perf_counter() - started
    trainer.remove_callback(EarlyStoppingCallback)  # the final evaluations are not part of early stopping
    validation_metrics = metrics_without_prefix(trainer.evaluate(validation, metric_key_prefix="eval"), "eval")
    test_metrics = metrics_without_prefix(trainer.evaluate(test, metric_key_prefix="test"), "test")
    history = list(trainer.state.log_history)
    return TrainingResult(
        model=trainer.model,
        trainer=trainer,
        validation=validation_metrics,
        test=test_metrics,
        epochs=float(trainer.state.epoch or 0),
        best_epoch=best_epoch(history, training_args.metric_for_best_model, training_args.greater_is_better),
        train_seconds=train_seconds,
        log_history=history,
    )


def backbone_of(model) -> Backbone:
    """The backbone a model belongs to, by its config's ``model_type`` (also for models loaded as remote code)."""
    model_type = getattr(model.config, "model_type", None)
    for backbone in BACKBONES.values():
        if backbone.config_class.model_type == model_type:
            return backbone
    raise ValueError(f"no backbone knows model_type {model_type!r} (known: {', '.join(BACKBONES)})")


def evaluate_recommender(
    model,
    data: RecommendationData,
    split: str = "test",
    batch_size: int = 256,
    cutoffs=(10, 20),
    use_cpu: bool | None = None,
    user_embeddings: UserTextEmbeddings | None = None,
) -> dict[str, float]:
    """Full-ranking Recall/NDCG/MRR@K (and the loss) of a trained model on one split of ``data``; a model with a
    user token reads each row's user in ``user_embeddings``.

    Raises:
        ValueError: for an unknown split, data whose item count differs from the model's, or user embeddings
            missing for a model with a user token (or given to one without).
    """
    if split not in data.histories:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(data.histories)}")
    num_items = getattr(model.config, "num_items", data.num_items)
    if num_items != data.num_items:
        raise ValueError(f"the model knows {num_items} items, the data has {data.num_items}")
    check_user_embeddings(model, user_embeddings)
    backbone = backbone_of(model)
    length = getattr(model.config, "max_history_length", 50)
    examples = evaluation_dataset(backbone, data, split, length, user_embeddings)
    with tempfile.TemporaryDirectory() as scratch:
        extra = {} if use_cpu is None else {"use_cpu": use_cpu}
        args = RecommenderTrainingArguments(
            output_dir=scratch, eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
            per_device_eval_batch_size=batch_size, ranking_cutoffs=list(cutoffs), disable_tqdm=True, **extra,
        )
        trainer = recommender_trainer(model, backbone, args, user_embeddings=user_embeddings)
        return metrics_without_prefix(trainer.evaluate(examples, metric_key_prefix=split), split)
