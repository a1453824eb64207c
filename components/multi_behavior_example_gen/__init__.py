"""Multi-behavior ExampleGen: dedup, filters and a global time split of interaction logs.

The component classes load TFX when first used (``components.lazy_exports``).
"""

from components import lazy_exports

__all__ = ["MultiBehaviorExampleGen", "MultiBehaviorExampleGenSpec"]

_HOMES = {
    "MultiBehaviorExampleGen": "components.multi_behavior_example_gen.component",
    "MultiBehaviorExampleGenSpec": "components.multi_behavior_example_gen.component",
}

__getattr__ = lazy_exports(__name__, _HOMES)
