"""Versioned Hub publishing of enriched datasets, recommenders and LoRA adapters, with their cards.

Every release is one commit tagged ``vMAJOR.MINOR.PATCH``; a version that is already tagged is refused
before anything is pushed, and ``dry_run=DIR`` writes the exact repository tree to a local folder.

    from lamar_hf.hub import publish_dataset
    publish_dataset("outputs/beauty", "org/lamar-beauty-enriched", "v1.0.0", changes="first release")
"""

from .dataset import publish_dataset, write_dataset_tree
from .loading import ModelLoadError, load_recommender
from .model import publish_adapter, publish_model, write_adapter_tree, write_model_tree
from .release import (
    MANIFEST,
    PublishError,
    PublishResult,
    Release,
    RepoHistory,
    VersionExistsError,
    check_version,
    publish,
)

__all__ = [
    "MANIFEST",
    "ModelLoadError",
    "PublishError",
    "PublishResult",
    "Release",
    "RepoHistory",
    "VersionExistsError",
    "check_version",
    "load_recommender",
    "publish",
    "publish_adapter",
    "publish_dataset",
    "publish_model",
    "write_adapter_tree",
    "write_dataset_tree",
    "write_model_tree",
]
