"""Full-ranking metrics against values worked out by hand, ties included, and the evaluate module."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lamar_hf.metrics import (
    mrr_at_k,
    ndcg_at_k,
    ranking_metrics,
    recall_at_k,
    recommendation_ranks,
    target_ranks,
)

NEG_INF = float("-inf")
# Three users, items 1..5 (column 0 is padding, never ranked).
SCORES = [
    [NEG_INF, 0.9, 0.5, 0.5, 0.1, 0.3],  # target 2 ties with item 3: pessimistic rank 2 (after items 1 and 3)
    [NEG_INF, 0.2, 0.2, 0.2, 0.2, 0.2],  # all equal: the target goes last, rank 4
    [NEG_INF, 0.1, 0.7, 0.3, 0.9, 0.8],  # target 4 has the top score: rank 0
]
TARGETS = [2, 4, 4]
RANKS = [2, 4, 0]
EVALUATE_MODULE = Path(__file__).resolve().parents[1] / "lamar_hf" / "evaluate_modules" / "lamar_ranking"


def test_ranks_are_pessimistic_on_ties_for_numpy_and_torch():
    assert target_ranks(np.array(SCORES), np.array(TARGETS)).tolist() == RANKS
    assert target_ranks(torch.tensor(SCORES), torch.tensor(TARGETS)).tolist() == RANKS


def test_a_nan_target_score_ranks_last():
    scores = np.array([[NEG_INF, 0.1, math.nan, 0.3]])
    assert target_ranks(scores, np.array([2])).tolist() == [3]
    assert target_ranks(torch.tensor(scores), torch.tensor([2])).tolist() == [3]


def test_metrics_equal_hand_computed_values():
    assert recall_at_k(RANKS, 1) == pytest.approx(1 / 3)
    assert recall_at_k(RANKS, 3) == pytest.approx(2 / 3)
    assert recall_at_k(RANKS, 5) == pytest.approx(1.0)
    assert ndcg_at_k(RANKS, 3) == pytest.approx((1 / math.log2(4) + 1) / 3)
    assert ndcg_at_k(RANKS, 5) == pytest.approx((1 / math.log2(4) + 1 / math.log2(6) + 1) / 3)
    assert mrr_at_k(RANKS, 3) == pytest.approx((1 / 3 + 1) / 3)
    assert mrr_at_k(RANKS, 5) == pytest.approx((1 / 3 + 1 / 5 + 1) / 3)
    assert ranking_metrics(RANKS, ks=[3]) == {
        "recall@3": pytest.approx(2 / 3),
        "ndcg@3": pytest.approx(0.5),
        "mrr@3": pytest.approx(4 / 9),
    }


def test_constant_scores_score_zero_rather_than_perfect():
    scores = torch.zeros(4, 101)
    scores[:, 0] = NEG_INF
    ranks = target_ranks(scores, torch.tensor([1, 20, 50, 100]))
    assert ranks.tolist() == [99] * 4
    assert ranking_metrics(ranks.numpy(), ks=[10])["recall@10"] == 0.0


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="positive integer"):
        recall_at_k(RANKS, 0)
    with pytest.raises(ValueError, match="negative"):
        ndcg_at_k([0, -1], 10)
    with pytest.raises(ValueError, match="expected scores"):
        target_ranks(np.zeros((2, 3)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="twice"):
        recommendation_ranks([[1, 1, 2]], [2])


def test_recommendation_ranks_and_the_evaluate_module_agree_with_the_functions():
    import evaluate

    lists = [[1, 3, 2, 5, 4], [2, 1, 3, 5, 4], [4, 5, 2, 3, 1]]  # target positions 2, 4, 0 as in RANKS
    assert recommendation_ranks(lists, TARGETS).tolist() == RANKS
    assert recommendation_ranks([[7, 8]], [9]).tolist() == [2]  # absent: ranked after the list

    ranking = evaluate.load(str(EVALUATE_MODULE))
    assert ranking.compute(predictions=lists, references=TARGETS, ks=[3, 5]) == pytest.approx(
        ranking_metrics(RANKS, ks=[3, 5])
    )
    with pytest.raises(ValueError, match="longer than the shortest"):
        ranking.compute(predictions=lists, references=TARGETS, ks=[10])
    by_rank = evaluate.load(str(EVALUATE_MODULE), "ranks")
    assert by_rank.compute(predictions=RANKS, ks=[3]) == pytest.approx(ranking_metrics(RANKS, ks=[3]))
