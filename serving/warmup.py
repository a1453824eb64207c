"""TF Serving warm-up requests written into an exported SavedModel.

TF Serving replays ``<version>/assets.extra/tf_serving_warmup_requests`` (a TFRecord
file of ``tensorflow.serving.PredictionLog`` records, at most 1000) when it loads a
version, before the version takes traffic, so the first real requests do not pay
for lazy initialisation (see "SavedModel Warmup" in the TF Serving guide). The local
server (``serving.model_server``) does the same. The requests are built with the
client's own request builder (``serving.client_requests``), so they are exactly what
clients send.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from bvae_tf import features
from serving import signatures
from serving.client_requests import History, build_history_request

ASSETS_EXTRA = "assets.extra"
WARMUP_FILENAME = "tf_serving_warmup_requests"
#: TF Serving refuses a warm-up file with more records than this.
MAX_WARMUP_RECORDS = 1000
#: An item id no vocabulary holds: exercises the unknown-id path during warm-up.
_UNKNOWN_ITEM = "__warmup_unknown_item__"


def warmup_file(saved_model_dir: str | os.PathLike) -> pathlib.Path:
    """Path of the warm-up file inside a SavedModel directory."""
    return pathlib.Path(saved_model_dir) / ASSETS_EXTRA / WARMUP_FILENAME


def write_warmup_requests(
    saved_model_dir: str | os.PathLike,
    *,
    model_name: str,
    histories: Sequence[History] | None = None,
    signature_name: str = features.SERVING_SIGNATURE,
) -> pathlib.Path:
    """Writes ``assets.extra/tf_serving_warmup_requests`` into a SavedModel directory.

    One Predict request per history (batch of 1) and one with all histories together
    (a batch with different history lengths) are written. Call it on the exported
    directory before it is published (the Pusher's staging folder), so that the
    version folder appears complete with its warm-up file.

    Args:
      saved_model_dir: an exported SavedModel with a ``serving_default``-style
        signature (its outputs name the behaviors).
      model_name: ``model_spec.name`` of the requests (the served model's name).
      histories: users as behavior -> raw item ids. Default: a user with no items and
        a user with one unknown item id per behavior.
      signature_name: signature the requests call.

    Returns:
      Path of the written file.

    Raises:
      ValueError: if the directory is not a SavedModel, lacks the signature, a
        history names a behavior the model does not serve, or more than
        ``MAX_WARMUP_RECORDS - 1`` histories are given.
    """
    defs = signatures.read_signature_defs(saved_model_dir)
    if signature_name not in defs:
        raise ValueError(
            f"SavedModel {saved_model_dir!s} has no signature {signature_name!r}; "
            f"it has {sorted(defs)}"
        )
    signature = defs[signature_name]
    if histories is None:
        behaviors = signatures.behaviors_of(signature)
        histories = [{}, {behavior: [_UNKNOWN_ITEM] for behavior in behaviors}]
    histories = list(histories)
    if not histories or len(histories) + 1 > MAX_WARMUP_RECORDS:
        raise ValueError(
            f"histories must hold 1 to {MAX_WARMUP_RECORDS - 1} users, got {len(histories)}"
        )
    batches = [[history] for history in histories]
    if len(histories) > 1:
        batches.append(histories)
    requests = [
        build_history_request(
            batch, model_name=model_name, signature=signature, signature_name=signature_name
        )
        for batch in batches
    ]
    path = warmup_file(saved_model_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path
