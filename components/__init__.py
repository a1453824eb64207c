"""Custom TFX components of the BVAE pipeline (e.g. the multi-behavior ExampleGen)."""

import bvae_tf  # noqa: F401  -- sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads
