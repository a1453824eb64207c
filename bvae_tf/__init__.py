"""BVAE (Behavior-aware Variational Autoencoder) in TensorFlow/Keras 2.

Importing this package sets ``TF_USE_LEGACY_KERAS=1`` so that ``tf.keras`` is
Keras 2 (``tf_keras``), which TFX 1.16 and TensorFlow Recommenders 0.7.3 need.
It must therefore be imported before TensorFlow; it imports nothing heavy itself.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
