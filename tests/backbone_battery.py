"""The tiny-config test battery that every lamar-hf recommender backbone passes.

A backbone is a ``(config class, model class)`` pair with one interface: item-id sequences right-padded with 0,
``labels`` with -100 for "nothing to predict", a ``ModelOutput`` with ``loss`` / ``logits`` / ``last_hidden_state``,
the fused item table with a frozen ``text_embeddings`` buffer, ``score`` and ``recommend``. Each ``check_*``
function asserts one behaviour of that interface; ``tests/test_backbones.py`` runs them for every backbone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field

import pytest
import torch
from transformers import AutoConfig, AutoModel

from ranking_checks import assert_top_items

NUM_ITEMS = 50
LENGTH = 8
TEXT_DIM = 12
TEXT_KINDS = ["scenario", "intent"]
ATTRIBUTE_VOCAB = {"scenario_cluster": 5, "intent_cluster": 3}
USER_DIM = 6


@dataclass
class Backbone:
    """One recommender backbone and its tiny configuration (50 items, hidden 16, 2 layers, length 8)."""

    name: str
    config_class: type
    model_class: type
    tiny: dict = field(default_factory=dict)
    causal: bool = True  # False: bidirectional with a mask token (BERT4Rec)

    def config(self, **overrides):
        settings = {"num_items": NUM_ITEMS, "hidden_size": 16, "num_hidden_layers": 2, "max_history_length": LENGTH}
        return self.config_class(**{**settings, **self.tiny, **overrides})

    def model(self, seed: int = 0, **overrides):
        torch.manual_seed(seed)
        model = self.model_class(self.config(**overrides))
        if model.config.fusion != "none":
            model.set_text_embeddings(text_embeddings(seed))
        if model.config.attribute_kinds:
            model.set_item_attributes(attribute_ids(seed))
        return model

    def register(self) -> None:
        """What ``lamar_hf/models/__init__.py`` does for every backbone (idempotent)."""
        AutoConfig.register(self.config_class.model_type, self.config_class, exist_ok=True)
        AutoModel.register(self.config_class, self.model_class, exist_ok=True)
        self.config_class.register_for_auto_class()
        self.model_class.register_for_auto_class("AutoModel")


def text_embeddings(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 + seed)
    return {kind: torch.randn(NUM_ITEMS + 1, TEXT_DIM, generator=generator) for kind in TEXT_KINDS}


def attribute_ids(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(2000 + seed)
    return {kind: torch.randint(0, size + 1, (NUM_ITEMS + 1,), generator=generator) for kind, size in ATTRIBUTE_VOCAB.items()}


def split_variant(variant: str) -> tuple[str, set[str]]:
    """``"gate+attributes"`` -> ``("gate", {"attributes"})``: a fusion and the extras on top of it; a variant that
    starts with an extra (``"attributes"``) is the ID-only model with it."""
    first, *extras = variant.split("+")
    if first in ("attributes", "user"):
        return "none", {first, *extras}
    return first, set(extras)


def fusion_settings(variant: str) -> dict:
    """The settings of a fusion, or of a variant such as ``"semantic_nullspace+attributes"`` (see ``split_variant``)."""
    fusion, extras = split_variant(variant)
    settings = {"fusion": fusion}
    if fusion != "none":
        settings |= {"text_kinds": TEXT_KINDS, "text_embedding_dim": TEXT_DIM}
    if "attributes" in extras:
        settings |= {"attribute_kinds": list(ATTRIBUTE_VOCAB), "attribute_vocab_sizes": list(ATTRIBUTE_VOCAB.values())}
    if "user" in extras:
        settings |= {"user_text_embedding_dim": USER_DIM}
    return settings


def user_inputs(model, batch_size: int) -> dict:
    """``{"user_embeddings": [batch_size, dim]}`` for a model with a user token (row ``b`` is always the same
    user), ``{}`` for one without: the extra keywords of ``forward`` and ``score``."""
    width = model.config.user_text_embedding_dim
    if not width:
        return {}
    return {"user_embeddings": torch.randn(64, width, generator=torch.Generator().manual_seed(3000))[:batch_size]}


def text_buffers(variant: str) -> list[str]:
    """The frozen buffers a model of a fusion (or variant) keeps of its item data (``init`` keeps none: the texts
    only start the item-id table)."""
    fusion, extras = split_variant(variant)
    names = ["item_table.item_attributes"] if "attributes" in extras else []
    if fusion in ("none", "init"):
        return names
    if fusion == "semantic_nullspace":
        return names + ["item_table.semantic_mean", "item_table.semantic_basis", "item_table.semantic_embeddings"]
    return names + ["item_table.text_embeddings"]


def padded(histories: list[list[int]], width: int | None = None) -> torch.Tensor:
    width = width or max(len(history) for history in histories)
    return torch.tensor([history + [0] * (width - len(history)) for history in histories])


def next_item_labels(sequences: list[list[int]], width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Training windows as the trainer builds them: inputs ``seq[:-1]``, labels ``seq[1:]``, -100 on padding."""
    input_ids = padded([sequence[:-1] for sequence in sequences], width)
    labels = padded([sequence[1:] for sequence in sequences], width)
    labels[input_ids == 0] = -100
    return input_ids, labels


def last_item_labels(histories: list[list[int]], targets: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation batches as the trainer builds them: the target at each history's last position only."""
    input_ids = padded(histories)
    labels = torch.full_like(input_ids, -100)
    labels[torch.arange(len(histories)), (input_ids != 0).sum(1) - 1] = torch.tensor(targets)
    return input_ids, labels


def random_sequences(count: int, seed: int, lengths=range(3, LENGTH + 2)) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = list(lengths)
    sequences = []
    for row in range(count):
        length = lengths[row % len(lengths)]
        sequences.append(torch.randint(1, NUM_ITEMS + 1, (length,), generator=generator).tolist())
    return sequences


# ---------------------------------------------------------------------------------------------------- behaviours


def check_output_shapes(backbone: Backbone, fusion: str) -> None:
    model = backbone.model(**fusion_settings(fusion))
    histories = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10]]
    users = user_inputs(model, len(histories))
    model.eval()
    out = model(padded(histories), output_hidden_states=True, **users)
    assert out.loss is None
    assert out.logits.shape == (3, NUM_ITEMS + 1)
    assert torch.isneginf(out.logits[:, 0]).all() and torch.isfinite(out.logits[:, 1:]).all()
    assert out.last_hidden_state.shape[0] == 3 and out.last_hidden_state.shape[2] == 16
    if backbone.causal:  # one output per item position, whatever the extra tokens
        assert out.last_hidden_state.shape[1] == padded(histories).shape[1]
    assert model(padded(histories), **users).last_hidden_state is None

    input_ids, labels = last_item_labels(histories, [4, 10, 11])
    out = model(input_ids, labels=labels, **users)
    assert out.logits.shape == (3, NUM_ITEMS + 1) and out.loss.ndim == 0 and torch.isfinite(out.loss)
    expected = torch.nn.functional.cross_entropy(out.logits, torch.tensor([4, 10, 11]))
    torch.testing.assert_close(out.loss, expected)

    model.train()
    input_ids, labels = next_item_labels([[1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11]])
    out = model(input_ids, labels=labels, **user_inputs(model, 2))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.logits.ndim == 2 and out.logits.shape[1] == NUM_ITEMS + 1
    if backbone.causal:  # one row per labelled position
        assert out.logits.shape[0] == int((labels != -100).sum())
    scores = model.score(histories, **users)
    assert model.training, "score() restores the training mode"
    assert scores.shape == (3, NUM_ITEMS + 1)


def check_sampled_bce_loss(backbone: Backbone) -> None:
    model = backbone.model(loss_type="bce", num_negatives=3)
    input_ids, labels = next_item_labels([[1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11]])
    model.train()
    out = model(input_ids, labels=labels)
    assert out.logits is None and out.loss.ndim == 0 and out.loss > 0
    out.loss.backward()
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0
    model.eval()
    input_ids, labels = last_item_labels([[1, 2, 3], [4, 5]], [9, 12])
    assert model(input_ids, labels=labels).logits.shape == (2, NUM_ITEMS + 1)


def check_causal_masking(backbone: Backbone) -> None:
    """Changing a later item leaves every earlier output unchanged and changes the outputs from there on."""
    model = backbone.model()
    model.eval()
    before = padded([[3, 14, 15, 9, 26, 5, 35, 8]])
    after = before.clone()
    after[0, 4] = 42
    hidden_before = model(before, output_hidden_states=True).last_hidden_state
    hidden_after = model(after, output_hidden_states=True).last_hidden_state
    torch.testing.assert_close(hidden_before[:, :4], hidden_after[:, :4])
    assert (hidden_before[:, 4:] - hidden_after[:, 4:]).abs().amax(dim=-1).min() > 1e-4


def check_padding_changes_nothing(backbone: Backbone) -> None:
    """Extra padding, and a longer neighbour in the batch, leave a sequence's scores unchanged."""
    model = backbone.model()
    model.eval()
    history = [7, 21, 3]
    alone = model(padded([history])).logits
    wider = model(padded([history], width=LENGTH)).logits
    beside_longer = model(padded([history, [1, 2, 3, 4, 5, 6, 7]])).logits[:1]
    torch.testing.assert_close(wider, alone)
    torch.testing.assert_close(beside_longer, alone)


def check_bidirectional_context(backbone: Backbone) -> None:
    """The prediction at a masked position depends on the items before it and on the items after it."""
    model = backbone.model()
    model.eval()
    mask = model.mask_token_id
    base = padded([[3, 14, mask, 9, 26]])
    hidden = model(base, output_hidden_states=True).last_hidden_state[0, 2]
    for position, item in [(0, 40), (4, 40)]:  # left of the mask, right of it
        changed = base.clone()
        changed[0, position] = item
        other = model(changed, output_hidden_states=True).last_hidden_state[0, 2]
        assert (other - hidden).abs().max() > 1e-4, f"item at {position} does not reach the masked position"
    # The next-item prediction reads the whole history, its first item included.
    assert not torch.allclose(model.score([[3, 14, 9, 26]]), model.score([[40, 14, 9, 26]]), atol=1e-4)


def check_cloze_training(backbone: Backbone) -> None:
    """Training masks real items only, at least one per sequence, and predicts the original items there; the
    label of the last item joins the sequence; inference appends the mask after the most recent items."""
    sequences = [[1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11, 12, 13]]  # the second fills the window with its label
    input_ids, labels = next_item_labels(sequences)
    model = backbone.model(mask_prob=1e-9)
    model.train()
    out = model(input_ids, labels=labels)  # practically nothing is drawn: only the last item is masked
    assert out.logits.shape == (2, NUM_ITEMS + 1)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, torch.tensor([4, 13])))

    model = backbone.model(mask_prob=1.0)
    model.train()
    out = model(input_ids, labels=labels)  # every real item is masked: 4 items, and 8 of 9 (window of 8)
    assert out.logits.shape == (4 + LENGTH, NUM_ITEMS + 1)

    model.eval()  # a full window loses its oldest item to the appended mask token
    full = list(range(1, LENGTH + 1))
    torch.testing.assert_close(model.score([full]), model.score([full[1:]]))
    assert not torch.allclose(model.score([full[1:]]), model.score([full[2:]]), atol=1e-4)

    input_ids, labels = next_item_labels(sequences)
    with pytest.raises(ValueError, match="labels must be -100 at every other position"):
        model(input_ids, labels=labels)


def check_training_step(backbone: Backbone, fusion: str) -> None:
    """The loss falls over a few optimizer steps and every trainable parameter changes; the texts stay frozen."""
    model = backbone.model(**fusion_settings(fusion))
    sequences = random_sequences(16, seed=1)
    train_inputs, train_labels = next_item_labels(sequences)
    eval_inputs, eval_labels = last_item_labels([sequence[:-1] for sequence in sequences], [s[-1] for s in sequences])
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    frozen = {name: buffer.clone() for name, buffer in model.named_buffers()}

    users = user_inputs(model, len(sequences))

    def eval_loss():
        model.eval()
        with torch.no_grad():
            return model(eval_inputs, labels=eval_labels, **users).loss.item()

    first = eval_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        model.train()
        loss = model(train_inputs, labels=train_labels, **users).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert eval_loss() < first - 0.2, "the loss did not fall"
    unchanged = [name for name, parameter in model.named_parameters() if torch.equal(parameter, before[name])]
    assert not unchanged, f"parameters that never changed: {unchanged}"
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, frozen[name]), f"buffer {name} changed"
    assert set(text_buffers(fusion)) <= set(frozen)


def check_save_load(backbone: Backbone, fusion: str, folder) -> None:
    backbone.register()
    model = backbone.model(**fusion_settings(fusion))
    model.eval()
    histories = [[1, 2, 3], [9, 8, 7, 6, 5, 4, 3, 2, 1], [50]]
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == backbone.config_class.model_type and config["fusion"] == split_variant(fusion)[0]
    loaded = AutoModel.from_pretrained(folder)  # plain from_pretrained: the class is registered
    assert type(loaded) is backbone.model_class
    # Reloaded weights may take other kernels (alignment, layout): equal up to float32 rounding, not to the bit.
    users = user_inputs(model, len(histories))
    torch.testing.assert_close(loaded.score(histories, **users), model.score(histories, **users))
    buffers, loaded_buffers = dict(model.named_buffers()), dict(loaded.named_buffers())
    assert set(loaded_buffers) == set(buffers)
    for name, buffer in buffers.items():  # a buffer read back from the file is the same bytes
        assert torch.equal(loaded_buffers[name], buffer), f"buffer {name} changed on the way"
    for name in text_buffers(fusion):
        assert loaded_buffers[name].abs().sum() > 0, f"{name} was never set"
    # "init" keeps no texts: its semantic start lives in the item-id table, which must come back as it was.
    assert torch.equal(loaded.get_input_embeddings().weight, model.get_input_embeddings().weight)


def check_remote_code(backbone: Backbone, folder, scratch, variants: dict[str, dict] | None = None) -> None:
    """Saved folders carry their code (``auto_map``) and load in a process that never imported lamar_hf.

    ``variants`` maps a name to the settings of one model (default: one ``gate`` model); all of them are saved
    and loaded in one fresh process. A variant's ``score_kwargs`` (JSON-ready) go to ``score`` on both sides."""
    backbone.register()
    variants = variants or {"gate": fusion_settings("gate")}
    histories = [[1, 2, 3], [9, 8, 7, 6, 5]]
    models, calls = {}, {}
    for name, settings in variants.items():
        settings = dict(settings)
        score_kwargs = settings.pop("score_kwargs", {})
        model = models[name] = backbone.model(**settings)
        score_kwargs |= {key: value.tolist() for key, value in user_inputs(model, len(histories)).items()}
        model.save_pretrained(folder / name)
        config = json.loads((folder / name / "config.json").read_text())
        assert set(config["auto_map"]) == {"AutoConfig", "AutoModel"}
        assert sorted(path.name for path in (folder / name).glob("*.py")) == sorted(
            [f"configuration_{backbone.config_class.model_type}.py", f"modeling_{backbone.config_class.model_type}.py"]
        )
        calls[name] = (str(folder / name), score_kwargs)
    script = textwrap.dedent(
        f"""
        import json, sys
        from transformers import AutoModel
        out = {{}}
        for name, (path, score_kwargs) in {calls!r}.items():
            model = AutoModel.from_pretrained(path, trust_remote_code=True)
            out[name] = {{"class": type(model).__name__, "module": type(model).__module__,
                         "scores": model.score({histories!r}, **score_kwargs).tolist()}}
            if not score_kwargs:
                out[name]["top"] = model.recommend([1, 2, 3], k=5)
        assert not any(name.startswith("lamar_hf") for name in sys.modules), "lamar_hf was imported"
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "HF_HOME": str(scratch / "hf_home"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    env["OMP_NUM_THREADS"] = "1"  # the machine's cores are shared
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=scratch, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    for name, model in models.items():
        assert remote[name]["class"] == backbone.model_class.__name__
        assert remote[name]["module"].startswith("transformers_modules."), remote[name]["module"]
        score_kwargs = calls[name][1]
        torch.testing.assert_close(torch.tensor(remote[name]["scores"]), model.score(histories, **score_kwargs))
        if "top" in remote[name]:
            assert_top_items(remote[name]["top"], model.score([[1, 2, 3]])[0])


def check_bad_input(backbone: Backbone) -> None:
    model = backbone.model()
    with pytest.raises(ValueError, match="history 1 is empty"):
        model.recommend([[1, 2], []], k=3)
    with pytest.raises(ValueError, match="unknown item id 51 at position 2"):
        model.recommend([1, 2, 51], k=3)
    with pytest.raises(ValueError, match="unknown item id 0"):
        model.recommend([0, 2], k=3)
    with pytest.raises(ValueError, match="k must be between 1"):
        model.recommend([1, 2], k=NUM_ITEMS + 1)
    with pytest.raises(ValueError, match="right-padded"):
        model(torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match="exceeds max_history_length"):
        model(torch.ones(1, LENGTH + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        model.eval()(torch.tensor([[1, 2], [0, 0]]))
    with pytest.raises(ValueError, match="no target"):
        model(torch.tensor([[1, 2]]), labels=torch.full((1, 2), -100))
    with pytest.raises(ValueError, match="missing"):
        backbone.model(**fusion_settings("add")).set_text_embeddings({"scenario": torch.zeros(NUM_ITEMS + 1, TEXT_DIM)})
    # A history longer than the window is cut to its most recent items, as documented.
    long_history = list(range(1, 31))
    assert_top_items(model.recommend(long_history, k=5), model.score([long_history[-LENGTH:]])[0])
    top = model.recommend([1, 2, 3], k=NUM_ITEMS, exclude_history=True)
    assert not {1, 2, 3} & set(top[: NUM_ITEMS - 3]) and len(top) == NUM_ITEMS
    # Excluding the history excludes all of it, also the items before the window that the model reads.
    excluded = model.score([long_history], exclude_history=True)[0]
    assert torch.isneginf(excluded[long_history]).all() and torch.isfinite(excluded[len(long_history) + 1 :]).all()
    batch = model.recommend([[1, 2, 3], [4]], k=4)
    assert_top_items(batch[0], model.score([[1, 2, 3]])[0])
    assert_top_items(batch[1], model.score([[4]])[0])
