"""The arguments of a recommender training run, as dataclasses for ``HfArgumentParser``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from transformers import TrainingArguments

from lamar_hf.text_embeddings import DEFAULT_ENCODER, METADATA


@dataclass
class ModelArguments:
    """Which recommender to train and its size; which item texts it fuses with the item ids."""

    backbone: str = field(
        default="sasrec",
        metadata={"help": "Recommender architecture: sasrec, gru4rec or bert4rec (see lamar_hf.training.BACKBONES)."},
    )
    hidden_size: int = field(default=64, metadata={"help": "Width of item embeddings and hidden layers."})
    num_hidden_layers: int | None = field(
        default=None,
        metadata={"help": "Self-attention blocks or GRU layers (default: the backbone's; 2, gru4rec 1)."},
    )
    num_attention_heads: int = field(default=2, metadata={"help": "Attention heads per block."})
    intermediate_size: int = field(default=256, metadata={"help": "Width of the feed-forward layers."})
    max_history_length: int = field(default=50, metadata={"help": "Most recent items of a history the model reads."})
    hidden_dropout_prob: float | None = field(
        default=None,
        metadata={"help": "Dropout on embeddings and block outputs (default: sasrec 0.5, gru4rec 0.3, bert4rec 0.2)."},
    )
    attention_dropout_prob: float | None = field(
        default=None, metadata={"help": "Dropout on attention weights (default: sasrec 0.5, bert4rec 0.2)."}
    )
    position_order: str | None = field(
        default=None,
        metadata={"help": "sasrec: 'from_start' (default: the oldest item is position 0) or 'from_end' (the most recent "
                  "is, as RecTools' inverse positions)."},
    )
    item_dropout_prob: float | None = field(
        default=None,
        metadata={"help": "sasrec: dropout on the item-table rows a training step reads and scores, as RecTools' "
                  "item-net dropout (default 0: none)."},
    )
    norm_first: bool | None = field(
        default=None,
        metadata={"help": "sasrec: pre-norm blocks (default true); false: post-norm blocks after a layer norm on the "
                  "input embeddings, as in RecBole's SASRec."},
    )
    residual_from_norm: bool | None = field(
        default=None,
        metadata={"help": "sasrec: the SASRec authors' pre-norm block (RecTools' SASRecTransformerLayer): keys and "
                  "values read the unnormalised input, residuals start from the normalised one (default false)."},
    )
    hidden_act: str | None = field(
        default=None, metadata={"help": "sasrec: activation of the feed-forward layers, gelu (default) or relu."}
    )
    initialization: str | None = field(
        default=None,
        metadata={"help": "sasrec: normal (default, N(0, 0.02)) or xavier_normal (every weight matrix and embedding "
                  "Xavier-normal, as RecTools' SASRec)."},
    )
    repeat_bias: bool | None = field(
        default=None,
        metadata={"help": "sasrec: learn one score added to the items already in the history (default false); on "
                  "data where nobody picks an item twice it learns to rank the history last."},
    )
    gru_hidden_size: int | None = field(default=None, metadata={"help": "gru4rec: width of the GRU state (default 128)."})
    mask_prob: float | None = field(
        default=None, metadata={"help": "bert4rec: probability that a training item is masked (default 0.2)."}
    )
    loss_type: str = field(
        default="ce",
        metadata={"help": "'ce': softmax cross-entropy over all items; 'bce': BCE against sampled negatives (SASRec); "
                  "'sampled_softmax': softmax over the target and sampled negatives (SASRec+SS); 'gbce': gSASRec's gBCE."},
    )
    num_negatives: int = field(default=1, metadata={"help": "Sampled negatives of each position (bce, sampled_softmax, gbce)."})
    negative_sharing: str = field(
        default="position",
        metadata={"help": "Who shares a draw of negatives: 'position' (each its own), 'sequence' or 'batch' "
                  "(faster epochs; 'batch' learns more slowly)."},
    )
    negative_sampling: str = field(
        default="uniform",
        metadata={"help": "sampled_softmax: draw negatives 'uniform' or by training 'popularity' (with logQ correction)."},
    )
    gbce_t: float = field(default=0.75, metadata={"help": "gbce: calibration t in [0, 1] (0: plain BCE)."})
    signals: str = field(
        default="",
        metadata={"help": "Comma-separated signal columns to fuse, e.g. 'scenario,intent,topic' (empty: none)."},
    )
    use_metadata: bool = field(default=False, metadata={"help": "Also fuse the metadata text (title, brand, categories)."})
    fusion: str = field(
        default="add",
        metadata={"help": "How texts join the item ids: add, concat, gate; init (the texts' principal components start "
                  "the item-id table, then it trains freely); semantic_nullspace (a frozen semantic part of "
                  "--semantic_dims beside learned ids, after AlphaFuse); multiview (per-item attention over the "
                  "texts, at least two). ID-only when no texts are chosen."},
    )
    semantic_dims: int | None = field(
        default=None,
        metadata={"help": "semantic_nullspace: width of the frozen semantic part (default hidden_size // 2)."},
    )
    text_encoder: str = field(
        default=DEFAULT_ENCODER, metadata={"help": "Sentence encoder of the item texts (a folder or the default id)."}
    )
    signal_attributes: str = field(
        default="",
        metadata={"help": "Comma-separated signal kinds whose attribute ids (the signals file's <kind>_cluster columns, "
                  "written by `lamar attributes`) the model learns as item attributes, e.g. 'scenario,intent,topic' "
                  "(empty: none). Independent of --signals and --fusion."},
    )

    def text_kinds(self) -> list[str]:
        """The item texts the model fuses, in buffer order: the chosen signals, then ``metadata``."""
        kinds = [name.strip() for name in self.signals.split(",") if name.strip()]
        if self.use_metadata:
            kinds.append(METADATA)
        if kinds and self.fusion == "none":
            raise ValueError(
                f"--fusion none cannot use item texts ({', '.join(kinds)}); pick add, concat, gate, init, "
                "semantic_nullspace or multiview"
            )
        if len(kinds) == 1 and self.fusion == "multiview":
            raise ValueError(
                f"--fusion multiview weighs item texts against each other and needs at least two item texts, got "
                f"{kinds[0]} (--signals, --use_metadata); with one, use add"
            )
        return kinds


@dataclass
class RecommenderTrainingArguments(TrainingArguments):
    """``TrainingArguments`` with defaults for SASRec-style recommenders (Adam 1e-3, batch 256, validation each
    epoch by full ranking, early stopping on NDCG@10, best model kept)."""

    output_dir: str = field(default="outputs/lamar-sasrec", metadata={"help": "Where the model and results go."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate."})
    adam_beta2: float = field(default=0.98, metadata={"help": "Adam beta2 (0.98 as in SASRec)."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Learning-rate schedule."})
    num_train_epochs: float = field(default=200, metadata={"help": "Most epochs (early stopping usually ends sooner)."})
    per_device_train_batch_size: int = field(default=256, metadata={"help": "Training sequences per batch and device."})
    per_device_eval_batch_size: int = field(
        default=256,
        metadata={"help": "Users per evaluation batch and device (256: the [users, items] scores stay in cache; "
                  "on Beauty twice as fast as 1024 on a CPU)."},
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "Validate by full ranking after every epoch."})
    save_strategy: str = field(default="best", metadata={"help": "Checkpoint only when validation improves."})
    logging_strategy: str = field(default="epoch", metadata={"help": "Log once per epoch."})
    logging_nan_inf_filter: bool = field(
        default=False,
        metadata={"help": "Hide NaN/inf step losses from the logged loss (default false: a non-finite loss is logged "
                  "and stops the run)."},
    )
    save_total_limit: int = field(default=1, metadata={"help": "Checkpoints kept besides the best."})
    save_only_model: bool = field(default=True, metadata={"help": "Checkpoints without optimizer state."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "End with the best validation model."})
    metric_for_best_model: str = field(default="ndcg@10", metadata={"help": "Validation metric for the best model."})
    greater_is_better: bool = field(default=True, metadata={"help": "Whether a larger metric is better."})
    early_stopping_patience: int = field(
        default=10, metadata={"help": "Stop after this many epochs without a better validation metric (0: never)."}
    )
    ranking_cutoffs: list[int] = field(default_factory=lambda: [10, 20], metadata={"help": "The K of Recall/NDCG/MRR@K."})
    train_examples: str | None = field(
        default=None,
        metadata={
            "help": "How training sequences become examples for a next-item backbone: 'windows' (each sequence once, "
            "every position predicts the next item), 'prefixes' (one example per next-item step, RecBole style; "
            "more and smaller steps per epoch). Default: the backbone's own."
        },
    )
    repeat_score_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the repeat score of a --repeat_bias true model (default: --learning_rate). "
            "One scalar learns slowly at the embeddings' rate; e.g. 0.01 lets it settle within the run."
        },
    )
    train_sampling_strategy: str = field(
        default="group_by_length", metadata={"help": "Batches of similar lengths: little padding."}
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Examples are plain dicts; keep them."})
    ddp_broadcast_buffers: bool = field(
        default=False, metadata={"help": "The frozen text-embedding buffer never changes; do not re-send it."}
    )
    dataloader_pin_memory: bool = field(
        default_factory=torch.cuda.is_available, metadata={"help": "Pin batches in memory (only helps with a GPU)."}
    )
    ddp_find_unused_parameters: bool = field(default=False, metadata={"help": "Every parameter is used in each step."})
    report_to: str = field(default="none", metadata={"help": "Experiment trackers to report to."})

    def __post_init__(self):
        # Several processes on a machine without a GPU (`accelerate launch --multi_gpu`, `torchrun`) can only train
        # on CPU, and accelerate sets up CPU (gloo) data parallelism only when told to use the CPU.
        if not self.use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
            self.use_cpu = True
        super().__post_init__()
