"""Ranking metrics for next-item recommendation: Recall@K, NDCG@K and MRR@K over a *full* ranking.

Every item of the catalogue is a candidate: there are no sampled negatives, so the figures are
comparable with papers that rank all items (and lower than those that rank 100 sampled ones).
Ties are pessimistic: the target is placed after every other item with the same score, so a model
that gives all items one score ranks every target last, not first. Items the caller wants out of
the ranking (padding id 0, or a user's history when masking it) must carry a score of ``-inf``.

Ranks are 0-based: rank 0 means the target is the first recommendation. Scores may be numpy
arrays or torch tensors; the rank functions return the same kind they are given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

DEFAULT_KS = (10, 20)


def target_ranks(scores, targets):
    """The 0-based rank of each row's target column among all columns of ``scores``, ties against the target.

    ``scores`` is ``[num_rows, num_candidates]`` (numpy or torch), ``targets`` ``[num_rows]`` column indices.
    A target whose score is NaN gets the worst rank, ``num_candidates - 1``.
    """
    if len(scores.shape) != 2 or len(targets.shape) != 1 or scores.shape[0] != targets.shape[0]:
        raise ValueError(
            f"expected scores [rows, candidates] and targets [rows], got {tuple(scores.shape)} and {tuple(targets.shape)}"
        )
    if isinstance(scores, np.ndarray):
        target_scores = np.take_along_axis(scores, np.asarray(targets)[:, None].astype(np.int64), axis=1)
        ranks = (scores >= target_scores).sum(axis=1) - 1
        return np.where(np.isnan(target_scores[:, 0]), scores.shape[1] - 1, ranks)
    # torch, imported lazily so that the metric functions stay numpy-only
    import torch

    target_scores = scores.gather(1, targets.long()[:, None])
    # Counting in int32 halves the memory traffic of the [rows, candidates] count (the default sum widens to int64).
    ranks = (scores >= target_scores).sum(dim=1, dtype=torch.int32).long() - 1
    return ranks.masked_fill(target_scores[:, 0].isnan(), scores.shape[1] - 1)


def recommendation_ranks(recommendations: Sequence[Sequence[int]], targets: Sequence[int]) -> np.ndarray:
    """The 0-based position of each target in its ranked list of recommended items, ``len(list)`` when absent."""
    if len(recommendations) != len(targets):
        raise ValueError(f"got {len(recommendations)} recommendation lists for {len(targets)} targets")
    ranks = []
    for row, (items, target) in enumerate(zip(recommendations, targets)):
        items = list(items)
        if len(set(items)) != len(items):
            raise ValueError(f"recommendation list {row} names an item twice")
        ranks.append(items.index(target) if target in items else len(items))
    return np.asarray(ranks, dtype=np.int64)


def _ranks_array(ranks) -> np.ndarray:
    ranks = np.asarray(ranks)
    if ranks.ndim != 1:
        raise ValueError(f"expected one rank per target, got an array of shape {ranks.shape}")
    if ranks.size and ranks.min() < 0:
        raise ValueError("ranks are 0-based and cannot be negative")
    return ranks


def _check_k(k: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def recall_at_k(ranks, k: int) -> float:
    """Share of targets ranked in the top ``k`` (with one target per row this is also the hit rate)."""
    _check_k(k)
    ranks = _ranks_array(ranks)
    return float((ranks < k).mean()) if ranks.size else 0.0


def ndcg_at_k(ranks, k: int) -> float:
    """Mean NDCG@k with one relevant item per row: ``1 / log2(rank + 2)`` inside the top ``k``, else 0."""
    _check_k(k)
    ranks = _ranks_array(ranks)
    if not ranks.size:
        return 0.0
    gains = np.where(ranks < k, 1.0 / np.log2(np.minimum(ranks, k) + 2.0), 0.0)
    return float(gains.mean())


def mrr_at_k(ranks, k: int) -> float:
    """Mean reciprocal rank cut at ``k``: ``1 / (rank + 1)`` inside the top ``k``, else 0."""
    _check_k(k)
    ranks = _ranks_array(ranks)
    if not ranks.size:
        return 0.0
    return float(np.where(ranks < k, 1.0 / (np.minimum(ranks, k) + 1.0), 0.0).mean())


def ranking_metrics(ranks, ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    """``recall@k``, ``ndcg@k`` and ``mrr@k`` for every ``k`` in ``ks``, from 0-based target ranks."""
    ranks = _ranks_array(ranks)
    metrics = {}
    for k in ks:
        metrics[f"recall@{k}"] = recall_at_k(ranks, k)
        metrics[f"ndcg@{k}"] = ndcg_at_k(ranks, k)
        metrics[f"mrr@{k}"] = mrr_at_k(ranks, k)
    return metrics
