"""BVAE (Behavior-aware Variational Autoencoder) in TensorFlow/Keras 2.

Importing this package sets ``TF_USE_LEGACY_KERAS=1`` so that ``tf.keras`` is
Keras 2 (``tf_keras``), which TFX 1.16 and TensorFlow Recommenders 0.7.3 need.
It must therefore be imported before TensorFlow; it imports nothing heavy itself.
"""

import os
import warnings

#: Whether the user chose TensorFlow's C++ log level (then it is never changed).
_TF_LOG_LEVEL_FROM_USER = "TF_CPP_MIN_LOG_LEVEL" in os.environ

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def quiet_cli() -> None:
    """For command-line tools, before TensorFlow is imported: hides TensorFlow's C++
    start-up messages (``TF_CPP_MIN_LOG_LEVEL=3``, e.g. the cuDNN/cuFFT "Unable to
    register factory" lines of a CPU machine) unless the user set a level, and
    google-api-core's FutureWarning about the Python version."""
    if not _TF_LOG_LEVEL_FROM_USER:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    warnings.filterwarnings(
        "ignore", message=r"You are using a Python version", category=FutureWarning
    )


__version__ = "0.1.0"
