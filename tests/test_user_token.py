"""A sequence-level user signal as one extra input token (a sentence embedding of the user's written shopping
intent), on tiny configs of every backbone: SASRec and BERT4Rec read it before the first item with a position
embedding of its own, GRU4Rec as its first step; outputs, labels and scores stay those of the item positions."""

import pytest
import torch

import backbone_battery as battery
from backbone_battery import LENGTH, NUM_ITEMS, USER_DIM, next_item_labels, padded
from lamar_hf.training import ModelArguments, build_model
from test_backbones import BACKBONES, BERT4REC, CAUSAL

HISTORIES = [[3, 14, 15, 9], [26, 5]]


def users(count: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, USER_DIM, generator=torch.Generator().manual_seed(seed))


def user_model(backbone, **overrides):
    model = backbone.model(user_text_embedding_dim=USER_DIM, **overrides)
    model.eval()
    return model


@pytest.mark.parametrize("backbone", BACKBONES)
def test_off_by_default_with_no_parameters_of_its_own(backbone):
    model = backbone.model()
    assert model.config.user_text_embedding_dim == 0
    assert not any("user" in name for name in model.state_dict())
    with pytest.raises(ValueError, match=r"reads no user embedding \(user_text_embedding_dim=0\)"):
        model(padded(HISTORIES), user_embeddings=users(2))
    on = user_model(backbone)
    own = {name for name in on.state_dict() if "user" in name}
    expected = {"user_projection.weight", "user_projection.bias"}
    if backbone.name != "gru4rec":  # the transformers give the token a position of its own
        expected.add("user_position_embedding.weight")
    assert own == expected


@pytest.mark.parametrize("backbone", BACKBONES)
def test_the_user_token_is_read_and_the_outputs_stay_at_the_item_positions(backbone):
    model = user_model(backbone)
    first = model.score(HISTORIES, user_embeddings=users(2, 0))
    second = model.score(HISTORIES, user_embeddings=users(2, 1))
    assert (first[:, 1:] - second[:, 1:]).abs().max() > 1e-4, "the user changes the scores"
    torch.testing.assert_close(model.score(HISTORIES, user_embeddings=users(2, 0)), first)
    out = model(padded(HISTORIES), user_embeddings=users(2), output_hidden_states=True)
    expected_length = padded(HISTORIES).shape[1] + (0 if backbone.causal else 1)  # BERT4Rec appends its mask
    assert out.last_hidden_state.shape == (2, expected_length, 16)
    torch.testing.assert_close(out.logits, first)


@pytest.mark.parametrize("backbone", CAUSAL)
def test_the_first_item_already_sees_the_user_and_later_items_never_reach_earlier_outputs(backbone):
    model = user_model(backbone)
    history = padded([[3, 14, 15, 9, 26, 5, 35, 8]])
    hidden = model(history, user_embeddings=users(1, 0), output_hidden_states=True).last_hidden_state
    other_user = model(history, user_embeddings=users(1, 1), output_hidden_states=True).last_hidden_state
    assert (hidden[0, 0] - other_user[0, 0]).abs().max() > 1e-4
    changed = history.clone()
    changed[0, 4] = 42
    after = model(changed, user_embeddings=users(1, 0), output_hidden_states=True).last_hidden_state
    torch.testing.assert_close(after[:, :4], hidden[:, :4])
    assert (after[:, 4:] - hidden[:, 4:]).abs().amax(dim=-1).min() > 1e-4


@pytest.mark.parametrize("backbone", BACKBONES)
def test_padding_batching_and_recommend_read_each_history_with_its_own_user(backbone):
    model = user_model(backbone)
    people = users(2)
    alone = model(padded(HISTORIES[:1]), user_embeddings=people[:1]).logits
    wider = model(padded(HISTORIES[:1], width=LENGTH - 1), user_embeddings=people[:1]).logits
    torch.testing.assert_close(wider, alone)
    whole = model.score(HISTORIES, user_embeddings=people)
    torch.testing.assert_close(whole[:1], alone)
    torch.testing.assert_close(model.score(HISTORIES, batch_size=1, user_embeddings=people), whole)
    top = model.recommend(HISTORIES[1], k=5, user_embeddings=people[1])  # one history, one user vector
    assert top == whole[1].topk(5).indices.tolist()
    assert model.recommend(HISTORIES, k=5, user_embeddings=people.numpy())[1] == top


def test_bert4rec_cloze_training_with_a_user_token_scores_every_masked_item():
    model = BERT4REC.model(user_text_embedding_dim=USER_DIM, mask_prob=1.0)
    model.train()
    input_ids, labels = next_item_labels([[1, 2, 3, 4], [5, 6, 7, 8, 9, 10, 11, 12, 13]])
    out = model(input_ids, labels=labels, user_embeddings=users(2))
    assert out.logits.shape == (4 + LENGTH, NUM_ITEMS + 1)  # the token takes no item's place in the window


@pytest.mark.parametrize("backbone", BACKBONES)
def test_missing_or_misshapen_user_embeddings_are_refused(backbone):
    model = user_model(backbone)
    needs = r"reads a user text embedding as a token before the items \(user_text_embedding_dim=6\): pass user_embeddings"
    with pytest.raises(ValueError, match=needs):
        model(padded(HISTORIES))
    with pytest.raises(ValueError, match=needs):
        model.score(HISTORIES)
    with pytest.raises(ValueError, match=needs):
        model.recommend(HISTORIES[0], k=3)
    with pytest.raises(ValueError, match=r"user_embeddings have shape \(2, 5\), expected \(2, 6\)"):
        model(padded(HISTORIES), user_embeddings=torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"shape \(3, 6\): one row per history \(2\) expected"):
        model.score(HISTORIES, user_embeddings=users(3))
    with pytest.raises(ValueError, match=r"shape \(6,\): one row per history \(2\) expected"):
        model.recommend(HISTORIES, k=3, user_embeddings=users(1)[0])


@pytest.mark.parametrize("value", [-1, True, 2.0])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_a_bad_user_width_is_refused_by_the_config(backbone, value):
    with pytest.raises(ValueError, match="user_text_embedding_dim must be a non-negative integer"):
        backbone.config(user_text_embedding_dim=value)


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "bert4rec"])
def test_build_model_gives_the_model_a_user_token(backbone):
    args = ModelArguments(backbone=backbone, hidden_size=8)
    model = build_model(args, num_items=20, user_text_embedding_dim=5)
    assert model.config.user_text_embedding_dim == 5 and model.user_projection.in_features == 5
    assert build_model(args, num_items=20).config.user_text_embedding_dim == 0
