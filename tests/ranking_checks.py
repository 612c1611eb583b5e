"""Float-safe checks of recommendation lists.

Scores computed twice (another process, batch shape, thread count or reloaded weights) may take other CPU
kernels and differ in the last bits, which can swap two items whose scores tie to float32 rounding. A list is
therefore checked against the scores it should rank, not against a second list from a second computation.
"""

from __future__ import annotations

import torch


def assert_top_items(top: list[int], scores: torch.Tensor) -> None:
    """``top`` lists distinct items whose scores are the ``len(top)`` best of ``scores``, best first,
    up to float32 rounding."""
    assert len(set(top)) == len(top), f"repeated items in {top}"
    best = scores.topk(len(top)).values
    torch.testing.assert_close(scores[torch.tensor(top)], best, msg=lambda m: f"{top} are not the top items: {m}")
