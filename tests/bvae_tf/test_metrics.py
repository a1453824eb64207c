"""Ranking metrics: hand-worked values, tie-breaking, exclusions, independent checks."""

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp

from bvae_tf import metrics as M

from .conftest import runs_after

pytestmark = pytest.mark.unit


def _csr(rows_of_items, m):
    rows = [r for r, items in enumerate(rows_of_items) for _ in items]
    cols = [c for items in rows_of_items for c in items]
    return sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(rows_of_items), m))


def test_recall_is_hits_over_heldout():
    # K=20, 50 held-out items, 10 of them at ranks 1..10, the rest below the top 20.
    ranks = np.concatenate([np.arange(1, 11), np.full(40, np.inf)])
    out = M.metrics_from_ranks(np.zeros(50, int), ranks, np.array([50]), ks=(20,))
    assert out["recall@20"][0] == pytest.approx(10 / 50)  # 0.2
    assert out["precision@20"][0] == pytest.approx(10 / 20)
    assert out["hit_rate@20"][0] == 1.0


def test_idcg_over_min_k_and_heldout():
    # 5 held-out, K=10, one hit at rank 1: DCG = 1,
    # IDCG = 1 + 1/log2(3) + 1/log2(4) + 1/log2(5) + 1/log2(6) = 2.9485 -> 0.3391.
    ranks = np.array([1.0, np.inf, np.inf, np.inf, np.inf])
    out = M.metrics_from_ranks(np.zeros(5, int), ranks, np.array([5]), ks=(10,))
    assert out["ndcg@10"][0] == pytest.approx(0.3391, abs=1e-4)


def test_hand_worked_scores():
    # Scores of 6 items; item 0 is a train item (excluded), items 2 and 4 are held out.
    # Ranking without item 0: 1 (0.8), 2 (0.7), 3 (0.5), 4 (0.4), 5 (0.1).
    scores = np.array([[0.9, 0.8, 0.7, 0.5, 0.4, 0.1]], np.float32)
    result = M.ranking_metrics(scores, _csr([[2, 4]], 6), _csr([[0]], 6), ks=(2, 5))
    # @2: hit at rank 2 -> P = 1/2, R = 1/2, NDCG = (1/log2 3) / (1 + 1/log2 3).
    assert result.metrics["precision@2"] == pytest.approx(0.5)
    assert result.metrics["recall@2"] == pytest.approx(0.5)
    assert result.metrics["ndcg@2"] == pytest.approx(0.63093 / 1.63093, abs=1e-5)
    # @5: hits at ranks 2 and 4 -> NDCG = (1/log2 3 + 1/log2 5) / (1 + 1/log2 3).
    assert result.metrics["ndcg@5"] == pytest.approx((0.63093 + 0.43068) / 1.63093, abs=1e-5)
    assert result.metrics["hit_rate@5"] == 1.0


def test_excluded_top_item_is_removed_before_top_k():
    # The train item has the top score; the held-out item is second: after exclusion
    # it is ranked first. Without exclusion it would be second.
    scores = np.array([[5.0, 4.0, 1.0, 0.0]], np.float32)
    excluded = M.ranking_metrics(scores, _csr([[1]], 4), _csr([[0]], 4), ks=(1,))
    assert excluded.metrics["hit_rate@1"] == 1.0
    assert excluded.metrics["ndcg@1"] == 1.0
    not_excluded = M.ranking_metrics(scores, _csr([[1]], 4), None, ks=(1,))
    assert not_excluded.metrics["hit_rate@1"] == 0.0


def test_excluded_heldout_item_counts_but_never_hits():
    scores = np.array([[5.0, 4.0, 1.0, 0.0]], np.float32)
    result = M.ranking_metrics(scores, _csr([[0, 1]], 4), _csr([[0]], 4), ks=(1,))
    assert result.metrics["recall@1"] == pytest.approx(0.5)


def test_ties_never_favour_the_model():
    scores = np.zeros((3, 50), np.float32)
    heldout = _csr([[0, 1, 2], [49], [0]], 50)
    result = M.ranking_metrics(scores, heldout, ks=M.DEFAULT_KS)
    for key, value in result.metrics.items():
        assert value == 0.0, key
    rows, ranks = M.heldout_ranks(scores, heldout)
    # The held-out items come after the 47 (resp. 49) tied non-held-out items.
    assert sorted(ranks[rows == 0]) == [48, 49, 50]
    assert list(ranks[rows == 1]) == [50]


def test_tie_break_is_deterministic_and_partial_ties_are_pessimistic():
    # Item 1 (held out) ties with item 2 (not held out): the held-out item goes second.
    scores = np.array([[3.0, 2.0, 2.0, 1.0]], np.float32)
    _, ranks = M.heldout_ranks(scores, _csr([[1]], 4))
    assert list(ranks) == [3.0]
    # Two tied held-out items take consecutive ranks in item order.
    _, ranks = M.heldout_ranks(scores, _csr([[1, 2]], 4))
    assert list(ranks) == [2.0, 3.0]


def test_nan_scores_are_misses_and_rank_above_heldout():
    scores = np.array([[np.nan, 1.0, 0.5, np.nan]], np.float32)
    _, ranks = M.heldout_ranks(scores, _csr([[1, 3]], 4))
    assert list(ranks) == [3.0, np.inf]  # two NaN items count as +inf; item 3 is a miss


def test_users_without_heldout_are_counted_and_never_nan():
    scores = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    result = M.ranking_metrics(scores, _csr([[1], [], [2, 3], []], 10))
    assert result.num_users == 2 and result.num_excluded == 2
    assert all(math.isfinite(v) for v in result.metrics.values())
    empty = M.ranking_metrics(scores, _csr([[], [], [], []], 10))
    assert empty.num_users == 0 and all(v == 0.0 for v in empty.metrics.values())


def test_unknown_heldout_ids_count_in_denominators():
    scores = np.array([[3.0, 2.0, 1.0]], np.float32)
    # One known held-out item at rank 1 plus 3 unknown ids: |H| = 4.
    result = M.ranking_metrics(scores, _csr([[0]], 3), ks=(5,), num_unknown=np.array([3]))
    assert result.metrics["recall@5"] == pytest.approx(0.25)
    idcg = sum(1 / math.log2(r + 1) for r in range(1, 5))
    assert result.metrics["ndcg@5"] == pytest.approx(1 / idcg)


def test_bad_ks_rejected():
    with pytest.raises(ValueError, match="ks"):
        M.metrics_from_ranks(np.zeros(0, int), np.zeros(0), np.zeros(1, int), ks=(0,))


def _independent(scores, heldout, excluded, k):
    """Textbook metrics by sorting every row: (-score, held-out last, item index)."""
    n, m = scores.shape
    totals = {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "hit_rate": 0.0}
    users = 0
    for u in range(n):
        relevant = set(heldout[u].indices.tolist())
        if not relevant:
            continue
        users += 1
        banned = set(excluded[u].indices.tolist()) if excluded is not None else set()
        items = [i for i in range(m) if i not in banned]
        ranked = sorted(items, key=lambda i: (-scores[u, i], i in relevant, i))
        gains = [1.0 if i in relevant else 0.0 for i in ranked[:k]]
        dcg = sum(g / math.log2(r + 2) for r, g in enumerate(gains))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(relevant))))
        hits = sum(gains)
        totals["precision"] += hits / k
        totals["recall"] += hits / len(relevant)
        totals["ndcg"] += dcg / idcg
        totals["hit_rate"] += float(hits > 0)
    return {key: value / users for key, value in totals.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_independent_sort_on_random_data_with_ties(seed):
    rng = np.random.default_rng(seed)
    n, m = 40, 60
    # Few distinct values -> many ties.
    scores = rng.integers(0, 6, size=(n, m)).astype(np.float32)
    heldout = sp.random(n, m, density=0.08, random_state=seed, format="csr")
    excluded = sp.random(n, m, density=0.1, random_state=seed + 100, format="csr")
    excluded = excluded - excluded.multiply(heldout > 0)
    excluded.eliminate_zeros()
    result = M.ranking_metrics(scores, heldout, excluded, ks=(1, 5, 10))
    for k in (1, 5, 10):
        expected = _independent(scores, heldout, excluded, k)
        for name, value in expected.items():
            assert result.metrics[f"{name}@{k}"] == pytest.approx(value, abs=1e-12), (name, k)


def test_ndcg_matches_sklearn_without_ties():
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(3)
    scores = rng.normal(size=(30, 25))
    relevance = (rng.random((30, 25)) < 0.15).astype(float)
    relevance[relevance.sum(axis=1) == 0, 0] = 1.0
    result = M.ranking_metrics(scores, sp.csr_matrix(relevance), ks=(5,))
    expected = np.mean([ndcg_score(relevance[[u]], scores[[u]], k=5) for u in range(30)])
    assert result.metrics["ndcg@5"] == pytest.approx(expected, abs=1e-12)


# m = 40 ranks against an exact k-th score (one block per item); m = 400 against the
# block-maxima bound of kth_lower_bound (4 * max_k blocks of several items).
@pytest.mark.parametrize("m, max_k, levels", [(40, 15, 4), (400, 5, 600)])
def test_tensorflow_ranks_equal_numpy_ranks(m, max_k, levels):
    import tensorflow as tf

    from bvae_tf import layers as L

    rng = np.random.default_rng(7)
    n = 25
    scores = rng.integers(0, levels, size=(n, m)).astype(np.float32)  # ties
    scores[3, 5] = np.nan
    scores[4, :] = np.nan
    heldout = sp.random(n, m, density=0.15, random_state=1, format="lil")
    heldout[3, 5] = 1.0
    heldout = heldout.tocsr()
    excluded = sp.random(n, m, density=0.2, random_state=2, format="csr")
    rows, ranks = M.heldout_ranks(scores, heldout, excluded)

    def rows_of(matrix):
        coo = sp.csr_matrix(matrix).tocoo()
        return L.SparseRows(
            tf.constant(coo.row, tf.int64), tf.constant(coo.col, tf.int64), tf.constant(n, tf.int64)
        )

    tf_rows, tf_ranks = M.candidate_ranks(
        tf.constant(scores), rows_of(excluded), rows_of(heldout), max_k
    )
    # Same multiset of ranks <= max_k per user (ranks above max_k may be omitted).
    expected = sorted((int(r), int(k)) for r, k in zip(rows, ranks, strict=True) if k <= max_k)
    got = sorted(
        (int(r), int(k))
        for r, k in zip(tf_rows.numpy(), tf_ranks.numpy(), strict=True)
        if k <= max_k
    )
    assert got == expected
    assert len(expected) > 10
    # Exactly the held-out items scoring at least the row's max_k-th best are returned.
    ranked = np.where(np.isnan(scores), np.inf, scores)
    ranked[excluded.toarray() > 0] = -np.inf
    kth = -np.sort(-ranked, axis=1)[:, max_k - 1]
    coo = heldout.tocoo()
    keep = (ranked[coo.row, coo.col] >= kth[coo.row]) & (ranked[coo.row, coo.col] > -np.inf)
    keep &= ~np.isnan(scores[coo.row, coo.col])
    assert sorted(tf_rows.numpy().tolist()) == sorted(coo.row[keep].tolist())


@pytest.mark.parametrize("m, k", [(13465, 20), (37, 5), (7, 10), (1, 1)])
def test_kth_lower_bound_never_exceeds_the_kth_score(m, k):
    rng = np.random.default_rng(m)
    scores = rng.normal(size=(6, m)).astype(np.float32)
    scores[1, : m // 2] = -np.inf
    scores[2, :] = -np.inf
    scores[3] = np.round(scores[3])  # ties
    bound = M.kth_lower_bound(scores, k).numpy()
    kth = -np.sort(-scores, axis=1)[:, min(k, m) - 1]
    assert bound.shape == (6,)
    assert np.all(bound <= kth)
    if m > 4 * k:
        # Tight: the bound leaves few more than k entries above it on random rows.
        above = (scores[0] >= bound[0]).sum()
        assert k <= above <= 2 * k


def test_chunked_ranks_equal_whole_row_ranks_ties_nan_and_exclusions():
    """Scoring the items a chunk at a time (bounded memory) gives every held-out
    item the same rank as the whole row, ties, NaN scores and exclusions included."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    n, m = 20, 37
    scores = rng.integers(0, 4, size=(n, m)).astype(np.float32)  # many ties
    scores[2, 7] = np.nan
    scores[5, :] = np.nan
    heldout = sp.random(n, m, density=0.15, random_state=4, format="lil")
    heldout[2, 7] = 1.0
    excluded = sp.random(n, m, density=0.2, random_state=5, format="lil")
    excluded[3, :] = heldout[3, :]  # held-out items that are also excluded
    unknown = rng.integers(0, 2, size=n)

    def ragged(matrix):
        return tf.RaggedTensor.from_row_lengths(
            np.concatenate([np.flatnonzero(row) for row in matrix.toarray()]).astype(np.int64),
            np.asarray((matrix.toarray() != 0).sum(axis=1), np.int64),
        )

    whole = M.behavior_ranks(
        tf.constant(scores), ragged(excluded), ragged(heldout), tf.constant(unknown)
    )
    rows, ranks = M.heldout_ranks(scores, heldout.tocsr(), excluded.tocsr())
    expected = sorted((int(r), int(k)) for r, k in zip(rows, ranks, strict=True) if k < np.inf)
    assert (
        sorted(zip(whole[0].numpy().tolist(), whole[1].numpy().tolist(), strict=True)) == expected
    )
    distinct = rng.permutation(n * m).reshape(n, m).astype(np.float32)  # no ties: no pass 2
    distinct[2, 7] = np.nan
    for values, max_k in itertools.product((scores, distinct), (None, 1, 3, 36, 37, 50)):
        want = M.behavior_ranks(
            tf.constant(values), ragged(excluded), ragged(heldout), tf.constant(unknown), max_k
        )
        for chunk in (1, 5, 10, 36, 37, 100):
            got = M.chunked_behavior_ranks(
                lambda start, stop, values=values: tf.constant(values[:, start:stop]),
                m,
                chunk,
                items=ragged(excluded),
                heldout=ragged(heldout),
                num_unknown=tf.constant(unknown),
                max_k=max_k,
            )
            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(
                    g.numpy(), w.numpy(), err_msg=f"chunk {chunk}, max_k {max_k}"
                )
        if max_k == 3 and values is scores:  # the cut leaves out those below the 3rd best
            assert 0 < len(want[1]) < len(whole[1])
    with pytest.raises(ValueError, match="chunk_size"):
        M.chunked_behavior_ranks(lambda a, b: None, m, 0, items=None, heldout=None)


def test_chunked_ranks_score_one_chunk_after_the_other_in_a_graph():
    """Both passes score the chunks in turn (a control dependency on the previous
    chunk), so a graph never holds every chunk's scores at once."""
    import tensorflow as tf

    m, chunk = 37, 10
    table = tf.constant(np.arange(4 * m, dtype=np.float32).reshape(4, m))
    spec = tf.RaggedTensorSpec([None, None], tf.int64, ragged_rank=1)

    @tf.function(input_signature=[spec, spec])
    def ranks(items, heldout):
        def score(start, stop):
            return tf.identity(table[:, start:stop], name=f"chunk_{start}")

        return M.chunked_behavior_ranks(score, m, chunk, items=items, heldout=heldout)

    graph = ranks.get_concrete_function().graph
    scored = [op for op in graph.get_operations() if op.name.startswith("chunk_")]
    assert len(scored) == 2 * 4  # two passes over 4 chunks
    assert all(runs_after(op, before) for before, op in itertools.pairwise(scored))


def test_evaluate_scores_a_chunked_model_as_the_whole_catalog(tiny_data):
    """A BVAE with top_k_chunk_size is evaluated chunk by chunk (its full logits are
    never built) with the same numbers as the same weights scored whole."""
    from bvae_tf import data as D
    from bvae_tf import features as F
    from bvae_tf import model as model_lib

    def build(chunk):
        config = model_lib.BVAEConfig(
            behaviors=tiny_data.behaviors,
            num_items=tiny_data.num_items,
            latent_dim=8,
            top_k_chunk_size=chunk,
        )
        return model_lib.BVAE(config)

    whole, chunked = build(0), build(7)
    assert whole.eval_chunk_size is None and chunked.eval_chunk_size == 7
    dataset = D.eval_dataset(tiny_data, F.EVAL, batch_size=9)
    expected = M.evaluate(whole, dataset)
    got = M.evaluate(chunked, dataset)
    for b in tiny_data.behaviors:
        assert got.behaviors[b].num_users == expected.behaviors[b].num_users > 0
        for key, value in expected.behaviors[b].metrics.items():
            assert got.behaviors[b].metrics[key] == pytest.approx(value, abs=1e-12), (b, key)


def test_evaluate_does_not_keep_a_dropped_model_alive(tiny_data):
    """The cached ranking function of a model must not hold the model: an experiment
    that fits and evaluates model after model (EASE per target and lambda) would keep
    every one's weights (on UB, 3.8 GB each)."""
    import gc
    import weakref

    from bvae_tf import data as D
    from bvae_tf import features as F
    from bvae_tf import model as model_lib

    def evaluated_model():  # its frame, not the test's, holds the model
        model = model_lib.BVAE(
            model_lib.BVAEConfig(
                behaviors=tiny_data.behaviors, num_items=tiny_data.num_items, latent_dim=4
            )
        )
        M.evaluate(model, D.eval_dataset(tiny_data, F.EVAL, batch_size=9))
        return weakref.ref(model), weakref.ref(model.decoders[0].weights[0])

    dropped, weights = evaluated_model()
    gc.collect()
    assert dropped() is None and weights() is None


def test_gather_rows_keeps_and_renumbers_the_chosen_rows():
    import tensorflow as tf

    from bvae_tf import layers as L

    rows = L.SparseRows(
        tf.constant([0, 0, 2, 3, 3, 5], tf.int64),
        tf.constant([4, 7, 1, 0, 9, 2], tf.int64),
        tf.constant(6, tf.int64),
    )
    got = L.gather_rows(rows, tf.constant([0, 3, 4, 5], tf.int64))
    assert got.rows.numpy().tolist() == [0, 0, 1, 1, 3]
    assert got.cols.numpy().tolist() == [4, 7, 0, 9, 2]
    assert int(got.batch_size) == 4
    empty = L.gather_rows(rows, tf.zeros([0], tf.int64))
    assert empty.rows.shape[0] == 0 and int(empty.batch_size) == 0


def test_evaluate_decodes_only_users_with_heldout_items_with_the_same_numbers(tiny_data):
    """BVAE's row_scorer decodes each behavior for the users with a held-out item of
    it; the metrics and per-user values equal those of the full logits (item path
    and boost included) and of the numpy definition."""
    import tensorflow as tf

    from bvae_tf import data as D
    from bvae_tf import features as F
    from bvae_tf import model as model_lib

    config = model_lib.BVAEConfig(
        behaviors=tiny_data.behaviors,
        num_items=tiny_data.num_items,
        latent_dim=8,
        item_path=True,
        cross_behavior_boost=[0.5] * len(tiny_data.behaviors),
    )
    model = model_lib.BVAE(config)
    dataset = D.eval_dataset(tiny_data, F.EVAL, batch_size=9)
    batch = next(iter(dataset))
    logits = model(batch, training=False)
    for b in tiny_data.behaviors:
        keep = tf.constant([1, 4, 5], tf.int64)
        np.testing.assert_allclose(
            model.row_scorer(batch)(b, keep).numpy(),
            tf.gather(logits[b], keep).numpy(),
            rtol=1e-6,
            atol=1e-6,
        )

    class Whole:  # the same model without row_scorer: full [B, m] logits
        behaviors = model.behaviors

        def __call__(self, inputs, training=False):
            return model(inputs, training=training)

    per_user = ("ndcg@5", "recall@20")
    got = M.evaluate(model, dataset, per_user=per_user)
    want = M.evaluate(Whole(), dataset, per_user=per_user)
    skipped = 0
    for b in tiny_data.behaviors:
        heldout = tiny_data.matrix(F.EVAL, b)
        users = tiny_data.split_users(F.EVAL, tiny_data.behaviors)
        skipped += int((np.diff(heldout[users].indptr) == 0).sum())
        assert got.behaviors[b].num_users == want.behaviors[b].num_users > 0
        for key, value in want.behaviors[b].metrics.items():
            assert got.behaviors[b].metrics[key] == pytest.approx(value, abs=1e-12), (b, key)
        for key in per_user:
            np.testing.assert_allclose(got.per_user[b][key], want.per_user[b][key], atol=1e-12)
    assert skipped > 0  # some rows have nothing held out in some behavior
    # And both equal the numpy definition on the whole score matrix.
    users = tiny_data.split_users(F.EVAL, tiny_data.behaviors)
    scores = {b: [] for b in tiny_data.behaviors}
    for part in dataset:
        for b, x in model(part, training=False).items():
            scores[b].append(x.numpy())
    for b in tiny_data.behaviors:
        reference = M.ranking_metrics(
            np.concatenate(scores[b]),
            tiny_data.matrix(F.EVAL, b)[users],
            excluded=tiny_data.matrix(F.TRAIN, b)[users],
        )
        assert got.behaviors[b].metrics["ndcg@5"] == pytest.approx(
            reference.metrics["ndcg@5"], abs=1e-9
        )
