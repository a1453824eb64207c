"""One worker of ``test_multi_worker.py``: ``run_fn`` with the FnArgs given as JSON
(``python -m tests.bvae_tf.multi_worker_main '<json>'``); ``TF_CONFIG`` comes from
the environment."""

import json
import sys

from tfx.components.trainer.fn_args_utils import FnArgs

import bvae_tf  # noqa: F401  (Keras 2 before TensorFlow)
from bvae_tf import trainer

if __name__ == "__main__":
    trainer.run_fn(FnArgs(**json.loads(sys.argv[1])))
