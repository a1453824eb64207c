"""Predict requests from users' histories, and top-K recommendations from the answers.

The client's conversions, which need no connection: users' per-behavior raw item
ids become one tf.Example per user (the ``serving_default`` input format, defined in
``bvae_tf.export``, whose warm-up writer uses it too), inputs are checked and cast
against the signature into a ``PredictRequest``, and ``serving_default`` outputs
become per-user, per-behavior top-K ``(item id, score)`` lists (:class:`Recommendations`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import predict_pb2

from bvae_tf import features
from bvae_tf.export import (  # noqa: F401  -- the serving_default input format
    History,
    check_behaviors,
    history_example,
    normalize_item_id,
    serialize_histories,
)
from serving import signatures, tensor_protos


@dataclasses.dataclass(frozen=True)
class Recommendations:
    """Top-K items of one user, per behavior.

    Attributes:
      items: behavior -> ``((item_id, score), …)`` best first; the model's own
        exclusions (score ``-inf``: items the user already did behavior ``b`` on) are
        left out, so a list can be shorter than K.
      oov_count: the user's item ids the model did not know and dropped.
      model_version: version of the model that answered.
      unknown_feature_count: feature keys of the user's tf.Example outside the
        Example format (``features.UNKNOWN_FEATURE_COUNT``; 0 from models exported
        without it): a history under a misspelt key counts here, not as a history.
    """

    items: Mapping[str, tuple[tuple[str, float], ...]]
    oov_count: int
    model_version: int
    unknown_feature_count: int = 0


def build_predict_request(
    inputs: Mapping[str, object],
    *,
    model_name: str,
    signature_name: str = features.SERVING_SIGNATURE,
    version: int | None = None,
    signature: meta_graph_pb2.SignatureDef | None = None,
    output_filter: Sequence[str] = (),
) -> predict_pb2.PredictRequest:
    """A ``PredictRequest`` with the inputs cast to the signature's dtypes.

    Args:
      inputs: input alias -> array-like value.
      model_name: ``model_spec.name``.
      signature_name: ``model_spec.signature_name``.
      version: ``model_spec.version``; ``None`` asks for the latest.
      signature: the SignatureDef to check against (from ``GetModelMetadata`` or
        ``saved_model.pb``). With it, every input must be present, none may be extra,
        and each is cast to its dtype (``float64`` never reaches a ``float32`` input)
        and checked against its shape. Without it, values go as NumPy infers them.
      output_filter: output aliases to return (all when empty).

    Raises:
      ValueError: naming the input that is missing, extra or not convertible.
    """
    if not model_name:
        raise ValueError("model_name must be non-empty")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    request.output_filter.extend(output_filter)
    if signature is not None:
        missing = sorted(set(signature.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(signature.inputs))
        if missing or extra:
            raise ValueError(
                f"signature {signature_name!r} takes inputs {sorted(signature.inputs)}; "
                f"missing {missing}, not in the signature {extra}"
            )
        unknown_outputs = sorted(set(output_filter) - set(signature.outputs))
        if unknown_outputs:
            raise ValueError(
                f"output_filter names {unknown_outputs}, not outputs of {signature_name!r}"
            )
    for alias, value in inputs.items():
        if signature is not None:
            info = signature.inputs[alias]
            array = signatures.cast_to_signature(alias, value, info)
            tensor_protos.fill_tensor_proto(request.inputs[alias], array, info.dtype)
        else:
            request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return request


def build_history_request(
    histories: Sequence[History],
    *,
    model_name: str,
    signature: meta_graph_pb2.SignatureDef,
    signature_name: str = features.SERVING_SIGNATURE,
    version: int | None = None,
) -> predict_pb2.PredictRequest:
    """A ``serving_default`` request for users' per-behavior raw item ids.

    Args:
      histories: one mapping behavior -> raw item ids per user (may be empty: a batch
        of 0; a user may have no items at all).
      model_name, signature_name, version: the ``model_spec``.
      signature: the ``serving_default`` SignatureDef; its outputs name the behaviors.

    Raises:
      ValueError: for a behavior the model does not serve, a bad item id, or a
        signature whose inputs are not ``examples``.
    """
    serialized = serialize_histories(histories, signatures.behaviors_of(signature))
    return build_predict_request(
        {features.SERVING_INPUT: serialized},
        model_name=model_name,
        signature_name=signature_name,
        version=version,
        signature=signature,
    )


def recommendations_from_outputs(
    outputs: Mapping[str, np.ndarray],
    behaviors: Sequence[str],
    *,
    model_version: int,
    top_k: int | None = None,
) -> list[Recommendations]:
    """Per-user top-K lists from ``serving_default`` outputs.

    Args:
      outputs: ``<b>_item_ids`` ``[batch, K]`` bytes, ``<b>_scores`` ``[batch, K]``
        float32, ``oov_count`` and (optional) ``unknown_feature_count`` ``[batch]``
        int64, as NumPy arrays.
      behaviors: behaviors to read.
      model_version: version that produced the outputs.
      top_k: keep at most this many items per behavior (``None``: all K).

    Raises:
      ValueError: if an output is missing or ``top_k`` is below 1 or exceeds K.
    """
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
    missing = [
        name
        for b in behaviors
        for name in (features.item_ids_output(b), features.scores_output(b))
        if name not in outputs
    ]
    if missing:
        raise ValueError(f"outputs {missing} are missing from the response")
    batch = len(outputs[features.OOV_COUNT]) if features.OOV_COUNT in outputs else None
    result = []
    per_behavior = {}
    for behavior in behaviors:
        ids = outputs[features.item_ids_output(behavior)]
        scores = outputs[features.scores_output(behavior)]
        if top_k is not None and top_k > ids.shape[1]:
            raise ValueError(
                f"top_k={top_k} exceeds the {ids.shape[1]} items per behavior the model returns"
            )
        per_behavior[behavior] = (ids, scores)
        batch = len(ids) if batch is None else batch
    oov, unknown = (
        outputs[name].tolist() if name in outputs else [0] * (batch or 0)
        for name in (features.OOV_COUNT, features.UNKNOWN_FEATURE_COUNT)
    )
    kept = {
        behavior: (ids.tolist(), scores.tolist(), (~np.isneginf(scores)).tolist())
        for behavior, (ids, scores) in per_behavior.items()
    }
    for row in range(batch or 0):
        items = {}
        for behavior, (ids, scores, keep) in kept.items():
            ranked = tuple(
                (item.decode("utf-8"), score)
                for item, score, ok in zip(ids[row], scores[row], keep[row], strict=True)
                if ok
            )
            items[behavior] = ranked[:top_k] if top_k is not None else ranked
        result.append(
            Recommendations(
                items=items,
                oov_count=int(oov[row]),
                model_version=model_version,
                unknown_feature_count=int(unknown[row]),
            )
        )
    return result
