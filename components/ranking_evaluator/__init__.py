"""Per-behavior ranking evaluation and the blessing gate (ModelEvaluation + ModelBlessing).

The component classes load TFX when first used (PEP 562), so that importing a plain
module of this package (its configuration, for one) stays light.
"""

import importlib

__all__ = ["GateConfig", "RankingEvaluator"]

_HOMES = {
    "GateConfig": "components.ranking_evaluator.gate",
    "RankingEvaluator": "components.ranking_evaluator.component",
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
