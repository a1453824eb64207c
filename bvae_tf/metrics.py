"""Top-K ranking metrics: Prec@K, Rec@K, NDCG@K, HR@K with full ranking.

Protocol (the BVAE paper's evaluation metrics, Rao et al., RecSys 2023):

- every item is ranked; the user's train items of the evaluated behavior are
  excluded (they can never be recommended, nor hit);
- ``Prec@K = hits / K``, ``Rec@K = hits / |H|``, ``NDCG@K = DCG@K / IDCG@K`` with
  ``DCG@K = sum_{hit at rank r <= K} 1 / log2(r + 1)`` and IDCG over
  ``min(K, |H|)`` positions, ``HR@K = 1`` if any hit; ``H`` = the user's held-out
  items, including ids unknown to the model (counted in ``|H|``, never hit);
- averaged over the users with ``|H| >= 1``; the others are counted as excluded.
  No value is ever NaN.

Ties are broken against the model, deterministically: items are ordered by score
(descending), then non-held-out before held-out items (so equal scores never earn a
hit), then by item index. A NaN score counts as ``+inf`` for other items and as a
miss for a held-out item. With this order the rank of held-out item ``i`` is::

    rank_i = #{j: s_j > s_i} + #{j not held out: s_j == s_i} + position of i among
             the held-out items tied with it (1-based, by item index)

over non-excluded items ``j``. The pure numpy functions (``heldout_ranks``,
``metrics_from_ranks``, ``ranking_metrics``) define the numbers; ``evaluate`` streams
a ``tf.data`` dataset through a model, computes the same ranks in TensorFlow (only
for held-out items that reach the top ``max(ks)``) and aggregates them with
``metrics_from_ranks``.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from bvae_tf import features as F

DEFAULT_KS: tuple[int, ...] = (5, 10, 15, 20)
METRICS: tuple[str, ...] = ("precision", "recall", "ndcg", "hit_rate")
#: The model-selection score: sum over behaviors of this metric on the valid split.
SELECTION_METRIC = "ndcg@5"


def metric_key(metric: str, k: int) -> str:
    """``"ndcg", 5 -> "ndcg@5"``."""
    return f"{metric}@{k}"


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(not isinstance(k, int | np.integer) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    return tuple(int(k) for k in ks)


def _csr(matrix, shape: tuple[int, int], name: str) -> sp.csr_matrix:
    csr = sp.csr_matrix(matrix, dtype=np.float32)
    if csr.shape != shape:
        raise ValueError(f"{name} has shape {csr.shape}, scores have {shape}")
    csr.sum_duplicates()
    csr.sort_indices()
    return csr


def heldout_ranks(
    scores: np.ndarray, heldout, excluded=None, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Rank of every held-out item under the tie-break of the module docstring.

    Args:
      scores: ``[n, m]`` float array, the model's scores (any float dtype; compared
        as given).
      heldout: ``[n, m]`` sparse (anything ``scipy.sparse.csr_matrix`` accepts), the
        held-out items; values are ignored.
      excluded: optional ``[n, m]`` sparse, the items excluded from the ranking
        (the user's train items of that behavior).
      chunk: held-out entries compared per step (memory ``chunk * m``).

    Returns:
      ``(rows, ranks)``: ``[nnz]`` int64 user row and ``[nnz]`` float64 1-based rank
      of each held-out entry in CSR order; ``inf`` for items that can never be hit
      (excluded, or NaN score).

    Raises:
      ValueError: on mismatched shapes.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [n, m], got shape {scores.shape}")
    heldout = _csr(heldout, scores.shape, "heldout")
    ranked = np.where(np.isnan(scores), np.inf, scores).astype(scores.dtype, copy=False)
    if excluded is not None:
        excluded = _csr(excluded, scores.shape, "excluded").tocoo()
        ranked = ranked.copy()
        ranked[excluded.row, excluded.col] = -np.inf
    rows = np.repeat(np.arange(scores.shape[0]), np.diff(heldout.indptr))
    cols = heldout.indices.astype(np.int64)
    raw = scores[rows, cols]
    rel = ranked[rows, cols]
    valid = ~np.isnan(raw) & (rel != -np.inf)
    greater = np.zeros(len(rows), np.int64)
    equal = np.zeros(len(rows), np.int64)
    for start in range(0, len(rows), chunk):
        part = slice(start, start + chunk)
        row_scores = ranked[rows[part]]
        greater[part] = (row_scores > rel[part, None]).sum(axis=1)
        equal[part] = (row_scores == rel[part, None]).sum(axis=1)
    # Held-out items tied with each other: sizes of (row, score) groups among the
    # valid ones, and each item's position in its group by item index.
    idx = np.flatnonzero(valid)
    order = idx[np.lexsort((cols[idx], rel[idx], rows[idx]))]
    new_group = np.ones(len(order), bool)
    new_group[1:] = (rows[order][1:] != rows[order][:-1]) | (rel[order][1:] != rel[order][:-1])
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    sizes = np.diff(np.append(starts, len(order)))
    position = np.arange(len(order)) - starts[group] + 1
    ranks = np.full(len(rows), np.inf)
    ranks[order] = greater[order] + equal[order] - sizes[group] + position
    return rows.astype(np.int64), ranks


def _ideal_dcg(max_k: int) -> np.ndarray:
    """``[max_k + 1]``: IDCG of ``j`` relevant items at the top, ``j = 0..max_k``."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, max_k + 2)))])


def metrics_from_ranks(
    rows: np.ndarray,
    ranks: np.ndarray,
    num_heldout: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, np.ndarray]:
    """Per-user metrics from the ranks of held-out items.

    Args:
      rows: ``[h]`` int user of each ranked held-out item (misses may be omitted).
      ranks: ``[h]`` float 1-based rank (``inf`` = never hit).
      num_heldout: ``[n]`` int ``|H|`` per user, including unknown ids.
      ks: cut-offs.

    Returns:
      ``{"precision@K" | "recall@K" | "ndcg@K" | "hit_rate@K": [n_scored] float64}``
      for the ``n_scored`` users with ``|H| >= 1``, in user order.

    Raises:
      ValueError: on bad ``ks`` or mismatched lengths.
    """
    ks = _check_ks(ks)
    rows = np.asarray(rows, np.int64)
    ranks = np.asarray(ranks, np.float64)
    num_heldout = np.asarray(num_heldout, np.int64)
    if rows.shape != ranks.shape:
        raise ValueError(f"rows {rows.shape} and ranks {ranks.shape} differ in length")
    n = len(num_heldout)
    scored = num_heldout > 0
    ideal = _ideal_dcg(max(ks))
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hit = ranks <= k
        hits = np.bincount(rows[hit], minlength=n).astype(np.float64)
        dcg = np.bincount(rows[hit], weights=1.0 / np.log2(ranks[hit] + 1.0), minlength=n)
        idcg = ideal[np.minimum(k, num_heldout)]
        denominator = np.maximum(num_heldout, 1)
        out[metric_key("precision", k)] = (hits / k)[scored]
        out[metric_key("recall", k)] = (hits / denominator)[scored]
        out[metric_key("ndcg", k)] = (dcg / np.where(idcg > 0, idcg, 1.0))[scored]
        out[metric_key("hit_rate", k)] = (hits > 0).astype(np.float64)[scored]
    return out


@dataclasses.dataclass
class RankingResult:
    """Mean metrics of one behavior.

    Attributes:
      metrics: ``{"ndcg@5": value, ...}`` means over scored users (0.0 when none).
      num_users: users scored (``|H| >= 1``).
      num_excluded: users seen without held-out items (not scored).
    """

    metrics: dict[str, float]
    num_users: int
    num_excluded: int


def ranking_metrics(
    scores: np.ndarray,
    heldout,
    excluded=None,
    ks: Sequence[int] = DEFAULT_KS,
    num_unknown: np.ndarray | None = None,
) -> RankingResult:
    """Mean Prec/Rec/NDCG/HR@K of a score matrix (pure numpy; the definition).

    Args:
      scores: ``[n, m]`` float scores.
      heldout: ``[n, m]`` sparse held-out items.
      excluded: optional ``[n, m]`` sparse items excluded from the ranking.
      ks: cut-offs.
      num_unknown: optional ``[n]`` int held-out ids unknown to the model (counted in
        ``|H|``, never hit).

    Returns:
      :class:`RankingResult`.
    """
    ks = _check_ks(ks)
    scores = np.asarray(scores)
    rows, ranks = heldout_ranks(scores, heldout, excluded)
    num_heldout = np.bincount(rows, minlength=scores.shape[0])
    if num_unknown is not None:
        num_heldout = num_heldout + np.asarray(num_unknown, np.int64).reshape(-1)
    per_user = metrics_from_ranks(rows, ranks, num_heldout, ks)
    return _mean_result({k: (v.sum(), len(v)) for k, v in per_user.items()}, num_heldout)


def _mean_result(sums: Mapping[str, tuple[float, int]], num_heldout: np.ndarray) -> RankingResult:
    num_users = int((num_heldout > 0).sum())
    metrics = {k: (float(s) / num_users if num_users else 0.0) for k, (s, _) in sums.items()}
    return RankingResult(metrics, num_users, int(len(num_heldout) - num_users))


# --- streaming evaluation of a model ----------------------------------------------------


@dataclasses.dataclass
class EvaluationResult:
    """Metrics of every behavior on one dataset.

    Attributes:
      behaviors: ``{behavior: RankingResult}``.
      per_user: ``{behavior: {metric key: [n_scored] float64}}``, the per-user values
        of the metrics asked for (``evaluate(per_user=...)``), users in dataset order;
        the same dataset gives the same users in the same order for every model, so
        two models' arrays pair up (for a paired significance test).
    """

    behaviors: dict[str, RankingResult]
    per_user: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)

    def flat(self) -> dict[str, float]:
        """``{"<behavior>/ndcg@5": value, ..., "<behavior>/num_users": n, ...}``."""
        out: dict[str, float] = {}
        for b, result in self.behaviors.items():
            out.update({f"{b}/{k}": v for k, v in result.metrics.items()})
            out[f"{b}/num_users"] = float(result.num_users)
            out[f"{b}/num_excluded"] = float(result.num_excluded)
        return out

    def metric_sum(self, key: str = SELECTION_METRIC) -> float:
        """Sum over behaviors of one metric (default: the selection score)."""
        return float(sum(r.metrics[key] for r in self.behaviors.values()))


_RANK_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _relaxed_spec(element_spec):
    """The dataset's element spec with every dimension unknown (one trace per dataset)."""
    import tensorflow as tf

    def relax(spec):
        shape = tf.TensorShape([None] * spec.shape.rank) if spec.shape.rank is not None else None
        if isinstance(spec, tf.SparseTensorSpec):
            return tf.SparseTensorSpec(shape, spec.dtype)
        if isinstance(spec, tf.RaggedTensorSpec):
            return tf.RaggedTensorSpec(shape, spec.dtype, spec.ragged_rank, spec.row_splits_dtype)
        return tf.TensorSpec(shape, spec.dtype)

    return tf.nest.map_structure(relax, element_spec)


def _rank_fn(model, behaviors: tuple[str, ...], max_k: int, element_spec) -> Callable:
    import tensorflow as tf

    cache = _RANK_FNS.setdefault(model, {})
    spec = _relaxed_spec(element_spec)
    key = (behaviors, max_k, repr(spec))
    if key in cache:
        return cache[key]

    # A weak reference: the cache's value must not keep its key (the model, and with
    # it every weight) alive after the caller drops it.
    model_ref = weakref.ref(model)

    @tf.function(input_signature=[spec])
    def rank_batch(batch):
        return model_ranks(model_ref(), batch, behaviors, max_k)

    cache[key] = rank_batch
    return rank_batch


def model_ranks(model, batch, behaviors: Sequence[str], max_k: int | None = None) -> dict:
    """Every behavior's held-out ranks and ``|H|`` for a batch, through ``model``
    (TensorFlow; what ``evaluate`` and the export's ``rank_heldout`` compute).

    Args:
      model: ``model(batch, training=False) -> {b: [B, m] logits}``; with an
        ``eval_chunk_size`` (``BVAE`` with ``top_k_chunk_size``) it is scored a chunk
        at a time through ``model.chunk_scorer`` instead, never forming the logits;
        else, with a ``row_scorer`` (``BVAE``), each behavior's logits are computed
        only for the users with a held-out item of that behavior.
      batch: the feature dict of :func:`evaluate` (``items_key(b)``,
        ``heldout_key(b)``, optionally ``oov_key(heldout_key(b))``).
      behaviors: the behaviors to rank.
      max_k: as :func:`behavior_ranks`.

    Returns:
      ``{b: (rows, ranks, num_heldout)}`` (:func:`behavior_ranks`).
    """
    import tensorflow as tf

    chunk_size = getattr(model, "eval_chunk_size", None)
    if chunk_size:
        score_chunk = model.chunk_scorer(batch)
    elif hasattr(model, "row_scorer"):
        score_rows = model.row_scorer(batch)
    else:
        logits = model(batch, training=False)
    out = {}
    for b in behaviors:
        args = {
            "items": batch[F.items_key(b)],
            "heldout": batch[F.heldout_key(b)],
            "num_unknown": batch.get(F.oov_key(F.heldout_key(b))),
        }
        if chunk_size:
            # One behavior after the other, so that one behavior's chunk is in memory.
            with tf.control_dependencies([t for done in out.values() for t in done]):
                out[b] = chunked_behavior_ranks(
                    functools.partial(score_chunk, b),
                    model.num_items,
                    chunk_size,
                    **args,
                    max_k=max_k,
                )
        elif hasattr(model, "row_scorer"):
            out[b] = _ranks_of_rows(
                functools.partial(score_rows, b), model.num_items, **args, max_k=max_k
            )
        else:
            out[b] = behavior_ranks(logits[b], **args, max_k=max_k)
    return out


def behavior_ranks(scores, items, heldout, num_unknown=None, max_k: int | None = None):
    """One behavior's held-out ranks and ``|H|`` per user of a batch (TensorFlow).

    Args:
      scores: ``[B, m]`` float32 scores (logits) of the behavior.
      items: ``[B, None]`` int64 sparse or ragged train items of the behavior (the
        ranking's exclusions).
      heldout: ``[B, None]`` int64 sparse or ragged held-out items.
      num_unknown: optional ``[B]`` (or ``[B, 1]``) int64 held-out ids unknown to the
        model (counted in ``|H|``, never hit).
      max_k: the largest cut-off (held-out items ranked below it are omitted), or
        ``None`` to rank every held-out item.

    Returns:
      ``(rows [h'] int64, ranks [h'] int64, num_heldout [B] int64)``: the
      :func:`candidate_ranks` of the behavior and ``|H|`` of every user.
    """

    import tensorflow as tf

    return _ranks_of_rows(
        lambda keep: tf.gather(scores, keep),
        scores.shape[1],
        items=items,
        heldout=heldout,
        num_unknown=num_unknown,
        max_k=max_k,
    )


def _ranks_of_rows(score_rows: Callable, num_items: int, *, items, heldout, num_unknown, max_k):
    """:func:`behavior_ranks` from ``score_rows(keep) -> [n, m]`` scores of the batch
    rows ``keep`` ([n] int64): only the rows with a held-out item the model knows are
    scored and ranked (a row without one can have no hit)."""
    import tensorflow as tf

    from bvae_tf import layers as L

    excluded = L.to_sparse_rows(items, num_items, "items")
    targets = L.to_sparse_rows(heldout, num_items, "heldout")
    count = _num_heldout(targets, num_unknown)
    keep = tf.unique(targets.rows).y  # rows come ordered: increasing
    rows, ranks = candidate_ranks(
        score_rows(keep), L.gather_rows(excluded, keep), L.gather_rows(targets, keep), max_k
    )
    return tf.gather(keep, rows), ranks, count


def _num_heldout(targets, num_unknown):
    """``[B]`` int64 ``|H|``: held-out entries per row plus the unknown ids."""
    import tensorflow as tf

    count = tf.math.unsorted_segment_sum(
        tf.ones_like(targets.rows), targets.rows, targets.batch_size
    )
    if num_unknown is not None:
        count += tf.reshape(tf.cast(num_unknown, tf.int64), [-1])
    return count


def candidate_ranks(scores, excluded, heldout, max_k: int | None):
    """Ranks (module docstring) of the held-out items that can reach the top ``max_k``.

    TensorFlow version of :func:`heldout_ranks` for one batch: a held-out item scoring
    below the ``max_k``-th best non-excluded score has rank > ``max_k`` and is
    omitted; the others are ranked exactly against the whole row. The held-out items
    above :func:`kth_lower_bound` are counted against the row and those with fewer
    than ``max_k`` greater scores kept, so no full ``top_k`` of the row is needed.

    Args:
      scores: ``[B, m]`` float32 logits.
      excluded: ``layers.SparseRows`` items excluded from the ranking.
      heldout: ``layers.SparseRows`` held-out items (deduplicated).
      max_k: the largest cut-off, or ``None``: every held-out item that can be hit
        (not excluded, score not NaN) is ranked.

    Returns:
      ``(rows [h'] int64, ranks [h'] int64)`` for the ``h'`` candidate items, in
      row order.
    """
    import tensorflow as tf

    from bvae_tf import layers as L

    inf = tf.constant(float("inf"), scores.dtype)
    index = tf.stack([heldout.rows, heldout.cols], axis=1)
    raw = tf.gather_nd(scores, index)
    is_nan = tf.math.is_nan(scores)
    scores = tf.cond(tf.reduce_any(is_nan), lambda: tf.where(is_nan, inf, scores), lambda: scores)
    ranked = L.mask_scores(scores, excluded)
    relevant = tf.gather_nd(ranked, index)
    candidate = ~tf.math.is_nan(raw) & (relevant > -inf)
    if max_k is not None:
        bound = kth_lower_bound(ranked, max_k)
        candidate &= relevant >= tf.gather(bound, heldout.rows)
    rows = tf.boolean_mask(heldout.rows, candidate)
    cols = tf.boolean_mask(heldout.cols, candidate)
    value = tf.boolean_mask(relevant, candidate)
    row_scores = tf.gather(ranked, rows)
    greater = tf.reduce_sum(tf.cast(row_scores > value[:, None], tf.int64), axis=1)
    equal = tf.reduce_sum(tf.cast(row_scores == value[:, None], tf.int64), axis=1)
    if max_k is not None:
        # value >= the row's max_k-th best score  <=>  fewer than max_k scores above it.
        # Tied held-out items share `greater`, so a tie group is kept or dropped whole.
        top = greater < max_k
        rows, cols, value, greater, equal = (
            tf.boolean_mask(t, top) for t in (rows, cols, value, greater, equal)
        )
    return rows, _tie_ranks(rows, cols, value, greater, equal, num_items=tf.shape(scores)[1])


def kth_lower_bound(scores, k: int, blocks_per_k: int = 4):
    """A cheap lower bound of every row's ``k``-th largest score (TensorFlow).

    The row is cut into ``b = min(m, blocks_per_k * k)`` blocks of consecutive
    columns; the ``k``-th largest of the ``b`` block maxima is returned. Those ``k``
    maxima are ``k`` different entries of the row, so at least ``k`` entries are
    ``>=`` it: it never exceeds the ``k``-th largest (and equals it when ``b = m``).
    One pass over ``[B, m]`` instead of ``tf.math.top_k`` over the whole row, which
    costs about ten (``k = 20``, ``m = 13,465``, float32, 2 CPU cores).

    Args:
      scores: ``[B, m]`` float scores (``-inf`` allowed; no NaN).
      k: ``>= 1``; the cut-off (``min(k, m)`` is used).
      blocks_per_k: blocks per unit of ``k``; more blocks give a tighter bound.

    Returns:
      ``[B]`` bounds, of ``scores``' dtype.
    """
    import tensorflow as tf

    m = tf.shape(scores)[1]
    k = tf.minimum(k, m)
    blocks = tf.minimum(m, blocks_per_k * k)
    width = (m + blocks - 1) // blocks
    blocks = (m + width - 1) // width
    padded = tf.pad(
        scores,
        [[0, 0], [0, blocks * width - m]],
        constant_values=tf.constant(-float("inf"), scores.dtype),
    )
    maxima = tf.reduce_max(tf.reshape(padded, [tf.shape(scores)[0], blocks, width]), axis=2)
    return tf.math.top_k(maxima, k=k).values[:, -1]


def _tie_ranks(rows, cols, value, greater, equal, *, num_items):
    """Ranks of the candidates from their counts of greater and equal scores in the
    row: held-out items tied with each other are ordered by item index (module
    docstring). All ``[h]``; ``num_items`` a scalar."""
    import tensorflow as tf

    bits = tf.cast(tf.bitcast(value + 0.0, tf.uint32), tf.int64)
    _, group = tf.unique(rows * (2**32) + bits, out_idx=tf.int64)
    num_groups = tf.size(group, tf.int64)
    order = tf.cast(tf.argsort(group * tf.cast(num_items, tf.int64) + cols, stable=True), tf.int64)
    sorted_group = tf.gather(group, order)
    positions = tf.range(tf.size(order, tf.int64), dtype=tf.int64)
    first = tf.math.unsorted_segment_min(positions, sorted_group, num_groups)
    within = positions - tf.gather(first, sorted_group) + 1
    position = tf.scatter_nd(order[:, None], within, tf.shape(order, tf.int64))
    sizes = tf.math.unsorted_segment_sum(tf.ones_like(group), group, num_groups)
    return greater + equal - tf.gather(sizes, group) + position


def chunked_behavior_ranks(
    score_chunk: Callable,
    num_items: int,
    chunk_size: int,
    *,
    items,
    heldout,
    num_unknown=None,
    max_k: int | None = None,
):
    """:func:`behavior_ranks` without the whole ``[B, m]`` score matrix: the items are
    scored ``chunk_size`` at a time, twice (once for the held-out items' own scores,
    once to count the items above and tied with them), one chunk after the other, so
    memory is bounded by the chunk, ``O((B + h') * chunk_size)`` for ``h'`` held-out
    items, not the catalog. Same numbers as :func:`behavior_ranks` on
    ``concat([score_chunk(start, stop) ...], axis=1)`` with the same ``max_k``: with a
    ``max_k``, pass 1 also keeps each row's running top ``max_k + 1`` scores; only the
    held-out items that reach the ``max_k``-th are ranked, from that list alone, and
    pass 2 runs only when one of them ties with the ``(max_k + 1)``-th score (ties
    that may continue beyond the list).

    Args:
      score_chunk: ``(start, stop) -> [B, stop - start] float32`` scores of the items
        ``[start, stop)`` (e.g. ``BVAE.chunk_scorer``); ``start, stop`` Python ints.
      num_items: ``m``.
      chunk_size: items per chunk (>= 1); at most ``layers.MAX_TOP_K_CHUNKS`` chunks
        (the loop is unrolled in the graph).
      items, heldout, num_unknown, max_k: as :func:`behavior_ranks` (``max_k=None``:
        every held-out item that can be hit is ranked).

    Returns:
      ``(rows [h'] int64, ranks [h'] int64, num_heldout [B] int64)``, rows ascending.

    Raises:
      ValueError: on a chunk size below 1 or more than ``MAX_TOP_K_CHUNKS`` chunks.
    """
    import tensorflow as tf

    from bvae_tf import layers as L

    if chunk_size < 1 or -(-num_items // chunk_size) > L.MAX_TOP_K_CHUNKS:
        raise ValueError(
            f"chunk_size {chunk_size} must be >= 1 and give at most {L.MAX_TOP_K_CHUNKS} "
            f"chunks of {num_items} items"
        )
    excluded = L.to_sparse_rows(items, num_items, "items")
    targets = L.to_sparse_rows(heldout, num_items, "heldout")
    count = _num_heldout(targets, num_unknown)
    inf = tf.constant(float("inf"), tf.float32)
    chunks = [
        (start, min(start + chunk_size, num_items)) for start in range(0, num_items, chunk_size)
    ]

    def masked(scores, start, stop):
        """A chunk's scores in the ranking: NaN as +inf, excluded items at -inf."""
        inside = (excluded.cols >= start) & (excluded.cols < stop)
        in_chunk = L.SparseRows(
            tf.boolean_mask(excluded.rows, inside),
            tf.boolean_mask(excluded.cols, inside) - start,
            excluded.batch_size,
        )
        return L.mask_scores(tf.where(tf.math.is_nan(scores), inf, scores), in_chunk)

    # Pass 1: each held-out item's raw score and its score in the ranking (NaN as
    # +inf, excluded as -inf); as in candidate_ranks, it can be hit unless its raw
    # score is NaN or its ranking score is -inf.
    # The loops are unrolled in the graph, where TensorFlow runs every op whose inputs
    # are ready: without the control dependencies every chunk's scores would be
    # computed at once and the memory would grow with the catalog again.
    raw = tf.zeros(tf.shape(targets.rows), tf.float32)
    relevant = tf.zeros(tf.shape(targets.rows), tf.float32)
    # With max_k: each row's running top (max_k + 1) scores in the ranking.
    keep = None if max_k is None else min(max_k + 1, num_items)
    best = []
    for start, stop in chunks:
        with tf.control_dependencies([raw, relevant, *best]):  # after the previous chunk
            scores = tf.cast(score_chunk(start, stop), tf.float32)
        ranked = masked(scores, start, stop)
        if keep is not None:
            top = tf.math.top_k(ranked, k=min(keep, stop - start)).values
            merged = tf.concat([*best, top], axis=1)
            best = [tf.math.top_k(merged, k=min(keep, merged.shape[1])).values]
        where = tf.where((targets.cols >= start) & (targets.cols < stop))
        index = tf.stack(
            [tf.gather_nd(targets.rows, where), tf.gather_nd(targets.cols, where) - start], axis=1
        )
        raw = tf.tensor_scatter_nd_update(raw, where, tf.gather_nd(scores, index))
        relevant = tf.tensor_scatter_nd_update(relevant, where, tf.gather_nd(ranked, index))
    candidate = ~tf.math.is_nan(raw) & (relevant > -inf)
    if keep is not None:  # below the max_k-th best score: rank > max_k, omitted
        kth = best[0][:, min(max_k, num_items) - 1]
        candidate &= relevant >= tf.gather(kth, targets.rows)
    rows = tf.boolean_mask(targets.rows, candidate)
    cols = tf.boolean_mask(targets.cols, candidate)
    value = tf.boolean_mask(relevant, candidate)

    def scan():
        """Pass 2: items above and tied with each candidate, chunk by chunk (the
        [h', chunk] comparisons counted in int32: at most chunk_size)."""
        greater = tf.zeros(tf.shape(rows), tf.int64)
        equal = tf.zeros(tf.shape(rows), tf.int64)
        for start, stop in chunks:
            with tf.control_dependencies([greater, equal, value]):  # after the last chunk
                scores = tf.cast(score_chunk(start, stop), tf.float32)
            row_scores = tf.gather(masked(scores, start, stop), rows)
            above = tf.reduce_sum(tf.cast(row_scores > value[:, None], tf.int32), axis=1)
            tied = tf.reduce_sum(tf.cast(row_scores == value[:, None], tf.int32), axis=1)
            greater += tf.cast(above, tf.int64)
            equal += tf.cast(tied, tf.int64)
        return greater, equal

    if keep is None:
        greater, equal = scan()
    else:
        # A candidate scores at least the max_k-th best, so every item above it is in
        # the running top (max_k + 1); so is every item tied with it unless it ties
        # with the (max_k + 1)-th, whose ties may go on beyond the list. Without such
        # a tie in the batch the list gives every count and pass 2 is skipped.
        listed = tf.gather(best[0], rows)
        after = (
            tf.gather(best[0][:, max_k], rows)
            if keep > max_k
            else tf.fill(tf.shape(value), -inf)  # the list holds every item
        )

        def from_list():
            above = tf.reduce_sum(tf.cast(listed > value[:, None], tf.int64), axis=1)
            tied = tf.reduce_sum(tf.cast(listed == value[:, None], tf.int64), axis=1)
            return above, tied

        greater, equal = tf.cond(tf.reduce_all(value > after), from_list, scan)
    return rows, _tie_ranks(rows, cols, value, greater, equal, num_items=num_items), count


def evaluate(
    model,
    dataset,
    ks: Sequence[int] = DEFAULT_KS,
    behaviors: Sequence[str] | None = None,
    per_user: Sequence[str] = (),
) -> EvaluationResult:
    """Streams a dataset through a model and returns its ranking metrics.

    Args:
      model: callable ``model(features, training=False) -> {b: [B, m] float32}``
        (a :class:`bvae_tf.model.BVAE` or a reloaded one).
      dataset: ``tf.data.Dataset`` of feature dicts holding, for every behavior b,
        ``features.items_key(b)`` (train items: model input and exclusions) and
        ``features.heldout_key(b)`` (targets) as ``[B, None]`` int64 sparse or ragged
        tensors, and optionally ``features.oov_key(features.heldout_key(b))``
        ``[B]`` (or ``[B, 1]``) int64 counts of held-out ids unknown to the model.
      ks: cut-offs.
      behaviors: behaviors to score (default ``model.scored_behaviors`` where the
        model has it, e.g. a baseline scoring some of its inputs, else
        ``model.behaviors``).
      per_user: metric keys (e.g. ``"ndcg@5"``) whose per-user values to keep.

    Returns:
      :class:`EvaluationResult` with the same numbers as :func:`ranking_metrics` on
      the full score matrix.

    Raises:
      ValueError: on bad ``ks``, an unknown ``per_user`` key, or when no behaviors
        are given or known.
    """
    ks = _check_ks(ks)
    if behaviors is None:
        behaviors = getattr(model, "scored_behaviors", None) or getattr(model, "behaviors", ())
    behaviors = tuple(behaviors)
    if not behaviors:
        raise ValueError("evaluate needs behaviors (the model has no .behaviors)")
    known = {metric_key(name, k) for k in ks for name in METRICS}
    unknown = sorted(set(per_user) - known)
    if unknown:
        raise ValueError(f"per_user keys {unknown} are not computed; known: {sorted(known)}")
    fn = _rank_fn(model, behaviors, max(ks), dataset.element_spec)
    sums = {b: {} for b in behaviors}
    counts = {b: [] for b in behaviors}
    kept = {b: {key: [] for key in per_user} for b in behaviors}
    for batch in dataset:
        out = fn(batch)
        for b, (rows, ranks, num_heldout) in out.items():
            count = num_heldout.numpy()
            per_key = metrics_from_ranks(rows.numpy(), ranks.numpy().astype(np.float64), count, ks)
            for key, values in per_key.items():
                total, n = sums[b].get(key, (0.0, 0))
                sums[b][key] = (total + float(values.sum()), n + len(values))
                if key in kept[b]:
                    kept[b][key].append(values)
            counts[b].append(count)
    results = {}
    for b in behaviors:
        num_heldout = np.concatenate(counts[b]) if counts[b] else np.zeros(0, np.int64)
        if not sums[b]:
            sums[b] = {metric_key(name, k): (0.0, 0) for k in ks for name in METRICS}
        results[b] = _mean_result(sums[b], num_heldout)
    arrays = {
        b: {key: np.concatenate(parts) if parts else np.zeros(0) for key, parts in kept[b].items()}
        for b in behaviors
    }
    return EvaluationResult(results, arrays if per_user else {})
