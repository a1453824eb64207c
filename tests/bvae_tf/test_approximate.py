"""The IVF approximate top-K (``bvae_tf.approximate``) behind ``approximate_top_k``."""

import numpy as np
import pytest
import tensorflow as tf

from bvae_tf import approximate
from bvae_tf import features as F
from bvae_tf import layers as L
from bvae_tf import model as Mo

from .conftest import BEHAVIORS, NUM_ITEMS

pytestmark = pytest.mark.unit


def _model(batch, **overrides):
    config = Mo.BVAEConfig(behaviors=BEHAVIORS, num_items=NUM_ITEMS, latent_dim=8, **overrides)
    model = Mo.build_model(config, optimizer_jit_compile=False)
    model(batch)
    return model


def _masked_logits(model, batch):
    logits = model(batch)
    out = {}
    for b in BEHAVIORS:
        masked = logits[b].numpy().copy()
        seen = batch[F.items_key(b)]
        masked[seen.indices.numpy()[:, 0], seen.values.numpy()] = -np.inf
        out[b] = masked
    return out


def test_probing_every_leaf_equals_the_exact_ranking(tiny_batch):
    model = _model(tiny_batch, approximate_top_k=1.0)
    exact = model.recommend(tiny_batch, k=7)
    model.attach_approximate_top_k()
    assert [ix.num_probed for ix in model.approximate_indexes] == [5, 5, 5]  # round(sqrt(30))
    approx = model.recommend(tiny_batch, k=7)
    for b in BEHAVIORS:
        # Distinct random logits: no ties, so the same items in the same order.
        np.testing.assert_array_equal(approx[b][1], exact[b][1])
        np.testing.assert_allclose(approx[b][0], exact[b][0], rtol=1e-6, atol=1e-6)


def test_a_partial_probe_returns_exact_scores_of_unseen_items_only(tiny_batch):
    model = _model(tiny_batch)
    masked = _masked_logits(model, tiny_batch)
    model.attach_approximate_top_k(probe=0.4)
    assert [ix.num_probed for ix in model.approximate_indexes] == [2, 2, 2]  # ceil(0.4 * 5)
    recs = model.recommend(tiny_batch, k=4)
    for b in BEHAVIORS:
        scores, items = (t.numpy() for t in recs[b])
        assert items.dtype == np.int64 and scores.shape == items.shape == (len(masked[b]), 4)
        assert np.all(np.diff(scores, axis=1) <= 0)  # descending
        # Leaves are added while the user's own items would leave fewer than k: every
        # returned item is a real one, never one the user already did under this
        # behavior, and its score is the item's exact logit (only which items get
        # scored is approximate).
        assert np.all(items >= 0)
        np.testing.assert_allclose(
            scores, np.take_along_axis(masked[b], items, 1), rtol=1e-6, atol=1e-6
        )
        assert np.all(np.isfinite(scores))


def _clustered_decoder(num_items=2000, groups=40, seed=0):
    rng = np.random.default_rng(seed)
    decoder = L.ItemDecoder(num_items, 16, seed=0)
    decoder.build()
    centres = rng.standard_normal((groups, 16)).astype(np.float32)
    noise = 0.05 * rng.standard_normal((num_items, 16))
    decoder.item_embeddings.assign(centres[rng.integers(0, groups, num_items)] + noise)
    decoder.item_bias.assign(0.1 * rng.standard_normal(num_items).astype(np.float32))
    return decoder, rng


def _rows(per_user: list[list[int]]) -> L.SparseRows:
    rows = [u for u, items in enumerate(per_user) for _ in items]
    cols = [i for items in per_user for i in items]
    return L.SparseRows(
        tf.constant(rows, tf.int64),
        tf.constant(cols, tf.int64),
        tf.constant(len(per_user), tf.int64),
    )


def test_excluding_every_item_of_the_nearest_leaves_probes_further():
    decoder, rng = _clustered_decoder()
    index = approximate.ApproximateTopK(decoder, 0.05)
    query = rng.standard_normal((1, 16)).astype(np.float32)
    augmented = np.concatenate([query, [[1.0]]], axis=1)
    leaf_scores = augmented @ index.centroids.numpy().T + index.centroid_offsets.numpy()
    nearest = np.argsort(-leaf_scores[0])[: index.num_probed]
    offsets, order = index.leaf_offsets.numpy(), index.item_order.numpy()
    probed = [int(i) for leaf in nearest for i in order[offsets[leaf] : offsets[leaf + 1]]]
    scores, items = index.query_with_exclusions(tf.constant(query), _rows([probed]), 10)
    assert len(set(items.numpy()[0])) == 10 and not set(items.numpy()[0]) & set(probed)
    logits = decoder(tf.constant(query)).numpy()[0]
    np.testing.assert_allclose(scores.numpy()[0], logits[items.numpy()[0]], rtol=1e-6)
    # A user who did all but 2 items gets those 2, then item -1 at -inf.
    everything_but_two = [i for i in range(2000) if i not in (5, 7)]
    scores, items = index.query_with_exclusions(tf.constant(query), _rows([everything_but_two]), 4)
    assert sorted(items.numpy()[0][:2]) == [5, 7] and list(items.numpy()[0][2:]) == [-1, -1]
    assert np.all(np.isfinite(scores.numpy()[0][:2])) and np.all(scores.numpy()[0][2:] == -np.inf)


def test_recall_grows_with_the_probe_on_a_clustered_catalog():
    """2,000 items in 40 tight groups: probing half of the ~45 leaves finds most of
    the exact top 10, probing all finds all of it."""
    decoder, rng = _clustered_decoder()
    queries = tf.constant(rng.standard_normal((50, 16)), tf.float32)
    none = _rows([[] for _ in range(50)])
    exact = np.argsort(-decoder(queries).numpy(), axis=1)[:, :10]
    recall = {}
    for probe in (0.1, 0.5, 1.0):
        _, items = approximate.ApproximateTopK(decoder, probe).query_with_exclusions(
            queries, none, 10
        )
        hits = [len(set(a) & set(e)) for a, e in zip(items.numpy(), exact, strict=True)]
        recall[probe] = np.mean(hits) / 10
    assert recall[1.0] == 1.0
    assert recall[0.5] >= 0.9
    assert recall[0.1] <= recall[0.5]


def test_the_index_is_seeded_and_validated(tiny_batch):
    model = _model(tiny_batch)
    a = approximate.ApproximateTopK(model.decoders[0], 0.5, seed=3)
    b = approximate.ApproximateTopK(model.decoders[0], 0.5, seed=3)
    np.testing.assert_array_equal(a.item_order.numpy(), b.item_order.numpy())
    np.testing.assert_array_equal(a.centroids.numpy(), b.centroids.numpy())
    offsets = a.leaf_offsets.numpy()
    assert offsets[0] == 0 and offsets[-1] == NUM_ITEMS and np.all(np.diff(offsets) >= 0)
    assert sorted(a.item_order.numpy()) == list(range(NUM_ITEMS))
    with pytest.raises(ValueError, match="probe must be in"):
        approximate.ApproximateTopK(model.decoders[0], 0.0)
    with pytest.raises(ValueError, match="num_leaves must be in"):
        approximate.ApproximateTopK(model.decoders[0], 0.5, num_leaves=NUM_ITEMS + 1)
    with pytest.raises(ValueError, match="needs a probe share"):
        model.attach_approximate_top_k()
    for bad in (-0.1, 1.5, True, "0.1"):
        with pytest.raises(ValueError, match="approximate_top_k"):
            Mo.BVAEConfig(behaviors=BEHAVIORS, num_items=NUM_ITEMS, approximate_top_k=bad)
    with pytest.raises(ValueError, match="item_path"):
        Mo.BVAEConfig(
            behaviors=BEHAVIORS, num_items=NUM_ITEMS, approximate_top_k=0.1, item_path=True
        )


def test_a_saved_function_serves_from_the_index_batch_one_and_zero(tiny_batch, tmp_path):
    """Standard ops only: the index travels in a SavedModel and answers after a reload
    in this process (no custom op library), for one user and for none."""
    model = _model(tiny_batch, approximate_top_k=0.6)
    model.attach_approximate_top_k()
    expected = model.recommend(tiny_batch, k=3)
    spec = {F.items_key(b): tf.SparseTensorSpec([None, None], tf.int64) for b in BEHAVIORS}
    module = tf.Module()
    module.model = model
    module.serve = tf.function(
        lambda batch: {b: v[1] for b, v in model.recommend(batch, k=3).items()},
        input_signature=[spec],
    )
    tf.saved_model.save(module, str(tmp_path / "m"))
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    one = loaded.serve(
        {k: tf.sparse.slice(v, [2, 0], [1, v.dense_shape[1]]) for k, v in tiny_batch.items()}
    )
    empty = {
        k: tf.SparseTensor(tf.zeros([0, 2], tf.int64), tf.zeros([0], tf.int64), [0, 0])
        for k in tiny_batch
    }
    zero = loaded.serve(empty)
    for b in BEHAVIORS:
        np.testing.assert_array_equal(one[b][0], expected[b][1][2])
        assert zero[b].shape == (0, 3)
