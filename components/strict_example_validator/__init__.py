"""ExampleValidator that fails the run on data anomalies, with split environments.

The component class loads TFX when first used (PEP 562), so that importing a plain
module of this package stays light.
"""

import importlib

__all__ = ["DataAnomaliesError", "StrictExampleValidator"]

_HOMES = {
    "DataAnomaliesError": "components.strict_example_validator.component",
    "StrictExampleValidator": "components.strict_example_validator.component",
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
