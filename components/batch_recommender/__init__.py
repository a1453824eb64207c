"""Batch recommendations: top-K per user and behavior, written as files."""

from components.batch_recommender.component import BatchRecommendations, BatchRecommender

__all__ = ["BatchRecommendations", "BatchRecommender"]
