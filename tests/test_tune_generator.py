"""LoRA tuning of the signal generator (training/tune_generator.py, a TRL SFTTrainer run) with a tiny Llama built in code."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

PRODUCTS = [
    ("Argan Repair Conditioner", "Silka", ["Beauty", "Hair Care", "Conditioners"], 9.5),
    ("Volume Mascara Black", "Lashly", ["Beauty", "Makeup", "Eyes", "Mascara"], 7.0),
    ("Glass Nail File", "Shiny", ["Beauty", "Tools & Accessories", "Nail Tools"], 4.25),
    ("Lavender Bath Salts", "Calma", ["Beauty", "Bath & Body", "Bath"], 12.0),
    ("Sport Sunscreen SPF 50", "Sunny", ["Beauty", "Skin Care", "Sun"], 6.75),
    ("Citrus Eau de Toilette", "Aroma", ["Beauty", "Fragrance", "Women's"], 30.0),
    ("Ceramic Flat Iron", "Heatly", ["Beauty", "Hair Care", "Styling Tools"], 25.0),
    ("Retinol Night Serum", "Dermo", ["Beauty", "Skin Care", "Face"], 18.0),
    ("Cotton Rounds Pack", None, ["Beauty", "Tools & Accessories", "Cotton & Swabs"], None),
    ("Tea Tree Shampoo", "Fresca", ["Beauty", "Hair Care", "Shampoos"], 8.0),
    ("Nude Lip Gloss", "Glossy", ["Beauty", "Makeup", "Lips"], 5.0),
    ("Shea Body Butter", "Karite", ["Beauty", "Skin Care", "Body"], 11.0),
]
SIGNALS = [
    ("repairing dry ends after swimming", "soften brittle hair", "repair conditioner"),
    ("getting ready for a night out", "make lashes look longer", "lengthening mascara"),
    ("shaping nails before a manicure", "file without splitting", "nail shaping tool"),
    ("a warm soak after a long day", "relax sore muscles", "relaxing bath soak"),
    ("playing tennis in the summer sun", "avoid sunburn while sweating", "sport sun protection"),
    ("a spritz before the office", "smell fresh all day", "light citrus scent"),
    ("straightening thick hair each morning", "get sleek hair fast", "hair straightener"),
    ("an evening skin routine", "fade fine lines", "anti-aging serum"),
    ("removing nail polish", "wipe off makeup gently", "soft cotton pads"),
    ("a cooling wash after the gym", "refresh an oily scalp", "herbal shampoo"),
    ("a casual day out", "add shine to lips", "sheer lip shine"),
    ("moisturizing after a winter shower", "heal rough dry skin", "rich body moisturizer"),
]


from lamar_hf.cli.tune import load_tuner  # noqa: E402  training/ is not a package: imported by path

tuner = load_tuner()


class TinyLlamaTester:
    """Builds a tiny chat model (byte-level BPE tokenizer with a ChatML template, 2-layer Llama) in code."""

    def get_tokenizer(self):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast

        corpus = [" ".join(str(part) for part in product) for product in PRODUCTS]
        corpus += [" ".join(signals) for signals in SIGNALS] + ["scenario intent topic Title Brand Category Price"]
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        backend.train_from_iterator(corpus * 3, trainer)
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|im_start|>",
                                            eos_token="<|im_end|>", pad_token="<|endoftext|>")
        tokenizer.chat_template = CHATML
        return tokenizer

    def get_model(self, tokenizer):
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                             pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id)
        torch.manual_seed(0)
        return LlamaForCausalLM(config)

    def save_base(self, folder: Path) -> Path:
        tokenizer = self.get_tokenizer()
        self.get_model(tokenizer).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return folder

    def save_benchmark(self, folder: Path) -> Path:
        from datasets import Dataset, DatasetDict

        from lamar_hf.data import ITEM_FEATURES, SEQUENCE_FEATURES, Benchmark

        rows = [{"item_id": number, "asin": f"A{number:04d}", "title": title, "brand": brand, "categories": path,
                 "price": price, "description": None}
                for number, (title, brand, path, price) in enumerate(PRODUCTS, start=1)]
        items = Dataset.from_list(rows, features=ITEM_FEATURES)
        sequence = {"user_id": [1], "history": [[1, 2, 3]], "target": [4]}
        sequences = DatasetDict({split: Dataset.from_dict(sequence, features=SEQUENCE_FEATURES)
                                 for split in ("train", "validation", "test")})
        Benchmark(name="tiny", items=items, sequences=sequences).save(folder)
        return folder

    def write_exemplars(self, folder: Path, train_ids=range(1, 9), validation_ids=range(9, 13)) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, ids in (("train", train_ids), ("validation", validation_ids)):
            path = folder / f"{name}.jsonl"
            with open(path, "w") as handle:
                for item_id in ids:
                    scenario, intent, topic = SIGNALS[item_id - 1]
                    handle.write(json.dumps({"item_id": item_id, "asin": f"A{item_id:04d}", "scenario": scenario,
                                             "intent": intent, "topic": topic}) + "\n")
            paths.append(path)
        return paths[0], paths[1]

    def arguments(self, tmp_path: Path, **training):
        base = self.save_base(tmp_path / "base")
        items = self.save_benchmark(tmp_path / "bench")
        train_file, validation_file = self.write_exemplars(tmp_path / "exemplars")
        options = dict(output_dir=str(tmp_path / "adapter"), max_steps=8, learning_rate=5e-2, warmup_steps=0,
                       per_device_train_batch_size=8, per_device_eval_batch_size=4, eval_steps=4, save_steps=4,
                       logging_steps=1, lr_scheduler_type="constant", use_cpu=True, seed=0,
                       disable_tqdm=True, early_stopping_patience=50, max_length=1024)
        options.update(training)
        return (
            tuner.ModelArguments(base_model=str(base), lora_r=4, lora_alpha=8, lora_dropout=0.0),
            tuner.DataArguments(items=str(items), train_file=str(train_file), validation_file=str(validation_file)),
            tuner.TuneTrainingArguments(**options),
        )


@pytest.fixture(scope="module")
def tiny() -> TinyLlamaTester:
    return TinyLlamaTester()


class LoraSnapshot:
    """A TrainerCallback that copies every LoRA parameter when training starts."""

    def __init__(self):
        from transformers import TrainerCallback

        snapshot = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kwargs):
                snapshot.before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()
                                   if "lora_" in name}

        self.callback = Callback()
        self.before: dict[str, torch.Tensor] = {}


@pytest.fixture(scope="module")
def tuned(tiny, tmp_path_factory):
    """One real tuning run of the tiny model, shared by the tests that inspect its result."""
    tmp_path = tmp_path_factory.mktemp("tune")
    snapshot = LoraSnapshot()
    arguments = tiny.arguments(tmp_path)
    result = tuner.tune(*arguments, callbacks=[snapshot.callback])
    return result, snapshot, arguments, tmp_path


@pytest.fixture(scope="module")
def prepared(tiny, tmp_path_factory):
    """An ``SFTTrainer`` with its datasets tokenized, not trained."""
    trainer, prompt, _ = tuner.build_trainer(*tiny.arguments(tmp_path_factory.mktemp("prepared")))
    return trainer, prompt


def test_sft_dataset_labels_only_the_answer(prepared):
    trainer, prompt = prepared
    tokenizer = trainer.processing_class
    row = trainer.train_dataset[0]  # the first training exemplar: item 1
    input_ids, labels = row["input_ids"], row["labels"]
    answer_start = next(position for position, label in enumerate(labels) if label != tuner.IGNORE_INDEX)
    assert labels[:answer_start] == [tuner.IGNORE_INDEX] * answer_start
    assert labels[answer_start:] == input_ids[answer_start:]
    title, brand, path, price = PRODUCTS[0]
    item = {"item_id": 1, "title": title, "brand": brand, "categories": path, "price": price, "description": None}
    # The prompt is exactly what `lamar enrich` renders; the answer ends with the end-of-turn text, so the model learns to stop.
    assert tokenizer.decode(input_ids[:answer_start]) == prompt.render(item, tokenizer)
    assert tokenizer.decode(input_ids[answer_start:]) == (
        "scenario: repairing dry ends after swimming\nintent: soften brittle hair\ntopic: repair conditioner"
        "<|im_end|>\n"
    )
    assert len(trainer.train_dataset) == 8 and len(trainer.eval_dataset) == 4


def test_batches_pad_right_and_mask_padding(prepared):
    trainer, _ = prepared
    batch = next(iter(trainer.get_train_dataloader()))
    lengths = batch["attention_mask"].sum(dim=-1).tolist()
    assert min(lengths) < batch["input_ids"].shape[1]  # the rows differ in length: some are padded
    for row, length in enumerate(lengths):
        assert batch["attention_mask"][row, :length].eq(1).all()
        assert batch["labels"][row, length:].eq(tuner.IGNORE_INDEX).all()
        assert batch["labels"][row, :length].ne(tuner.IGNORE_INDEX).any()


def test_too_long_examples_are_left_out_not_cut(tiny, tmp_path, caplog):
    model_args, data_args, _ = tiny.arguments(tmp_path)
    tokenizer = tiny.get_tokenizer()
    prompt = tuner.tuned_prompt(["scenario", "intent", "topic"])
    items = tuner.load_items(data_args.items)
    examples = tuner.join_items(tuner.read_exemplars(data_args.train_file, ["scenario", "intent", "topic"]), items,
                                data_args.train_file)
    lengths = [len(tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True,
                                                 return_dict=True)["input_ids"])
               for row in (tuner.prompt_completion(prompt, e["item"], e["signals"]) for e in examples)]
    limit = sorted(lengths)[3]
    with caplog.at_level("WARNING", logger="tune_generator"):
        dataset = tuner.build_dataset(prompt, tokenizer, examples, limit, "train")
    assert len(dataset) == sum(length <= limit for length in lengths) < len(examples)
    assert "longer than max_length" in caplog.text
    with pytest.raises(ValueError, match=r"train: no example fits max_length=5"):
        tuner.build_dataset(prompt, tokenizer, examples, 5, "train")


def test_tuning_changes_every_lora_parameter_and_lowers_the_loss(tuned):
    result, snapshot, _, _ = tuned
    after = {name: parameter for name, parameter in result.model.named_parameters() if "lora_" in name}
    assert snapshot.before and set(after) == set(snapshot.before)
    unchanged = [name for name, parameter in after.items() if torch.equal(parameter.detach(), snapshot.before[name])]
    assert unchanged == []
    # Full-batch steps without dropout: the logged training loss is the loss on the same 8 examples.
    assert result.train_loss_last < result.train_loss_first
    assert result.validation_loss_best < result.validation_loss_base
    assert result.train_examples == 8 and result.validation_examples == 4


def test_saved_adapter_folder_has_prompt_card_and_no_checkpoints(tuned):
    result, _, (model_args, data_args, _), tmp_path = tuned
    adapter = Path(result.adapter_dir)
    assert {"adapter_config.json", "adapter_model.safetensors", "lamar_prompt.json", "README.md",
            "tune_results.json"} <= {path.name for path in adapter.iterdir()}
    assert not list(adapter.glob("checkpoint-*"))
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4 and sorted(config["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    card = (adapter / "README.md").read_text()
    assert f"base_model: {model_args.base_model}" in card and tuner.SHORT_SYSTEM in card
    assert config["base_model_name_or_path"] == model_args.base_model
    assert "library_name: peft" in card
    assert f"{result.validation_loss_best:.4f}" in card and "| LoRA rank r | 4 |" in card
    assert json.loads((adapter / "tune_results.json").read_text())["steps"] == result.steps


def test_saved_adapter_reloads_with_identical_generations(tuned, tiny):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lamar_hf.enrich.generator import TransformersGenerator

    result, _, (model_args, _, _), _ = tuned
    tokenizer = tiny.get_tokenizer()
    items = [{"title": title, "brand": brand, "categories": path, "price": price}
             for title, brand, path, price in PRODUCTS[8:]]
    prompt = tuner.tuned_prompt(["scenario", "intent", "topic"])
    assert prompt.mode == "zero-shot" and prompt.system == tuner.SHORT_SYSTEM
    batch = tokenizer([prompt.render(item, tokenizer) for item in items], add_special_tokens=False, padding=True,
                      padding_side="left", return_tensors="pt")
    trained = result.model.eval()
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_args.base_model),
                                         str(result.adapter_dir)).eval()

    def greedy(model):
        with torch.no_grad():
            return model.generate(**batch, max_new_tokens=16, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                                  pad_token_id=tokenizer.pad_token_id)

    # The saved adapter holds the very float32 weights of the trained one: the same kernels give the same tokens.
    assert torch.equal(greedy(reloaded), greedy(trained))

    # lamar's generator merges the adapter into the base weights: the same model up to float rounding.
    generator = TransformersGenerator(model_args.base_model, adapter=result.adapter_dir, device="cpu", dtype="float32")
    assert generator.prompt is not None and generator.prompt.to_dict() == prompt.to_dict()
    base = AutoModelForCausalLM.from_pretrained(model_args.base_model).eval()
    with torch.no_grad():
        expected = trained(**batch).logits
        merged = generator.model(**batch).logits
        untuned = base(**batch).logits
    torch.testing.assert_close(merged, expected, rtol=1e-4, atol=1e-4)
    assert (untuned - expected).abs().max() > 0.1  # the adapter does change the model


def test_exemplar_of_an_unknown_item_names_file_and_line(tiny, tmp_path):
    model_args, data_args, training_args = tiny.arguments(tmp_path)
    with open(data_args.train_file, "a") as handle:
        handle.write(json.dumps({"item_id": 999, "scenario": "a", "intent": "b", "topic": "c"}) + "\n")
    with pytest.raises(ValueError, match=r"train\.jsonl:9: item_id 999 is not in the benchmark"):
        tuner.tune(model_args, data_args, training_args)


def test_exemplar_with_a_wrong_asin_or_missing_signal_is_refused(tiny, tmp_path):
    train_file, _ = tiny.write_exemplars(tmp_path / "ex")
    rows = train_file.read_text().splitlines()
    rows[1] = json.dumps({**json.loads(rows[1]), "intent": " "})
    train_file.write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"train\.jsonl:2: missing or empty field\(s\) \['intent'\]"):
        tuner.read_exemplars(train_file, ["scenario", "intent", "topic"])

    items = [{"item_id": 1, "asin": "B000"}]
    with pytest.raises(ValueError, match=r"x\.jsonl:3: item 1 is ASIN B000 in the benchmark, not A0001"):
        tuner.join_items([{"item_id": 1, "asin": "A0001", "_line": 3}], items, "x.jsonl")


def test_train_and_validation_must_not_share_items(tiny, tmp_path):
    model_args, data_args, training_args = tiny.arguments(tmp_path)
    tiny.write_exemplars(tmp_path / "exemplars", train_ids=range(1, 9), validation_ids=range(8, 13))
    with pytest.raises(ValueError, match=r"items in both the train and validation exemplars: \[8\]"):
        tuner.tune(model_args, data_args, training_args)


def test_arguments_parse_from_the_command_line_with_tuned_defaults(tmp_path):
    model_args, data_args, training_args = tuner.parse_arguments(
        ["--items", "bench", "--lora_r", "16", "--output_dir", str(tmp_path / "a"), "--max_steps", "3"])
    assert (model_args.lora_r, model_args.base_model, data_args.items) == (16, None, "bench")
    assert training_args.max_steps == 3 and training_args.load_best_model_at_end
    assert training_args.metric_for_best_model == "eval_loss" and training_args.early_stopping_patience == 3
    assert Path(data_args.train_file).name == "beauty_train.jsonl" and Path(data_args.train_file).is_file()


def test_lamar_tune_runs_the_same_script(tiny, tmp_path):
    from lamar_hf.cli import main

    base = tiny.save_base(tmp_path / "base")
    items = tiny.save_benchmark(tmp_path / "bench")
    train_file, validation_file = tiny.write_exemplars(tmp_path / "exemplars")
    out = tmp_path / "adapter"
    status = main(["tune", "--items", str(items), "--out", str(out), "--base-model", str(base),
                   "--train-file", str(train_file), "--validation-file", str(validation_file), "--lora-r", "2",
                   "--max-steps", "2", "--eval-steps", "1", "--learning-rate", "0.01",
                   "--", "--max_length", "1024", "--use_cpu", "true", "--disable_tqdm", "true"])
    assert status == 0
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 2
    assert json.loads((out / "tune_results.json").read_text())["steps"] == 2
    assert (out / "lamar_prompt.json").is_file()


def test_lamar_tune_refuses_unknown_arguments(tiny, tmp_path):
    from lamar_hf.cli import main

    items = tiny.save_benchmark(tmp_path / "bench")
    assert main(["tune", "--items", str(items), "--out", str(tmp_path / "a"), "--", "--no_such_option", "1"]) == 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.timeout(300)
def test_accelerate_launch_trains_with_two_cpu_processes(tiny, tmp_path):
    """``--multi_gpu`` on a machine without a GPU starts two gloo CPU processes (``--cpu`` alone starts one)."""
    model_args, data_args, _ = tiny.arguments(tmp_path)
    out = tmp_path / "ddp"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(free_port())]
    script = [str(tuner.REPO_ROOT / "training" / "tune_generator.py"), "--base_model", model_args.base_model,
              "--items", data_args.items, "--train_file", data_args.train_file,
              "--validation_file", data_args.validation_file, "--output_dir", str(out), "--max_length", "1024",
              "--max_steps", "2", "--eval_steps", "1", "--save_steps", "1", "--per_device_train_batch_size", "4",
              "--lora_r", "2", "--disable_tqdm", "true"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.run([*launch, *script], cwd=tuner.REPO_ROOT, env=env, capture_output=True, text=True,
                             timeout=280)
    assert process.returncode == 0, process.stderr[-4000:]
    figures = json.loads((out / "tune_results.json").read_text())
    # 8 examples, 2 processes x 4 per step: one step per epoch, so the two steps are two epochs.
    assert figures["processes"] == 2 and figures["steps"] == 2 and figures["epochs"] == 2.0
    assert (out / "adapter_model.safetensors").is_file() and (out / "lamar_prompt.json").is_file()
