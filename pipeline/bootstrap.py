"""The runners' environment, the first thing a runner imports.

Puts the repository root on ``sys.path`` (a runner run as a script, e.g. by the TFX
CLI's ``--pipeline_path``, has only ``pipeline/`` there) and imports ``bvae_tf``,
which sets ``TF_USE_LEGACY_KERAS=1`` (Keras 2 for TFX 1.16) before anything imports
TensorFlow. A runner started with ``python -m`` gets both from the ``pipeline``
package itself.
"""

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import bvae_tf  # noqa: E402,F401  -- sets TF_USE_LEGACY_KERAS=1
