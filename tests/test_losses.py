"""The losses of the strong baselines on tiny configs of every backbone: sampled softmax over drawn negatives (the
"SS" of RecTools' SASRec+SS, optionally drawn by popularity with the logQ correction) and gSASRec's gBCE, beside
full-softmax CE and sampled BCE; their settings, their draws, their wiring into training, and save/load."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, HfArgumentParser

import backbone_battery as battery
from backbone_battery import NUM_ITEMS, last_item_labels, next_item_labels, random_sequences
from lamar_hf.training import ModelArguments, build_model
from test_backbones import BACKBONES, CAUSAL, FUSIONS, SASREC

NEGATIVES = 20
SAMPLED_LOSSES = [
    pytest.param({"loss_type": "bce"}, id="bce"),
    pytest.param({"loss_type": "sampled_softmax"}, id="sampled_softmax"),
    pytest.param({"loss_type": "sampled_softmax", "negative_sampling": "popularity"}, id="sampled_softmax-popularity"),
    pytest.param({"loss_type": "gbce"}, id="gbce"),
    pytest.param({"loss_type": "sampled_softmax", "negative_sharing": "sequence"}, id="sampled_softmax-per-sequence"),
    pytest.param({"loss_type": "sampled_softmax", "negative_sharing": "batch"}, id="sampled_softmax-per-batch"),
]


def skewed_counts(zero_items=(3, 4, 5)) -> torch.Tensor:
    """Training counts with a popular head, a long tail and a few items never seen (never to be drawn)."""
    counts = torch.arange(NUM_ITEMS + 1, 0, -1).float()
    counts[list(zero_items)] = 0
    return counts


def sampled_model(backbone: battery.Backbone, seed: int = 0, **settings):
    model = backbone.model(seed, num_negatives=NEGATIVES, **settings)
    if model.config.negative_sampling == "popularity":
        model.set_item_counts(skewed_counts())
    return model


def chain_sequences(count: int) -> list[list[int]]:
    """Item i is always followed by i + 1 (a task a model learns in a few steps)."""
    return [[(start + step) % NUM_ITEMS + 1 for step in range(7)] for start in range(0, 3 * count, 3)]


def recording_draws(model) -> list[torch.Tensor]:
    """Wrap the model's negative sampler so that every id it draws is kept for the test to look at."""
    drawn, draw = [], model._draw_negatives

    def recorded(*args, **kwargs):
        negatives = draw(*args, **kwargs)
        drawn.append(negatives.clone())
        return negatives

    model._draw_negatives = recorded
    return drawn


@pytest.mark.parametrize("settings", SAMPLED_LOSSES)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_each_sampled_loss_falls_in_a_few_steps(backbone, settings):
    no_dropout = {"hidden_dropout_prob": 0.0} | ({} if backbone.name == "gru4rec" else {"attention_dropout_prob": 0.0})
    model = sampled_model(backbone, **settings, **no_dropout)
    input_ids, labels = next_item_labels(chain_sequences(16))
    model.train()

    def loss_on_fixed_draws() -> float:  # the same negatives (and BERT4Rec masks) before and after training
        total = 0.0
        for seed in range(5):
            torch.manual_seed(100 + seed)
            total += model(input_ids, labels=labels).loss.item()
        return total

    before = loss_on_fixed_draws()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(40):
        torch.manual_seed(step)
        out = model(input_ids, labels=labels)
        assert out.logits is None, "a sampled loss never needs the full logits in training"
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert loss_on_fixed_draws() < 0.95 * before


@pytest.mark.parametrize("settings", SAMPLED_LOSSES)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_sampled_negatives_are_real_items_never_padding(backbone, settings):
    model = sampled_model(backbone, **settings)
    drawn = recording_draws(model)
    model.train()
    for seed in range(20):
        torch.manual_seed(seed)
        model(*next_item_labels(random_sequences(8, seed=seed)))
    ids = torch.cat([negatives.reshape(-1) for negatives in drawn])
    assert len(drawn) == 20 and ids.dtype == torch.long
    assert int(ids.min()) >= 1 and int(ids.max()) <= NUM_ITEMS
    if settings.get("negative_sharing") == "batch":  # one draw for the whole batch
        assert all(negatives.shape == (NEGATIVES,) for negatives in drawn)
    elif settings.get("negative_sharing") == "sequence":  # one draw per sequence of the batch
        assert all(negatives.shape == (8, NEGATIVES) for negatives in drawn)
    else:  # negatives of its own for each labelled position
        assert all(negatives.ndim == 2 and negatives.shape[1] == NEGATIVES for negatives in drawn)
    if settings.get("negative_sampling") == "popularity":
        assert not set(ids.tolist()) & {3, 4, 5}, "an item never seen in training is never drawn"


def test_uniform_draws_cover_every_item_and_popularity_draws_follow_the_counts():
    model = sampled_model(SASREC, loss_type="sampled_softmax")
    torch.manual_seed(0)
    uniform = model._draw_negatives((20_000,), "cpu")
    assert set(uniform.tolist()) == set(range(1, NUM_ITEMS + 1))
    popular = sampled_model(SASREC, loss_type="sampled_softmax", negative_sampling="popularity")
    draws = popular._draw_negatives((50_000,), "cpu")
    frequencies = torch.bincount(draws, minlength=NUM_ITEMS + 1).float() / draws.numel()
    counts = skewed_counts()
    counts[0] = 0
    torch.testing.assert_close(frequencies, counts / counts.sum(), rtol=0, atol=0.01)


def scores_of(model, input_ids, labels):
    """In evaluation (no dropout, no masking) a sampled loss is computed beside the full logits it samples from:
    the output, each target's score, each row's scores of the drawn negatives, and the negatives' ids."""
    model.eval()
    drawn = recording_draws(model)
    out = model(input_ids, labels=labels)
    targets = labels[labels != -100]
    (negatives,) = drawn
    negative_scores = out.logits[:, negatives] if negatives.ndim == 1 else out.logits.gather(1, negatives)
    return out, out.logits[torch.arange(len(targets)), targets], negative_scores, negatives


EVALUATION_BATCH = ([[1, 2, 3], [4, 5, 6, 7], [9]], [4, 30, 2])


@pytest.mark.parametrize("negative_sharing", ["position", "sequence", "batch"])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_sampled_softmax_is_cross_entropy_over_the_target_and_its_negatives(backbone, negative_sharing):
    model = sampled_model(backbone, loss_type="sampled_softmax", negative_sharing=negative_sharing)
    out, positive, negative, _ = scores_of(model, *last_item_labels(*EVALUATION_BATCH))
    expected = F.cross_entropy(torch.cat([positive[:, None], negative], dim=1), torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("backbone", CAUSAL)
def test_negatives_drawn_per_sequence_are_shared_by_every_scored_position_of_that_sequence(backbone):
    """Several scored positions per sequence, of unequal counts: each position is scored against its own
    sequence's draw, and the loss is the cross-entropy over the target and those negatives."""
    model = sampled_model(backbone, loss_type="sampled_softmax", negative_sharing="sequence")
    model.eval()
    drawn = recording_draws(model)
    input_ids, labels = next_item_labels([[1, 2, 3, 4, 5], [6, 7], [8, 9, 10, 11]])
    out = model(input_ids, labels=labels)
    (negatives,) = drawn
    rows, positions = (labels != -100).nonzero(as_tuple=True)
    assert negatives.shape == (3, NEGATIVES) and rows.tolist() == [0, 0, 0, 0, 1, 2, 2, 2]
    targets = labels[rows, positions]
    positive = out.logits[torch.arange(len(targets)), targets]
    negative = out.logits.gather(1, negatives[rows])
    expected = F.cross_entropy(torch.cat([positive[:, None], negative], dim=1), torch.zeros(len(targets), dtype=torch.long))
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_logq_correction_subtracts_the_log_draw_probability_from_each_negative(backbone):
    model = sampled_model(backbone, loss_type="sampled_softmax", negative_sampling="popularity")
    out, positive, negative, negatives = scores_of(model, *last_item_labels(*EVALUATION_BATCH))
    counts = skewed_counts()
    counts[0] = 0
    log_q = (counts / counts.sum()).log()[negatives]
    assert torch.isfinite(log_q).all() and log_q.unique().numel() > 1
    targets = torch.zeros(3, dtype=torch.long)
    corrected = F.cross_entropy(torch.cat([positive[:, None], negative - log_q], dim=1), targets)
    uncorrected = F.cross_entropy(torch.cat([positive[:, None], negative], dim=1), targets)
    assert not torch.allclose(corrected, uncorrected)
    torch.testing.assert_close(out.loss, corrected)


@pytest.mark.parametrize("gbce_t", [0.0, 0.75, 1.0])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_gbce_raises_the_target_probability_to_beta(backbone, gbce_t):
    model = sampled_model(backbone, loss_type="gbce", gbce_t=gbce_t)
    out, positive, negative, _ = scores_of(model, *last_item_labels(*EVALUATION_BATCH))
    alpha = NEGATIVES / (NUM_ITEMS - 1)
    beta = alpha * (gbce_t * (1 - 1 / alpha) + 1 / alpha)  # Petrov & Macdonald, RecSys 2023, eq. for beta
    assert beta == pytest.approx({0.0: 1.0, 1.0: alpha}.get(gbce_t, beta))
    # BCE with sigmoid(s) ** beta as the target's probability, averaged over all scores as in the gSASRec code.
    positive_terms = -torch.log(torch.sigmoid(positive.double()) ** beta)
    negative_terms = -torch.log(1 - torch.sigmoid(negative.double()))
    expected = torch.cat([positive_terms, negative_terms.reshape(-1)]).mean()
    torch.testing.assert_close(out.loss.double(), expected)
    if gbce_t == 0.0:  # t = 0 is plain BCE over the target and its negatives
        scores = torch.cat([positive[:, None], negative], dim=1)
        plain = F.binary_cross_entropy_with_logits(scores, torch.zeros_like(scores).index_fill_(1, torch.tensor([0]), 1))
        torch.testing.assert_close(out.loss, plain)


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_the_item_table_fuses_just_the_rows_asked_for(backbone, fusion):
    model = backbone.model(**battery.fusion_settings(fusion))
    item_ids = torch.tensor([[3, 0, NUM_ITEMS], [1, 1, 7]])
    torch.testing.assert_close(model.item_table(item_ids), model.item_table()[item_ids])


@pytest.mark.parametrize("backbone", CAUSAL)
def test_training_on_the_rows_it_reads_gives_the_loss_over_the_whole_table(backbone):
    no_dropout = {"hidden_dropout_prob": 0.0} | ({} if backbone.name == "gru4rec" else {"attention_dropout_prob": 0.0})
    model = sampled_model(backbone, loss_type="sampled_softmax", **no_dropout, **battery.fusion_settings("gate"))
    input_ids, labels = next_item_labels(chain_sequences(4))
    model.train()
    torch.manual_seed(0)
    trained = model(input_ids, labels=labels)
    model.eval()  # evaluation fuses the whole table, for the full logits
    torch.manual_seed(0)
    evaluated = model(input_ids, labels=labels)
    assert trained.logits is None and evaluated.logits is not None
    torch.testing.assert_close(trained.loss, evaluated.loss)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"loss_type": "softmax"}, "loss_type must be one of ce, bce, sampled_softmax, gbce"),
        ({"loss_type": "sampled_softmax", "negative_sampling": "zipf"}, "negative_sampling must be one of"),
        ({"loss_type": "gbce", "negative_sampling": "popularity"}, "needs loss_type='sampled_softmax'"),
        ({"loss_type": "sampled_softmax", "num_negatives": 0}, "needs num_negatives of at least 1"),
        ({"loss_type": "gbce", "gbce_t": 1.5}, r"gbce_t must be in \[0, 1\]"),
    ],
)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_bad_loss_settings_are_refused_by_the_config(backbone, settings, message):
    with pytest.raises(ValueError, match=message):
        backbone.config(**settings)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_bad_negatives_and_counts_are_refused_by_the_model(backbone):
    with pytest.raises(ValueError, match="at most num_items - 1"):
        backbone.model(loss_type="gbce", num_negatives=NUM_ITEMS)
    with pytest.raises(ValueError, match="uses no item counts"):
        backbone.model(loss_type="sampled_softmax").set_item_counts(skewed_counts())
    popular = backbone.model(loss_type="sampled_softmax", negative_sampling="popularity", num_negatives=NEGATIVES)
    with pytest.raises(ValueError, match="shape"):
        popular.set_item_counts(torch.ones(NUM_ITEMS))
    with pytest.raises(ValueError, match="non-negative"):
        popular.set_item_counts(-skewed_counts())
    popular.train()
    with pytest.raises(ValueError, match="call set_item_counts first"):
        popular(*next_item_labels(random_sequences(4, seed=0)))


@pytest.mark.parametrize("settings", SAMPLED_LOSSES)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_save_and_load_keep_the_loss_and_the_counts(backbone, settings, tmp_path):
    backbone.register()
    model = sampled_model(backbone, **settings)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    for name in ("loss_type", "num_negatives", "negative_sharing", "negative_sampling", "gbce_t"):
        assert getattr(loaded.config, name) == getattr(model.config, name)
    if model.config.negative_sampling == "popularity":
        assert torch.equal(loaded.item_counts, model.item_counts) and loaded.item_counts[0] == 0
    histories = [[1, 2, 3], [7, 8]]
    torch.testing.assert_close(loaded.score(histories), model.score(histories))
    input_ids, labels = last_item_labels(*EVALUATION_BATCH)
    model.eval(), loaded.eval()
    torch.manual_seed(5)
    expected = model(input_ids, labels=labels).loss
    torch.manual_seed(5)
    torch.testing.assert_close(loaded(input_ids, labels=labels).loss, expected)


def test_loss_arguments_reach_the_config_of_every_backbone():
    parser = HfArgumentParser(ModelArguments)
    for backbone in ("sasrec", "gru4rec", "bert4rec"):
        (args,) = parser.parse_args_into_dataclasses([
            "--backbone", backbone, "--loss_type", "sampled_softmax", "--num_negatives", "7",
            "--negative_sampling", "popularity",
        ])
        with pytest.raises(ValueError, match="needs the training item counts"):
            build_model(args, num_items=20)
        counts = torch.arange(21).float()
        model = build_model(args, num_items=20, item_counts=counts)
        config = model.config
        assert (config.loss_type, config.num_negatives, config.negative_sampling) == ("sampled_softmax", 7, "popularity")
        assert torch.equal(model.item_counts[1:], counts[1:])
        assert config.negative_sharing == "position"  # each position draws its own by default, as RecTools does
        (args,) = parser.parse_args_into_dataclasses(
            ["--backbone", backbone, "--loss_type", "gbce", "--gbce_t", "0.5", "--negative_sharing", "sequence"]
        )
        config = build_model(args, num_items=20).config
        assert config.gbce_t == 0.5 and config.negative_sharing == "sequence"
        with pytest.raises(ValueError, match="negative_sharing must be one of position, sequence, batch"):
            build_model(dataclasses.replace(args, negative_sharing="user"), num_items=20)


def test_training_by_popularity_reads_the_training_counts_and_evaluates_by_full_ranking(tmp_path):
    from lamar_hf.metrics import ranking_metrics, target_ranks
    from lamar_hf.training import RecommendationData, RecommenderTrainingArguments, evaluate_recommender, train_recommender
    from test_train import chain_benchmark

    data = RecommendationData.from_benchmark(chain_benchmark())
    model_args = ModelArguments(hidden_size=16, intermediate_size=32, max_history_length=8, loss_type="sampled_softmax",
                                num_negatives=8, negative_sampling="popularity")
    training_args = RecommenderTrainingArguments(output_dir=str(tmp_path), num_train_epochs=3, learning_rate=1e-2,
                                                 per_device_train_batch_size=32, disable_tqdm=True, seed=0)
    result = train_recommender(data, model_args, training_args)
    assert torch.equal(result.model.item_counts, data.item_counts())
    # Evaluation batches are read shortest first; the metrics are those of every user's full ranking all the same.
    histories, targets = data.histories["test"], torch.tensor(data.targets["test"])
    by_hand = ranking_metrics(target_ranks(result.model.score(histories), targets).numpy(), (10, 20))
    evaluated = evaluate_recommender(result.model, data, "test")
    assert {name: evaluated[name] for name in by_hand} == pytest.approx(by_hand)
    assert {name: result.test[name] for name in by_hand} == pytest.approx(by_hand)  # the loss is of random draws


@pytest.mark.parametrize("backbone", BACKBONES)
def test_evaluation_fuses_the_item_table_once_and_ranks_as_score_does(backbone):
    from lamar_hf.metrics import ranking_metrics, target_ranks
    from lamar_hf.training import RecommendationData, evaluate_recommender

    model = backbone.model(**battery.fusion_settings("gate"))
    sequences = random_sequences(40, seed=7)
    histories = {split: [sequence[:-1] for sequence in sequences] for split in ("train", "validation", "test")}
    targets = {split: [sequence[-1] for sequence in sequences] for split in ("train", "validation", "test")}
    data = RecommendationData("random", NUM_ITEMS, histories, targets)
    projections = []
    model.item_table.text_projection.register_forward_hook(lambda module, inputs, output: projections.append(output.shape))
    evaluated = evaluate_recommender(model, data, "test", batch_size=8)  # five batches
    assert projections == [(NUM_ITEMS + 1, 16)], "the whole table is fused once for all batches"
    assert "forward" not in vars(model.item_table)  # the item table's own forward is back
    by_hand = ranking_metrics(target_ranks(model.score(histories["test"]), torch.tensor(targets["test"])).numpy(), (10, 20))
    assert {name: evaluated[name] for name in by_hand} == pytest.approx(by_hand)


@pytest.mark.parametrize("negative_sharing", ["position", "sequence", "batch"])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_fusing_the_rows_read_or_the_whole_table_gives_the_same_loss_and_gradients(backbone, negative_sharing):
    """A sampled loss fuses only the item rows it reads while they are fewer than the table's, else the whole table
    once: the same figures either way."""
    no_dropout = {"hidden_dropout_prob": 0.0} | ({} if backbone.name == "gru4rec" else {"attention_dropout_prob": 0.0})
    model = sampled_model(backbone, loss_type="sampled_softmax", negative_sharing=negative_sharing,
                          **battery.fusion_settings("gate"), **no_dropout)
    model.train()
    input_ids, labels = next_item_labels(random_sequences(4, seed=3))
    results = {}
    for rows_only in (True, False):
        model._fuses_only_the_rows_read = lambda *args, rows_only=rows_only: rows_only
        model.zero_grad()
        torch.manual_seed(7)
        loss = model(input_ids, labels=labels).loss
        loss.backward()
        results[rows_only] = (loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None])
    torch.testing.assert_close(results[True][0], results[False][0])
    assert len(results[True][1]) == len(results[False][1]) > 0
    for rows_grad, table_grad in zip(results[True][1], results[False][1]):
        torch.testing.assert_close(rows_grad, table_grad)
    del model._fuses_only_the_rows_read
    assert model._fuses_only_the_rows_read(torch.ones(1, 1, dtype=torch.long), labels[:1, :1])  # 22 rows < 51
    assert not model._fuses_only_the_rows_read(input_ids, labels)  # more rows read than the table holds
    model.eval()
    assert not model._fuses_only_the_rows_read(torch.ones(1, 1, dtype=torch.long), labels[:1, :1])


@pytest.mark.parametrize("backbone", BACKBONES)
def test_evaluation_draws_no_negatives_and_reports_the_full_cross_entropy(backbone):
    """A model trained with a sampled loss is evaluated by the cross-entropy over every item's score (the scores
    ranking computes anyway), not by a fresh draw of negatives: the figure is exact and the same on every call."""
    from lamar_hf.training import RecommendationData, evaluate_recommender

    model = sampled_model(backbone, loss_type="sampled_softmax", negative_sharing="sequence")
    sequences = random_sequences(24, seed=11)
    histories = {split: [sequence[:-1] for sequence in sequences] for split in ("train", "validation", "test")}
    targets = {split: [sequence[-1] for sequence in sequences] for split in ("train", "validation", "test")}
    data = RecommendationData("random", NUM_ITEMS, histories, targets)
    drawn = recording_draws(model)
    evaluated = evaluate_recommender(model, data, "test", batch_size=8)
    assert drawn == []
    full = F.cross_entropy(model.score(histories["test"]), torch.tensor(targets["test"]))
    model.eval()
    sampled = model(*last_item_labels(histories["test"], targets["test"])).loss  # what the model itself reports
    assert len(drawn) == 1 and not torch.allclose(sampled, full)
    assert evaluated["loss"] == pytest.approx(full.item(), rel=1e-4)
    assert evaluate_recommender(model, data, "test", batch_size=8)["loss"] == pytest.approx(evaluated["loss"], rel=1e-5)


def test_evaluation_refuses_a_row_labelled_elsewhere_than_its_last_item():
    from lamar_hf.training.trainer import last_position_targets

    input_ids, labels = last_item_labels([[1, 2, 3], [4, 5]], [6, 7])
    assert last_position_targets(input_ids, labels).tolist() == [6, 7]
    for moved in (labels.roll(-1, dims=1), torch.where(input_ids != 0, 8, -100)):
        with pytest.raises(ValueError, match="exactly one labelled position per row, its last item"):
            last_position_targets(input_ids, moved)


@pytest.mark.parametrize("negative_sharing", ["position", "sequence", "batch"])
def test_the_sampled_loss_shifts_exactly_the_items_each_position_has_read(negative_sharing):
    """With the repeat score, a sampled loss scores each target and negative as the full logits of that position do:
    shifted where the item is among those read so far (repeats included), not where it comes later."""
    model = sampled_model(SASREC, loss_type="sampled_softmax", negative_sharing=negative_sharing, repeat_bias=True)
    with torch.no_grad():
        model.repeat_score.fill_(2.5)
    model.eval()
    drawn = recording_draws(model)
    sequences = [[1, 2, 1, 3, 2, 4, 5], [6, 7, 6, 6, 8], [9, 10, 11, 9, 12, 10]]
    input_ids, labels = next_item_labels(sequences)
    torch.manual_seed(3)
    out = model(input_ids, labels=labels)
    (negatives,) = drawn
    rows, positions = (labels != -100).nonzero(as_tuple=True)
    negatives = {"position": lambda: negatives, "sequence": lambda: negatives[rows],
                 "batch": lambda: negatives.expand(len(rows), -1)}[negative_sharing]()
    targets = labels[rows, positions]
    read = [set(input_ids[row, : position + 1].tolist()) for row, position in zip(rows.tolist(), positions.tolist())]
    assert any(item in read[query] for query, row in enumerate(negatives.tolist()) for item in row), "no draw in a history"
    assert any(int(target) in read[query] for query, target in enumerate(targets)), "no repeated target"
    positive = out.logits[torch.arange(len(targets)), targets]  # the full logits carry the shift of their position
    negative = out.logits.gather(1, negatives)
    expected = F.cross_entropy(torch.cat([positive[:, None], negative], dim=1), torch.zeros(len(targets), dtype=torch.long))
    torch.testing.assert_close(out.loss, expected)
