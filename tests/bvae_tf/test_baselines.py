"""Baselines: popularity, cross-behavior repeat, EASE (bvae_tf.baselines)."""

import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf

from bvae_tf import features as F
from bvae_tf import metrics as M
from bvae_tf.baselines import ease as E
from bvae_tf.baselines import floors
from tests.bvae_tf.conftest import sparse_batch

pytestmark = pytest.mark.unit

BEHAVIORS = ("purchase", "click")


def _batch(train: dict) -> dict:
    return sparse_batch({F.items_key(b): m for b, m in train.items()})


def planted(seed: int = 0, num_users: int = 120, num_items: int = 40):
    """Four item groups of 10; each user lives in one group. Train: 4 clicks and 1
    purchase in the group; held out: 1 purchase in the group that the user also clicked,
    and 1 purchase in the group that the user did not touch. Popularity is flat."""
    rng = np.random.default_rng(seed)
    click = np.zeros((num_users, num_items), np.float32)
    buy = np.zeros_like(click)
    held = np.zeros_like(click)
    for u in range(num_users):
        group = np.arange(10) + 10 * (u % 4)
        items = rng.permutation(group)
        click[u, items[:4]] = 1
        buy[u, items[4]] = 1
        held[u, items[0]] = 1  # clicked, not bought: the repeat signal
        held[u, items[5]] = 1  # untouched item of the user's group: co-occurrence
    train = {"purchase": sp.csr_matrix(buy), "click": sp.csr_matrix(click)}
    return train, sp.csr_matrix(held)


def _ndcg(model, train, held, behavior="purchase"):
    scores = model(_batch(train))[behavior].numpy()
    return M.ranking_metrics(scores, held, excluded=train[behavior]).metrics["ndcg@5"]


def test_popularity_scores_are_train_counts_scaled_below_one():
    train = {
        "purchase": sp.csr_matrix(np.array([[1, 0, 1], [1, 0, 0]], np.float32)),
        "click": sp.csr_matrix(np.array([[0, 1, 0], [0, 1, 0]], np.float32)),
    }
    model = floors.Popularity(BEHAVIORS, 3).fit(train)
    scores = model(_batch(train))
    np.testing.assert_allclose(scores["purchase"].numpy(), [[2 / 3, 0, 1 / 3]] * 2, rtol=1e-6)
    np.testing.assert_allclose(scores["click"].numpy(), [[0, 2 / 3, 0]] * 2, rtol=1e-6)


def test_repeat_ranks_other_behavior_items_first_then_popularity():
    train = {
        # item 0 is the most bought; user 1 clicked items 2 and 3.
        "purchase": sp.csr_matrix(np.array([[1, 0, 0, 1], [1, 0, 0, 0]], np.float32)),
        "click": sp.csr_matrix(np.array([[0, 0, 0, 0], [0, 0, 1, 1]], np.float32)),
    }
    model = floors.CrossBehaviorRepeat(BEHAVIORS, 4).fit(train)
    scores, items = model.recommend(_batch(train), k=3)["purchase"]
    # user 1: clicked 3 (bought by 1 user) before clicked 2 (by none), then popularity;
    # own purchase (item 0) excluded.
    assert items.numpy()[1].tolist() == [3, 2, 1]
    assert np.isfinite(scores.numpy()[1]).all()


def test_ease_with_one_behavior_is_stecks_closed_form():
    rng = np.random.default_rng(1)
    x = (rng.random((50, 12)) < 0.3).astype(np.float64)
    model = E.EASE(("click",), 12).fit({"click": sp.csr_matrix(x)}, l2=5.0)
    p = np.linalg.inv(x.T @ x + 5.0 * np.eye(12))
    expected = np.eye(12) - p / np.diag(p)[None, :]
    np.testing.assert_allclose(model.item_item[0].numpy(), expected, atol=1e-5)
    assert np.abs(np.diag(model.item_item[0].numpy())).max() < 1e-5


@pytest.mark.parametrize("block", [1024, 7])
@pytest.mark.parametrize("diagonal", E.DIAGONALS)
def test_ease_solves_its_least_squares_problem(diagonal, block, monkeypatch):
    """The fitted B_b has zero gradient of ||Y - X B||^2 + l2 ||B||^2 (off the
    diagonal when it is constrained), written in one block or several."""
    monkeypatch.setattr(E, "_BLOCK", block)
    train, _ = planted(num_users=40, num_items=40)
    model = E.EASE(BEHAVIORS, 40).fit(train, l2=3.0, diagonal=diagonal)
    x = (train["purchase"] + train["click"]).toarray().clip(0, 1).astype(np.float64)
    y = train["purchase"].toarray().astype(np.float64)
    b = model.item_item[0].numpy().astype(np.float64)
    gradient = x.T @ (x @ b - y) + 3.0 * b
    if diagonal == "zero":
        assert np.abs(np.diag(b)).max() < 1e-5
        gradient[np.diag_indices_from(gradient)] = 0
    assert np.abs(gradient).max() < 1e-3


@pytest.fixture
def inversions(monkeypatch) -> list:
    """The shapes of the matrices ``E.spd_inverse`` inverts, appended as it runs."""
    inverse, shapes = E.spd_inverse, []

    def counted(matrix):
        shapes.append(matrix.shape)
        return inverse(matrix)

    monkeypatch.setattr(E, "spd_inverse", counted)
    return shapes


def test_fit_grid_shares_one_inversion_per_l2_among_target_groups(inversions):
    train, _ = planted(num_users=40, num_items=40)
    path = E.fit_grid(
        BEHAVIORS, 40, train, [1.0, 3.0], diagonals=E.DIAGONALS, groups=[("click",), ("purchase",)]
    )
    fits = []
    for l2, diagonal, model in path:
        fits.append((l2, diagonal, model.targets, model.item_item[0].numpy()))
        del model
    assert len(inversions) == 2  # one per l2, not one per l2 and group
    assert [f[:3] for f in fits] == [
        (l2, d, (b,)) for l2 in (1.0, 3.0) for b in ("click", "purchase") for d in E.DIAGONALS
    ]
    for l2, diagonal, (b,), weights in fits:
        alone = E.EASE(BEHAVIORS, 40, targets=(b,)).fit(train, l2=l2, diagonal=diagonal)
        np.testing.assert_allclose(weights, alone.item_item[0].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="groups must be non-empty subsets"):
        E.fit_grid(BEHAVIORS, 40, train, [1.0], groups=[("cart",)])
    with pytest.raises(ValueError, match="l2 must be > 0"):
        E.fit_grid(BEHAVIORS, 40, train, [0.0])


@pytest.mark.parametrize("block", [1024, 7])
def test_factored_ease_scores_equal_the_dense_form_with_one_inversion_per_l2(
    block, monkeypatch, inversions
):
    monkeypatch.setattr(E, "_BLOCK", block)
    train, _ = planted(num_users=40, num_items=40)
    # Score other users than the fitted ones: x B_b holds for any input row.
    unseen, _ = planted(seed=3, num_users=16, num_items=40)
    batch = _batch(unseen)
    path = E.fit_factored(BEHAVIORS, 40, train, [1.0, 3.0], diagonals=E.DIAGONALS)
    fits = []
    for l2, diagonal, model in path:
        fits.append((l2, diagonal, {b: v.numpy() for b, v in model(batch).items()}))
    assert len(inversions) == 2  # one per l2 for both targets
    assert [f[:2] for f in fits] == [(l2, d) for l2 in (1.0, 3.0) for d in E.DIAGONALS]
    for l2, diagonal, scores in fits:
        dense = E.EASE(BEHAVIORS, 40).fit(train, l2=l2, diagonal=diagonal)(batch)
        assert set(scores) == set(BEHAVIORS)
        for b in BEHAVIORS:
            np.testing.assert_allclose(scores[b], dense[b].numpy(), atol=1e-5)
    model = E.FactoredEASE(BEHAVIORS, 40, targets=("click",))
    with pytest.raises(ValueError, match="scores only after fit_factored"):
        model(batch)
    with pytest.raises(NotImplementedError, match="not saved"):
        model.get_config()
    with pytest.raises(ValueError, match="targets must be a non-empty subset"):
        E.fit_factored(BEHAVIORS, 40, train, [1.0], targets=("cart",))
    with pytest.raises(ValueError, match="l2 must be > 0"):
        E.fit_factored(BEHAVIORS, 40, train, [-1.0])


def test_spd_inverse_rejects_a_singular_matrix():
    with pytest.raises(np.linalg.LinAlgError, match="Cholesky"):
        E.spd_inverse(np.zeros((3, 3)))


def test_fit_errors_name_the_problem():
    train, _ = planted()
    with pytest.raises(ValueError, match="l2 must be > 0"):
        E.EASE(BEHAVIORS, 40).fit(train, l2=0.0)
    with pytest.raises(ValueError, match="diagonal must be one of"):
        E.EASE(BEHAVIORS, 40).fit(train, l2=1.0, diagonal="none")
    with pytest.raises(ValueError, match=r"fit needs train matrices of \['click'\]"):
        floors.Popularity(BEHAVIORS, 40).fit({"purchase": train["purchase"]})
    with pytest.raises(ValueError, match="has 40 items, the model 41"):
        floors.Popularity(BEHAVIORS, 41).fit(train)
    with pytest.raises(ValueError, match="targets must be a non-empty subset"):
        E.EASE(BEHAVIORS, 40, targets=("cart",))


def test_models_learn_the_planted_structure_above_popularity():
    train, held = planted()
    popularity = _ndcg(floors.Popularity(BEHAVIORS, 40).fit(train), train, held)
    repeat = _ndcg(floors.CrossBehaviorRepeat(BEHAVIORS, 40).fit(train), train, held)
    ease_zero = _ndcg(E.EASE(BEHAVIORS, 40).fit(train, l2=1.0), train, held)
    ease_free = _ndcg(E.EASE(BEHAVIORS, 40).fit(train, l2=1.0, diagonal="free"), train, held)
    assert popularity < 0.2
    # The clicked held-out item sits among 4 clicked items: a hit in the top 4.
    assert repeat > popularity + 0.2
    # Zero diagonal: co-occurrence within the group finds both held-out items.
    assert ease_zero > popularity + 0.2
    # Free diagonal: also learns that clicked items get bought.
    assert ease_free > popularity + 0.2


@pytest.mark.parametrize(
    "make",
    [
        lambda train: floors.Popularity(BEHAVIORS, 40).fit(train),
        lambda train: floors.CrossBehaviorRepeat(BEHAVIORS, 40).fit(train),
        lambda train: E.EASE(BEHAVIORS, 40).fit(train, l2=2.0, diagonal="free"),
    ],
    ids=["popularity", "repeat", "ease"],
)
def test_all_zero_user_finite_scores_and_save_load_round_trip(make, tmp_path):
    train, _ = planted()
    model = make(train)
    empty = {b: sp.csr_matrix((3, 40), dtype=np.float32) for b in BEHAVIORS}
    scores = model(_batch(empty))
    for b in BEHAVIORS:
        assert scores[b].shape == (3, 40)
        assert np.isfinite(scores[b].numpy()).all()
    batch = _batch({b: m[:7] for b, m in train.items()})
    model.save(tmp_path / "model", save_traces=False)
    loaded = tf.keras.models.load_model(tmp_path / "model")
    assert type(loaded) is type(model)
    before, after = model(batch), loaded(batch)
    for b in BEHAVIORS:
        np.testing.assert_array_equal(before[b].numpy(), after[b].numpy())
    top = model.recommend(batch, k=5)
    for b in BEHAVIORS:
        own = train[b][:7].toarray() > 0
        items = top[b][1].numpy()
        assert not own[np.arange(7)[:, None], items].any()


def test_recvae_learns_the_planted_structure_and_round_trips(tmp_path):
    from bvae_tf import training
    from bvae_tf.baselines import recvae

    train, held = planted(num_users=120, num_items=40)
    clicks = {"click": train["click"]}
    batch = _batch(clicks)
    held_clicks = sp.csr_matrix(held.toarray() * 0)
    # Held-out clicks: one more item of the user's group, never clicked.
    rng = np.random.default_rng(3)
    dense = held_clicks.toarray()
    for u in range(120):
        group = np.arange(10) + 10 * (u % 4)
        free = [i for i in group if train["click"][u, i] == 0]
        dense[u, rng.choice(free)] = 1
    held_clicks = sp.csr_matrix(dense)
    model = recvae.RecVAE("click", 40, hidden=32, latent=8, steps_per_pass=2, learning_rate=1e-2)
    model.prepare(batch)
    ds = tf.data.Dataset.from_tensors(batch).repeat()
    training.compile_model(model)
    model.fit(ds, epochs=1, steps_per_epoch=120, verbose=0)
    assert int(model.step.numpy()) == 120
    # The prior copy follows the encoder (copied at each decoder phase).
    old = model._encoder_variables(model.old_encoder)[0].numpy()
    assert not np.allclose(old, 0.0)
    scores = model(batch)["click"].numpy()
    ndcg = M.ranking_metrics(scores, held_clicks, excluded=train["click"]).metrics["ndcg@5"]
    flat = np.tile(
        floors.Popularity(("click",), 40).fit(clicks)(batch)["click"].numpy()[:1], (120, 1)
    )
    base = M.ranking_metrics(flat, held_clicks, excluded=train["click"]).metrics["ndcg@5"]
    assert ndcg > base + 0.1
    empty = _batch({"click": sp.csr_matrix((2, 40), dtype=np.float32)})
    assert np.isfinite(model(empty)["click"].numpy()).all()
    model.save(tmp_path / "m", save_traces=False)
    loaded = tf.keras.models.load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded(batch)["click"].numpy(), scores, rtol=1e-6)


def test_recvae_phases_update_one_part_at_a_time():
    from bvae_tf.baselines import recvae

    train, _ = planted(num_users=20, num_items=40)
    batch = _batch({"click": train["click"]})
    model = recvae.RecVAE("click", 40, hidden=16, latent=4, steps_per_pass=1, encoder_passes=2)
    model.prepare(batch)
    decoder = model.decoder.kernel.numpy().copy()
    encoder = model.encoder["mu"].kernel.numpy().copy()
    model.train_step(batch)  # encoder phase
    np.testing.assert_array_equal(model.decoder.kernel.numpy(), decoder)
    assert not np.array_equal(model.encoder["mu"].kernel.numpy(), encoder)
    model.train_step(batch)  # encoder phase
    encoder = model.encoder["mu"].kernel.numpy().copy()
    model.train_step(batch)  # decoder phase: the prior copies the encoder first
    np.testing.assert_array_equal(model.encoder["mu"].kernel.numpy(), encoder)
    np.testing.assert_array_equal(model.old_encoder["mu"].kernel.numpy(), encoder)
    assert not np.array_equal(model.decoder.kernel.numpy(), decoder)


def test_per_behavior_recvae_is_one_recvae_per_behavior_and_round_trips(tmp_path):
    from bvae_tf import training
    from bvae_tf.baselines import recvae

    train, _ = planted(num_users=30, num_items=40)
    batch = _batch(train)
    settings = dict(hidden=16, latent=4, steps_per_pass=2, learning_rate=1e-2, seed=5)
    model = recvae.PerBehaviorRecVAE(BEHAVIORS, 40, **settings)
    assert model.steps_per_epoch == 8  # (3 encoder passes + 1 decoder pass) * 2
    model.prepare(batch)
    ds = tf.data.Dataset.from_tensors(batch).repeat()
    logs = model.fit(ds, epochs=1, steps_per_epoch=model.steps_per_epoch, verbose=0).history
    assert set(logs) == {"loss", "purchase_loss", "click_loss"}
    scores = model(batch)
    # Each member is the single-behavior RecVAE that the experiment trains alone.
    for b in BEHAVIORS:
        alone = recvae.RecVAE(b, 40, **settings)
        alone.prepare(_batch({b: train[b]}))
        training.compile_model(alone)
        alone.fit(ds, epochs=1, steps_per_epoch=8, verbose=0)
        np.testing.assert_allclose(alone(batch)[b].numpy(), scores[b].numpy(), rtol=1e-5, atol=1e-5)
    empty = _batch({b: sp.csr_matrix((2, 40), dtype=np.float32) for b in BEHAVIORS})
    out = model(empty)
    assert all(out[b].shape == (2, 40) and np.isfinite(out[b].numpy()).all() for b in BEHAVIORS)
    model.save(tmp_path / "m", save_traces=False)
    loaded = tf.keras.models.load_model(tmp_path / "m")
    for b in BEHAVIORS:
        np.testing.assert_allclose(loaded(batch)[b].numpy(), scores[b].numpy(), rtol=1e-6)


def _held_clicks(train, seed=3):
    """One more, never clicked item of each user's group as the held-out click."""
    rng = np.random.default_rng(seed)
    n, m = train["click"].shape
    dense = np.zeros((n, m), np.float32)
    for u in range(n):
        group = np.arange(10) + 10 * (u % 4)
        free = [i for i in group if train["click"][u, i] == 0]
        dense[u, rng.choice(free)] = 1
    return sp.csr_matrix(dense)


def _with_users(batch, n):
    return {**batch, F.USER_INDEX: tf.range(n, dtype=tf.int64)}


def test_vaepp_learns_the_planted_structure_and_round_trips(tmp_path):
    from bvae_tf.baselines import vaepp

    train, held = planted()
    batch = _batch(train)
    popularity = _ndcg(floors.Popularity(BEHAVIORS, 40).fit(train), train, held)
    model = vaepp.VAEPlusPlus(
        BEHAVIORS, 40, latent=8, dropout=0.2, learning_rate=1e-2, anneal_steps=0, beta_cap=0.05
    )
    model.prepare(batch)
    model.fit(
        tf.data.Dataset.from_tensors(batch).repeat(), epochs=1, steps_per_epoch=200, verbose=0
    )
    assert int(model.anneal_step.numpy()) == 200
    assert _ndcg(model, train, held) > popularity + 0.2
    # One head per target, each with its own transfer gate in (0, 1).
    gates = model._forward(model._inputs(batch), training=False)
    for b in BEHAVIORS:
        g = gates[b]["gate"].numpy()
        assert g.shape == (120, 1) and ((g > 0) & (g < 1)).all()
    empty = _batch({b: sp.csr_matrix((3, 40), dtype=np.float32) for b in BEHAVIORS})
    for scores in model(empty).values():
        assert scores.shape == (3, 40) and np.isfinite(scores.numpy()).all()
    model.save(tmp_path / "m", save_traces=False)
    loaded = tf.keras.models.load_model(tmp_path / "m")
    assert loaded.targets == BEHAVIORS
    for b in BEHAVIORS:
        np.testing.assert_array_equal(loaded(batch)[b].numpy(), model(batch)[b].numpy())


def test_vaepp_one_target_scores_only_it_and_evaluates_by_default(tiny_data):
    from bvae_tf import data as D
    from bvae_tf.baselines import vaepp

    model = vaepp.VAEPlusPlus(tiny_data.behaviors, tiny_data.num_items, targets=("click",))
    valid = D.eval_dataset(tiny_data, F.EVAL)
    model.prepare(next(iter(valid)))
    assert set(model(next(iter(valid)))) == {"click"}
    # metrics.evaluate scores the model's targets, not all its inputs.
    assert set(M.evaluate(model, valid).behaviors) == {"click"}
    with pytest.raises(ValueError, match="targets must be a non-empty subset"):
        vaepp.VAEPlusPlus(tiny_data.behaviors, tiny_data.num_items, targets=("cart",))
    with pytest.raises(
        ValueError, match=r"invalid VAE\+\+ settings: dropout=1.0 \(must be in \[0, 1\)\)"
    ):
        vaepp.VAEPlusPlus(tiny_data.behaviors, tiny_data.num_items, dropout=1.0)


def test_ehcf_learns_the_planted_structure_with_transfer_along_the_chain():
    from bvae_tf.baselines import transductive as T

    train, held = planted()
    batch = _with_users(_batch(train), 120)
    popularity = _ndcg(floors.Popularity(BEHAVIORS, 40).fit(train), train, held)
    model = T.EHCF(BEHAVIORS, 40, 120, dropout=0.0)
    # The funnel: click feeds purchase.
    assert model.chain == ("click", "purchase")
    model.prepare()
    model.fit(
        tf.data.Dataset.from_tensors(batch).repeat(), epochs=1, steps_per_epoch=300, verbose=0
    )
    scores = model(batch)
    ndcg = M.ranking_metrics(scores["purchase"].numpy(), held, excluded=train["purchase"])
    assert ndcg.metrics["ndcg@5"] > popularity + 0.08
    # h_purchase is the transfer of h_click (eq. 4-5).
    h = model.prediction_vectors()
    w, r = model.transfer["click_to_purchase"]
    np.testing.assert_allclose(
        h["purchase"].numpy(), w.numpy() @ h["click"].numpy() + r.numpy(), rtol=1e-5, atol=1e-6
    )
    empty = _with_users(_batch({b: sp.csr_matrix((3, 40), dtype=np.float32) for b in BEHAVIORS}), 3)
    for s in model(empty).values():
        assert s.shape == (3, 40) and np.isfinite(s.numpy()).all()
    assert set(scores) == set(BEHAVIORS)


def test_ehcf_whole_data_loss_equals_the_explicit_sum_over_all_pairs():
    from bvae_tf.baselines import transductive as T

    train, _ = planted(num_users=12, num_items=40)
    batch = _with_users(_batch(train), 12)
    model = T.EHCF(BEHAVIORS, 40, 12, coefficients=(0.3, 0.7), l2=0.0, seed=2)
    rng = np.random.default_rng(0)  # embeddings of order 1: no float32 cancellation
    model.user_embeddings.assign(rng.normal(0, 0.5, (12, 64)).astype(np.float32))
    model.item_embeddings.assign(rng.normal(0, 0.5, (40, 64)).astype(np.float32))
    loss = float(model.compute_loss(batch).numpy())
    h = {b: v.numpy() for b, v in model.prediction_vectors().items()}
    p, q = model.user_embeddings.numpy(), model.item_embeddings.numpy()
    expected = 0.0
    for b, coefficient in zip(model.chain, (0.3, 0.7), strict=True):
        y = (p * h[b]) @ q.T  # [n, m], every pair
        x = train[b].toarray()
        # c+ = 1 on observed (target 1), c- = w on all the others (target 0).
        expected += coefficient * np.sum(np.where(x > 0, (1 - y) ** 2, 0.1 * y**2) - x)
    np.testing.assert_allclose(loss, expected, rtol=1e-4)


def test_ngcf_learns_the_planted_structure():
    from bvae_tf.baselines import transductive as T

    train, _ = planted()
    held = _held_clicks(train)
    batch = _with_users(_batch(train), 120)
    model = T.NGCF("click", 40, 120, embedding=16, layer_sizes=(16, 16), learning_rate=1e-2)
    model.set_graph(train["click"]).prepare()
    model.fit(T.bpr_triples(train["click"], 256, seed=0), epochs=1, steps_per_epoch=100, verbose=0)
    scores = model(batch)["click"].numpy()
    ndcg = M.ranking_metrics(scores, held, excluded=train["click"]).metrics["ndcg@5"]
    flat = np.tile(
        floors.Popularity(("click",), 40).fit(train)(batch)["click"].numpy()[:1], (120, 1)
    )
    base = M.ranking_metrics(flat, held, excluded=train["click"]).metrics["ndcg@5"]
    assert ndcg > base + 0.2
    empty = _with_users(_batch({"click": sp.csr_matrix((2, 40), dtype=np.float32)}), 2)
    assert np.isfinite(model(empty)["click"].numpy()).all()


def test_ngcf_graph_and_bpr_sampling():
    from bvae_tf.baselines import transductive as T

    r = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0]], np.float32))
    adjacency = T.normalized_adjacency(r).toarray()
    # Users 0-1, items 2-4; degrees: u0 2, u1 1, i0 1, i1 2, i2 0.
    assert adjacency.shape == (5, 5)
    np.testing.assert_allclose(adjacency, adjacency.T)
    np.testing.assert_allclose(adjacency[0, 3], 1 / np.sqrt(2 * 2))
    np.testing.assert_allclose(adjacency[1, 3], 1 / np.sqrt(1 * 2))
    assert adjacency[:, 4].sum() == 0
    triples = next(iter(T.bpr_triples(r, 500, seed=1)))
    u, i, j = (triples[k].numpy() for k in (F.USER_INDEX, "positive", "negative"))
    dense = r.toarray()
    assert (dense[u, i] == 1).all() and (dense[u, j] == 0).all()
    with pytest.raises(ValueError, match="interacted with every item"):
        T.bpr_triples(sp.csr_matrix(np.ones((2, 3), np.float32)), 4)
    with pytest.raises(ValueError, match="graph matrix must be"):
        T.NGCF("click", 3, 3).set_graph(r)


def test_bpr_negatives_are_exact_on_a_dense_matrix():
    """Rejection sampling retries until no negative is a train item of its user.

    At 80% density most first draws are rejected, and the highest (user, item) key
    is in the matrix, so the binary search's edges are exercised.
    """
    from bvae_tf.baselines import transductive as T

    rng = np.random.default_rng(0)
    dense = (rng.random((30, 10)) < 0.8).astype(np.float32)
    dense[:, 0] = 0.0  # no user has every item
    dense[-1, -1] = 1.0
    stream = iter(T.bpr_triples(sp.csr_matrix(dense), 64, seed=2))
    negatives = []
    for _ in range(20):
        triples = next(stream)
        u, i, j = (triples[k].numpy() for k in (F.USER_INDEX, "positive", "negative"))
        assert (dense[u, i] == 1).all() and (dense[u, j] == 0).all()
        negatives.append(j)
    # Every user's unseen items are reachable: item 0 (unseen by all) is drawn often.
    assert (np.concatenate(negatives) == 0).mean() > 0.3


def test_transductive_models_need_the_user_index():
    from bvae_tf.baselines import transductive as T

    train, _ = planted(num_users=8)
    with pytest.raises(ValueError, match="transductive: its input needs 'user_index'"):
        T.EHCF(BEHAVIORS, 40, 8)(_batch(train))
    with pytest.raises(ValueError, match=r"chain .* must order exactly"):
        T.EHCF(BEHAVIORS, 40, 8, chain=("click",))


def test_the_factored_fit_hands_p_to_tensorflow_without_a_copy(monkeypatch):
    """The inverse is computed in an aligned buffer that TensorFlow takes as is (a
    ``tf.constant`` of it would keep two more m x m copies); anything else is copied."""
    train, _ = planted(num_users=40, num_items=40)
    x = E._union(train, BEHAVIORS, np.float32)
    inverse = E._inverse(x.T.tocsr(), x.tocsc(), 3.0, np.float32)
    assert inverse.ctypes.data % E._TF_ALIGN == 0
    gram = (x.T @ x).toarray() + 3.0 * np.eye(40)
    np.testing.assert_allclose(inverse @ gram, np.eye(40), atol=1e-4)
    shared = E._as_tensor(inverse.T)
    np.testing.assert_array_equal(shared.numpy(), inverse.T)
    inverse[0, 0] += 1.0  # the same memory: the tensor sees the write
    assert shared.numpy()[0, 0] == inverse[0, 0]
    shareable, as_tensor = [], E._as_tensor

    def spied(array):
        shareable.append(array.flags.c_contiguous and array.ctypes.data % E._TF_ALIGN == 0)
        return as_tensor(array)

    monkeypatch.setattr(E, "_as_tensor", spied)
    for _, _, model in E.fit_factored(BEHAVIORS, 40, train, [3.0], dtype=np.float32):
        del model
    assert shareable == [True]  # the fit's P goes the shared way
    frozen = np.array(inverse.T)
    frozen.flags.writeable = False
    copied = E._as_tensor(frozen)  # DLPack refuses a read-only array
    np.testing.assert_array_equal(copied.numpy(), frozen)
    for other in (inverse.T[1:, 1:], inverse.astype(np.float64)):  # not C-ordered float32
        copied = E._as_tensor(other)
        assert copied.dtype == tf.float32
        np.testing.assert_array_equal(copied.numpy(), other.astype(np.float32))
        other[0, 0] += 1.0
        assert copied.numpy()[0, 0] != other[0, 0]
