"""TensorFlow Transform ``preprocessing_fn``: raw item ids -> item indices.

One item vocabulary is computed over the train items of every behavior (the union
of all ``<b>_items`` features on the analyzed split) and applied to every
``<b>_items`` and ``<b>_heldout`` feature. An id that is not in the vocabulary is
dropped and counted in ``<b>_items_oov`` / ``<b>_heldout_oov``; it is never mapped
onto a real item or an OOV bucket that the model would score as an item
(tensorflow/recommenders#202). The Transform graph is attached to the exported
model, so serving clients send raw ids (see ``bvae_tf.trainer``).

Feature names come from ``bvae_tf.features``; the transformed layout is documented
there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from bvae_tf import features

#: ``custom_config`` key: the behaviors to transform (default: every ``<b>_items``
#: feature found in the inputs, in sorted order).
BEHAVIORS_KEY = "behaviors"
#: ``custom_config`` key: minimum number of train occurrences (one per user and
#: behavior that has the item) for an item to enter the vocabulary.
FREQUENCY_THRESHOLD_KEY = "vocab_frequency_threshold"
DEFAULT_FREQUENCY_THRESHOLD = 1


def _behaviors_from(inputs: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[str, ...]:
    """Behaviors named in ``config`` (checked against the inputs) or found in them."""
    if config.get(BEHAVIORS_KEY):
        behaviors = features.validate_behaviors(config[BEHAVIORS_KEY])
        missing = [b for b in behaviors if features.items_key(b) not in inputs]
        if missing:
            raise ValueError(
                f"behaviors {missing} have no {features.ITEMS_SUFFIX!r} feature in the "
                f"Transform inputs {sorted(inputs)}"
            )
        return behaviors
    found = sorted(
        key[: -len(features.ITEMS_SUFFIX)] for key in inputs if key.endswith(features.ITEMS_SUFFIX)
    )
    if not found:
        raise ValueError(
            f"no '<behavior>{features.ITEMS_SUFFIX}' feature in the Transform inputs "
            f"{sorted(inputs)}"
        )
    return features.validate_behaviors(found)


def _as_ragged(ids: tf.SparseTensor | tf.RaggedTensor) -> tf.RaggedTensor:
    """``[batch, None]`` ids as a RaggedTensor (VarLen features parse as SparseTensor)."""
    if isinstance(ids, tf.RaggedTensor):
        return ids
    if isinstance(ids, tf.SparseTensor):
        return tf.RaggedTensor.from_sparse(ids)
    raise ValueError(f"expected a SparseTensor or RaggedTensor of item ids, got {ids!r}")


def lookup_items(
    raw_ids: tf.SparseTensor | tf.RaggedTensor, deferred_vocabulary: Any
) -> tuple[tf.SparseTensor, tf.Tensor]:
    """Maps raw ids to vocabulary indices, dropping and counting unknown ids.

    Args:
      raw_ids: ``[batch, None]`` string item ids (a VarLen feature).
      deferred_vocabulary: the (deferred) vocabulary file from ``tft.vocabulary``.

    Returns:
      ``(indices, oov_count)``: ``[batch, None]`` int64 SparseTensor of indices in
      ``[0, vocabulary size)`` in the input order, unknown ids removed (rows stay
      ragged-right: no gaps in a row), and ``[batch]`` int64 counts of removed ids.
    """
    ragged = _as_ragged(raw_ids)
    looked_up = tft.apply_vocabulary(ragged, deferred_vocabulary, default_value=-1)
    known = looked_up >= 0
    oov_count = tf.reduce_sum(tf.cast(tf.logical_not(known), tf.int64), axis=1)
    indices = tf.ragged.boolean_mask(looked_up, known).to_sparse()
    return indices, oov_count


# TFX Transform calls this.
def preprocessing_fn(
    inputs: Mapping[str, Any], custom_config: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Builds the item vocabulary and maps every item feature onto it.

    Args:
      inputs: raw features parsed with the schema: for each behavior b,
        ``<b>_items`` and (eval/test splits; empty elsewhere) ``<b>_heldout``,
        ``[batch, None]`` string SparseTensors. Other features are ignored.
      custom_config: optional ``{"behaviors": [...], "vocab_frequency_threshold":
        int}`` (TFX Transform ``custom_config``).

    Returns:
      For each behavior b: ``<b>_items`` and ``<b>_heldout`` as ``[batch, None]``
      int64 SparseTensors of item indices, and ``<b>_items_oov`` /
      ``<b>_heldout_oov`` as ``[batch]`` int64 counts of unknown ids dropped.
      ``<b>_heldout`` outputs exist only when the input has that feature.

    Raises:
      ValueError: if a configured behavior has no items feature, or the frequency
        threshold is not a positive integer.
    """
    config = dict(custom_config or {})
    behaviors = _behaviors_from(inputs, config)
    threshold = config.get(FREQUENCY_THRESHOLD_KEY, DEFAULT_FREQUENCY_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ValueError(f"{FREQUENCY_THRESHOLD_KEY} must be a positive integer, got {threshold!r}")

    train_items = tf.concat([_as_ragged(inputs[features.items_key(b)]) for b in behaviors], axis=1)
    vocabulary = tft.vocabulary(
        train_items,
        frequency_threshold=threshold if threshold > 1 else None,
        vocab_filename=features.ITEM_VOCABULARY,
    )

    outputs: dict[str, Any] = {}
    for behavior in behaviors:
        for key in (features.items_key(behavior), features.heldout_key(behavior)):
            if key not in inputs:
                continue
            outputs[key], outputs[features.oov_key(key)] = lookup_items(inputs[key], vocabulary)
    return outputs
