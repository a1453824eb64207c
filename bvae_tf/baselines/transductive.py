"""Transductive baselines of the BVAE comparison: EHCF and NGCF.

Both learn one embedding per user, so they score only users seen in training (the
user's row, ``features.USER_INDEX``, is part of their input) and cannot be exported
for serving new users: they are experiment-only (``python -m bvae_tf.experiment
--model ehcf|ngcf``). Otherwise they keep BVAE's contract: ``{items_key(b):
SparseTensor, USER_INDEX: int64 [B]}`` to ``{b: [B, m] float32}`` scores, so
``metrics.evaluate`` excludes the user's own train items exactly as for BVAE.

- :class:`EHCF` (Chen, Zhang, Zhang, Liu, Ma; AAAI 2020): multi-target, all behaviors
  in one model.
- :class:`NGCF` (Wang, He, Wang, Feng, Chua; SIGIR 2019): single-target, one per
  behavior on its own interactions (an OCCF method, as in the BVAE paper).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from bvae_tf import features as F
from bvae_tf import layers as L
from bvae_tf.baselines.base import ItemScoreModel, check_settings

_NO_AUTOGRAPH = tf.autograph.experimental.do_not_convert
#: EHCF's default transfer chain: the purchase funnel, from the weakest signal to the
#: target (EHCF's own order on Beibei/Taobao is view -> cart -> buy).
FUNNEL = (F.CLICK, F.FAVORITE, F.CART, F.PURCHASE)


class _Transductive(ItemScoreModel):
    """A model with a user embedding table of ``num_users`` rows."""

    def __init__(self, behaviors: Sequence[str], num_items: int, num_users: int, **kwargs):
        super().__init__(behaviors, num_items, **kwargs)
        if int(num_users) < 1:
            raise ValueError(f"num_users must be >= 1, got {num_users}")
        self._num_users = int(num_users)

    @property
    def num_users(self) -> int:
        return self._num_users

    def get_config(self):
        return {**super().get_config(), "num_users": self._num_users}

    def user_index(self, inputs: Mapping) -> tf.Tensor:
        """``[B]`` int64 user rows from ``inputs[features.USER_INDEX]``.

        Raises:
          ValueError: if the feature is missing (a transductive model needs it).
        """
        if F.USER_INDEX not in inputs:
            raise ValueError(
                f"{type(self).__name__} is transductive: its input needs "
                f"{F.USER_INDEX!r} (bvae_tf.data datasets with with_user_index=True)"
            )
        users = tf.reshape(tf.cast(inputs[F.USER_INDEX], tf.int64), [-1])
        check = tf.debugging.assert_less(
            users, tf.constant(self._num_users, tf.int64), message="user index >= num_users"
        )
        with tf.control_dependencies([check]):
            return tf.identity(users)

    def scores_for(self, users: tf.Tensor) -> dict[str, tf.Tensor]:
        """``{b: [B, m] float32}`` for ``[B]`` user rows; subclasses implement it."""
        raise NotImplementedError

    def call(self, inputs, training=False):
        """Scores ``{b: [B, num_items] float32}`` of the users in ``inputs``."""
        self._inputs(inputs)  # the contract's item features must be there and valid
        return self.scores_for(self.user_index(inputs))

    def recommend(self, inputs, k: int = F.DEFAULT_TOP_K):
        """Top-``k`` per behavior, the user's own items of it excluded (see the base)."""
        if not 1 <= int(k) <= self.num_items:
            raise ValueError(f"k must be in [1, {self.num_items}], got {k}")
        rows = self._inputs(inputs)
        scores = self.scores_for(self.user_index(inputs))
        out = {}
        for b in self.scored_behaviors:
            values, items = tf.math.top_k(L.mask_scores(scores[b], rows[b]), k=int(k))
            out[b] = (values, tf.cast(items, tf.int64))
        return out


def _uniform(d: int, seed: int) -> tf.keras.initializers.Initializer:
    limit = math.sqrt(3.0 / d)
    return tf.keras.initializers.RandomUniform(-limit, limit, seed=seed)


@tf.keras.utils.register_keras_serializable(package="bvae")
class EHCF(_Transductive):
    """Efficient Heterogeneous Collaborative Filtering (Chen et al., AAAI 2020).

    - **Prediction** (eq. 1-3): ``y_uvk = h_k^T (p_u * q_v)`` with user and item
      embeddings ``p_u``, ``q_v`` (``d``) shared by all behaviors and one prediction
      vector ``h_k`` per behavior.
    - **Transfer between behaviors** (eq. 4-5): along the chain ``k_1 -> ... -> k_c``,
      ``h_{k_1}`` is free and ``h_k = sum_{k' before k} (W_{k'k} h_{k'} + r_{k'k})``
      (the authors' code sums the terms).
    - **Efficient whole-data loss without negative sampling** (eq. 8-12): with weight
      ``c^+ = 1`` on observed and ``c^- = w_k`` on every user-item pair,
      ``L_k = w_k sum_{i,j} (sum_u p_ui p_uj)(sum_v q_vi q_vj) h_ki h_kj
      + sum_{(u,v) observed} ((1 - w_k) y_uvk^2 - 2 y_uvk)``, the user sums over the
      batch and the item sums over the whole catalog, so no ``[B, m]`` matrix is
      built. Total: ``sum_k lambda_k L_k + l2 * sum ||W||^2 / 2``.
    - Dropout on ``p_u`` during training; Adagrad (the authors' code: rate 0.05,
      batch 256, ``w_k = 0.1``, ``l2 = 1e-4`` on the transfer matrices).

    Args:
      behaviors: modelled behaviors (all scored).
      num_items: ``m``.
      num_users: ``n``, rows of the user table.
      chain: transfer order, first to last (default: ``FUNNEL`` order, unknown
        behaviors before ``purchase`` in the given order).
      embedding: ``d``.
      negative_weight: ``w_k`` for every behavior.
      coefficients: ``lambda_k`` per behavior of ``chain`` (default: equal, ``1/c``;
        the authors used 1/6, 4/6, 1/6 for view, cart, buy on Beibei).
      l2: weight of the transfer matrices' L2 term.
      dropout: rate on ``p_u``.
      learning_rate: Adagrad rate.
      seed: initialisers and dropout.

    Raises:
      ValueError: on a chain that is not a permutation of ``behaviors`` or bad values.
    """

    def __init__(
        self,
        behaviors: Sequence[str],
        num_items: int,
        num_users: int,
        *,
        chain: Sequence[str] | None = None,
        embedding: int = 64,
        negative_weight: float = 0.1,
        coefficients: Sequence[float] | None = None,
        l2: float = 1e-4,
        dropout: float = 0.5,
        learning_rate: float = 0.05,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(behaviors, num_items, num_users, **kwargs)
        if chain is None:
            rank = {b: i for i, b in enumerate(FUNNEL)}
            chain = sorted(self.behaviors, key=lambda b: rank.get(b, rank[F.PURCHASE] - 0.5))
        chain = tuple(chain)
        if sorted(chain) != sorted(self.behaviors):
            raise ValueError(f"chain {chain} must order exactly the behaviors {self.behaviors}")
        c = len(chain)
        coefficients = tuple(float(x) for x in (coefficients or [1.0 / c] * c))
        check_settings(
            "EHCF",
            {
                "embedding": (embedding, embedding >= 1, ">= 1"),
                "negative_weight": (negative_weight, 0.0 < negative_weight <= 1.0, "in (0, 1]"),
                "coefficients": (
                    coefficients,
                    len(coefficients) == c and all(x >= 0 for x in coefficients),
                    "one per behavior, each >= 0",
                ),
                "l2": (l2, l2 >= 0.0, ">= 0"),
                "dropout": (dropout, 0.0 <= dropout < 1.0, "in [0, 1)"),
                "learning_rate": (learning_rate, learning_rate > 0.0, "> 0"),
            },
        )
        self.chain = chain
        self.settings = dict(
            embedding=int(embedding),
            negative_weight=float(negative_weight),
            coefficients=list(coefficients),
            l2=float(l2),
            dropout=float(dropout),
            learning_rate=float(learning_rate),
            seed=int(seed),
        )
        d = int(embedding)
        normal = tf.keras.initializers.TruncatedNormal(stddev=0.01, seed=seed)
        self.user_embeddings = self.add_weight(
            name="user_embeddings", shape=(num_users, d), initializer=normal
        )
        self.item_embeddings = self.add_weight(
            name="item_embeddings",
            shape=(num_items, d),
            initializer=tf.keras.initializers.TruncatedNormal(stddev=0.01, seed=seed + 1),
        )
        self.first_prediction = self.add_weight(
            name="h_first", shape=(d,), initializer=_uniform(d, seed + 2)
        )
        self.transfer = {}
        for k in range(1, c):
            for j in range(k):
                key = f"{chain[j]}_to_{chain[k]}"
                self.transfer[key] = (
                    self.add_weight(
                        name=f"W_{key}",
                        shape=(d, d),
                        initializer=_uniform(d, seed + 10 + 2 * k * c + j),
                    ),
                    self.add_weight(
                        name=f"r_{key}",
                        shape=(d,),
                        initializer=_uniform(d, seed + 11 + 2 * k * c + j),
                    ),
                )
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self._loss = tf.keras.metrics.Mean("loss")

    def get_config(self):
        return {**super().get_config(), "chain": list(self.chain), **self.settings}

    @property
    def metrics(self):
        return [self._loss]

    def prediction_vectors(self) -> dict[str, tf.Tensor]:
        """``{b: h_b [d]}`` along the transfer chain (eq. 4-5)."""
        h = {self.chain[0]: self.first_prediction}
        for k in range(1, len(self.chain)):
            terms = []
            for j in range(k):
                w, r = self.transfer[f"{self.chain[j]}_to_{self.chain[k]}"]
                terms.append(tf.linalg.matvec(w, h[self.chain[j]]) + r)
            h[self.chain[k]] = tf.add_n(terms)
        return h

    @_NO_AUTOGRAPH
    def scores_for(self, users):
        p = tf.gather(self.user_embeddings, users)
        h = self.prediction_vectors()
        return {
            b: tf.matmul(p * h[b][None, :], self.item_embeddings, transpose_b=True)
            for b in self.behaviors
        }

    @_NO_AUTOGRAPH
    def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
        """The whole-data loss of a batch of users (class docstring), a scalar."""
        rows = self._inputs(inputs)
        p = tf.gather(self.user_embeddings, self.user_index(inputs))
        if training and self.settings["dropout"] > 0:
            seed = tf.random.experimental.stateless_fold_in(
                tf.stack([tf.constant(self.settings["seed"], tf.int64), self.step.value()]), 1
            )
            p = tf.nn.experimental.stateless_dropout(p, self.settings["dropout"], seed=seed)
        q = self.item_embeddings
        gram = tf.matmul(p, p, transpose_a=True) * tf.matmul(q, q, transpose_a=True)  # [d, d]
        h = self.prediction_vectors()
        w = self.settings["negative_weight"]
        total = tf.constant(0.0)
        for b, coefficient in zip(self.chain, self.settings["coefficients"], strict=True):
            hb = h[b]
            whole = w * tf.reduce_sum(gram * (hb[:, None] * hb[None, :]))
            items = rows[b]
            y = tf.reduce_sum(
                tf.gather(p, items.rows) * tf.gather(q, items.cols) * hb[None, :], axis=1
            )
            observed = tf.reduce_sum((1.0 - w) * tf.square(y) - 2.0 * y)
            total += coefficient * (whole + observed)
        if self.transfer:
            total += self.settings["l2"] * tf.add_n(
                [tf.nn.l2_loss(wk) for wk, _ in self.transfer.values()]
            )
        return total

    @_NO_AUTOGRAPH
    def train_step(self, inputs):
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        self.step.assign_add(1)
        self._loss.update_state(loss)
        return {"loss": self._loss.result()}

    @_NO_AUTOGRAPH
    def test_step(self, inputs):
        self._loss.update_state(self.compute_loss(inputs))
        return {"loss": self._loss.result()}

    def prepare(self) -> None:
        """Compiles with Adagrad at ``learning_rate`` (the authors' optimizer)."""
        self.compile(
            optimizer=tf.keras.optimizers.Adagrad(
                self.settings["learning_rate"], initial_accumulator_value=1e-8, jit_compile=False
            )
        )


def normalized_adjacency(matrix: sp.spmatrix) -> sp.coo_matrix:
    """``L = D^{-1/2} A D^{-1/2}`` of the user-item bipartite graph (NGCF eq. 8).

    Args:
      matrix: ``[n, m]`` user-item interactions (any nonzero is an edge).

    Returns:
      ``[n + m, n + m]`` float32 COO matrix, users first; isolated nodes have no entries.
    """
    r = sp.csr_matrix(matrix, dtype=np.float32)
    r.data[:] = 1.0
    a = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    degree = np.asarray(a.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(degree)
    inv_sqrt[degree > 0] = degree[degree > 0] ** -0.5
    d = sp.diags(inv_sqrt)
    return (d @ a @ d).tocoo().astype(np.float32)


@tf.keras.utils.register_keras_serializable(package="bvae")
class NGCF(_Transductive):
    """Neural Graph Collaborative Filtering (Wang et al., SIGIR 2019) for one behavior.

    - **Embedding propagation** (eq. 7): ``E^(l) = LeakyReLU((L + I) E^(l-1) W1_l +
      (L E^(l-1) * E^(l-1)) W2_l)`` (biases included, as the authors' code), ``L``
      the symmetric-normalised user-item adjacency of the behavior's train
      interactions (:func:`normalized_adjacency`), with *node dropout* (edges of ``L``
      dropped, the rest rescaled) and *message dropout* on ``E^(l)`` in training.
      The authors' code uses ``D^{-1}(A + I)`` in place of ``L + I`` by default; the
      paper's form is used here.
    - **Prediction** (eq. 9-10): ``y_ui = e_u^* . e_i^*`` with ``e^*`` the concatenation
      of ``E^(0)`` and every layer's L2-normalised output.
    - **Loss** (eq. 11): BPR, ``-mean ln sigma(y_ui - y_uj)`` over sampled (user,
      positive, negative) triples, plus ``l2 * (|e_u^*|^2 + |e_i^*|^2 + |e_j^*|^2) / 2 /
      B`` (the authors' code). Adam.

    Defaults are the paper's: ``d = 64``, three layers of 64, dropouts 0.1, ``l2 =
    1e-5``, learning rate 1e-4, batch 1024.

    Args:
      behavior: the behavior modelled and scored.
      num_items: ``m``.
      num_users: ``n``.
      embedding: ``d`` of ``E^(0)``.
      layer_sizes: widths of the propagation layers.
      node_dropout, message_dropout: rates in ``[0, 1)``.
      l2: regularisation weight.
      learning_rate: Adam rate.
      seed: initialisers, dropouts.

    Raises:
      ValueError: on bad values; :meth:`scores_for` before :meth:`set_graph`.
    """

    def __init__(
        self,
        behavior: str,
        num_items: int,
        num_users: int,
        *,
        embedding: int = 64,
        layer_sizes: Sequence[int] = (64, 64, 64),
        node_dropout: float = 0.1,
        message_dropout: float = 0.1,
        l2: float = 1e-5,
        learning_rate: float = 1e-4,
        seed: int = 0,
        **kwargs,
    ):
        kwargs.pop("behaviors", None)
        super().__init__((behavior,), num_items, num_users, **kwargs)
        layer_sizes = tuple(int(x) for x in layer_sizes)
        check_settings(
            "NGCF",
            {
                "embedding": (embedding, embedding >= 1, ">= 1"),
                "layer_sizes": (layer_sizes, all(x >= 1 for x in layer_sizes), "each >= 1"),
                "node_dropout": (node_dropout, 0.0 <= node_dropout < 1.0, "in [0, 1)"),
                "message_dropout": (message_dropout, 0.0 <= message_dropout < 1.0, "in [0, 1)"),
                "l2": (l2, l2 >= 0.0, ">= 0"),
                "learning_rate": (learning_rate, learning_rate > 0.0, "> 0"),
            },
        )
        self.behavior = behavior
        self.settings = dict(
            embedding=int(embedding),
            layer_sizes=list(layer_sizes),
            node_dropout=float(node_dropout),
            message_dropout=float(message_dropout),
            l2=float(l2),
            learning_rate=float(learning_rate),
            seed=int(seed),
        )
        self.node_embeddings = self.add_weight(
            name="node_embeddings",
            shape=(num_users + num_items, int(embedding)),
            initializer=L.xavier(seed),
        )
        self.sum_layers, self.bi_layers = [], []
        for i, width in enumerate(layer_sizes):
            self.sum_layers.append(
                tf.keras.layers.Dense(
                    width, kernel_initializer=L.xavier(seed + 1 + 2 * i), name=f"W1_{i}"
                )
            )
            self.bi_layers.append(
                tf.keras.layers.Dense(
                    width, kernel_initializer=L.xavier(seed + 2 + 2 * i), name=f"W2_{i}"
                )
            )
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self._loss = tf.keras.metrics.Mean("loss")
        self._graph: tf.SparseTensor | None = None

    def get_config(self):
        config = super().get_config()
        config.pop("behaviors")
        return {**config, "behavior": self.behavior, **self.settings}

    @property
    def metrics(self):
        return [self._loss]

    def set_graph(self, matrix: sp.spmatrix) -> NGCF:
        """Sets the propagation graph from the ``[n, m]`` train matrix of the behavior.

        Raises:
          ValueError: on a matrix of another shape.
        """
        if matrix.shape != (self.num_users, self.num_items):
            raise ValueError(
                f"graph matrix must be [{self.num_users}, {self.num_items}], got {matrix.shape}"
            )
        coo = normalized_adjacency(matrix)
        order = np.lexsort((coo.col, coo.row))
        self._graph = tf.SparseTensor(
            np.stack([coo.row[order], coo.col[order]], axis=1).astype(np.int64),
            coo.data[order].astype(np.float32),
            coo.shape,
        )
        return self

    def _seed(self, salt: int) -> tf.Tensor:
        base = tf.stack([tf.constant(self.settings["seed"], tf.int64), self.step.value()])
        return tf.random.experimental.stateless_fold_in(base, salt)

    @_NO_AUTOGRAPH
    def propagate(self, training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """``(users [n, d*], items [m, d*])`` final embeddings ``e^*`` (eq. 7-9)."""
        if self._graph is None:
            raise ValueError("NGCF needs its graph: call set_graph(train_matrix) first")
        graph = self._graph
        if training and self.settings["node_dropout"] > 0:
            keep = 1.0 - self.settings["node_dropout"]
            mask = tf.random.stateless_uniform(tf.shape(graph.values), seed=self._seed(1)) < keep
            graph = tf.sparse.retain(
                tf.SparseTensor(graph.indices, graph.values / keep, graph.dense_shape), mask
            )
        e = self.node_embeddings
        outputs = [e]
        for i, (w1, w2) in enumerate(zip(self.sum_layers, self.bi_layers, strict=True)):
            side = tf.sparse.sparse_dense_matmul(graph, e)
            e = tf.nn.leaky_relu(w1(side + e), alpha=0.2) + tf.nn.leaky_relu(
                w2(side * e), alpha=0.2
            )
            if training and self.settings["message_dropout"] > 0:
                e = tf.nn.experimental.stateless_dropout(
                    e, self.settings["message_dropout"], seed=self._seed(10 + i)
                )
            outputs.append(tf.math.l2_normalize(e, axis=1))
        final = tf.concat(outputs, axis=1)
        return final[: self.num_users], final[self.num_users :]

    @_NO_AUTOGRAPH
    def scores_for(self, users):
        user_table, item_table = self.propagate()
        return {
            self.behavior: tf.matmul(tf.gather(user_table, users), item_table, transpose_b=True)
        }

    @_NO_AUTOGRAPH
    def compute_loss(self, triples: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """BPR loss of ``{USER_INDEX, "positive", "negative"}`` int64 ``[B]`` triples."""
        user_table, item_table = self.propagate(training)
        u = tf.gather(user_table, tf.reshape(triples[F.USER_INDEX], [-1]))
        i = tf.gather(item_table, tf.reshape(triples["positive"], [-1]))
        j = tf.gather(item_table, tf.reshape(triples["negative"], [-1]))
        margin = tf.reduce_sum(u * i, axis=1) - tf.reduce_sum(u * j, axis=1)
        batch = tf.cast(tf.shape(u)[0], tf.float32)
        reg = (tf.nn.l2_loss(u) + tf.nn.l2_loss(i) + tf.nn.l2_loss(j)) / batch
        return -tf.reduce_mean(tf.math.log_sigmoid(margin)) + self.settings["l2"] * reg

    @_NO_AUTOGRAPH
    def train_step(self, triples):
        with tf.GradientTape() as tape:
            loss = self.compute_loss(triples, training=True)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        self.step.assign_add(1)
        self._loss.update_state(loss)
        return {"loss": self._loss.result()}

    def prepare(self) -> None:
        """Builds the propagation layers and compiles with Adam at ``learning_rate``."""
        self.propagate()
        self.compile(
            optimizer=tf.keras.optimizers.Adam(self.settings["learning_rate"], jit_compile=False)
        )


def bpr_triples(matrix: sp.spmatrix, batch_size: int, seed: int = 0) -> tf.data.Dataset:
    """An endless stream of BPR batches from a ``[n, m]`` interaction matrix.

    Per batch (as the NGCF code): ``batch_size`` users drawn uniformly from the users
    with interactions, one of each user's items drawn uniformly as the positive, and
    one item the user has not interacted with drawn uniformly as the negative
    (rejection sampling, exact).

    Args:
      matrix: ``[n, m]`` train interactions.
      batch_size: triples per batch.
      seed: the sampling seed (the stream is the same for the same seed).

    Returns:
      ``tf.data.Dataset`` of ``{USER_INDEX, "positive", "negative"}`` int64 ``[B]``.

    Raises:
      ValueError: on a matrix without interactions or a non-positive batch size.
    """
    csr = sp.csr_matrix(matrix)
    csr.sort_indices()
    if csr.nnz == 0:
        raise ValueError("bpr_triples needs at least one interaction")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    m = csr.shape[1]
    degree = np.diff(csr.indptr)
    users = np.flatnonzero(degree)
    full = users[degree[users] >= m]
    if len(full):
        raise ValueError(f"users {full[:5].tolist()} interacted with every item: no negative")
    # (user, item) pairs as sorted keys ``u * m + i``. Membership is a binary search:
    # ``np.isin`` on integers picks a lookup table spanning the key range (n * m
    # booleans, 0.2 GB, and 0.33 s per call at JD's size beside two runs).
    keys = np.sort(np.repeat(np.arange(csr.shape[0], dtype=np.int64), degree) * m + csr.indices)

    def interacted(pairs: np.ndarray) -> np.ndarray:
        at = np.minimum(np.searchsorted(keys, pairs), len(keys) - 1)
        return keys[at] == pairs

    def generate():
        rng = np.random.default_rng(seed)
        while True:
            u = users[rng.integers(len(users), size=batch_size)]
            pos = csr.indices[csr.indptr[u] + rng.integers(degree[u])]
            neg = rng.integers(m, size=batch_size)
            while True:
                seen = interacted(u * m + neg)
                if not seen.any():
                    break
                neg[seen] = rng.integers(m, size=int(seen.sum()))
            yield {F.USER_INDEX: u, "positive": pos.astype(np.int64), "negative": neg}

    spec = tf.TensorSpec([None], tf.int64)
    return tf.data.Dataset.from_generator(
        generate, output_signature={F.USER_INDEX: spec, "positive": spec, "negative": spec}
    ).prefetch(2)
