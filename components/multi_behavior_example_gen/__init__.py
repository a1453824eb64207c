"""Multi-behavior ExampleGen: dedup, filters and a global time split of interaction logs.

The component classes load TFX when first used (PEP 562), so that importing a plain
module of this package (its configuration, for one) stays light.
"""

import importlib

__all__ = ["MultiBehaviorExampleGen", "MultiBehaviorExampleGenSpec"]

_HOMES = {
    "MultiBehaviorExampleGen": "components.multi_behavior_example_gen.component",
    "MultiBehaviorExampleGenSpec": "components.multi_behavior_example_gen.component",
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
