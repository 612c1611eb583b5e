"""Learned item attributes (as RecBole's SASRecF feature fusion) on tiny configs of every backbone: categorical
ids per item (e.g. the cluster of its scenario signal), one embedding table per kind, summed into the item-id
embedding with every fusion; off by default, and then the model is exactly the one without them."""

import json

import pytest
import torch

import backbone_battery as battery
from backbone_battery import ATTRIBUTE_VOCAB, NUM_ITEMS
from lamar_hf.training import ModelArguments, build_model
from test_backbones import BACKBONES

KINDS, SIZES = list(ATTRIBUTE_VOCAB), list(ATTRIBUTE_VOCAB.values())


def attribute_model(backbone, fusion="none", **overrides):
    return backbone.model(**battery.fusion_settings(fusion + "+attributes"), **overrides)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_without_attributes_the_model_is_the_one_of_before(backbone):
    plain = backbone.model(seed=3)
    explicit = backbone.model(seed=3, attribute_kinds=[], attribute_vocab_sizes=[])
    assert plain.state_dict().keys() == explicit.state_dict().keys()
    assert not any("attribute" in name for name in plain.state_dict())
    for name, tensor in plain.state_dict().items():  # the same random start: nothing new was drawn
        assert torch.equal(tensor, explicit.state_dict()[name]), name
    # A config saved before attributes existed (no such keys) loads as one without them.
    saved = plain.config.to_dict()
    del saved["attribute_kinds"], saved["attribute_vocab_sizes"]
    assert backbone.config_class.from_dict(json.loads(json.dumps(saved))).attribute_kinds == []


@pytest.mark.parametrize("fusion", ["none", "gate"])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_each_item_row_sums_its_attribute_embeddings_into_its_id_embedding(backbone, fusion):
    model = attribute_model(backbone, fusion)
    table, attributes = model.item_table, battery.attribute_ids(0)
    attributes_of = {kind: ids.clone() for kind, ids in attributes.items()}
    for ids in attributes_of.values():
        ids[0] = 0  # padding has none
    assert torch.equal(table.item_attributes, torch.stack([attributes_of[kind] for kind in KINDS], dim=1))
    with torch.no_grad():
        learned = table.item_embeddings.weight + sum(
            embeddings.weight[attributes_of[kind]] for kind, embeddings in zip(KINDS, table.attribute_embeddings)
        )
        if fusion == "none":
            expected = learned
        else:
            texts = table.text_projection(table.text_embeddings)
            gate = torch.sigmoid(table.fusion_gate(torch.cat([learned, texts], dim=-1)))
            expected = gate * learned + (1 - gate) * texts
        torch.testing.assert_close(table(), expected)
    shapes = [embeddings.weight.shape for embeddings in table.attribute_embeddings]
    assert shapes == [(size + 1, 16) for size in SIZES]
    assert all(torch.equal(embeddings.weight[0], torch.zeros(16)) for embeddings in table.attribute_embeddings)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_items_that_share_an_attribute_share_its_embedding(backbone):
    model = attribute_model(backbone)
    with torch.no_grad():
        model.get_input_embeddings().weight.zero_()  # only the attributes are left
    ids = model.item_table.item_attributes
    same = [item for item in range(1, NUM_ITEMS + 1) if torch.equal(ids[item], ids[1])]
    other = next(item for item in range(1, NUM_ITEMS + 1) if not torch.equal(ids[item], ids[1]))
    rows = model.item_table().detach()
    assert len(same) > 1 and all(torch.equal(rows[item], rows[1]) for item in same)
    assert not torch.equal(rows[other], rows[1])


@pytest.mark.parametrize("backbone", BACKBONES)
def test_with_semantic_nullspace_the_attributes_join_the_learned_part_only(backbone):
    model = attribute_model(backbone, "semantic_nullspace")
    semantic_dims = model.config.semantic_dims
    assert all(embeddings.weight.shape[1] == 16 - semantic_dims for embeddings in model.item_table.attribute_embeddings)
    rows = model.item_table()
    torch.testing.assert_close(rows[:, :semantic_dims], model.item_table.semantic_embeddings)


ZEROS = torch.zeros(NUM_ITEMS + 1, dtype=torch.long)


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"scenario_cluster": ZEROS}, "attribute ids for intent_cluster are missing"),
        ({**battery.attribute_ids(0), "topic_cluster": ZEROS},
         "unknown attribute kinds topic_cluster; this model has scenario_cluster, intent_cluster"),
        ({"scenario_cluster": ZEROS[1:]}, r"'scenario_cluster' have shape \(50,\), expected \(51,\)"),
        ({"scenario_cluster": ZEROS.float()}, "'scenario_cluster' must be integers, got torch.float32"),
        ({"scenario_cluster": torch.arange(NUM_ITEMS + 1) % 7}, r"'scenario_cluster' of item 6 is 6, outside 0\.\.5"),
        ({"intent_cluster": torch.full((NUM_ITEMS + 1,), -1)}, r"'intent_cluster' of item 0 is -1, outside 0\.\.3"),
    ],
)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_bad_attribute_ids_are_refused_with_what_is_wrong(backbone, attributes, message):
    model = attribute_model(backbone)
    complete = attributes if "missing" in message else {**battery.attribute_ids(0), **attributes}
    before = model.item_table.item_attributes.clone()
    with pytest.raises(ValueError, match=message):
        model.set_item_attributes(complete)
    assert torch.equal(model.item_table.item_attributes, before), "a refused call changes nothing"


@pytest.mark.parametrize("backbone", BACKBONES)
def test_a_model_without_attributes_refuses_attribute_ids(backbone):
    with pytest.raises(ValueError, match="this model has no item attributes"):
        backbone.model().set_item_attributes(battery.attribute_ids(0))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"attribute_kinds": ["a", "b"], "attribute_vocab_sizes": [3]},
         r"attribute_kinds \(2\) and attribute_vocab_sizes \(1\)"),
        ({"attribute_kinds": ["a", "a"], "attribute_vocab_sizes": [3, 3]}, "names an attribute twice"),
        ({"attribute_kinds": ["a"], "attribute_vocab_sizes": [0]}, "must be positive integers"),
        ({"attribute_kinds": ["a"], "attribute_vocab_sizes": [2.5]}, "must be positive integers"),
        ({"attribute_kinds": [""], "attribute_vocab_sizes": [2]}, "must be non-empty names"),
    ],
)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_bad_attribute_settings_are_refused_by_the_config(backbone, settings, message):
    with pytest.raises(ValueError, match=message):
        backbone.config(**settings)


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "bert4rec"])
def test_build_model_learns_the_attributes_it_is_given(backbone):
    attributes = {"topic_cluster": torch.arange(21) % 4, "intent_cluster": torch.arange(21) % 2}
    args = ModelArguments(backbone=backbone, hidden_size=8, signals="scenario", fusion="add")
    generator = torch.Generator().manual_seed(0)
    texts = {"scenario": torch.randn(21, 8, generator=generator)}
    model = build_model(args, num_items=20, text_embeddings=texts, item_attributes=attributes)
    assert model.config.attribute_kinds == ["topic_cluster", "intent_cluster"]
    assert model.config.attribute_vocab_sizes == [3, 1]  # the largest id of each
    stored = torch.stack([attributes["topic_cluster"], attributes["intent_cluster"]], dim=1)
    assert torch.equal(model.item_table.item_attributes[1:], stored[1:])
    assert build_model(args, num_items=20, text_embeddings=texts).config.attribute_kinds == []


@pytest.mark.parametrize("variant", ["attributes", "multiview+attributes", "semantic_nullspace+attributes"])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_the_rows_asked_for_are_those_of_the_whole_table(backbone, variant):
    model = backbone.model(**battery.fusion_settings(variant))
    item_ids = torch.tensor([[3, 0, NUM_ITEMS], [1, 1, 7]])
    torch.testing.assert_close(model.item_table(item_ids), model.item_table()[item_ids])
