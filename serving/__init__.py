"""Serving: TF Serving deployment files, gRPC client and a local TF Serving-protocol server."""

import bvae_tf  # noqa: F401  -- sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads
