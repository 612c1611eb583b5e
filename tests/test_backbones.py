"""The same tiny-config battery for every recommender backbone (SASRec, GRU4Rec, BERT4Rec), and a check that the
parts each self-contained modeling file repeats stay faithful copies of SASRec's."""

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

import backbone_battery as battery
from lamar_hf.training import ModelArguments, build_model
from lamar_hf.models.lamar_bert4rec import LamarBERT4RecConfig, LamarBERT4RecModel
from lamar_hf.models.lamar_gru4rec import LamarGRU4RecConfig, LamarGRU4RecModel
from lamar_hf.models.lamar_sasrec import LamarSASRecConfig, LamarSASRecModel

SASREC = battery.Backbone(
    "sasrec", LamarSASRecConfig, LamarSASRecModel, tiny={"num_attention_heads": 2, "intermediate_size": 32}
)
GRU4REC = battery.Backbone("gru4rec", LamarGRU4RecConfig, LamarGRU4RecModel, tiny={"gru_hidden_size": 16})
BERT4REC = battery.Backbone(
    "bert4rec",
    LamarBERT4RecConfig,
    LamarBERT4RecModel,
    tiny={"num_attention_heads": 2, "intermediate_size": 32},
    causal=False,
)
BACKBONES = [pytest.param(backbone, id=backbone.name) for backbone in (SASREC, GRU4REC, BERT4REC)]
CAUSAL = [pytest.param(backbone, id=backbone.name) for backbone in (SASREC, GRU4REC)]
FUSIONS = ["none", "add", "concat", "gate", "init", "semantic_nullspace", "multiview"]
# Learned item attributes alone, and beside a text fusion (for semantic_nullspace they join the learned part only).
ATTRIBUTE_VARIANTS = ["attributes", "gate+attributes", "semantic_nullspace+attributes"]
# A user token before the items, alone and with an item table that has everything.
USER_VARIANTS = ["user", "semantic_nullspace+attributes+user"]


@pytest.mark.parametrize("fusion", FUSIONS + ATTRIBUTE_VARIANTS + USER_VARIANTS)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_output_shapes(backbone, fusion):
    battery.check_output_shapes(backbone, fusion)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_sampled_bce_loss(backbone):
    battery.check_sampled_bce_loss(backbone)


@pytest.mark.parametrize("backbone", CAUSAL)
def test_later_items_never_change_earlier_outputs(backbone):
    battery.check_causal_masking(backbone)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_padding_changes_nothing(backbone):
    battery.check_padding_changes_nothing(backbone)


def test_bert4rec_reads_both_sides_of_a_masked_item():
    battery.check_bidirectional_context(BERT4REC)


def test_bert4rec_cloze_training_and_appended_mask():
    battery.check_cloze_training(BERT4REC)


# "add" has no parameters of its own.
@pytest.mark.parametrize("fusion", [f for f in FUSIONS if f != "add"] + ATTRIBUTE_VARIANTS + USER_VARIANTS)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_loss_falls_and_every_parameter_changes(backbone, fusion):
    battery.check_training_step(backbone, fusion)


@pytest.mark.parametrize(
    "fusion",
    ["none", "concat", "init", "semantic_nullspace", "multiview", "attributes", "semantic_nullspace+attributes", "user"],
)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_save_and_load_give_identical_scores(backbone, fusion, tmp_path):
    battery.check_save_load(backbone, fusion, tmp_path / "model")


# One fresh process per backbone loads a saved model of every item-table option.
REMOTE_VARIANTS = {
    variant: battery.fusion_settings(variant)
    for variant in ("gate", "init", "semantic_nullspace", "multiview", "gate+attributes", "user")
}


@pytest.mark.parametrize("backbone", BACKBONES)
def test_trust_remote_code_in_a_fresh_process(backbone, tmp_path):
    battery.check_remote_code(backbone, tmp_path / "models", tmp_path, REMOTE_VARIANTS)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_bad_input(backbone):
    battery.check_bad_input(backbone)


# ----------------------------------------------------------------------------------- copies of the SASRec code

COPIED_FROM = re.compile(r"^(?P<indent>\s*)# Copied from (?P<target>[\w.]+)(?: with (?P<old>\w+)->(?P<new>\w+))?$")
COPYING_FILES = [
    "lamar_hf/models/lamar_gru4rec/modeling_lamar_gru4rec.py",
    "lamar_hf/models/lamar_bert4rec/modeling_lamar_bert4rec.py",
]


def copied_blocks(path: Path):
    """``(target, (old, new), copy source)`` for every ``# Copied from`` comment of a file: the copy is the class or
    function that starts on the next line (decorators included)."""
    text = path.read_text()
    lines = text.splitlines()
    definitions = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            start = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
            definitions[start] = "\n".join(lines[start - 1 : node.end_lineno])
    for number, line in enumerate(lines, start=1):
        match = COPIED_FROM.match(line)
        if match:
            assert number + 1 in definitions, f"{path.name}:{number}: no class or function follows the comment"
            yield match["target"], (match["old"], match["new"]), definitions[number + 1]


def source_of(target: str) -> str:
    """Source of a dotted ``module.Class`` or ``module.Class.method`` name."""
    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute)
        return inspect.getsource(obj).rstrip()
    raise AssertionError(f"cannot import {target}")


def dedent_to(source: str, indent: str) -> str:
    lines = source.splitlines()
    width = len(lines[0]) - len(lines[0].lstrip())
    return "\n".join(indent + line[width:] if line.strip() else "" for line in lines)


@pytest.mark.parametrize("relative", COPYING_FILES)
def test_copied_code_matches_sasrec(relative):
    path = Path(__file__).resolve().parents[1] / relative
    blocks = list(copied_blocks(path))
    assert blocks, f"{relative} has no '# Copied from' blocks"
    for target, (old, new), copy in blocks:
        original = source_of(target)
        if old:
            original = original.replace(old, new)
        indent = copy[: len(copy) - len(copy.lstrip())]
        original = "\n".join(line.rstrip() for line in dedent_to(original, indent).splitlines())
        copy = "\n".join(line.rstrip() for line in copy.splitlines())
        assert copy == original, f"{relative}: the copy of {target} differs from the original"


# ----------------------------------------------------------------------------------- backbone-specific arguments

FOREIGN_VALUES = {"norm_first": False, "repeat_bias": True, "mask_prob": 0.3, "attention_dropout_prob": 0.1,
                  "item_dropout_prob": 0.2, "residual_from_norm": True, "hidden_act": "relu",
                  "initialization": "xavier_normal", "gru_hidden_size": 32}


@pytest.mark.parametrize(("backbone", "argument"), [
    ("gru4rec", "norm_first"), ("bert4rec", "norm_first"), ("sasrec", "mask_prob"), ("sasrec", "gru_hidden_size"),
    ("gru4rec", "attention_dropout_prob"), ("bert4rec", "repeat_bias"), ("gru4rec", "item_dropout_prob"),
    ("bert4rec", "item_dropout_prob"), ("bert4rec", "residual_from_norm"), ("gru4rec", "hidden_act"),
    ("gru4rec", "initialization"),
])
def test_an_argument_of_another_backbone_is_refused(backbone, argument):
    args = ModelArguments(backbone=backbone, **{argument: FOREIGN_VALUES[argument]})
    with pytest.raises(ValueError, match=f"--{argument} does not apply to the {backbone} backbone"):
        build_model(args, num_items=20)


@pytest.mark.parametrize(("backbone", "argument"), [
    ("sasrec", "norm_first"), ("bert4rec", "mask_prob"), ("gru4rec", "gru_hidden_size"),
    ("bert4rec", "attention_dropout_prob"), ("sasrec", "repeat_bias"), ("sasrec", "residual_from_norm"),
    ("sasrec", "hidden_act"), ("sasrec", "initialization"),
])
def test_an_argument_of_the_backbone_reaches_its_config(backbone, argument):
    args = ModelArguments(backbone=backbone, **{argument: FOREIGN_VALUES[argument]})
    assert getattr(build_model(args, num_items=20).config, argument) == FOREIGN_VALUES[argument]


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "bert4rec"])
def test_the_rand_mask_dropout_of_every_backbone_drops_and_rescales_as_nn_dropout(backbone):
    import torch

    module = importlib.import_module(f"lamar_hf.models.lamar_{backbone}.modeling_lamar_{backbone}")
    dropout = module.RandMaskDropout(0.3).train()
    values = torch.full((200_000,), 2.0, requires_grad=True)
    torch.manual_seed(0)
    out = dropout(values)
    kept = out != 0
    assert kept.float().mean().item() == pytest.approx(0.7, abs=0.005)
    torch.testing.assert_close(out[kept], torch.full((int(kept.sum()),), 2.0 / 0.7))
    out.sum().backward()
    torch.testing.assert_close(values.grad, kept.float() / 0.7)  # the gradient flows through the kept values only
    assert not torch.equal(dropout(values) != 0, kept)  # a fresh mask on every call
    assert torch.equal(dropout.eval()(values), values)
    assert torch.equal(module.RandMaskDropout(0.0).train()(values), values)
    assert not module.RandMaskDropout(1.0).train()(values).any()
    assert isinstance(dropout, torch.nn.Dropout)  # whatever finds or sets the model's dropouts finds these too
