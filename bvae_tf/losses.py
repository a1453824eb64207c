"""Loss terms of BVAE as pure tensor functions (paper eq. 9-14).

Everything here works on one mini-batch of ``B`` users, ``m`` items and latent size
``d``. The multinomial likelihood (eq. 9-10) is computed from sparse targets with a
hand-written gradient so that no dense ``[B, m]`` target matrix is ever built and the
dense work per step is one softmax plus three matrix products, over the users with
targets only (:func:`nll_on_rows_with_targets`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from bvae_tf.config import BETA_SCHEDULES, DEFAULT_SDWL_FORM, SDWL_FORMS

#: float32's smallest normal number: the floor of a target's probability in the NLL.
_TINY = float(np.finfo(np.float32).tiny)


def multinomial_nll(
    queries: tf.Tensor,
    item_table: tf.Tensor,
    rows: tf.Tensor,
    cols: tf.Tensor,
    batch_size: tf.Tensor,
    *,
    extra: tuple[tf.Tensor, tf.Tensor, tf.Tensor] | None = None,
) -> tf.Tensor:
    """Negative multinomial log-likelihood of sparse multi-hot targets (eq. 9-10).

    The decoder is the factorized scorer ``logits = queries @ item_table^T`` (the bias
    folded into the last column, see ``layers.ItemDecoder``) and, per user ``u``,

        nll_u = -sum_i x_ui * log_softmax(logits_u)_i
              = n_u * logsumexp(logits_u) - sum_{i in x_u} logits_ui,

    the Mult-VAE reconstruction term (Liang et al., 2018, eq. 2) without ever
    materialising ``x``. The gradient is written by hand,
    ``d logits = g_u * (n_u * softmax(logits_u) - x_u)``, and pushed through the two
    matrix products without forming the scaled dense gradient, so the dense work is
    the forward product, one softmax and two backward products. The loss is read from
    the softmax at the targets, ``-sum_{i in x_u} log p_ui`` (a probability that
    underflows float32 counts as its smallest normal number, a loss of about 87.3).

    Under a bfloat16 compute dtype (``precision="mixed_bfloat16"``) the logits and the
    softmax stay in bfloat16 (float32's exponent range, 8 bits of mantissa), so the
    three ``[B, m]``-sized products run in bfloat16 with no cast of ``[B, m]``
    tensors; under float16 the logits are cast to float32 for the softmax, whose
    smallest probabilities float16 cannot hold.

    Args:
      queries: ``[B, d + 1]`` float (float32 or the mixed-precision compute dtype);
        latent rows with a trailing column of ones.
      item_table: ``[m, d + 1]`` same dtype; item embeddings with the bias column.
      rows: ``[nnz]`` int64 user row of each target entry (no duplicate pairs),
        sorted by ``(row, col)``.
      cols: ``[nnz]`` int64 item index of each target entry.
      batch_size: scalar int, ``B``.
      extra: optional sparse additive logits ``(rows [e], cols [e], values [e]
        float32)``, summed where pairs repeat (the item-level path of
        ``BVAEConfig.item_path``); the gradient flows to ``values``.

    Returns:
      ``[B]`` float32 negative log-likelihood per user (0 for a user without targets).
    """
    num_items = tf.shape(item_table, out_type=tf.int64)[0]
    batch_size = tf.cast(batch_size, tf.int64)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(rows, tf.float32), rows, batch_size)

    if extra is not None:
        extra_index = tf.stack([extra[0], extra[1]], axis=1)
        # Whether each extra pair is a target: its key among the sorted target keys.
        target_keys = tf.concat([rows * num_items + cols, [-1]], axis=0)  # never empty
        extra_keys = extra[0] * num_items + extra[1]
        at = tf.minimum(tf.searchsorted(target_keys[:-1], extra_keys), tf.size(rows))
        extra_is_target = tf.cast(tf.gather(target_keys, at) == extra_keys, tf.float32)

    def forward(q, table, values):
        logits = tf.matmul(q, table, transpose_b=True)
        if logits.dtype != tf.bfloat16:
            logits = tf.cast(logits, tf.float32)
        if values is not None:
            logits = tf.tensor_scatter_nd_add(logits, extra_index, tf.cast(values, logits.dtype))
        probs = tf.nn.softmax(logits)
        # nll_u = -sum_{i in x_u} log p_ui (= n_u lse_u - sum logits_ui): read at the
        # targets, so no pass over [B, m] beyond the softmax. A target whose
        # probability underflows float32 counts -log(FLT_MIN) ~ 87.3.
        target_probs = tf.cast(tf.gather_nd(probs, tf.stack([rows, cols], axis=1)), tf.float32)
        log_probs = tf.math.log(tf.maximum(target_probs, _TINY))
        nll = -tf.math.unsorted_segment_sum(log_probs, rows, batch_size)
        return nll, probs

    def backward(upstream, q, table, probs):
        scale = upstream * counts
        per_entry = tf.gather(upstream, rows)[:, None]
        p = tf.cast(probs, q.dtype)
        d_q = tf.cast(scale[:, None], q.dtype) * tf.matmul(p, table)
        d_q -= tf.cast(
            tf.math.unsorted_segment_sum(
                per_entry * tf.cast(tf.gather(table, cols), tf.float32), rows, batch_size
            ),
            q.dtype,
        )
        d_table = tf.matmul(p, tf.cast(scale[:, None], q.dtype) * q, transpose_a=True)
        d_table -= tf.cast(
            tf.math.unsorted_segment_sum(
                per_entry * tf.cast(tf.gather(q, rows), tf.float32), cols, num_items
            ),
            q.dtype,
        )
        return d_q, d_table, scale

    @tf.custom_gradient
    def _nll(q, table):
        nll, probs = forward(q, table, None)

        def grad(upstream):
            d_q, d_table, _ = backward(upstream, q, table, probs)
            return d_q, d_table

        return nll, grad

    @tf.custom_gradient
    def _nll_extra(q, table, values):
        nll, probs = forward(q, table, values)

        def grad(upstream):
            d_q, d_table, scale = backward(upstream, q, table, probs)
            # d logits_ui = g_u (n_u p_ui - x_ui), read at the extra pairs.
            e_rows = extra_index[:, 0]
            d_values = tf.gather(scale, e_rows) * tf.cast(
                tf.gather_nd(probs, extra_index), tf.float32
            )
            d_values -= tf.gather(upstream, e_rows) * extra_is_target
            return d_q, d_table, d_values

        return nll, grad

    if extra is None:
        return _nll(queries, item_table)
    return _nll_extra(queries, item_table, tf.cast(extra[2], tf.float32))


def sampled_multinomial_nll(
    queries: tf.Tensor,
    candidate_table: tf.Tensor,
    rows: tf.Tensor,
    cols: tf.Tensor,
    batch_size: tf.Tensor,
    *,
    candidates: tf.Tensor,
    log_q: tf.Tensor | None = None,
) -> tf.Tensor:
    """:func:`multinomial_nll` with the softmax over a candidate subset of the items
    (sampled softmax; Jean et al., ACL 2015; Bengio and Senecal, 2008):

        nll_u = n_u * logsumexp_{j in S}(l_uj - log q_j) - sum_{i in x_u} (l_ui - log q_i),

    ``l = queries @ candidate_table^T``, ``S`` the candidates (every target item of the
    batch and the sampled negatives) and ``q_j`` the proposal's probability of
    drawing ``j`` (the logQ correction; a constant ``log q``, as for a uniform
    proposal, cancels). With every item as a candidate and ``log_q = None`` it is
    :func:`multinomial_nll` exactly. Gradients by autodiff; they reach only the
    candidates' rows of the item table when ``candidate_table`` is gathered from it
    (``layers.ItemDecoder.candidate_table``).

    Args:
      queries: ``[B, d + 1]`` float (latent rows with a trailing column of ones).
      candidate_table: ``[C, d + 1]`` same dtype, the candidates' table rows.
      rows: ``[nnz]`` int64 user row of each target entry.
      cols: ``[nnz]`` int64 item index of each target entry.
      batch_size: scalar int, ``B``.
      candidates: ``[C]`` int item indices, sorted ascending, unique, holding every
        value of ``cols`` (checked: ``tf.errors.InvalidArgumentError`` otherwise).
      log_q: optional ``[C]`` float32 log proposal probability of each candidate.

    Returns:
      ``[B]`` float32 negative log-likelihood per user (0 for a user without targets).
    """
    batch_size = tf.cast(batch_size, tf.int64)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(rows, tf.float32), rows, batch_size)
    logits = tf.cast(tf.matmul(queries, candidate_table, transpose_b=True), tf.float32)
    if log_q is not None:
        logits -= tf.cast(log_q, tf.float32)[None, :]
    candidates = tf.cast(candidates, tf.int64)
    cols = tf.cast(cols, tf.int64)
    positions = tf.searchsorted(candidates, cols)  # in [0, C]; C: after the last
    found = tf.gather(tf.concat([candidates, [-1]], axis=0), positions)
    tf.debugging.assert_equal(
        found,
        cols,
        message="sampled_multinomial_nll: candidates must be sorted and hold every target",
    )
    positive = tf.gather_nd(logits, tf.stack([rows, tf.cast(positions, tf.int64)], axis=1))
    lse = tf.reduce_logsumexp(logits, axis=1)
    lse = tf.where(counts > 0, lse, tf.zeros_like(lse))  # no targets: 0, even with no candidates
    return counts * lse - tf.math.unsorted_segment_sum(positive, rows, batch_size)


def nll_on_rows_with_targets(
    queries: tf.Tensor,
    item_table: tf.Tensor,
    rows: tf.Tensor,
    cols: tf.Tensor,
    batch_size: tf.Tensor,
    *,
    nll_fn=multinomial_nll,
    extra: tuple[tf.Tensor, tf.Tensor, tf.Tensor] | None = None,
    **kwargs,
) -> tf.Tensor:
    """``nll_fn`` (:func:`multinomial_nll` or :func:`sampled_multinomial_nll`) decoded
    only for the users with at least one target, the same value and gradient.

    A user without targets of a behavior has ``nll_u = 0`` and a zero gradient
    (``d logits_u = g_u (n_u softmax(logits_u) - x_u)`` with ``n_u = 0`` and
    ``x_u = 0``), so its row of the ``[B, m]`` products contributes nothing; the
    decoder's products, softmax and backward products run over the ``B'`` users with
    targets instead (on JD's train split, a favourite decoder reads 21% of the users,
    click 90%, purchase all). Entries of ``extra`` on dropped rows go too (their
    gradient is 0 as well).

    Args:
      queries, item_table, rows, cols, batch_size: as :func:`multinomial_nll`
        (``rows`` sorted ascending).
      nll_fn: ``nll_fn(queries, item_table, rows, cols, batch_size, **kwargs)`` with
        ``extra`` among its keyword arguments when given, returning ``[B]`` float32.
      extra: as :func:`multinomial_nll`, or None.
      **kwargs: passed on (e.g. ``candidates`` and ``log_q``).

    Returns:
      ``[B]`` float32 negative log-likelihood per user (0 for a user without targets).
    """
    batch_size = tf.cast(batch_size, tf.int64)
    kept, compact = tf.unique(rows, out_idx=tf.int64)  # sorted rows: kept ascending
    count = tf.size(kept, out_type=tf.int64)
    if extra is not None:
        # Each row's place among the kept rows, -1 for a row without targets.
        place = tf.tensor_scatter_nd_update(
            tf.fill([batch_size], tf.constant(-1, tf.int64)),
            kept[:, None],
            tf.range(count, dtype=tf.int64),
        )
        e_place = tf.gather(place, extra[0])
        on = e_place >= 0
        extra = (
            tf.boolean_mask(e_place, on),
            tf.boolean_mask(extra[1], on),
            tf.boolean_mask(extra[2], on),
        )
        kwargs["extra"] = extra
    nll = nll_fn(tf.gather(queries, kept), item_table, compact, cols, count, **kwargs)
    return tf.scatter_nd(kept[:, None], nll, tf.reshape(batch_size, [1]))


def gaussian_kl(mu: tf.Tensor, logvar: tf.Tensor) -> tf.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per user (eq. 11).

    Args:
      mu: ``[B, d]`` float32 posterior mean.
      logvar: ``[B, d]`` float32 posterior log-variance.

    Returns:
      ``[B]`` float32, ``0.5 * sum_d(-logvar + exp(logvar) + mu^2 - 1)``.
    """
    return 0.5 * tf.reduce_sum(-logvar + tf.exp(logvar) + tf.square(mu) - 1.0, axis=1)


def log_mean_sigma(logvar: tf.Tensor) -> tf.Tensor:
    """``log(mean_d sigma)`` per user with ``sigma = exp(logvar / 2)``, computed stably.

    Args:
      logvar: ``[B, d]`` float32 log-variance.

    Returns:
      ``[B]`` float32 ``log(sigma_bar)``, the SDWL uncertainty (eq. 14).
    """
    d = tf.cast(tf.shape(logvar)[1], logvar.dtype)
    return tf.reduce_logsumexp(0.5 * logvar, axis=1) - tf.math.log(d)


def sdwl_term(
    nll: tf.Tensor,
    kl: tf.Tensor,
    log_sigma_bar: tf.Tensor | None,
    beta: tf.Tensor,
    form: str = DEFAULT_SDWL_FORM,
) -> tuple[tf.Tensor, tf.Tensor]:
    """One behavior's contribution to the BVAE loss, averaged over users (eq. 13-14).

    With ``sigma_bar`` the per-user mean of the behavior's posterior std:

    - ``form="paper"`` (eq. 14 as printed):
      ``mean_u[(nll_u + beta * kl_u) / (2 sigma_bar_u^2) + log sigma_bar_u]``;
    - ``form="reference"`` (the released code):
      ``mean_u[nll_u / (2 sigma_bar_u^2) + log sigma_bar_u^2] + beta * mean_u kl_u``;
    - ``log_sigma_bar=None`` (SDWL off, the -SDWL ablation and Mult-VAE):
      ``mean_u nll_u + beta * mean_u kl_u``.

    Args:
      nll: ``[B]`` float32 negative log-likelihood per user.
      kl: ``[B]`` float32 KL divergence per user.
      log_sigma_bar: ``[B]`` float32 ``log(sigma_bar)`` or None.
      beta: scalar float32 KL weight.
      form: ``"paper"`` (default, as ``BVAEConfig.sdwl_form``) or ``"reference"``.

    Returns:
      ``(term, weight)``: scalar float32 loss term (mean over the batch) and ``[B]``
      float32 SDWL weight ``1 / (2 sigma_bar^2)`` on the likelihood (ones when off).

    Raises:
      ValueError: if ``form`` is unknown.
    """
    if form not in SDWL_FORMS:
        raise ValueError(f"sdwl form must be one of {SDWL_FORMS}, got {form!r}")
    if log_sigma_bar is None:
        return tf.reduce_mean(nll) + beta * tf.reduce_mean(kl), tf.ones_like(nll)
    weight = 0.5 * tf.exp(-2.0 * log_sigma_bar)
    if form == "paper":
        return tf.reduce_mean(weight * (nll + beta * kl) + log_sigma_bar), weight
    return tf.reduce_mean(weight * nll + 2.0 * log_sigma_bar) + beta * tf.reduce_mean(kl), weight


def kl_beta(step: tf.Tensor, cap: float, anneal_steps: int, schedule: str = "linear") -> tf.Tensor:
    """KL weight beta after ``step`` parameter updates.

    - ``"linear"`` (the written definition, Liang et al. 2018; vae-cf-pytorch#6):
      beta rises linearly from 0 and reaches ``cap`` after ``anneal_steps`` updates,
      ``beta = cap * min(1, step / anneal_steps)``.
    - ``"reference"`` (what the Mult-VAE and BVAE code compute):
      ``beta = min(cap, step / anneal_steps)``, which reaches the cap after
      ``cap * anneal_steps`` updates.

    ``anneal_steps == 0`` gives the constant ``cap``.

    Args:
      step: scalar integer tensor, number of updates done.
      cap: maximum beta.
      anneal_steps: updates of the ramp.
      schedule: ``"linear"`` or ``"reference"``.

    Returns:
      scalar float32 beta.

    Raises:
      ValueError: if ``schedule`` is unknown.
    """
    if schedule not in BETA_SCHEDULES:
        raise ValueError(f"beta schedule must be one of {BETA_SCHEDULES}, got {schedule!r}")
    if anneal_steps <= 0:
        return tf.constant(cap, tf.float32)
    progress = tf.cast(step, tf.float32) / float(anneal_steps)
    if schedule == "linear":
        return cap * tf.minimum(1.0, progress)
    return tf.minimum(tf.constant(cap, tf.float32), progress)
