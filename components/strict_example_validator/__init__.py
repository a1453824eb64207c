"""ExampleValidator that fails the run on data anomalies, with split environments.

The component class loads TFX when first used (``components.lazy_exports``).
"""

from components import lazy_exports

__all__ = ["DataAnomaliesError", "StrictExampleValidator"]

_HOMES = {
    "DataAnomaliesError": "components.strict_example_validator.component",
    "StrictExampleValidator": "components.strict_example_validator.component",
}

__getattr__ = lazy_exports(__name__, _HOMES)
