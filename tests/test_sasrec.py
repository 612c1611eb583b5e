"""The signal-aware SASRec on a tiny configuration (50 items, hidden 16, 2 layers, 2 heads, length 8)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel

import lamar_hf.models  # noqa: F401  (registers the auto classes)
from lamar_hf.models import LamarSASRecConfig, LamarSASRecModel
from ranking_checks import assert_top_items

NUM_ITEMS, TEXT_DIM = 50, 12
FUSIONS = ("none", "add", "concat", "gate")


class LamarSASRecModelTester:
    """Builds tiny models and batches; one ``check_*`` method per behaviour."""

    def get_config(self, fusion: str = "none", **overrides) -> LamarSASRecConfig:
        kwargs = dict(
            num_items=NUM_ITEMS, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            max_history_length=8, hidden_dropout_prob=0.1, attention_dropout_prob=0.1, fusion=fusion,
            text_kinds=["scenario", "metadata"] if fusion != "none" else [], text_embedding_dim=TEXT_DIM,
        )
        kwargs.update(overrides)
        return LamarSASRecConfig(**kwargs)

    def text_embeddings(self, seed: int = 0) -> dict:
        generator = torch.Generator().manual_seed(seed)
        return {kind: torch.randn(NUM_ITEMS + 1, TEXT_DIM, generator=generator) for kind in ("scenario", "metadata")}

    def get_model(self, fusion: str = "none", **overrides) -> LamarSASRecModel:
        torch.manual_seed(0)
        model = LamarSASRecModel(self.get_config(fusion, **overrides))
        if fusion != "none":
            model.set_text_embeddings(self.text_embeddings())
        return model

    def batch(self):
        """Two right-padded training sequences; labels are the next items, -100 on padding."""
        input_ids = torch.tensor([[1, 2, 3, 4, 5, 0, 0, 0], [10, 11, 12, 13, 14, 15, 16, 17]])
        labels = torch.tensor([[2, 3, 4, 5, 6, -100, -100, -100], [11, 12, 13, 14, 15, 16, 17, 18]])
        return input_ids, labels


tester = LamarSASRecModelTester()


@pytest.mark.parametrize("fusion", FUSIONS)
def test_output_shapes(fusion):
    model = tester.get_model(fusion)
    input_ids, labels = tester.batch()
    out = model(input_ids, labels=labels, output_hidden_states=True)
    assert out.loss.ndim == 0
    assert out.logits.shape == (13, NUM_ITEMS + 1)  # 5 + 8 labelled positions, never the padding
    assert out.last_hidden_state.shape == (2, 8, 16)
    assert torch.isneginf(out.logits[:, 0]).all()
    model.eval()
    assert model(input_ids).logits.shape == (2, NUM_ITEMS + 1)
    assert model.score([[1, 2], [3]]).shape == (2, NUM_ITEMS + 1)


SASREC_BLOCK = {"residual_from_norm": True, "hidden_act": "relu"}  # the SASRec authors' block (RecTools')


@pytest.mark.parametrize("block", ({"norm_first": True}, {"norm_first": False}, SASREC_BLOCK))
def test_causal_masking_later_items_do_not_change_earlier_outputs(block):  # positions from the start
    model = tester.get_model("gate", **block).eval()
    first = torch.tensor([[5, 6, 7, 8, 9, 10]])
    second = torch.tensor([[5, 6, 7, 8, 30, 40]])  # differs from position 4 on
    hidden_first = model(first, output_hidden_states=True).last_hidden_state
    hidden_second = model(second, output_hidden_states=True).last_hidden_state
    torch.testing.assert_close(hidden_first[:, :4], hidden_second[:, :4])
    assert not torch.allclose(hidden_first[:, 4:], hidden_second[:, 4:])


def test_padding_does_not_change_scores():
    model = tester.get_model("add").eval()
    short = model(torch.tensor([[3, 4, 5]])).logits
    padded = model(torch.tensor([[3, 4, 5, 0, 0, 0, 0, 0]])).logits
    torch.testing.assert_close(short, padded)


@pytest.mark.parametrize(("fusion", "norm_first", "repeat_bias"),
                         [(fusion, True, False) for fusion in FUSIONS] + [("gate", False, False), ("add", True, True)])
def test_loss_falls_and_every_trainable_parameter_changes(fusion, norm_first, repeat_bias):
    # the last case also reads positions from the end, drops out item rows and has the SASRec authors' block
    rectools_style = dict(position_order="from_end", item_dropout_prob=0.1, **SASREC_BLOCK) if repeat_bias else {}
    model = tester.get_model(fusion, norm_first=norm_first, repeat_bias=repeat_bias, **rectools_style)
    assert (model.repeat_score is not None) is repeat_bias
    # pre-norm blocks end with a layer norm; post-norm blocks start with one on the input embeddings
    assert isinstance(model.final_norm if norm_first else model.input_norm, torch.nn.LayerNorm)
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    text_buffer = model.item_table.text_embeddings.clone() if fusion != "none" else None
    input_ids, labels = tester.batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(12):
        optimizer.zero_grad()
        loss = model(input_ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.7
    unchanged = [name for name, p in model.named_parameters() if p.requires_grad and torch.equal(before[name], p)]
    assert unchanged == []
    if text_buffer is not None:  # the sentence embeddings are frozen
        assert torch.equal(model.item_table.text_embeddings, text_buffer)
        assert "item_table.text_embeddings" in model.state_dict()


def test_sampled_bce_loss_trains_without_full_logits():
    model = tester.get_model("add", loss_type="bce", num_negatives=3)
    input_ids, labels = tester.batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(12):
        optimizer.zero_grad()
        out = model(input_ids, labels=labels)
        assert out.logits is None
        out.loss.backward()
        optimizer.step()
        first = first if first is not None else out.loss.item()
    assert out.loss.item() < first
    model.eval()
    assert model(input_ids, labels=labels).logits.shape == (13, NUM_ITEMS + 1)


@pytest.mark.parametrize("loss_type", ("ce", "bce"))
@pytest.mark.parametrize("users_pick_items_again", (False, True))
def test_repeat_bias_learns_whether_users_pick_items_again(loss_type, users_pick_items_again):
    model = tester.get_model(repeat_bias=True, loss_type=loss_type, num_negatives=5, hidden_dropout_prob=0.0,
                             attention_dropout_prob=0.0)
    if users_pick_items_again:  # from the third position on, the next item is one already read
        input_ids = torch.tensor([[1, 2, 1, 2, 1, 2, 1, 2], [7, 8, 9, 7, 8, 9, 7, 8]])
        labels = torch.tensor([[2, -100, 2, 1, 2, 1, 2, 1], [8, 9, -100, 8, 9, 7, 8, 9]])
    else:  # never
        input_ids, labels = tester.batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(30):
        optimizer.zero_grad()
        model(input_ids, labels=labels).loss.backward()
        optimizer.step()
    assert (model.repeat_score.item() > 0.1) if users_pick_items_again else (model.repeat_score.item() < -0.1)


def test_repeat_bias_covers_only_the_items_read_so_far():
    model = tester.get_model(repeat_bias=True).eval()
    input_ids, labels = tester.batch()
    neutral = model(input_ids, labels=labels).logits
    with torch.no_grad():
        model.repeat_score.fill_(-3.0)
    biased = model(input_ids, labels=labels).logits
    shift = (biased - neutral)[:, 1:]  # column 0 (padding) is -inf in both
    # logits rows are the labelled positions in row-major order: row r scores the item after position t
    expected = torch.zeros_like(shift)
    row = 0
    for sequence, sequence_labels in zip(input_ids.tolist(), labels.tolist()):
        for position, label in enumerate(sequence_labels):
            if label != -100:
                for item in sequence[: position + 1]:
                    expected[row, item - 1] = -3.0
                row += 1
    torch.testing.assert_close(shift, expected)
    # serving reads the whole history: its items, and no other, are pushed down
    history = [4, 9, 30]
    shift = model.score([history])[0, 1:] - tester.get_model(repeat_bias=True).eval().score([history])[0, 1:]
    assert sorted((shift != 0).nonzero().flatten().add(1).tolist()) == history


@pytest.mark.parametrize(("norm_first", "repeat_bias"), [(True, False), (False, False), (True, True)])
def test_save_and_load_give_identical_scores(tmp_path, norm_first, repeat_bias):
    positions = {"position_order": "from_end", **SASREC_BLOCK} if repeat_bias else {}
    model = tester.get_model("gate", norm_first=norm_first, repeat_bias=repeat_bias, **positions).eval()
    if repeat_bias:
        with torch.no_grad():
            model.repeat_score.fill_(-0.75)
    histories = [[1, 2, 3], [7], list(range(20, 40))]
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_lamar_sasrec.LamarSASRecConfig",
        "AutoModel": "modeling_lamar_sasrec.LamarSASRecModel",
    }
    assert (tmp_path / "modeling_lamar_sasrec.py").is_file() and (tmp_path / "configuration_lamar_sasrec.py").is_file()
    assert isinstance(AutoConfig.from_pretrained(tmp_path), LamarSASRecConfig)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded) is LamarSASRecModel and loaded.config.norm_first is norm_first
    assert loaded.config.repeat_bias is repeat_bias
    assert loaded.config.residual_from_norm is repeat_bias and loaded.config.hidden_act == ("relu" if repeat_bias else "gelu")
    # Reloaded weights may take other kernels (alignment, layout): equal up to float32 rounding, not to the bit.
    torch.testing.assert_close(loaded.score(histories), model.score(histories))
    assert_top_items(loaded.recommend([1, 2, 3], k=5), model.score([[1, 2, 3]])[0])


FRESH_PROCESS = """
import json, sys
import torch
from transformers import AutoModel

folder, histories = sys.argv[1], json.loads(sys.argv[2])
model = AutoModel.from_pretrained(folder, trust_remote_code=True)
print(json.dumps({
    "lamar_hf_imported": sorted(m for m in sys.modules if m.split(".")[0] == "lamar_hf"),
    "class": type(model).__module__ + "." + type(model).__name__,
    "scores": model.score(histories).tolist(),
}))
"""


def test_trust_remote_code_loads_a_saved_folder_in_a_process_that_never_imported_lamar_hf(tmp_path):
    model = tester.get_model("concat").eval()
    histories = [[1, 2, 3], [40, 41]]
    model.save_pretrained(tmp_path / "model")
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    # Run from an empty folder so that the repository's lamar_hf is not importable by accident.
    process = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FRESH_PROCESS), str(tmp_path / "model"), json.dumps(histories)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    out = json.loads(process.stdout.strip().splitlines()[-1])
    assert out["lamar_hf_imported"] == []
    assert out["class"].endswith("modeling_lamar_sasrec.LamarSASRecModel")
    assert not out["class"].startswith("lamar_hf")
    # Another process may take other kernels: equal up to float32 rounding, not to the bit.
    torch.testing.assert_close(torch.tensor(out["scores"]), model.score(histories))


def test_recommend_returns_top_items_and_can_leave_out_the_history():
    model = tester.get_model("add").eval()
    scores = model.score([[1, 2, 3]])[0]
    top = model.recommend([1, 2, 3], k=5)
    assert top == scores.topk(5).indices.tolist()
    assert 0 not in model.recommend([1, 2, 3], k=NUM_ITEMS)  # padding is never recommended
    batch = model.recommend([[1, 2, 3], [4]], k=3)  # padded into one batch: other kernels than one at a time
    assert_top_items(batch[0], scores)
    assert_top_items(batch[1], model.score([[4]])[0])
    filtered = model.recommend([1, 2, 3], k=NUM_ITEMS - 3, exclude_history=True)
    assert not {1, 2, 3} & set(filtered) and len(set(filtered)) == NUM_ITEMS - 3
    assert model.training is False


def test_bad_histories_get_clear_errors_or_documented_truncation():
    model = tester.get_model("none")
    with pytest.raises(ValueError, match=r"history 1 has unknown item id 51 at position 2; this model knows items 1\.\.50"):
        model.recommend([[1, 2], [3, 4, 51]], k=5)
    with pytest.raises(ValueError, match="unknown item id 0"):
        model.recommend([0, 1], k=5)
    with pytest.raises(ValueError, match="history 0 is empty"):
        model.recommend([], k=5)
    with pytest.raises(ValueError, match="k must be between 1 and"):
        model.recommend([1], k=51)
    with pytest.raises(TypeError):
        model.recommend([1.5, 2], k=3)
    # Longer than max_history_length (8): only the most recent 8 items are read, as in training.
    long = list(range(1, 21))
    torch.testing.assert_close(model.score([long]), model.score([long[-8:]]))
    assert_top_items(model.recommend(long, k=4), model.score([long[-8:]])[0])
    assert model.training  # score() restored the training mode


def test_the_sasrec_block_is_the_sasrec_authors_block_as_rectools_writes_it():
    """RecTools' SASRecTransformerLayer, written out with torch's own MultiheadAttention and the block's weights:
    queries from the normalised input, keys and values from the input, residuals from the normalised input."""
    from lamar_hf.models.lamar_sasrec.modeling_lamar_sasrec import LamarSASRecLayer

    config = tester.get_config(**SASREC_BLOCK)
    torch.manual_seed(0)
    layer = LamarSASRecLayer(config).eval()
    attention = torch.nn.MultiheadAttention(16, 2, batch_first=True).eval()
    with torch.no_grad():
        attention.in_proj_weight.copy_(layer.attention.qkv.weight)
        attention.in_proj_bias.copy_(layer.attention.qkv.bias)
        attention.out_proj.weight.copy_(layer.attention.output.weight)
        attention.out_proj.bias.copy_(layer.attention.output.bias)
    seqs = torch.randn(3, 8, 16) * 3 + 1  # far from normalised, so that normalising keys or not shows
    causal = torch.ones(8, 8, dtype=torch.bool).triu(1)
    q = layer.attention_norm(seqs)
    seqs_after_attention = q + attention(q, seqs, seqs, attn_mask=causal, need_weights=False)[0]
    ff_input = layer.feed_forward_norm(seqs_after_attention)
    expected = layer.feed_forward(ff_input) + ff_input
    assert isinstance(layer.feed_forward[1], torch.nn.ReLU)
    torch.testing.assert_close(layer(seqs), expected, rtol=1e-4, atol=1e-5)
    standard = LamarSASRecLayer(tester.get_config(hidden_act="relu"))
    standard.load_state_dict(layer.state_dict())
    assert not torch.allclose(standard.eval()(seqs), expected, atol=1e-2)  # the standard pre-norm block differs


@pytest.mark.parametrize("user_token", (False, True))
def test_a_batch_of_unequal_lengths_gives_the_loss_and_gradients_of_its_sequences_one_at_a_time(user_token):
    """Padding, positions counted from each sequence's end and the user token never mix sequences: the mean loss of
    a batch of lengths 1 to 8, and its gradients, are those of its sequences one at a time."""
    extra = {"user_text_embedding_dim": 6} if user_token else {}
    model = tester.get_model("add", position_order="from_end", **extra).eval()  # no dropout; gradients still flow
    sequences = [[1, 2], [3, 4, 5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [15, 16, 17, 18, 19], [20, 21, 22, 23], [24, 25]]
    users = torch.randn(len(sequences), 6) if user_token else None

    def loss_and_gradients(batch, user_embeddings):
        width = max(len(sequence) for sequence in batch) - 1
        input_ids = torch.tensor([sequence[:-1] + [0] * (width - len(sequence) + 1) for sequence in batch])
        labels = torch.tensor([sequence[1:] + [-100] * (width - len(sequence) + 1) for sequence in batch])
        model.zero_grad()
        loss = model(input_ids, labels=labels, user_embeddings=user_embeddings).loss
        loss.backward()
        return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    batch_loss, batch_gradients = loss_and_gradients(sequences, users)
    counts = torch.tensor([len(sequence) - 1 for sequence in sequences], dtype=torch.float)
    alone = [loss_and_gradients([sequence], None if users is None else users[row : row + 1])
             for row, sequence in enumerate(sequences)]
    weights = counts / counts.sum()  # the batch loss is the mean over all scored positions
    torch.testing.assert_close(batch_loss, sum(w * loss for w, (loss, _) in zip(weights, alone)))
    for name, gradient in batch_gradients.items():
        expected = sum(w * gradients[name] for w, (_, gradients) in zip(weights, alone) if name in gradients)
        torch.testing.assert_close(gradient, expected, rtol=1e-4, atol=1e-6, msg=name)


def test_forward_refuses_bad_batches():
    model = tester.get_model("none")
    with pytest.raises(ValueError, match="right-padded"):
        model(torch.tensor([[0, 0, 1, 2]]))
    with pytest.raises(ValueError, match="exceeds max_history_length"):
        model(torch.ones(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        model(torch.tensor([[1, 2], [0, 0]]))
    with pytest.raises(ValueError, match="no target"):
        model(torch.tensor([[1, 2]]), labels=torch.tensor([[-100, -100]]))


def test_config_and_text_embeddings_are_checked():
    with pytest.raises(ValueError, match="fusion must be one of"):
        LamarSASRecConfig(num_items=5, fusion="sum")
    with pytest.raises(ValueError, match="needs at least one entry in text_kinds"):
        LamarSASRecConfig(num_items=5, fusion="add")
    with pytest.raises(ValueError, match="loss_type"):
        LamarSASRecConfig(num_items=5, loss_type="bpr")
    with pytest.raises(ValueError, match="residual_from_norm is a pre-norm block layout: it needs norm_first=True"):
        LamarSASRecConfig(num_items=5, residual_from_norm=True, norm_first=False)
    with pytest.raises(ValueError, match="hidden_act must be one of gelu, relu, got 'tanh'"):
        LamarSASRecConfig(num_items=5, hidden_act="tanh")
    with pytest.raises(ValueError, match="initialization must be one of normal, xavier_normal, got 'xavier'"):
        LamarSASRecConfig(num_items=5, initialization="xavier")
    with pytest.raises(ValueError, match="num_items"):
        LamarSASRecModel(LamarSASRecConfig())
    model = LamarSASRecModel(tester.get_config("add"))
    with pytest.raises(ValueError, match="missing"):
        model.set_text_embeddings({"scenario": torch.zeros(NUM_ITEMS + 1, TEXT_DIM)})
    with pytest.raises(ValueError, match="shape"):
        model.set_text_embeddings({"scenario": torch.zeros(NUM_ITEMS, TEXT_DIM), "metadata": torch.zeros(NUM_ITEMS, TEXT_DIM)})
    with pytest.raises(ValueError, match="uses no text embeddings"):
        LamarSASRecModel(tester.get_config("none")).set_text_embeddings(tester.text_embeddings())


def test_repeat_bias_ranks_the_same_without_gradients_for_histories_with_repeats():
    """Ranking (no gradients) and training (gradients) shift the history by different code: both give the same
    scores, and an item read twice is shifted once."""
    model = tester.get_model(repeat_bias=True).eval()
    with torch.no_grad():
        model.repeat_score.fill_(-2.5)
    input_ids = torch.tensor([[3, 5, 3, 3, 0, 0], [7, 2, 7, 9, 2, 4]])  # right padding, items read two and three times
    with_gradients = model(input_ids).logits
    with torch.no_grad():
        without = model(input_ids).logits
    torch.testing.assert_close(without, with_gradients.detach())
    with torch.no_grad():
        model.repeat_score.zero_()
        neutral = model(input_ids).logits
    shift = (without - neutral)[:, 1:]
    assert sorted((shift[0] != 0).nonzero().flatten().add(1).tolist()) == [3, 5]
    torch.testing.assert_close(shift[0, 2], torch.tensor(-2.5))
    assert sorted((shift[1] != 0).nonzero().flatten().add(1).tolist()) == [2, 4, 7, 9]


def test_the_full_softmax_gives_the_repeat_score_one_gradient_per_distinct_item_read():
    """The full-softmax loss's gradient of the repeat score is that of adding it once to each distinct item a
    position has read (items read two and three times included), computed here from a mask built by hand."""
    model = tester.get_model(repeat_bias=True, loss_type="ce").eval()  # eval: no dropout; gradients still on
    with torch.no_grad():
        model.repeat_score.fill_(0.7)
    input_ids = torch.tensor([[3, 5, 3, 3, 6, 0], [7, 2, 7, 9, 2, 4]])
    labels = torch.tensor([[5, 3, 3, 6, 1, -100], [2, 7, 9, 2, 4, 8]])
    model(input_ids, labels=labels).loss.backward()
    rows, positions = (labels != -100).nonzero(as_tuple=True)
    with torch.no_grad():
        model.repeat_score.zero_()
        hidden = model(input_ids, labels=labels, output_hidden_states=True).last_hidden_state
        plain = hidden[rows, positions] @ model.item_table().T
    read = torch.zeros_like(plain, dtype=torch.bool)
    for query, (row, position) in enumerate(zip(rows.tolist(), positions.tolist())):
        read[query, input_ids[row, : position + 1]] = True
    read[:, 0] = False
    score = torch.tensor(0.7, requires_grad=True)
    shifted = (plain + score * read).index_fill(1, torch.tensor([0]), float("-inf"))
    F.cross_entropy(shifted, labels[rows, positions]).backward()
    torch.testing.assert_close(model.repeat_score.grad, score.grad)


@pytest.mark.parametrize(("loss_type", "negative_sharing"), [("ce", "position"), ("sampled_softmax", "position"),
                                                             ("sampled_softmax", "sequence")])
def test_item_dropout_acts_only_while_training(loss_type, negative_sharing):
    settings = dict(loss_type=loss_type, num_negatives=4, negative_sharing=negative_sharing, hidden_dropout_prob=0.0,
                    attention_dropout_prob=0.0)
    plain = tester.get_model(**settings)
    dropped = tester.get_model(item_dropout_prob=0.5, **settings)
    dropped.load_state_dict(plain.state_dict())
    input_ids, labels = tester.batch()

    def training_loss(model):
        torch.manual_seed(1)
        return model.train()(input_ids, labels=labels).loss

    assert torch.equal(training_loss(plain), training_loss(plain))  # nothing else is random but the negatives
    assert not torch.allclose(training_loss(dropped), training_loss(plain))
    training_loss(dropped).backward()
    assert dropped.item_table.item_embeddings.weight.grad.abs().sum() > 0
    plain.eval(), dropped.eval()
    torch.testing.assert_close(dropped(input_ids, labels=labels).logits, plain(input_ids, labels=labels).logits)
    with pytest.raises(ValueError, match="item_dropout_prob"):
        tester.get_config(item_dropout_prob=1.0)


def test_positions_from_the_end_give_every_last_item_position_zero():
    model = tester.get_model(position_order="from_end").eval()
    read = []
    model.position_embeddings.register_forward_hook(lambda module, inputs, output: read.append(inputs[0]))
    input_ids, labels = tester.batch()
    model(input_ids, labels=labels)
    assert read[-1].tolist() == [[4, 3, 2, 1, 0, 0, 0, 0], [7, 6, 5, 4, 3, 2, 1, 0]]
    # a history scores the same alone as in a batch beside a longer one, padded
    alone = model.score([[10, 11, 12]])
    batched = model.score([[10, 11, 12], [1, 2, 3, 4, 5, 6]])
    torch.testing.assert_close(batched[:1], alone)
    assert not torch.allclose(alone, tester.get_model(position_order="from_start").eval().score([[10, 11, 12]]))
    with pytest.raises(ValueError, match="position_order"):
        tester.get_config(position_order="backwards")


def test_xavier_normal_initialisation_starts_every_weight_matrix_as_rectools_does_and_survives_a_reload(tmp_path):
    config = dict(num_items=3000, hidden_size=64, num_hidden_layers=1, num_attention_heads=1, intermediate_size=64,
                  repeat_bias=True)
    torch.manual_seed(0)
    normal = LamarSASRecModel(LamarSASRecConfig(**config))
    torch.manual_seed(0)
    xavier = LamarSASRecModel(LamarSASRecConfig(**config, initialization="xavier_normal"))
    normal_parameters = dict(normal.named_parameters())
    for name, parameter in xavier.named_parameters():
        if parameter.dim() < 2:
            continue
        fan_out, fan_in = parameter.shape
        expected = (2 / (fan_in + fan_out)) ** 0.5  # Xavier-normal, gain 1
        torch.testing.assert_close(parameter.std().item(), expected, rtol=0.1, atol=0.0, msg=name)
        torch.testing.assert_close(normal_parameters[name].std().item(), 0.02, rtol=0.1, atol=0.0)
    assert not xavier.item_table.item_embeddings.weight[0].any()  # padding stays zero
    biases = [p for n, p in xavier.named_parameters() if n.endswith(".bias") and "norm" not in n]
    assert biases and not any(bias.any() for bias in biases)
    xavier.save_pretrained(tmp_path)
    reloaded = LamarSASRecModel.from_pretrained(tmp_path)
    assert reloaded.config.initialization == "xavier_normal"
    for (name, parameter), (_, again) in zip(xavier.named_parameters(), reloaded.named_parameters()):
        torch.testing.assert_close(again, parameter, msg=name)
