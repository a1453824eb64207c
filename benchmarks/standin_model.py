"""A small SavedModel that implements the exported model's serving contract.

The serving tests and ``benchmarks/serve_load.py`` (``--model standin``, while no
trained export is at hand) need a model with exactly the ``serving_default`` contract of
``bvae_tf.features``: serialized tf.Examples with ``<b>_items`` bytes features in,
per-behavior top-K raw item ids and scores plus ``oov_count`` out. This module builds
one with the same shape of computation as BVAE at serving time (union multi-hot,
L2-normalised, one linear encoder to ``d``, one linear decoder per behavior, the
user's own items of ``b`` set to ``-inf`` before ``top_k``), with random weights.

The item vocabulary is a text asset read by a ``tf.lookup.StaticHashTable``, as the
Transform vocabulary is in the real export. It lives with the benchmarks, which do
not import ``tests/``; the tests import it from here.
"""

from __future__ import annotations

import os
import pathlib
import shutil
from collections.abc import Sequence

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np
import tensorflow as tf

from bvae_tf import export, features


class StandInRecommender(tf.Module):
    """Random linear multi-behavior scorer with the ``serving_default`` contract.

    Args:
      item_ids: the vocabulary, raw item ids (distinct, non-empty strings).
      behaviors: behavior names; one decoder and one ``<b>_items`` feature each.
      vocabulary_file: path of a text file with ``item_ids``, one per line (becomes
        the SavedModel asset).
      dim: latent size ``d``.
      top_k: number of items returned per behavior, at most ``len(item_ids)``.
      seed: seed of the random weights.
    """

    def __init__(
        self,
        item_ids: Sequence[str],
        behaviors: Sequence[str],
        vocabulary_file: str,
        *,
        dim: int,
        top_k: int,
        seed: int,
    ):
        super().__init__(name="stand_in_recommender")
        self._behaviors = features.validate_behaviors(behaviors)
        self._num_items = len(item_ids)
        self._top_k = min(top_k, self._num_items)
        initializer = tf.lookup.TextFileInitializer(
            vocabulary_file,
            key_dtype=tf.string,
            key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            value_dtype=tf.int64,
            value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
        )
        self._table = tf.lookup.StaticHashTable(initializer, default_value=-1)
        self._vocabulary = tf.Variable(
            np.asarray(item_ids, dtype=object), trainable=False, dtype=tf.string
        )
        rng = np.random.default_rng(seed)
        self._encoder = tf.Variable(
            rng.normal(0.0, 1.0 / np.sqrt(dim), (self._num_items, dim)).astype(np.float32)
        )
        self._decoders = [
            tf.Variable(rng.normal(0.0, 1.0, (dim, self._num_items)).astype(np.float32))
            for _ in self._behaviors
        ]
        self._biases = [
            tf.Variable(rng.normal(0.0, 0.1, (self._num_items,)).astype(np.float32))
            for _ in self._behaviors
        ]

    def _multi_hot(self, examples: tf.Tensor) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
        """Parses examples; per behavior: ``[batch, items]`` multi-hot, ``[batch]`` OOV."""
        spec = {features.items_key(b): tf.io.VarLenFeature(tf.string) for b in self._behaviors}
        parsed = tf.io.parse_example(examples, spec)
        batch = tf.shape(examples, out_type=tf.int64)[0]
        multi_hot, oov = [], []
        for behavior in self._behaviors:
            sparse = parsed[features.items_key(behavior)]
            index = self._table.lookup(sparse.values)
            known = index >= 0
            rows = sparse.indices[:, 0]
            oov.append(
                tf.math.unsorted_segment_sum(
                    tf.cast(tf.logical_not(known), tf.int64), rows, num_segments=batch
                )
            )
            coords = tf.stack([tf.boolean_mask(rows, known), tf.boolean_mask(index, known)], 1)
            dense = tf.scatter_nd(
                coords, tf.ones([tf.shape(coords)[0]], tf.float32), [batch, self._num_items]
            )
            multi_hot.append(tf.minimum(dense, 1.0))
        return multi_hot, oov

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.SERVING_INPUT)])
    def serve(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        """``serving_default``: ``[batch] string`` examples -> per-behavior top-K."""
        multi_hot, oov = self._multi_hot(examples)
        union = tf.math.l2_normalize(tf.minimum(tf.add_n(multi_hot), 1.0), axis=1)
        latent = tf.matmul(union, self._encoder)
        outputs = {features.OOV_COUNT: tf.add_n(oov)}
        for behavior, history, decoder, bias in zip(
            self._behaviors, multi_hot, self._decoders, self._biases, strict=True
        ):
            logits = tf.matmul(latent, decoder) + bias
            logits = tf.where(history > 0, tf.constant(-np.inf, tf.float32), logits)
            scores, index = tf.math.top_k(logits, k=self._top_k)
            outputs[features.item_ids_output(behavior)] = tf.gather(self._vocabulary, index)
            outputs[features.scores_output(behavior)] = scores
        return outputs

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.SERVING_INPUT)])
    def transform(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        """``transform_features``: per behavior, known-item counts and OOV counts."""
        multi_hot, oov = self._multi_hot(examples)
        outputs = {}
        for behavior, history, dropped in zip(self._behaviors, multi_hot, oov, strict=True):
            key = features.items_key(behavior)
            outputs[key] = tf.cast(tf.reduce_sum(history, 1), tf.int64)
            outputs[features.oov_key(key)] = dropped
        return outputs


def export_standin_model(
    export_dir: str | os.PathLike,
    *,
    num_items: int = 50,
    behaviors: Sequence[str] = (features.PURCHASE, features.CLICK, features.FAVORITE),
    dim: int = 8,
    top_k: int = 5,
    seed: int = 0,
) -> pathlib.Path:
    """Writes a stand-in SavedModel to ``export_dir`` (which must not exist yet).

    Item ids are ``"i0" … "i<num_items-1>"``. The directory is written under a
    temporary name beside ``export_dir`` and renamed, as the Pusher publishes.

    Returns:
      ``export_dir`` as a path.
    """
    export_dir = pathlib.Path(export_dir)
    staging = export_dir.with_name(f".tmp-{export_dir.name}")
    staging.mkdir(parents=True)
    vocabulary_dir = staging.parent / f".vocab-{export_dir.name}"
    vocabulary_dir.mkdir()
    vocabulary_file = vocabulary_dir / features.ITEM_VOCABULARY
    item_ids = [f"i{i}" for i in range(num_items)]
    vocabulary_file.write_text("\n".join(item_ids) + "\n")
    module = StandInRecommender(
        item_ids, behaviors, str(vocabulary_file), dim=dim, top_k=top_k, seed=seed
    )
    tf.saved_model.save(
        module,
        str(staging),
        signatures={
            features.SERVING_SIGNATURE: module.serve.get_concrete_function(),
            features.TRANSFORM_SIGNATURE: module.transform.get_concrete_function(),
        },
    )
    export.write_export_info(str(staging), behaviors, top_k, num_items, str(vocabulary_file))
    shutil.rmtree(vocabulary_dir)
    staging.rename(export_dir)
    return export_dir
