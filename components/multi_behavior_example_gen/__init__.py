"""Multi-behavior ExampleGen: dedup, filters and a global time split of interaction logs."""

from components.multi_behavior_example_gen.component import (
    MultiBehaviorExampleGen,
    MultiBehaviorExampleGenSpec,
)

__all__ = ["MultiBehaviorExampleGen", "MultiBehaviorExampleGenSpec"]
