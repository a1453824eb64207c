"""What every baseline model shares: BVAE's input and output contract, no SGD.

A baseline is a ``tf.keras.Model`` that maps the same feature dict as
:class:`bvae_tf.model.BVAE` (``{features.items_key(b): SparseTensor [B, None] int64}``,
the user's train items per behavior) to ``{b: [B, num_items] float32}`` scores, so
that :func:`bvae_tf.metrics.evaluate`, the experiment CLI and the top-K logic work on
it unchanged. Its parameters are non-trainable variables set by a closed-form
``fit`` from the train matrices, so a Keras ``save``/``load`` keeps them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from bvae_tf import features as F
from bvae_tf import layers as L


class ItemScoreModel(tf.keras.Model):
    """Base class: per-behavior item scores from the user's train items.

    Args:
      behaviors: behaviors scored (and read as input), in model order.
      num_items: ``m``, the catalog size.

    Raises:
      ValueError: on no behaviors, duplicated behaviors or ``num_items < 1``.
    """

    def __init__(self, behaviors: Sequence[str], num_items: int, **kwargs):
        super().__init__(**kwargs)
        behaviors = tuple(behaviors)
        if not behaviors or len(set(behaviors)) != len(behaviors):
            raise ValueError(f"behaviors must be distinct and non-empty, got {behaviors!r}")
        if int(num_items) < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        self._behaviors = behaviors
        self._num_items = int(num_items)

    @property
    def behaviors(self) -> tuple[str, ...]:
        return self._behaviors

    @property
    def num_items(self) -> int:
        return self._num_items

    @property
    def scored_behaviors(self) -> tuple[str, ...]:
        """The behaviors :meth:`call` returns scores for (default: all inputs)."""
        return self._behaviors

    def get_config(self) -> dict[str, Any]:
        return {"behaviors": list(self._behaviors), "num_items": self._num_items, "name": self.name}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)

    def _check_train(self, train: Mapping[str, sp.spmatrix]) -> dict[str, sp.csr_matrix]:
        """:func:`check_train` for this model's behaviors and items."""
        return check_train(train, self._behaviors, self._num_items)

    def _inputs(self, inputs: Mapping[str, Any]) -> dict[str, L.SparseRows]:
        return L.behavior_inputs(inputs, self._behaviors, self._num_items, type(self).__name__)

    def multi_hot(self, rows: L.SparseRows) -> tf.Tensor:
        """``[B, m]`` float32 0/1 matrix of a batch's item sets."""
        index = tf.stack([rows.rows, rows.cols], axis=1)
        return tf.scatter_nd(
            index,
            tf.ones_like(rows.rows, tf.float32),
            tf.stack([rows.batch_size, tf.constant(self._num_items, tf.int64)]),
        )

    def sparse_matrix(self, rows: L.SparseRows) -> tf.SparseTensor:
        """``[B, m]`` float32 0/1 ``tf.SparseTensor`` of a batch's item sets."""
        return tf.SparseTensor(
            tf.stack([rows.rows, rows.cols], axis=1),
            tf.ones_like(rows.rows, tf.float32),
            tf.stack([rows.batch_size, tf.constant(self._num_items, tf.int64)]),
        )

    def score(self, rows: dict[str, L.SparseRows]) -> dict[str, tf.Tensor]:
        """``{b: [B, m] float32}`` scores from the parsed inputs; subclasses implement it."""
        raise NotImplementedError

    def call(self, inputs, training=False):
        """Scores: ``{b: [B, num_items] float32}`` for ``b`` in :attr:`scored_behaviors`."""
        return self.score(self._inputs(inputs))

    def recommend(self, inputs, k: int = F.DEFAULT_TOP_K) -> dict[str, tuple[tf.Tensor, tf.Tensor]]:
        """Top-``k`` items per behavior, the user's own items of that behavior excluded
        (the contract of :meth:`bvae_tf.model.BVAE.recommend`).

        Returns:
          ``{b: (scores [B, k] float32, items [B, k] int64)}``, scores descending.

        Raises:
          ValueError: if ``k`` is not in ``[1, num_items]``.
        """
        if not 1 <= int(k) <= self._num_items:
            raise ValueError(f"k must be in [1, {self._num_items}], got {k}")
        rows = self._inputs(inputs)
        scores = self.score(rows)
        out = {}
        for b in self.scored_behaviors:
            values, items = tf.math.top_k(L.mask_scores(scores[b], rows[b]), k=int(k))
            out[b] = (values, tf.cast(items, tf.int64))
        return out


def train_counts(train: Mapping[str, sp.csr_matrix], behaviors: Sequence[str]) -> np.ndarray:
    """``[K, m]`` float64: per behavior, the number of users with each train item."""
    return np.stack([np.asarray(train[b].sum(axis=0)).ravel() for b in behaviors])


def check_train(
    train: Mapping[str, sp.spmatrix], behaviors: Sequence[str], num_items: int
) -> dict[str, sp.csr_matrix]:
    """The train matrices of ``behaviors`` as 0/1 float32 CSR ``[n, m]``.

    Raises:
      ValueError: on a missing behavior or a matrix of the wrong width.
    """
    missing = [b for b in behaviors if b not in train]
    if missing:
        raise ValueError(f"fit needs train matrices of {missing}; got {sorted(train)}")
    out = {}
    for b in behaviors:
        matrix = sp.csr_matrix(train[b], dtype=np.float32)
        if matrix.shape[1] != num_items:
            raise ValueError(
                f"train matrix of {b!r} has {matrix.shape[1]} items, the model {num_items}"
            )
        matrix.data[:] = 1.0
        out[b] = matrix
    return out


def check_settings(model: str, checks: Mapping[str, tuple[Any, bool, str]]) -> None:
    """Refuses a model's invalid settings, naming each with its value and rule.

    Args:
      model: the model's name, for the message (e.g. ``"VAE++"``).
      checks: ``{setting: (value, passes, rule)}``, e.g.
        ``{"dropout": (dropout, 0 <= dropout < 1, "in [0, 1)")}``; a NaN fails any
        comparison, so it is refused with the rule.

    Raises:
      ValueError: ``invalid <model> settings: dropout=1.5 (must be in [0, 1)), ...``.
    """
    bad = [f"{k}={v!r} (must be {rule})" for k, (v, ok, rule) in checks.items() if not ok]
    if bad:
        raise ValueError(f"invalid {model} settings: {', '.join(bad)}")
