"""Two no-learning floors every comparison needs: popularity and cross-behavior repeat.

- :class:`Popularity`: for behavior ``b``, items ordered by how many users did ``b`` on
  them in train (the same list for every user; the user's own ``b`` items excluded
  at ranking time, as for every model).
- :class:`CrossBehaviorRepeat`: for behavior ``b``, first the items the user touched in
  train under *another* modelled behavior (not yet under ``b``), ordered by ``b``'s
  popularity; then every other item by ``b``'s popularity. It says "you carted it,
  you will buy it", which a ``d``-dimensional bottleneck (BVAE, Mult-VAE) cannot
  copy item by item.

Score of item ``i`` for user ``u`` and behavior ``b``::

    popularity:  s = c_b(i) / (max_j c_b(j) + 1)                 in [0, 1)
    repeat:      s = 1[u touched i under some b' != b] + c_b(i) / (max_j c_b(j) + 1)

with ``c_b(i)`` the number of train users with ``(i, b)``. Ties (equal counts) fall to
the lower item index in top-K and against the model in the metrics.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from bvae_tf import layers as L
from bvae_tf.baselines.base import ItemScoreModel, train_counts

_PACKAGE = "bvae"


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class Popularity(ItemScoreModel):
    """Per-behavior train popularity (see the module docstring).

    Args:
      behaviors: behaviors scored.
      num_items: ``m``.

    Weights: ``popularity`` ``[K, m]`` float32 in ``[0, 1)``, set by :meth:`fit`.
    """

    def __init__(self, behaviors, num_items, **kwargs):
        super().__init__(behaviors, num_items, **kwargs)
        self.popularity = self.add_weight(
            name="popularity",
            shape=(len(self.behaviors), self.num_items),
            initializer="zeros",
            trainable=False,
        )

    def fit(self, train: Mapping[str, sp.spmatrix]) -> Popularity:
        """Sets the weights from ``{b: [n, m] train matrix}`` (values ignored; 0/1).

        Returns:
          self.

        Raises:
          ValueError: on a missing behavior or a wrong width.
        """
        counts = train_counts(self._check_train(train), self.behaviors)
        self.popularity.assign(
            (counts / (counts.max(axis=1, keepdims=True) + 1.0)).astype(np.float32)
        )
        return self

    def score(self, rows: dict[str, L.SparseRows]) -> dict[str, tf.Tensor]:
        batch = rows[self.behaviors[0]].batch_size
        return {
            b: tf.tile(self.popularity[i][None, :], tf.stack([batch, tf.constant(1, tf.int64)]))
            for i, b in enumerate(self.behaviors)
        }


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class CrossBehaviorRepeat(Popularity):
    """Items touched under another behavior first, then popularity (module docstring).

    With one behavior it is :class:`Popularity`.
    """

    def score(self, rows: dict[str, L.SparseRows]) -> dict[str, tf.Tensor]:
        base = super().score(rows)
        if len(self.behaviors) < 2:
            return base
        inputs = [rows[b] for b in self.behaviors]
        return {
            b: base[b] + L.cross_behavior_indicator(inputs, k, self.num_items)
            for k, b in enumerate(self.behaviors)
        }
