"""``python -m components.multi_behavior_example_gen``: the data check (``data_check``)."""

import os
import sys

# Keras 2 (tf_keras) for TFX 1.16: set before anything imports TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


from components.multi_behavior_example_gen import data_check

if __name__ == "__main__":
    sys.exit(data_check.main())
