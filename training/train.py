"""Train a (signal-aware) SASRec, GRU4Rec or BERT4Rec recommender with the Hugging Face Trainer, validate it by
full ranking every epoch, stop early on NDCG@10, keep the best model, test it, save it (with its code, so that
``AutoModel.from_pretrained(DIR, trust_remote_code=True)`` works anywhere) and optionally publish it.

ID-only baseline on Amazon Beauty (prepared with ``lamar prepare``)::

    python training/train.py --dataset outputs/beauty --output_dir outputs/sasrec-beauty-id

The same with another backbone (``--backbone sasrec|gru4rec|bert4rec``; each keeps its own default
layers and dropout unless given)::

    python training/train.py --dataset outputs/beauty --backbone gru4rec --output_dir outputs/gru4rec-beauty-id
    python training/train.py --dataset outputs/beauty --backbone bert4rec --output_dir outputs/bert4rec-beauty-id

With LaMAR signals and the metadata text, fused by addition (the texts are embedded once by
all-MiniLM-L6-v2 and cached in OUTPUT_DIR/text_embeddings.safetensors)::

    accelerate launch training/train.py --dataset outputs/beauty --signals scenario,intent,topic \\
        --signals_file outputs/beauty-signals/signals/train-00000-of-00001.parquet --use_metadata \\
        --fusion add --output_dir outputs/sasrec-beauty-signals

Signal phrases as learned item attributes (the ``<kind>_cluster`` ids written by ``lamar attributes``), and the
user's written shopping intent (``lamar enrich-users``, from the training history only) as an extra input token::

    accelerate launch training/train.py --dataset outputs/beauty --signals_file outputs/beauty-v1-attributes.parquet \
        --signal_attributes scenario,intent,topic \
        --user_signals_file outputs/beauty-users/user_signals/train-00000-of-00001.parquet \
        --output_dir outputs/sasrec-beauty-attributes-users

SASRec with a learned score for items already in the history, at a learning rate of its own (one setting of the
grid in ``benchmarks/configs/beauty_sasrec.yaml``; ``benchmarks/experiment.py`` chooses it or not on validation)::

    accelerate launch training/train.py --dataset outputs/beauty --repeat_bias true \\
        --repeat_score_learning_rate 0.01 --use_metadata --output_dir outputs/sasrec-beauty-repeat

Two data-parallel processes (same metrics as one process within noise; keep the global batch at 256). On a
machine without a GPU they train on CPU with gloo (``accelerate launch --cpu`` alone starts a single process
unless MPI is set up, see ``accelerate launch --help``; ``torchrun --nproc_per_node 2`` works too)::

    accelerate launch --multi_gpu --num_processes 2 training/train.py --dataset outputs/beauty \\
        --per_device_train_batch_size 128 --output_dir outputs/sasrec-beauty-ddp

From the Hub, publishing the result with a model card carrying the test metrics::

    accelerate launch training/train.py --dataset org/lamar-beauty-enriched --dataset_revision v1.0.0 \\
        --signals scenario,intent,topic --push_to_hub --hub_model_id org/lamar-sasrec-beauty

Every option (``python training/train.py --help``) can also come from one JSON or YAML file:
``python training/train.py config.yaml``.

An output folder that already holds a model is refused unless ``--overwrite`` (or ``--resume_from_checkpoint
last``) is given; so are signals that cover fewer than ``--min_signal_coverage`` (default 0.95) of the items or name
an item twice, and non-finite text embeddings, losses or metrics stop the run. Each says why in one line and exits
with status 2.
"""

import logging
import os
import sys

from lamar_hf.distributed import exit_distributed_run
from lamar_hf.training.guards import TrainingRefused
from lamar_hf.training.run import main, parse_args

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        main(*parse_args(sys.argv[1:]))
    except TrainingRefused as refusal:
        if int(os.environ.get("RANK", "0")) == 0:  # every process refuses; one says so
            print(f"train.py: error: {refusal}", file=sys.stderr)
        sys.exit(2)
    exit_distributed_run()
