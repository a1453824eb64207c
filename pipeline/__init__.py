"""The BVAE TFX pipeline definition and its runners (local, Beam, Kubeflow V2)."""

import bvae_tf  # noqa: F401  -- sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads
