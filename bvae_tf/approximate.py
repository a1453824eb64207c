"""Approximate top-K for large catalogs: an inverted-file (IVF) index over a decoder.

Exact serving scores every item: for one user and three behaviors over 1,000,000
items that reads three ``[d, m]`` float32 tables (1.2 GB) per request, and the p99
latency stays above 50 ms on 2 CPU cores (``docs/RESULTS.md``, "A large catalog").
An IVF index (Jégou et al., "Product quantization for nearest neighbor search", 2011,
section 4; the partitioning stage of ScaNN and FAISS ``IndexIVFFlat``) scores only a
share of the catalog:

1. at export, the decoder's augmented item vectors ``x_i = [e_i, b_i]`` (embedding and
   bias, ``ItemDecoder.item_table``) get one more coordinate ``sqrt(M^2 - |x_i|^2)``,
   ``M`` the largest norm, which turns maximum inner product into nearest-neighbour
   search (Bachrach et al., "Speeding up the Xbox recommender system using a
   Euclidean transformation for inner-product spaces", RecSys 2014), and are
   clustered into ``L ≈ sqrt(m)`` leaves by k-means (scikit-learn's
   ``MiniBatchKMeans``); the item indices are stored grouped by leaf;
2. per query ``q = [z_hat, 1, 0]``, leaves are probed nearest first (largest
   ``q · c_l - |c_l|^2 / 2``): ``ceil(probe x L)`` of them, more while they hold fewer
   than ``k`` plus the user's excluded items; only their items are scored, exactly
   (``z_hat · e_i + b_i``, the decoder's logits), read from the decoder's own table;
3. the user's own items of the behavior are removed and the best ``k`` returned.

Scores are the exact logits of the returned items; the approximation is only in
which items are scored, so recall@K against the exact ranking is the measure
(``benchmarks/large_catalog.py`` prints it). The index holds no copy of the
embeddings (the item order, ``L + 1`` offsets and ``L`` centroids), uses only
standard TensorFlow ops (a SavedModel with it loads in TF Serving, TFMA and Beam
without a custom op library), and is built after training: ``BVAE.attach_approximate_top_k``.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from bvae_tf import layers as L

#: Items clustered per k-means fit at most (a seeded sample of larger catalogs); every
#: item is then assigned to its nearest centroid.
KMEANS_SAMPLE = 100_000


def num_leaves_for(num_items: int) -> int:
    """``round(sqrt(m))`` leaves, at least 1 (the usual IVF choice: leaves and items
    per leaf grow alike)."""
    return max(1, round(math.sqrt(num_items)))


class ApproximateTopK(tf.Module):
    """IVF top-K over one :class:`layers.ItemDecoder` (module docstring).

    Args:
      decoder: the trained decoder whose logits are ranked.
      probe: share of the leaves scored per query, in ``(0, 1]``; 1.0 scores every
        item (the exact ranking, up to float rounding and tie order).
      seed: k-means seed (same decoder and seed, same index).
      num_leaves: ``L`` (default :func:`num_leaves_for`), at most ``m``.

    Raises:
      ValueError: if ``probe`` or ``num_leaves`` is out of range.
    """

    def __init__(
        self,
        decoder: L.ItemDecoder,
        probe: float,
        seed: int = 0,
        num_leaves: int | None = None,
        name: str | None = None,
    ):
        super().__init__(name=name)
        m = decoder.num_items
        leaves = num_leaves_for(m) if num_leaves is None else num_leaves
        if not 0.0 < probe <= 1.0:
            raise ValueError(f"probe must be in (0, 1], got {probe!r}")
        if not 1 <= leaves <= m:
            raise ValueError(f"num_leaves must be in [1, {m}], got {leaves!r}")
        from sklearn.cluster import MiniBatchKMeans  # export time only

        table = np.asarray(decoder.item_table(tf.float32))  # [m, d + 1]
        # Maximum inner product as nearest neighbour (Bachrach et al. 2014): one more
        # coordinate sqrt(M^2 - |x|^2) gives every item the norm M, so that
        # |q - x|^2 = |q|^2 + M^2 - 2 q.x for q = [z_hat, 1, 0].
        norms = np.square(table).sum(axis=1)
        table = np.concatenate([table, np.sqrt(norms.max() - norms)[:, None]], axis=1)
        rng = np.random.default_rng(seed)
        sample = table if m <= KMEANS_SAMPLE else table[rng.choice(m, KMEANS_SAMPLE, replace=False)]
        kmeans = MiniBatchKMeans(
            n_clusters=leaves, batch_size=4096, n_init=1, max_iter=20, random_state=seed
        ).fit(sample)
        leaf = kmeans.predict(table)
        order = np.argsort(leaf, kind="stable")
        offsets = np.concatenate([[0], np.cumsum(np.bincount(leaf, minlength=leaves))])
        centres = kmeans.cluster_centers_.astype(np.float32)
        self.decoder = decoder
        self.num_items = m
        self.num_leaves = leaves
        self.num_probed = max(1, math.ceil(probe * leaves))
        # The nearest centroid of q: the largest q.c - |c|^2 / 2 (q's last coordinate is 0).
        self.centroids = tf.Variable(centres[:, :-1], trainable=False)
        self.centroid_offsets = tf.Variable(-0.5 * np.square(centres).sum(axis=1), trainable=False)
        self.item_order = tf.Variable(order.astype(np.int64), trainable=False)
        self.leaf_offsets = tf.Variable(offsets.astype(np.int64), trainable=False)

    def query_with_exclusions(
        self, queries: tf.Tensor, excluded: L.SparseRows, k: int
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Top-``k`` of the probed items with the user's ``excluded`` items removed.

        Each user's leaves are probed nearest first: at least ``num_probed`` of them,
        and more while they hold fewer than ``k`` plus the user's number of excluded
        items, so ``k`` items remain after the exclusion whenever the catalog has them.

        Args:
          queries: ``[B, d]`` latents ``z_hat``.
          excluded: the items to drop, (row, item) pairs.
          k: static int in ``[1, m]``.

        Returns:
          (scores ``[B, k]`` float32, item indices ``[B, k]`` int64), descending; an
          excluded item is never returned. Only if the user has excluded all but
          fewer than ``k`` of the catalog's items does the tail hold item -1 with
          score ``-inf``.
        """
        z = tf.cast(queries, tf.float32)
        batch = tf.shape(z, out_type=tf.int64)[0]
        augmented = tf.concat([z, tf.ones_like(z[:, :1])], axis=1)
        leaf_scores = tf.matmul(augmented, self.centroids, transpose_b=True) + self.centroid_offsets
        # The excluded pairs as sorted keys row * m + item, searched per user.
        m = self.num_items
        keys = tf.sort(excluded.rows * m + excluded.cols)
        embeddings = tf.cast(self.decoder.item_embeddings, tf.float32)
        bias = tf.cast(self.decoder.item_bias, tf.float32)
        leaf_sizes = self.leaf_offsets[1:] - self.leaf_offsets[:-1]

        def one_user(args):
            user, query, scores_of_leaves = args
            nearest = tf.argsort(scores_of_leaves, direction="DESCENDING", stable=True)
            covered = tf.cumsum(tf.gather(leaf_sizes, nearest))
            bounds = tf.searchsorted(keys, tf.stack([user * m, (user + 1) * m]), out_type=tf.int64)
            wanted = k + bounds[1] - bounds[0]  # k plus the user's excluded items
            count = tf.maximum(
                self.num_probed, 1 + tf.reduce_sum(tf.cast(covered < wanted, tf.int32))
            )
            user_leaves = nearest[: tf.minimum(count, self.num_leaves)]
            position = tf.ragged.range(
                tf.gather(self.leaf_offsets, user_leaves),
                tf.gather(self.leaf_offsets, user_leaves + 1),
            ).flat_values
            items = tf.gather(self.item_order, position)
            # A matrix-vector product over the probed items' rows: exact logits.
            scores = tf.linalg.matvec(tf.gather(embeddings, items), query) + tf.gather(bias, items)
            dropped = _found(keys, user * m + items)
            scores = tf.where(dropped, tf.constant(-np.inf, tf.float32), scores)
            items = tf.where(dropped, tf.constant(-1, tf.int64), items)
            short = tf.maximum(k - tf.size(items), 0)  # fewer candidates than k
            scores = tf.pad(scores, [[0, short]], constant_values=-np.inf)
            items = tf.pad(items, [[0, short]], constant_values=-1)
            values, at = tf.math.top_k(scores, k=k)
            return values, tf.gather(items, at)

        # One user at a time (two in flight): the probed rows of a large batch would
        # not fit in memory at once (500 users x 5% of 1M items x d = 7 GB).
        return tf.map_fn(
            one_user,
            (tf.range(batch), z, leaf_scores),
            fn_output_signature=(tf.TensorSpec([k], tf.float32), tf.TensorSpec([k], tf.int64)),
            parallel_iterations=None if tf.executing_eagerly() else 2,
        )


def _found(keys: tf.Tensor, wanted: tf.Tensor) -> tf.Tensor:
    """``[n]`` bool: whether each of ``wanted`` is in the sorted int64 ``keys``."""
    # searchsorted gives a position in [0, len(keys)]; the sentinel -1 at len(keys)
    # never equals a key (keys are >= 0).
    at = tf.searchsorted(keys, wanted, out_type=tf.int64)
    return tf.equal(tf.gather(tf.concat([keys, tf.constant([-1], tf.int64)], 0), at), wanted)
