"""Layers of BVAE: sparse semi-encoders, the two gates, factorized decoders and top-K.

Inputs are sparse per-behavior item lists (``tf.SparseTensor`` from VarLen parsing or
``tf.RaggedTensor``), held here as :class:`SparseRows` (row, item) pairs. An encoder
computes ``l2_normalise(x) @ W + b`` as a weighted embedding lookup (weights
``1/sqrt(n_u)``, dropout applied to those weights), which equals the dense Mult-VAE
encoder on the multi-hot row without building it; a user with no items gets the bias,
with finite outputs and gradients (no norm of a zero row is taken, tf#56796).
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Mapping
from typing import NamedTuple

import tensorflow as tf

from bvae_tf import features
from bvae_tf.config import GATE_MODES

_PACKAGE = "bvae"


#: Most chunks ``DecoderTopK`` unrolls (about 80 graph ops each).
MAX_TOP_K_CHUNKS = 256


class SparseRows(NamedTuple):
    """A batch of item sets as (row, item) pairs.

    Attributes:
      rows: ``[nnz]`` int64 row in the batch.
      cols: ``[nnz]`` int64 item index in ``[0, num_items)``.
      batch_size: scalar int64 ``B`` (rows may be empty).
    """

    rows: tf.Tensor
    cols: tf.Tensor
    batch_size: tf.Tensor


def to_sparse_rows(items, num_items: int, name: str = "items") -> SparseRows:
    """Converts one behavior's item lists to :class:`SparseRows`, deduplicated.

    Args:
      items: ``tf.SparseTensor`` ``[B, None]`` (values = item indices, as VarLen
        parsing gives) or ``tf.RaggedTensor`` ``[B, None]``; integer dtype.
      num_items: ``m``; every index must lie in ``[0, m)``.
      name: feature name used in error messages.

    Returns:
      :class:`SparseRows` with each (row, item) pair once, ordered by row then item.

    Raises:
      ValueError: if ``items`` is neither sparse nor ragged.
      tf.errors.InvalidArgumentError: (at run time) if an index is out of range.
    """
    if isinstance(items, tf.SparseTensor):
        rows = items.indices[:, 0]
        cols = items.values
        batch_size = items.dense_shape[0]
    elif isinstance(items, tf.RaggedTensor):
        rows = items.value_rowids()
        cols = items.flat_values
        batch_size = items.nrows()
    else:
        raise ValueError(
            f"feature {name!r} must be a tf.SparseTensor or tf.RaggedTensor of item "
            f"indices, got {type(items).__name__}"
        )
    rows = tf.cast(rows, tf.int64)
    cols = tf.cast(cols, tf.int64)
    batch_size = tf.cast(batch_size, tf.int64)
    in_range = tf.reduce_all((cols >= 0) & (cols < num_items))
    check = tf.debugging.Assert(
        in_range, [f"{name}: item index outside [0, num_items={num_items})"], summarize=1
    )
    with tf.control_dependencies([check]):
        keys = tf.identity(rows * num_items + cols)
    return _from_keys(keys, num_items, batch_size)


def behavior_inputs(
    inputs, behaviors, num_items: int, owner: str = "the model"
) -> dict[str, SparseRows]:
    """Parses the model input contract ``{features.items_key(b): SparseTensor}``.

    Args:
      inputs: the feature dict (other keys are ignored).
      behaviors: behaviors whose ``<b>_items`` to read, in order.
      num_items: ``m``; every index must lie in ``[0, m)``.
      owner: how error messages name the model.

    Returns:
      ``{behavior: SparseRows}``.

    Raises:
      ValueError: if ``inputs`` is not a mapping or lacks a behavior's feature.
    """
    if not isinstance(inputs, Mapping):
        raise ValueError(
            f"{owner} input must be a dict of {{items_key(b): SparseTensor}}, "
            f"got {type(inputs).__name__}"
        )
    keys = [features.items_key(b) for b in behaviors]
    missing = [k for k in keys if k not in inputs]
    if missing:
        raise ValueError(f"{owner} input lacks features {missing}; got {sorted(inputs)}")
    return {
        b: to_sparse_rows(inputs[k], num_items, name=k)
        for b, k in zip(behaviors, keys, strict=True)
    }


def _from_keys(keys: tf.Tensor, num_items: int, batch_size: tf.Tensor) -> SparseRows:
    unique, _ = tf.unique(keys)
    unique = tf.sort(unique)
    return SparseRows(unique // num_items, unique % num_items, batch_size)


def union_rows(parts: list[SparseRows], num_items: int) -> SparseRows:
    """Union multi-hot ``x^{B0}`` of several behaviors' item sets (paper eq. 1)."""
    if len(parts) == 1:
        return parts[0]
    keys = tf.concat([p.rows * num_items + p.cols for p in parts], axis=0)
    return _from_keys(keys, num_items, parts[0].batch_size)


def normalised_weights(items: SparseRows, dropout: float, seed: tf.Tensor | None) -> tf.Tensor:
    """Per-entry weights of the L2-normalised, dropped-out multi-hot row.

    ``x_u / ||x_u||`` has value ``1/sqrt(n_u)`` at each of the user's ``n_u`` items;
    with dropout (rate ``rho``) each entry is kept with probability ``1 - rho`` and
    scaled by ``1/(1 - rho)``, exactly ``tf.nn.dropout(l2_normalize(x))`` on the dense
    row (Mult-VAE).

    Args:
      items: the row entries.
      dropout: rate ``rho`` in ``[0, 1)``; used only when ``seed`` is given.
      seed: ``[2]`` int64 stateless seed (training) or None (no dropout).

    Returns:
      ``[nnz]`` float32 weights.
    """
    ones = tf.ones_like(items.rows, tf.float32)
    counts = tf.math.unsorted_segment_sum(ones, items.rows, items.batch_size)
    weights = tf.math.rsqrt(tf.gather(counts, items.rows))
    if seed is not None and dropout > 0.0:
        keep = 1.0 - dropout
        mask = tf.random.stateless_uniform(tf.shape(weights), seed=seed) < keep
        weights = tf.where(mask, weights / keep, tf.zeros_like(weights))
    return weights


def xavier(seed: int) -> tf.keras.initializers.Initializer:
    return tf.keras.initializers.GlorotUniform(seed=seed)


def _bias_init(seed: int) -> tf.keras.initializers.Initializer:
    return tf.keras.initializers.TruncatedNormal(stddev=0.001, seed=seed)


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class SparseLinearEncoder(tf.keras.layers.Layer):
    """One linear semi-encoder ``x @ W + b`` on a sparse weighted row (eq. 1-2).

    Args:
      num_items: ``m``, rows of ``W``.
      latent_dim: ``d``, columns of ``W``.
      seed: initialiser seed (Xavier-uniform ``W``, bias truncated normal std 0.001,
        as the released code).
    """

    def __init__(self, num_items: int, latent_dim: int, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.num_items = int(num_items)
        self.latent_dim = int(latent_dim)
        self.seed = int(seed)

    def build(self, input_shape=None):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.num_items, self.latent_dim),
            initializer=xavier(self.seed),
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.latent_dim,), initializer=_bias_init(self.seed + 1)
        )
        super().build(input_shape)

    def call(self, items: SparseRows, weights: tf.Tensor) -> tf.Tensor:
        """Encodes a batch.

        Args:
          items: the (row, item) entries.
          weights: ``[nnz]`` float32 value of each entry.

        Returns:
          ``[B, d]`` output in the layer's compute dtype.
        """
        if not self.built:
            self.build()
        embedded = tf.gather(self.kernel, items.cols)
        embedded *= tf.cast(weights, embedded.dtype)[:, None]
        summed = tf.math.unsorted_segment_sum(embedded, items.rows, items.batch_size)
        return summed + tf.cast(self.bias, summed.dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "num_items": self.num_items,
            "latent_dim": self.latent_dim,
            "seed": self.seed,
        }


class _Gate(tf.keras.layers.Layer):
    """Shared arguments and config of the GFF and TFF gates.

    Args:
      latent_dim: ``d``.
      mode: ``"reference"`` or ``"gated"`` (:data:`GATE_MODES`).
      seed: initialiser seed.

    Raises:
      ValueError: if ``mode`` is unknown.
    """

    def __init__(self, latent_dim: int, mode: str = "gated", seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if mode not in GATE_MODES:
            raise ValueError(f"gate mode must be one of {GATE_MODES}, got {mode!r}")
        self.latent_dim = int(latent_dim)
        self.mode = mode
        self.seed = int(seed)

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "mode": self.mode,
            "seed": self.seed,
        }


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class GlobalFeatureFilter(_Gate):
    """GFF gate of one behavior: ``mu_k = g_k * mu_0`` (eq. 3-4).

    - ``mode="reference"``: eq. 3 as printed and released, ``g_k = softmax(mu_0 W + b)``
      with ``W`` of shape ``[d, 1]``: a softmax over one logit, identically 1, so
      ``mu_k = mu_0``.
    - ``mode="gated"``: a feature-wise gate ``g_k = 2 * sigmoid(mu_0 W + b)``,
      ``W`` ``[d, d]``, zero-initialised so training starts from the reference
      (``g_k = 1``) and may filter (``g < 1``) or amplify (``g > 1``) each dimension.

    Args:
      latent_dim: ``d``.
      mode: ``"reference"`` or ``"gated"``.
      seed: initialiser seed.

    Raises:
      ValueError: if ``mode`` is unknown.
    """

    def build(self, input_shape=None):
        width = 1 if self.mode == "reference" else self.latent_dim
        init = xavier(self.seed) if self.mode == "reference" else "zeros"
        self.kernel = self.add_weight(
            name="kernel", shape=(self.latent_dim, width), initializer=init
        )
        self.bias = self.add_weight(name="bias", shape=(width,), initializer="zeros")
        super().build(input_shape)

    def gate(self, mu0: tf.Tensor) -> tf.Tensor:
        """``[B, d]`` shared mean -> the gate ``g_k``: ``[B, d]`` float32 in ``(0, 2)``
        (``"gated"``), ``[B, 1]`` ones (``"reference"``). Needs a built layer."""
        logits = tf.matmul(mu0, self.kernel) + self.bias
        if self.mode == "reference":
            return tf.nn.softmax(logits, axis=-1)
        return 2.0 * tf.sigmoid(logits)

    def call(self, mu0: tf.Tensor) -> tf.Tensor:
        """``[B, d]`` shared mean -> ``[B, d]`` behavior mean."""
        return self.gate(mu0) * mu0


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class TargetFeatureFusion(_Gate):
    """TFF gate of target behavior k: ``z_hat_k = sum_k' G_kk' * z_k'`` (eq. 7-8).

    - ``mode="reference"``: ``G_kk' = softmax(z_k' W_Gk + b_Gk)`` with ``W_Gk`` of
      shape ``[d, 1]``, a softmax over one logit, identically 1: a plain sum.
    - ``mode="gated"``: the same logits ``a_k' = z_k' W_Gk + b_Gk`` (``W_Gk`` ``[d, 1]``,
      eq. 8) with the softmax taken across the ``c`` behaviors (MMoE-style),
      ``z_hat_k = c * sum_k' softmax_k'(a)_k' z_k'``; ``W_Gk`` starts at zero, so
      training starts from the reference sum.

    Args:
      latent_dim: ``d``.
      mode: ``"reference"`` or ``"gated"``.
      seed: initialiser seed.

    Raises:
      ValueError: if ``mode`` is unknown.
    """

    def build(self, input_shape=None):
        init = xavier(self.seed) if self.mode == "reference" else "zeros"
        self.kernel = self.add_weight(name="kernel", shape=(self.latent_dim, 1), initializer=init)
        self.bias = self.add_weight(name="bias", shape=(1,), initializer="zeros")
        super().build(input_shape)

    def _gates(self, stacked: tf.Tensor) -> tf.Tensor:
        """``[B, c, d]`` -> the weights ``G_kk'``, ``[B, c, 1]``: ones (``"reference"``),
        ``c * softmax`` over the ``c`` behaviors (``"gated"``)."""
        logits = tf.einsum("bcd,do->bco", stacked, self.kernel) + self.bias  # [B, c, 1]
        if self.mode == "reference":
            return tf.nn.softmax(logits, axis=-1)
        return tf.nn.softmax(logits, axis=1) * float(stacked.shape[1])

    def mixing(self, latents: list[tf.Tensor]) -> tf.Tensor:
        """``c`` tensors ``[B, d]`` -> each behavior's share of the fused latent,
        ``G_kk' / sum_k' G_kk'``: ``[B, c]`` float32, rows summing to 1 (``1/c`` each
        in ``"reference"`` mode, a plain sum). Needs a built layer."""
        gates = self._gates(tf.stack(latents, axis=1))[..., 0]
        return gates / tf.reduce_sum(gates, axis=1, keepdims=True)

    def call(self, latents: list[tf.Tensor]) -> tf.Tensor:
        """``c`` tensors ``[B, d]`` -> fused ``[B, d]``."""
        stacked = tf.stack(latents, axis=1)  # [B, c, d]
        return tf.reduce_sum(self._gates(stacked) * stacked, axis=1)


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class ItemDecoder(tf.keras.layers.Layer):
    """Behavior decoder ``f_theta^k`` as a factorized scorer (eq. 9).

    ``logits = z_hat @ E^T + b = [z_hat, 1] @ [E, b]^T``: item embeddings ``E``
    ``[m, d]`` with the bias ``b`` ``[m]`` folded in as a last column, so that the
    logits and the top-K index (:class:`DecoderTopK`) are the same computation.

    Args:
      num_items: ``m``.
      latent_dim: ``d``.
      seed: initialiser seed (Xavier-uniform ``E``, bias truncated normal std 0.001).

    Under a mixed-precision policy the training loss reads the table in the compute
    dtype (:meth:`item_table`), while the ranking paths (:meth:`call`,
    :meth:`chunk_logits`) compute the logits in float32: bfloat16 logits (8 bits of
    mantissa) would tie or misorder close items of the top K.
    """

    def __init__(self, num_items: int, latent_dim: int, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.num_items = int(num_items)
        self.latent_dim = int(latent_dim)
        self.seed = int(seed)

    def build(self, input_shape=None):
        self.item_embeddings = self.add_weight(
            name="item_embeddings",
            shape=(self.num_items, self.latent_dim),
            initializer=xavier(self.seed),
            # Read in float32 (no Keras auto-cast): every use casts explicitly.
            experimental_autocast=False,
        )
        self.item_bias = self.add_weight(
            name="item_bias",
            shape=(self.num_items,),
            initializer=_bias_init(self.seed + 1),
            experimental_autocast=False,
        )
        super().build(input_shape)

    def item_table(self, dtype: tf.DType | None = None) -> tf.Tensor:
        """``[m, d + 1]`` item embeddings with the bias as last column, in ``dtype``
        (default: the compute dtype)."""
        if not self.built:
            self.build()
        table = tf.concat([self.item_embeddings, self.item_bias[:, None]], axis=1)
        return tf.cast(table, dtype or self.compute_dtype)

    def candidate_table(self, candidates: tf.Tensor) -> tf.Tensor:
        """``[C]`` item indices -> ``[C, d + 1]`` their rows of :meth:`item_table`,
        gathered from ``E`` and ``b`` so that gradients touch only those rows."""
        if not self.built:
            self.build()
        table = tf.concat(
            [
                tf.gather(self.item_embeddings, candidates),
                tf.gather(self.item_bias, candidates)[:, None],
            ],
            axis=1,
        )
        return tf.cast(table, self.compute_dtype)

    def queries(self, z_hat: tf.Tensor) -> tf.Tensor:
        """``[B, d]`` -> ``[B, d + 1]`` with a trailing column of ones (compute dtype)."""
        z_hat = tf.cast(z_hat, self.compute_dtype)
        return tf.concat([z_hat, tf.ones_like(z_hat[:, :1])], axis=1)

    def add_serving_layout(self) -> None:
        """Adds a non-trainable ``[d, m]`` copy of ``E`` that :meth:`call` then uses.

        For export only, after training (the copy does not follow later updates of
        ``E``). ``z_hat @ E^T`` as a ``[B, d] x [d, m]`` product without a transpose
        runs about twice as fast on CPU for small ``B`` (oneDNN and Eigen), which is
        the serving case; the SavedModel holds ``E`` twice. Calling it again refreshes
        the copy.
        """
        if not self.built:
            self.build()
        if getattr(self, "item_embeddings_by_dim", None) is None:
            # Under the distribution strategy that made E (if any), as Keras requires.
            strategy = getattr(self.item_embeddings, "_distribute_strategy", None)
            with strategy.scope() if strategy is not None else contextlib.nullcontext():
                self.item_embeddings_by_dim = self.add_weight(
                    name="item_embeddings_by_dim",
                    shape=(self.latent_dim, self.num_items),
                    dtype=self.item_embeddings.dtype,
                    initializer="zeros",
                    trainable=False,
                    experimental_autocast=False,
                )
        self.item_embeddings_by_dim.assign(tf.transpose(self.item_embeddings))

    def chunk_logits(self, z_hat: tf.Tensor, start: int, stop: int) -> tf.Tensor:
        """``[B, d]`` latent -> ``[B, stop - start]`` float32 logits of the items
        ``[start, stop)``: the columns of :meth:`call`'s output, computed alone.

        Raises:
          ValueError: unless ``0 <= start < stop <= num_items``.
        """
        if not 0 <= start < stop <= self.num_items:
            raise ValueError(
                f"chunk [{start}, {stop}) is not a non-empty range of [0, {self.num_items})"
            )
        if not self.built:
            self.build()
        z_hat = tf.cast(z_hat, tf.float32)
        by_dim = getattr(self, "item_embeddings_by_dim", None)
        if by_dim is not None:
            logits = tf.matmul(z_hat, by_dim[:, start:stop])
        else:
            logits = tf.matmul(z_hat, self.item_embeddings[start:stop], transpose_b=True)
        return logits + self.item_bias[start:stop]

    def call(self, z_hat: tf.Tensor) -> tf.Tensor:
        """``[B, d]`` latent -> ``[B, m]`` float32 logits ``z_hat @ E^T + b`` (computed
        in float32 under every precision policy).

        The same numbers as ``queries(z_hat) @ item_table()^T`` (the training loss's
        form), without copying the ``[m, d + 1]`` table on every call: on a
        13,465-item catalog that copy took about half of a serving call's decoder time.
        After :meth:`add_serving_layout`, the product uses the ``[d, m]`` copy.
        """
        z_hat = tf.cast(z_hat, tf.float32)
        by_dim = getattr(self, "item_embeddings_by_dim", None)
        if by_dim is not None:
            logits = tf.matmul(z_hat, by_dim)
        else:
            logits = tf.matmul(z_hat, self.item_embeddings, transpose_b=True)
        return logits + self.item_bias

    def get_config(self):
        return {
            **super().get_config(),
            "num_items": self.num_items,
            "latent_dim": self.latent_dim,
            "seed": self.seed,
        }


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class DecoderTopK(tf.keras.layers.Layer):
    """Exact top-K over an :class:`ItemDecoder`'s own item table.

    Its index is the live decoder table (item embeddings with the bias, queries
    ``z_hat``): it can never go stale after training and adds no variables.
    ``query_with_exclusions`` takes per-user exclusion lists of any length
    (``tf.RaggedTensor``, ``tf.SparseTensor``, a dense ``[B, n]`` tensor padded with
    -1, or :class:`SparseRows`), sets their scores to ``-inf`` and takes
    ``tf.math.top_k`` (ties: lower item index first). If fewer than ``k`` items
    remain, the tail holds excluded items with score ``-inf``.

    A plain Keras layer, not a TensorFlow Recommenders
    ``factorized_top_k.BruteForce``: that layer keeps its own copy of the candidates
    (``index``), needs a static exclusion width (``k + exclusions.shape[1]``) and
    lowers excluded scores by 1e5 instead of removing them; none of it applies here.

    With ``chunk_size``, :meth:`query_with_exclusions` scores the items ``chunk_size``
    at a time, keeps each chunk's top ``k`` and merges them (the same items and tie
    order; scores equal up to the matmul's float rounding, which may differ by an ulp
    for other product shapes), so its memory is ``[B, chunk_size]`` rather than
    ``[B, m]``. The chunks are unrolled in the graph: at most
    :data:`MAX_TOP_K_CHUNKS` of them.

    Args:
      decoder: the :class:`ItemDecoder` whose logits are ranked.
      k: default number of items.
      chunk_size: items scored at a time (``None``: all at once).

    Raises:
      ValueError: if ``chunk_size`` is not ``None`` or a positive int.
    """

    def __init__(self, decoder: ItemDecoder, k: int = 10, chunk_size: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if chunk_size is not None:
            if not isinstance(chunk_size, numbers.Integral) or isinstance(chunk_size, bool):
                raise ValueError(f"chunk_size must be None or a positive int, got {chunk_size!r}")
            chunk_size = int(chunk_size)
            chunks = -(-decoder.num_items // max(chunk_size, 1))
            if chunk_size < 1 or chunks > MAX_TOP_K_CHUNKS:
                raise ValueError(
                    f"chunk_size must be a positive int giving at most {MAX_TOP_K_CHUNKS} "
                    f"chunks of the {decoder.num_items} items (each chunk adds ops to the "
                    f"graph), got {chunk_size!r}"
                )
        self.decoder = decoder
        self._k = k
        self.chunk_size = chunk_size

    def get_config(self) -> dict:
        """``name``, ``k`` and the decoder's own (serialized) config. A layer rebuilt
        by :meth:`from_config` owns a new decoder of the same shape; weights travel
        with the model that holds both (Keras weight saving), not in the config."""
        return {
            "name": self.name,
            "k": self._k,
            "chunk_size": self.chunk_size,
            "decoder": tf.keras.layers.serialize(self.decoder),
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> DecoderTopK:
        config = dict(config)
        decoder = tf.keras.layers.deserialize(config.pop("decoder"), custom_objects)
        return cls(decoder, **config)

    def _check_k(self, k: int | None) -> int:
        k = self._k if k is None else k
        if not isinstance(k, int) or not 1 <= k <= self.decoder.num_items:
            raise ValueError(f"k must be an int in [1, {self.decoder.num_items}], got {k!r}")
        return k

    def call(self, queries: tf.Tensor, k: int | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """``[B, d]`` latents -> (scores ``[B, k]`` float32, items ``[B, k]`` int64)."""
        k = self._check_k(k)
        values, indices = tf.math.top_k(self.decoder(queries), k=k)
        return values, tf.cast(indices, tf.int64)

    def query_with_exclusions(
        self, queries: tf.Tensor, exclusions, k: int | None = None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Top-K with each user's ``exclusions`` removed.

        Args:
          queries: ``[B, d]`` latents.
          exclusions: items to drop per user: ``[B, None]`` ragged/sparse int, a
            dense ``[B, n]`` int tensor padded with negative values, or
            :class:`SparseRows`.
          k: number of items (default: constructor ``k``).

        Returns:
          (scores ``[B, k]`` float32, item indices ``[B, k]`` int64), descending.
        """
        k = self._check_k(k)
        if isinstance(exclusions, SparseRows):
            excluded = exclusions
        else:
            if not isinstance(exclusions, tf.SparseTensor | tf.RaggedTensor):
                dense = tf.cast(exclusions, tf.int64)
                exclusions = tf.RaggedTensor.from_tensor(dense, padding=tf.constant(-1, tf.int64))
                exclusions = tf.ragged.boolean_mask(exclusions, exclusions >= 0)
            excluded = to_sparse_rows(exclusions, self.decoder.num_items, name="exclusions")
        num_items = self.decoder.num_items
        if self.chunk_size is None or self.chunk_size >= num_items:
            return self._top_k(self.decoder(queries), excluded, k)
        values, indices = [], []
        for start in range(0, num_items, self.chunk_size):
            stop = min(start + self.chunk_size, num_items)
            inside = (excluded.cols >= start) & (excluded.cols < stop)
            in_chunk = SparseRows(
                tf.boolean_mask(excluded.rows, inside),
                tf.boolean_mask(excluded.cols, inside) - start,
                excluded.batch_size,
            )
            # After the previous chunk: in a graph TensorFlow would otherwise score
            # every chunk at once, and memory would grow with the catalog again.
            with tf.control_dependencies(values[-1:] + indices[-1:]):
                chunk = self.decoder.chunk_logits(queries, start, stop)
            v, i = self._top_k(chunk, in_chunk, min(k, stop - start))
            values.append(v)
            indices.append(i + start)
        # Chunks in item order, each sorted: among equal scores the lower item comes
        # first in the concatenation, so the merge keeps top_k's tie order.
        merged, at = tf.math.top_k(tf.concat(values, axis=1), k=k)
        return merged, tf.gather(tf.concat(indices, axis=1), at, batch_dims=1)

    @staticmethod
    def _top_k(scores: tf.Tensor, excluded: SparseRows, k: int) -> tuple[tf.Tensor, tf.Tensor]:
        values, indices = tf.math.top_k(mask_scores(scores, excluded), k=k)
        return values, tf.cast(indices, tf.int64)


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class CrossBehaviorItemPath(tf.keras.layers.Layer):
    """An item-level path from the user's other behaviors to each behavior's logits.

    Not in the BVAE paper (``BVAEConfig.item_path``): the ``d``-dimensional
    bottleneck cannot carry item identity from input to output, so BVAE cannot say
    "you carted item i, you will buy item i", which the no-learning cross-behavior
    repeat rule exploits. For target behavior ``k`` this adds, to the decoder's logit
    of item ``i``,

        s_k(u, i) = sum_{b != k} x_b(u, i) * (g a_{k,b} + w_{k,b,i}),

    with ``x_b`` the user's train multi-hot row of behavior ``b`` (no dropout), a
    scalar ``a_{k,b}`` per behavior pair and a per-item ``w_{k,b,i}``, both zero at
    the start (so training starts from plain BVAE), and a constant ``g``
    (``BVAEConfig.item_path_scale``) on the pair weights. Adam's step on a weight does
    not depend on its gradient's scale, so ``g`` multiplies the pair weights'
    effective learning rate: at ``g = 1`` and rate 1e-3 a pair weight moves by at
    most 0.001 per step, too slowly to put touched items among a softmax decoder's
    top logits within a few thousand steps. The per-item weights keep the shared
    rate: on UB, scaling them too (``g = 100``) let them memorise the train split
    (valid NDCG@5 fell from the first epoch on). The own behavior is left out
    (``b != k``): its items are excluded from ``k``'s ranking and would let the
    softmax reconstruct its input by copying. ``c (c - 1) (m + 1)`` weights.

    Args:
      num_behaviors: ``c``.
      num_items: ``m``.
      scale: ``g`` above (on the pair weights), > 0.

    Raises:
      ValueError: ``scale <= 0``.
    """

    def __init__(self, num_behaviors: int, num_items: int, scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if not scale > 0:
            raise ValueError(f"CrossBehaviorItemPath scale must be > 0, got {scale!r}")
        self.num_behaviors = int(num_behaviors)
        self.num_items = int(num_items)
        self.scale = float(scale)

    def build(self, input_shape=None):
        c = self.num_behaviors
        self.pair_weights = self.add_weight(name="pair_weights", shape=(c, c), initializer="zeros")
        self.item_weights = self.add_weight(
            name="item_weights", shape=(c, c, self.num_items), initializer="zeros"
        )
        super().build(input_shape)

    def entries(
        self,
        inputs: list[SparseRows],
        target: int,
        drop_overlap: float = 0.0,
        seed: tf.Tensor | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Sparse additive logits of behavior ``target``.

        Args:
          inputs: the ``c`` behaviors' train rows, in model order.
          target: index of the scored behavior.
          drop_overlap: in training, the probability of dropping a source entry
            ``(u, i)`` of another behavior when ``i`` is also among the user's
            ``target`` items, the reconstruction target
            (``BVAEConfig.item_path_drop_overlap``). In a train split most items of one
            behavior may also be in another (JD: 81 % of train purchases were touched
            under another behavior, 7 % of test purchases), so the path would learn
            the train split's co-occurrence rather than the future's; dropping
            overlaps thins the positives towards the future rate. 0: keep all.
          seed: ``[2]`` int stateless seed of the drop (needed when
            ``drop_overlap > 0``).

        Returns:
          ``(rows [e] int64, cols [e] int64, values [e] float32)``; a (row, item)
          pair may repeat (one entry per source behavior), to be summed.
        """
        if not self.built:
            self.build()
        if drop_overlap > 0.0:  # training only: scoring never builds the keys
            # SparseRows are ordered by row then item, so the keys are sorted.
            target_keys = inputs[target].rows * self.num_items + inputs[target].cols
        rows, cols, values = [], [], []
        for b, source in enumerate(inputs):
            if b == target:
                continue
            items = source
            if drop_overlap > 0.0:
                seed_b = tf.random.experimental.stateless_fold_in(seed, b)
                items = self._drop_overlap(source, target_keys, drop_overlap, seed_b)
            rows.append(items.rows)
            cols.append(items.cols)
            values.append(
                self.scale * self.pair_weights[target, b]
                + tf.gather(self.item_weights[target, b], items.cols)
            )
        return tf.concat(rows, 0), tf.concat(cols, 0), tf.concat(values, 0)

    def _drop_overlap(
        self, items: SparseRows, target_keys: tf.Tensor, rate: float, seed: tf.Tensor
    ) -> SparseRows:
        """``items`` less each entry also in ``target_keys`` (sorted ``row * m +
        item``), with probability ``rate``."""
        keys = items.rows * self.num_items + items.cols
        # -1 after the last key: a search past the end finds no item.
        padded = tf.concat([target_keys, tf.constant([-1], tf.int64)], 0)
        overlap = tf.equal(tf.gather(padded, tf.searchsorted(target_keys, keys)), keys)
        drop = overlap & (tf.random.stateless_uniform(tf.shape(keys), seed) < rate)
        keep = tf.logical_not(drop)
        return SparseRows(
            tf.boolean_mask(items.rows, keep), tf.boolean_mask(items.cols, keep), items.batch_size
        )

    def add_to(self, logits: tf.Tensor, inputs: list[SparseRows], target: int) -> tf.Tensor:
        """``[B, m]`` float32 ``logits`` plus :meth:`entries` of ``target``."""
        rows, cols, values = self.entries(inputs, target)
        return tf.tensor_scatter_nd_add(logits, tf.stack([rows, cols], axis=1), values)

    def get_config(self):
        return {
            **super().get_config(),
            "num_behaviors": self.num_behaviors,
            "num_items": self.num_items,
            "scale": self.scale,
        }


def cross_behavior_indicator(inputs: list[SparseRows], target: int, num_items: int) -> tf.Tensor:
    """Which items each user has in train under a behavior other than ``target``.

    What ``BVAEConfig.cross_behavior_boost`` adds to the logits of behavior
    ``target`` (times its value), and the first tier of the cross-behavior repeat rule
    (``baselines.floors.CrossBehaviorRepeat``).

    Args:
      inputs: the ``c`` behaviors' train rows, in model order, one batch.
      target: index of the scored behavior (its own rows are left out).
      num_items: ``m``.

    Returns:
      ``[B, m]`` float32, 1 where the user touched the item under another behavior
      (once, however many), else 0.
    """
    others = [rows for b, rows in enumerate(inputs) if b != target]
    index = tf.concat([tf.stack([r.rows, r.cols], axis=1) for r in others], 0)
    batch = tf.cast(inputs[target].batch_size, tf.int64)
    shape = tf.stack([batch, tf.constant(num_items, tf.int64)])
    counts = tf.scatter_nd(index, tf.ones(tf.shape(index)[:1], tf.float32), shape)
    return tf.minimum(counts, 1.0)


def gather_rows(rows: SparseRows, keep: tf.Tensor) -> SparseRows:
    """The batch rows ``keep`` of ``rows``, renumbered ``0 .. n - 1``.

    Args:
      rows: pairs of a batch of ``B`` rows, ordered by row.
      keep: ``[n]`` int64 increasing row indices in ``[0, B)``.

    Returns:
      :class:`SparseRows` of batch size ``n``: the pairs of the kept rows, in order,
      with row ``keep[i]`` renumbered ``i``.
    """
    keep = tf.cast(keep, tf.int64)
    n = tf.size(keep, out_type=tf.int64)
    # 1-based positions of the kept rows, 0 elsewhere.
    position = tf.scatter_nd(
        keep[:, None], tf.range(1, n + 1, dtype=tf.int64), tf.reshape(rows.batch_size, [1])
    )
    new_rows = tf.gather(position, rows.rows) - 1
    kept = new_rows >= 0
    return SparseRows(tf.boolean_mask(new_rows, kept), tf.boolean_mask(rows.cols, kept), n)


def mask_scores(scores: tf.Tensor, excluded: SparseRows) -> tf.Tensor:
    """Sets ``scores[row, item]`` to ``-inf`` for every excluded (row, item) pair.

    Args:
      scores: ``[B, m]`` float32.
      excluded: pairs to mask.

    Returns:
      ``[B, m]`` float32 copy with the pairs at ``-inf``.
    """
    index = tf.stack([excluded.rows, excluded.cols], axis=1)
    fill = tf.fill(tf.shape(excluded.rows), tf.constant(-float("inf"), scores.dtype))
    return tf.tensor_scatter_nd_update(scores, index, fill)
