"""Per-behavior ranking evaluation and the blessing gate (ModelEvaluation + ModelBlessing).

The component classes load TFX when first used (``components.lazy_exports``).
"""

from components import lazy_exports

__all__ = ["GateConfig", "RankingEvaluator"]

_HOMES = {
    "GateConfig": "components.ranking_evaluator.gate",
    "RankingEvaluator": "components.ranking_evaluator.component",
}

__getattr__ = lazy_exports(__name__, _HOMES)
