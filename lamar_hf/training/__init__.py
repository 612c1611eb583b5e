"""Training and evaluating recommenders with the Hugging Face ``Trainer`` (used by ``training/train.py``,
``lamar train``, ``lamar evaluate`` and the benchmarks)."""

from .arguments import ModelArguments, RecommenderTrainingArguments
from .backbones import BACKBONES, Backbone, build_model, get_backbone, register_backbone
from .data import (
    NextItemCollator,
    RecommendationData,
    UserEmbeddingCollator,
    UserTextEmbeddings,
    item_attribute_ids,
    last_item_examples,
    next_item_prefixes,
    next_item_windows,
)
from .trainer import (
    RankingMetrics,
    TrainingResult,
    evaluate_recommender,
    rank_targets,
    recommender_trainer,
    train_recommender,
)

__all__ = [
    "BACKBONES",
    "Backbone",
    "ModelArguments",
    "NextItemCollator",
    "RankingMetrics",
    "RecommendationData",
    "RecommenderTrainingArguments",
    "TrainingResult",
    "UserEmbeddingCollator",
    "UserTextEmbeddings",
    "build_model",
    "evaluate_recommender",
    "get_backbone",
    "item_attribute_ids",
    "last_item_examples",
    "next_item_prefixes",
    "next_item_windows",
    "rank_targets",
    "recommender_trainer",
    "register_backbone",
    "train_recommender",
]
