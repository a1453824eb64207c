"""The exported model's contract, written and read in one place.

:func:`export_serving_model` writes a SavedModel whose signatures carry the Transform
graph, so clients send raw item ids; :func:`read_export_info` reads back what the
export records about itself; :func:`padded_to_sparse` undoes the padding of
``transform_features``. Names come from ``bvae_tf.features``.

``serving_default`` (names in ``bvae_tf.features``)::

    inputs:  examples        string  [batch]     serialized tf.Examples; only
                                                 <b>_items (raw ids) are read
    outputs: <b>_item_ids    string  [batch, K]  top-K raw item ids of behavior b,
                                                 the user's own <b>_items excluded
             <b>_scores      float32 [batch, K]  their decoder logits, descending
             oov_count       int64   [batch]     ids dropped as unknown, all behaviors

``transform_features`` (evaluation tooling)::

    inputs:  examples        string  [batch]     serialized tf.Examples with
                                                 <b>_items and optionally <b>_heldout
    outputs: <b>_items, <b>_heldout              int64 [batch, max_len] vocabulary
                                                 indices, each row padded with -1
             <b>_items_oov, <b>_heldout_oov      int64 [batch] unknown ids dropped

``score_items`` (offline evaluation and batch scoring; the pipeline's evaluator
scores every model, old blessed ones included, through its own graph)::

    inputs:  <b>_items       int64   [batch, None]      vocabulary indices, rows padded
                                                         with -1 (transform_features)
    outputs: <b>_logits      float32 [batch, num_items]  decoder logits of behavior b

``assets.extra/bvae_export.json`` (:data:`EXPORT_INFO_FILE`), written with the model::

    {"format": 1, "behaviors": [...],        # in the model's order
     "top_k": K, "num_items": m,
     "item_vocabulary": "assets/item_vocabulary",   # line i = raw id of item index i
     "signatures": {"serve": ..., "transform": ..., "score": ...}}

The evaluator, the server's tooling and the benchmarks read the behavior order and
the vocabulary from it (:func:`read_export_info`), never from signature names.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
from absl import logging

from bvae_tf import config as bvae_config
from bvae_tf import features
from bvae_tf import model as model_lib

#: Padding of the dense ``transform_features`` outputs (and ``score_items`` inputs).
PADDING = -1
#: The export's description of itself, relative to the SavedModel directory.
EXPORT_INFO_FILE = os.path.join("assets.extra", "bvae_export.json")
_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class ExportInfo:
    """What an export records about itself (:data:`EXPORT_INFO_FILE`).

    Attributes:
      behaviors: the behaviors, in the model's order.
      top_k: K of ``serving_default``.
      num_items: size of the item vocabulary (``score_items`` logits width).
      item_vocabulary: path of the vocabulary file (line ``i``: raw id of index ``i``).
    """

    behaviors: tuple[str, ...]
    top_k: int
    num_items: int
    item_vocabulary: str

    def item_ids(self) -> list[str]:
        """Raw item ids by vocabulary index."""
        with tf.io.gfile.GFile(self.item_vocabulary, "r") as f:
            return [line.rstrip("\n") for line in f]


def read_export_info(export_dir: str) -> ExportInfo:
    """Reads :data:`EXPORT_INFO_FILE` of an export.

    Args:
      export_dir: a SavedModel written by :func:`export_serving_model` (local or a
        ``tf.io.gfile`` URI).

    Raises:
      ValueError: if the file is missing (an export made before the file existed: export
        the model again), unreadable, or not of a known format.
    """
    path = os.path.join(export_dir, EXPORT_INFO_FILE)
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            values = json.load(f)
    except (tf.errors.NotFoundError, FileNotFoundError) as e:
        raise ValueError(
            f"{export_dir} has no {EXPORT_INFO_FILE}: it was not exported by "
            "bvae_tf.export.export_serving_model of this version; export it again"
        ) from e
    except (tf.errors.OpError, OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    if not isinstance(values, dict) or values.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a format-{_FORMAT} export description: {values!r}")
    return ExportInfo(
        behaviors=features.validate_behaviors(values["behaviors"]),
        top_k=int(values["top_k"]),
        num_items=int(values["num_items"]),
        item_vocabulary=os.path.join(export_dir, values["item_vocabulary"]),
    )


def _write_export_info(
    export_dir: str, behaviors, top_k: int, num_items: int, vocabulary_file: str
) -> None:
    vocabulary = os.path.join("assets", os.path.basename(vocabulary_file))
    if not tf.io.gfile.exists(os.path.join(export_dir, vocabulary)):
        raise ValueError(f"the export {export_dir} holds no {vocabulary}")
    values: dict[str, Any] = {
        "format": _FORMAT,
        "behaviors": list(behaviors),
        "top_k": top_k,
        "num_items": num_items,
        "item_vocabulary": vocabulary,
        "signatures": {
            "serve": features.SERVING_SIGNATURE,
            "transform": features.TRANSFORM_SIGNATURE,
            "score": features.SCORE_SIGNATURE,
        },
    }
    path = os.path.join(export_dir, EXPORT_INFO_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(values, indent=1) + "\n")


def export_serving_model(
    model: model_lib.BVAE,
    tf_transform_output: tft.TFTransformOutput,
    export_dir: str,
    top_k: int = features.DEFAULT_TOP_K,
) -> str:
    """Saves ``model`` with the ``serving_default``, ``transform_features`` and
    ``score_items`` signatures of the module docstring (Transform graph and item
    vocabulary inside) and :data:`EXPORT_INFO_FILE`.

    Args:
      model: a trained BVAE over the Transform output's item vocabulary.
      tf_transform_output: the Transform output the model was trained on.
      export_dir: SavedModel directory to write.
      top_k: K of ``serving_default``, in ``[1, num_items]``.

    Returns:
      ``export_dir``.

    Raises:
      ValueError: if ``top_k`` is out of range or the vocabulary size differs from
        the model's ``num_items``.
    """
    behaviors = tuple(model.behaviors)
    vocab_size = tf_transform_output.vocabulary_size_by_name(features.ITEM_VOCABULARY)
    if vocab_size != model.num_items:
        raise ValueError(
            f"the item vocabulary has {vocab_size} items but the model scores {model.num_items}"
        )
    bvae_config.check_top_k(top_k, model.num_items)

    # Keras saves a subclassed model only once it has been called on inputs.
    model(
        {
            features.items_key(b): tf.SparseTensor(
                tf.zeros([0, 2], tf.int64), tf.zeros([0], tf.int64), [0, 0]
            )
            for b in behaviors
        }
    )
    for decoder in model.decoders:
        decoder.add_serving_layout()
    model.tft_layer = tf_transform_output.transform_features_layer()
    model.item_ids = tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            tf_transform_output.vocabulary_file_by_name(features.ITEM_VOCABULARY),
            key_dtype=tf.int64,
            key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
            value_dtype=tf.string,
            value_index=tf.lookup.TextFileIndex.WHOLE_LINE,
        ),
        default_value="",
    )
    raw_spec = tf_transform_output.raw_feature_spec()
    items_spec = {features.items_key(b): raw_spec[features.items_key(b)] for b in behaviors}
    eval_spec = dict(items_spec)
    for b in behaviors:
        if features.heldout_key(b) in raw_spec:
            eval_spec[features.heldout_key(b)] = raw_spec[features.heldout_key(b)]
    examples_spec = tf.TensorSpec([None], tf.string, name=features.SERVING_INPUT)

    @tf.function(input_signature=[examples_spec])
    def serve(examples):
        transformed = model.tft_layer(tf.io.parse_example(examples, items_spec))
        inputs = {features.items_key(b): transformed[features.items_key(b)] for b in behaviors}
        outputs = {}
        for b, (scores, items) in model.recommend(inputs, k=top_k).items():
            outputs[features.item_ids_output(b)] = model.item_ids.lookup(items)
            outputs[features.scores_output(b)] = scores
        outputs[features.OOV_COUNT] = tf.add_n(
            [
                tf.reshape(transformed[features.oov_key(features.items_key(b))], [-1])
                for b in behaviors
            ]
        )
        return outputs

    @tf.function(input_signature=[examples_spec])
    def transform_features(examples):
        transformed = model.tft_layer(tf.io.parse_example(examples, eval_spec))
        return {
            key: tf.sparse.to_dense(value, default_value=PADDING)
            if isinstance(value, tf.SparseTensor)
            else value
            for key, value in transformed.items()
        }

    score_spec = {
        features.items_key(b): tf.TensorSpec([None, None], tf.int64, name=features.items_key(b))
        for b in behaviors
    }

    @tf.function(input_signature=[score_spec])
    def score_items(padded):
        logits = model({key: padded_to_sparse(value) for key, value in padded.items()})
        return {features.logits_output(b): logits[b] for b in behaviors}

    # Serving and evaluation use the signatures only; without the per-layer Keras
    # traces the SavedModel is smaller and loads faster (reload it with
    # ``tf.saved_model.load``, not ``tf.keras.models.load_model``).
    model.save(
        export_dir,
        save_format="tf",
        save_traces=False,
        signatures={
            features.SERVING_SIGNATURE: serve.get_concrete_function(),
            features.TRANSFORM_SIGNATURE: transform_features.get_concrete_function(),
            features.SCORE_SIGNATURE: score_items.get_concrete_function(),
        },
    )
    _write_export_info(
        export_dir,
        behaviors,
        top_k,
        model.num_items,
        tf_transform_output.vocabulary_file_by_name(features.ITEM_VOCABULARY),
    )
    logging.info("Serving model (top %d per behavior) exported to %s.", top_k, export_dir)
    return export_dir


def padded_to_sparse(padded: tf.Tensor) -> tf.SparseTensor:
    """Inverse of the ``transform_features`` padding: ``[batch, max_len]`` int64 rows
    padded with -1 -> ``[batch, None]`` SparseTensor of the indices."""
    return tf.RaggedTensor.from_tensor(padded, padding=PADDING).to_sparse()
