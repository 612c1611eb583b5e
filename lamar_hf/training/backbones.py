"""The recommender architectures the trainer knows: how to configure each and how to feed it.

Training, evaluation and publishing are the same code for every backbone; a new one is one
:func:`register_backbone` call (plus its ``AutoConfig`` / ``AutoModel`` registration in :mod:`lamar_hf.models`).
What the trainer expects of a backbone's model:

- ``model(input_ids=..., labels=...)`` with the batches of its ``collator`` (plus ``user_embeddings``
  ``[batch, user_text_embedding_dim]`` for a model with a user token); ``labels`` is ``-100`` wherever
  nothing is predicted. It returns ``loss`` and ``logits`` ``[labelled positions, num_items + 1 (+ extra
  tokens)]`` in row-major order, ``-inf`` in every column that is not a real item (padding, a mask token).
- Its evaluation examples label exactly one position per row (the target), so that
  :func:`lamar_hf.training.rank_targets` turns each batch of logits into target ranks at once.
- Its config has ``num_items`` and ``max_history_length`` and a ``model_type`` unique to the backbone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch

from lamar_hf.models import (
    LamarBERT4RecConfig,
    LamarBERT4RecModel,
    LamarGRU4RecConfig,
    LamarGRU4RecModel,
    LamarSASRecConfig,
    LamarSASRecModel,
)

from .arguments import ModelArguments
from .data import NextItemCollator, last_item_examples, next_item_windows


# Hyper-parameters every backbone takes; each backbone adds its own. An argument left at None keeps the
# backbone's own default (its config class's), e.g. dropout 0.5 for SASRec, 0.3 for GRU4Rec, 0.2 for BERT4Rec.
COMMON_HYPERPARAMETERS = (
    "hidden_size", "num_hidden_layers", "max_history_length", "hidden_dropout_prob",
    "loss_type", "num_negatives", "negative_sharing", "negative_sampling", "gbce_t", "semantic_dims",
)
TRANSFORMER_HYPERPARAMETERS = ("num_attention_heads", "intermediate_size", "attention_dropout_prob")


@dataclass(frozen=True)
class Backbone:
    """One architecture: its config and model classes, which arguments its config takes, and which examples and
    collator train and evaluate it."""

    name: str
    config_class: type
    model_class: type
    hyperparameters: tuple[str, ...] = COMMON_HYPERPARAMETERS  # the ModelArguments fields its config takes
    train_examples: Callable = next_item_windows  # (training sequences, max_history_length) -> examples
    eval_examples: Callable = last_item_examples  # (histories, targets, max_history_length) -> examples
    collator: Callable = NextItemCollator  # () -> callable(examples) -> batch

    def make_config(
        self,
        args: ModelArguments,
        num_items: int,
        text_kinds: list[str],
        text_embedding_dim: int,
        attribute_vocab_sizes: dict[str, int] | None = None,
        user_text_embedding_dim: int = 0,
    ):
        """A ``config_class`` for ``num_items`` items fusing ``text_kinds`` (learning the item attributes of
        ``attribute_vocab_sizes``, ``{kind: number of ids}``, and reading a user token of
        ``user_text_embedding_dim`` numbers when it is not 0), with every hyper-parameter of ``hyperparameters``
        that the arguments set (not None).

        Raises:
            ValueError: for a backbone-specific argument (e.g. ``mask_prob``) set for a backbone that does not take it,
                or ``semantic_dims`` without ``fusion="semantic_nullspace"`` and item texts.
        """
        foreign = [name for name in backbone_specific_arguments()
                   if getattr(args, name) is not None and name not in self.hyperparameters]
        if foreign:
            raise ValueError(f"--{foreign[0]} does not apply to the {self.name} backbone; leave it out")
        if args.semantic_dims is not None and not (args.fusion == "semantic_nullspace" and text_kinds):
            raise ValueError("--semantic_dims applies to --fusion semantic_nullspace with item texts; leave it out")
        chosen = {name: getattr(args, name) for name in self.hyperparameters if getattr(args, name) is not None}
        return self.config_class(
            num_items=num_items,
            fusion=args.fusion if text_kinds else "none",
            text_kinds=text_kinds,
            text_embedding_dim=text_embedding_dim,
            text_encoder=args.text_encoder,
            attribute_kinds=list(attribute_vocab_sizes or {}),
            attribute_vocab_sizes=list((attribute_vocab_sizes or {}).values()),
            user_text_embedding_dim=user_text_embedding_dim,
            **chosen,
        )


BACKBONES: dict[str, Backbone] = {}


def register_backbone(backbone: Backbone) -> None:
    """Make a backbone available to ``--backbone NAME``."""
    BACKBONES[backbone.name] = backbone


def backbone_specific_arguments() -> list[str]:
    """The ``ModelArguments`` fields that default to None and that some registered backbone takes and another does
    not: set for a backbone that does not take it, such an argument is a mistake (a field with a default of its own,
    e.g. ``num_attention_heads``, is set whether or not the user gave it)."""
    taken = [set(backbone.hyperparameters) for backbone in BACKBONES.values()]
    by_some = set().union(*taken) - set.intersection(*taken)
    return [field.name for field in fields(ModelArguments) if field.default is None and field.name in by_some]


def get_backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def build_model(
    args: ModelArguments,
    num_items: int,
    text_embeddings: dict | None = None,
    item_counts=None,
    item_attributes: dict | None = None,
    user_text_embedding_dim: int = 0,
):
    """A freshly initialised model of ``args.backbone`` for ``num_items`` items, holding the text embeddings it fuses
    and, for ``--negative_sampling popularity``, the training ``item_counts`` (``[num_items + 1]``) it draws by.

    ``item_attributes`` (``{kind: integer array [num_items + 1]}``, ids ``1..size`` and 0 for none / unknown)
    become learned item attributes (``attribute_kinds``), each kind with as many ids as its largest id. With
    ``user_text_embedding_dim`` > 0 the model reads each sequence's user text embedding (``user_embeddings`` of its
    batches) as one more input token before the first item.

    Raises:
        ValueError: when a text kind the arguments ask for has no embeddings, popularity sampling has no counts, or
            the attribute ids are not valid (see ``set_item_attributes``).
    """
    backbone = get_backbone(args.backbone)
    text_kinds = args.text_kinds()
    missing = [kind for kind in text_kinds if kind not in (text_embeddings or {})]
    if missing:
        raise ValueError(f"no text embeddings for {', '.join(missing)}")
    text_embedding_dim = int(text_embeddings[text_kinds[0]].shape[1]) if text_kinds else 384
    attribute_vocab_sizes = {
        kind: max(int(torch.as_tensor(ids).max()), 1) for kind, ids in (item_attributes or {}).items()
    }
    config = backbone.make_config(
        args, num_items, text_kinds, text_embedding_dim, attribute_vocab_sizes, user_text_embedding_dim
    )
    model = backbone.model_class(config)
    if text_kinds:
        model.set_text_embeddings({kind: text_embeddings[kind] for kind in text_kinds})
    if item_attributes:
        model.set_item_attributes(item_attributes)
    if config.negative_sampling == "popularity":
        if item_counts is None:
            raise ValueError("--negative_sampling popularity needs the training item counts")
        model.set_item_counts(item_counts)
    return model


for name, config_class, model_class, own in (
    ("sasrec", LamarSASRecConfig, LamarSASRecModel,
     TRANSFORMER_HYPERPARAMETERS + ("item_dropout_prob", "position_order", "norm_first", "residual_from_norm", "hidden_act",
                                    "initialization", "repeat_bias")),
    ("gru4rec", LamarGRU4RecConfig, LamarGRU4RecModel, ("gru_hidden_size",)),
    ("bert4rec", LamarBERT4RecConfig, LamarBERT4RecModel, TRANSFORMER_HYPERPARAMETERS + ("mask_prob",)),
):
    register_backbone(Backbone(name, config_class, model_class, hyperparameters=COMMON_HYPERPARAMETERS + own))
