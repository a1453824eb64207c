"""Per-behavior ranking evaluation and the blessing gate (ModelEvaluation + ModelBlessing)."""

from components.ranking_evaluator.component import RankingEvaluator
from components.ranking_evaluator.gate import GateConfig

__all__ = ["GateConfig", "RankingEvaluator"]
