"""The item-table operators beyond add / concat / gate, on tiny configs of every backbone: ``init`` (the item-id
table starts from the texts' principal components), ``semantic_nullspace`` (a frozen semantic part beside learned
ids, after AlphaFuse) and ``multiview`` (per-item attention over the text kinds); and their arguments."""

import numpy as np
import pytest
import torch

import backbone_battery as battery
from backbone_battery import NUM_ITEMS, TEXT_DIM, TEXT_KINDS, next_item_labels, random_sequences
from lamar_hf.training import ModelArguments, build_model
from test_backbones import BACKBONES, SASREC

HIDDEN = 16


def golden_principal_coordinates(texts: torch.Tensor, dims: int, std: float) -> np.ndarray:
    """Rows 1.. of ``texts`` centred and projected on their first ``dims`` principal directions (numpy's SVD),
    scaled together to standard deviation ``std``: the reference the model's PCA must match up to column signs."""
    real = texts[1:].double().numpy()
    centred = real - real.mean(axis=0)
    _, _, right = np.linalg.svd(centred, full_matrices=False)
    coordinates = centred @ right[:dims].T
    return coordinates * (std / coordinates.std())


def assert_equal_up_to_column_signs(actual: torch.Tensor, expected: np.ndarray) -> None:
    actual = actual.double().numpy()
    signs = np.sign((actual * expected).sum(axis=0))
    np.testing.assert_allclose(actual, expected * signs, rtol=1e-4, atol=1e-6)


def concatenated(embeddings: dict) -> torch.Tensor:
    return torch.cat([embeddings[kind] for kind in TEXT_KINDS], dim=-1)


def train_a_few_steps(model, steps: int = 5) -> None:
    sequences = random_sequences(16, seed=3)
    input_ids, labels = next_item_labels(sequences)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


# ------------------------------------------------------------------------------------------------------ init


@pytest.mark.parametrize("backbone", BACKBONES)
def test_init_starts_the_id_table_from_the_principal_components_and_keeps_no_texts(backbone):
    model = backbone.model(**battery.fusion_settings("init"), initializer_range=0.05)
    table = model.get_input_embeddings().weight.detach()
    expected = golden_principal_coordinates(concatenated(battery.text_embeddings(0)), HIDDEN, 0.05)
    assert_equal_up_to_column_signs(table[1:], expected)
    assert torch.equal(table[0], torch.zeros(HIDDEN)), "padding stays zero"
    torch.testing.assert_close(model.item_table(), table)  # texts are not read in forward
    id_only = backbone.model(fusion="none")
    assert model.state_dict().keys() == id_only.state_dict().keys(), "an init model is shaped as an ID-only one"


@pytest.mark.parametrize("backbone", BACKBONES)
def test_init_with_texts_narrower_than_the_table_keeps_the_random_start_of_the_other_columns(backbone):
    torch.manual_seed(0)
    model = backbone.model_class(backbone.config(fusion="init", text_kinds=["scenario"], text_embedding_dim=TEXT_DIM))
    before = model.get_input_embeddings().weight.detach().clone()
    scenario = battery.text_embeddings(0)["scenario"]
    model.set_text_embeddings({"scenario": scenario})
    after = model.get_input_embeddings().weight.detach()
    assert_equal_up_to_column_signs(after[1:, :TEXT_DIM], golden_principal_coordinates(scenario, TEXT_DIM, 0.02))
    assert torch.equal(after[:, TEXT_DIM:], before[:, TEXT_DIM:])


def test_init_gives_the_same_table_for_the_same_texts_whatever_the_seed():
    tables = [SASREC.model(seed, **battery.fusion_settings("init")) for seed in (0, 1)]
    texts = battery.text_embeddings(5)
    for model in tables:
        model.set_text_embeddings(texts)
    assert torch.equal(tables[0].get_input_embeddings().weight, tables[1].get_input_embeddings().weight)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_init_trains_the_id_table_freely(backbone):
    model = backbone.model(**battery.fusion_settings("init"))
    start = model.get_input_embeddings().weight.detach().clone()
    train_a_few_steps(model)
    assert not torch.equal(model.get_input_embeddings().weight, start)


# ---------------------------------------------------------------------------------------- semantic_nullspace


@pytest.mark.parametrize("backbone", BACKBONES)
def test_semantic_nullspace_rows_are_a_frozen_semantic_part_beside_learned_ids(backbone):
    model = backbone.model(**battery.fusion_settings("semantic_nullspace"))
    semantic_dims = model.config.semantic_dims
    assert semantic_dims == HIDDEN // 2  # the default
    assert model.get_input_embeddings().weight.shape == (NUM_ITEMS + 1, HIDDEN - semantic_dims)
    texts = concatenated(battery.text_embeddings(0))
    table = model.item_table.semantic_embeddings
    assert_equal_up_to_column_signs(table[1:], golden_principal_coordinates(texts, semantic_dims, 0.02))
    # The buffers say how: (t - mean) @ basis, with orthogonal basis columns of one length.
    mean, basis = model.item_table.semantic_mean, model.item_table.semantic_basis
    torch.testing.assert_close(texts[1:] - mean, texts[1:] - texts[1:].mean(0))
    torch.testing.assert_close(table[1:], (texts[1:] - mean) @ basis)
    gram = basis.T @ basis
    torch.testing.assert_close(gram, gram[0, 0] * torch.eye(semantic_dims), atol=1e-6, rtol=1e-4)
    rows = model.item_table()
    torch.testing.assert_close(rows, torch.cat([table, model.get_input_embeddings().weight], dim=1))
    assert torch.equal(rows[0], torch.zeros(HIDDEN)), "padding is zero in both parts"


@pytest.mark.parametrize("backbone", BACKBONES)
def test_semantic_nullspace_training_moves_the_ids_and_never_the_semantic_part(backbone):
    model = backbone.model(**battery.fusion_settings("semantic_nullspace"), semantic_dims=5)
    before = model.item_table().detach().clone()
    train_a_few_steps(model)
    after = model.item_table().detach()
    assert torch.equal(after[:, :5], before[:, :5]), "the semantic part moved"
    assert (after[1:, 5:] != before[1:, 5:]).any(dim=1).all(), "every item's id part learns"
    assert not any(name.startswith("item_table.semantic") for name, _ in model.named_parameters())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"semantic_dims": 0}, r"semantic_dims must be in 1\.\.15"),
        ({"semantic_dims": HIDDEN}, r"semantic_dims must be in 1\.\.15"),
        ({"semantic_dims": 10, "text_kinds": ["scenario"], "text_embedding_dim": 8}, r"must be in 1\.\.8 .*width 8"),
        ({"fusion": "add", "semantic_dims": 4}, "semantic_dims applies only to fusion='semantic_nullspace', not 'add'"),
    ],
)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_bad_semantic_dims_are_refused_by_the_config(backbone, settings, message):
    settings = {**battery.fusion_settings("semantic_nullspace"), **settings}
    with pytest.raises(ValueError, match=message):
        backbone.config(**settings)


# -------------------------------------------------------------------------------------------------- multiview


@pytest.mark.parametrize("backbone", BACKBONES)
def test_multiview_adds_an_attention_weighted_sum_of_the_views_queried_by_the_item_id(backbone):
    model = backbone.model(**battery.fusion_settings("multiview"))
    table = model.item_table
    texts = battery.text_embeddings(0)
    with torch.no_grad():
        ids = table.item_embeddings.weight
        views = torch.stack([projection(texts[kind]) for projection, kind in zip(table.view_projections, TEXT_KINDS)], 1)
        query = table.view_query(ids)
        weights = torch.softmax(torch.einsum("nkd,nd->nk", views, query) / HIDDEN**0.5, dim=1)
        torch.testing.assert_close(table(), ids + torch.einsum("nk,nkd->nd", weights, views))
    assert not torch.allclose(weights[1:, 0], weights[1, 0].expand(NUM_ITEMS)), "each item weighs its views itself"


@pytest.mark.parametrize("backbone", BACKBONES)
def test_multiview_needs_two_text_kinds(backbone):
    with pytest.raises(ValueError, match="fusion='multiview' .* needs at least two"):
        backbone.config(fusion="multiview", text_kinds=["scenario"], text_embedding_dim=TEXT_DIM)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_an_unknown_fusion_names_every_one_there_is(backbone):
    with pytest.raises(ValueError, match="none, add, concat, gate, init, semantic_nullspace, multiview, got 'sum'"):
        backbone.config(fusion="sum", text_kinds=TEXT_KINDS)


# ------------------------------------------------------------------------------------------ training arguments


def text_embeddings_for(kinds):
    generator = torch.Generator().manual_seed(0)
    return {kind: torch.randn(21, 8, generator=generator) for kind in kinds}


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "bert4rec"])
@pytest.mark.parametrize("fusion", ["init", "semantic_nullspace", "multiview"])
def test_build_model_builds_every_fusion(backbone, fusion):
    args = ModelArguments(backbone=backbone, hidden_size=8, fusion=fusion, signals="scenario,intent")
    model = build_model(args, num_items=20, text_embeddings=text_embeddings_for(["scenario", "intent"]))
    assert model.config.fusion == fusion and model.config.text_kinds == ["scenario", "intent"]
    assert model.item_table().shape == (21, 8)
    if fusion == "semantic_nullspace":
        assert model.config.semantic_dims == 4 and model.item_table.semantic_basis.abs().sum() > 0


def test_build_model_passes_semantic_dims():
    args = ModelArguments(hidden_size=8, fusion="semantic_nullspace", signals="scenario", semantic_dims=3)
    model = build_model(args, num_items=20, text_embeddings=text_embeddings_for(["scenario"]))
    assert model.config.semantic_dims == 3 and model.get_input_embeddings().weight.shape == (21, 5)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"fusion": "none", "signals": "scenario"}, "--fusion none cannot use item texts .*multiview"),
        ({"fusion": "multiview", "signals": "scenario"}, "--fusion multiview .* at least two item texts"),
        ({"fusion": "add", "signals": "scenario", "semantic_dims": 3}, "--semantic_dims applies to --fusion semantic_nullspace"),
        ({"fusion": "semantic_nullspace", "semantic_dims": 3}, "--semantic_dims applies to --fusion semantic_nullspace"),
    ],
)
def test_arguments_that_do_not_fit_the_fusion_are_refused(settings, message):
    args = ModelArguments(hidden_size=8, **settings)
    with pytest.raises(ValueError, match=message):
        build_model(args, num_items=20, text_embeddings=text_embeddings_for(["scenario"]))
