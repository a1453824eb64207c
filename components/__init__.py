"""Custom TFX components of the BVAE pipeline (e.g. the multi-behavior ExampleGen)."""

import importlib
from collections.abc import Callable, Mapping

import bvae_tf  # noqa: F401  -- sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads


def lazy_exports(package: str, homes: Mapping[str, str]) -> Callable[[str], object]:
    """A package's module ``__getattr__`` (PEP 562) importing each exported name from
    its home module on first use, so that importing a light module of the package
    (its configuration, for one) does not load TFX.

    Args:
      package: the package's ``__name__`` (for the error message).
      homes: exported name -> dotted module that defines it.
    """

    def __getattr__(name: str) -> object:
        if name in homes:
            return getattr(importlib.import_module(homes[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
