"""Batch recommendations: top-K per user and behavior, written as files.

The component classes load TFX when first used (``components.lazy_exports``).
"""

from components import lazy_exports

__all__ = ["BatchRecommendations", "BatchRecommender"]

_HOMES = {
    "BatchRecommendations": "components.batch_recommender.component",
    "BatchRecommender": "components.batch_recommender.component",
}

__getattr__ = lazy_exports(__name__, _HOMES)
