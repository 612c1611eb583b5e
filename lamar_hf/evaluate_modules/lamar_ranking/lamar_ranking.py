"""Recall@K, NDCG@K and MRR@K for next-item recommendation, as an ``evaluate`` module.

A thin wrapper over :mod:`lamar_hf.metrics`; load it from its folder::

    import evaluate
    ranking = evaluate.load("lamar_hf/evaluate_modules/lamar_ranking")
    ranking.compute(predictions=[[3, 7, 1], [5, 2, 9]], references=[7, 4], ks=[1, 3])

The default config takes, per user, the ranked list of recommended item ids (``predictions``) and the
item the user really chose next (``references``). The ``ranks`` config takes the 0-based rank of each
target in a full ranking (``lamar_hf.metrics.target_ranks``: all items, ties against the target) as
``predictions`` and no references. Both rank over the full catalogue only if the lists (or ranks)
were produced that way: these figures use no sampled negatives.
"""

import datasets
import evaluate

from lamar_hf.metrics import DEFAULT_KS, ranking_metrics, recommendation_ranks

_DESCRIPTION = __doc__

_KWARGS_DESCRIPTION = """
Args:
    predictions: per user, the recommended item ids best first (config "default"), or the 0-based rank of
        the target in a full ranking (config "ranks").
    references: per user, the target item id (config "default" only).
    ks: the cut-offs K (default 10 and 20); every K must be at most the length of the shortest list.
Returns:
    recall@K, ndcg@K and mrr@K for every K.
Examples:
    >>> ranking = evaluate.load("lamar_hf/evaluate_modules/lamar_ranking")
    >>> ranking.compute(predictions=[[3, 7, 1], [5, 2, 9]], references=[7, 4], ks=[1])
    {'recall@1': 0.0, 'ndcg@1': 0.0, 'mrr@1': 0.0}
"""

_CITATION = """\
@article{valizadeh2025lamar,
  title={Language Models as Semantic Augmenters for Sequential Recommenders},
  author={Valizadeh, Mehrdad and Dong, Xin and Tuo, Yuan and Caverlee, James},
  journal={arXiv preprint arXiv:2510.18046},
  year={2025}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class LamarRanking(evaluate.Metric):
    def _info(self):
        if self.config_name == "ranks":
            features = datasets.Features({"predictions": datasets.Value("int64")})
        else:
            features = datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("int64")), "references": datasets.Value("int64")}
            )
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=features,
        )

    def _compute(self, predictions, references=None, ks=DEFAULT_KS):
        if self.config_name == "ranks":
            return ranking_metrics(predictions, ks)
        shortest = min((len(items) for items in predictions), default=0)
        too_long = [k for k in ks if k > shortest]
        if too_long:
            raise ValueError(f"k={too_long[0]} is longer than the shortest recommendation list ({shortest} items)")
        return ranking_metrics(recommendation_ranks(predictions, references), ks)
