"""The Evaluator's model loader (TFX's ``custom_eval_shared_model`` hook).

TFX's Evaluator calls ``custom_eval_shared_model`` of its ``module_path`` for the
candidate and the baseline. This one checks, before any Beam work, that the exported
model has the ``rank_heldout`` signature the ranking metric reads, so a baseline
exported before the signature existed fails with the fix named instead of a TFMA
traceback; then it returns ``tfma.default_eval_shared_model``'s model.
"""

from __future__ import annotations

import os
from typing import Any

from google.protobuf.message import DecodeError

from bvae_tf import features

_SAVED_MODEL_PB = "saved_model.pb"


def signature_names(saved_model_dir: str) -> set[str]:
    """The signature names of a SavedModel, read from ``saved_model.pb`` (no loading).

    Raises:
      ValueError: if the directory holds no ``saved_model.pb``, or one that does not
        parse or has no MetaGraph.
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(saved_model_dir, _SAVED_MODEL_PB)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{saved_model_dir} holds no {_SAVED_MODEL_PB}: is it an exported model?")
    saved_model = saved_model_pb2.SavedModel()
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            saved_model.ParseFromString(f.read())
    except (DecodeError, tf.errors.OpError) as e:
        raise ValueError(f"cannot parse {path} as a SavedModel: {e}") from e
    if not saved_model.meta_graphs:
        raise ValueError(f"{path} holds no MetaGraph: not an exported model")
    return {name for graph in saved_model.meta_graphs for name in graph.signature_def}


def custom_eval_shared_model(
    eval_saved_model_path: str, model_name: str, eval_config: Any, **kwargs: Any
):
    """``tfma.default_eval_shared_model`` after checking the ``rank_heldout`` signature.

    Args:
      eval_saved_model_path: the model's ``Format-Serving`` SavedModel directory.
      model_name: ``"candidate"`` or ``"baseline"`` (the EvalConfig's model specs).
      eval_config: the ``tfma.EvalConfig``.
      **kwargs: passed on to ``tfma.default_eval_shared_model``.

    Returns:
      The ``tfma.EvalSharedModel``.

    Raises:
      ValueError: if the model lacks the ``rank_heldout`` signature; the message
        names the model and what to do.
    """
    import tensorflow_model_analysis as tfma

    names = signature_names(eval_saved_model_path)
    if features.RANK_SIGNATURE not in names:
        role = "baseline (the latest blessed model)" if model_name == "baseline" else model_name
        raise ValueError(
            f"the {role} model at {eval_saved_model_path} has no {features.RANK_SIGNATURE!r} "
            f"signature (it has {sorted(names)}): it was exported before the pipeline's "
            "Evaluator moved to TFMA, so it cannot be scored. Retrain it with this version, "
            "or start the pipeline's history afresh (a new pipeline_name or metadata store) "
            "so that no such model is the baseline."
        )
    return tfma.default_eval_shared_model(
        eval_saved_model_path=eval_saved_model_path,
        model_name=model_name,
        eval_config=eval_config,
        **kwargs,
    )
