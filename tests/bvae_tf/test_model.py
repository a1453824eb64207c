"""BVAE model: equations, gates, ablations, Mult-VAE reduction, top-K, serialization."""

import itertools
import re

import numpy as np
import pytest
import tensorflow as tf

from bvae_tf import features as F
from bvae_tf import layers as L
from bvae_tf import losses
from bvae_tf import model as Mo

from .conftest import BEHAVIORS, NUM_ITEMS, runs_after, sparse_batch

pytestmark = pytest.mark.unit


def _config(**overrides):
    values = dict(behaviors=BEHAVIORS, num_items=NUM_ITEMS, latent_dim=8)
    values.update(overrides)
    return Mo.BVAEConfig(**values)


def _model(batch, **overrides):
    model = Mo.build_model(_config(**overrides), optimizer_jit_compile=False)
    model(batch)
    return model


def _dense(batch, key):
    sp_tensor = batch[key]
    dense = np.zeros((int(sp_tensor.dense_shape[0]), NUM_ITEMS), np.float32)
    dense[sp_tensor.indices.numpy()[:, 0], sp_tensor.values.numpy()] = 1.0
    return dense


def _normalised(x):
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _numpy_forward(model, batch):
    """Eq. 1-10 on dense multi-hot rows (evaluation: eps = 0, no dropout)."""
    cfg = model.bvae_config
    xs = {b: _dense(batch, F.items_key(b)) for b in cfg.behaviors}
    union = np.clip(sum(xs.values()), 0, 1)
    w, b = (v.numpy() for v in model.mean_encoder.weights)
    mu0 = _normalised(union) @ w + b
    mus = []
    for f in model.filters:
        kernel, bias = (v.numpy() for v in f.weights)
        logits = mu0 @ kernel + bias
        if f.mode == "reference":
            gate = np.exp(logits - logits.max(-1, keepdims=True))
            gate /= gate.sum(-1, keepdims=True)
        else:
            gate = 2.0 / (1.0 + np.exp(-logits))
        mus.append(gate * mu0)
    mus = mus or [mu0] * len(cfg.tasks)
    z_hat = []
    for fuse in model.fusions:
        kernel, bias = (v.numpy() for v in fuse.weights)
        a = np.stack([z @ kernel + bias for z in mus], axis=1)  # [B, c, 1]
        if fuse.mode == "reference":
            g = np.ones_like(a)
        else:
            g = np.exp(a - a.max(1, keepdims=True))
            g = g / g.sum(1, keepdims=True) * len(mus)
        z_hat.append((g * np.stack(mus, axis=1)).sum(1))
    z_hat = z_hat or mus
    out = []
    for z, dec in zip(z_hat, model.decoders, strict=True):
        e, bias = (v.numpy() for v in dec.weights)
        out.append(z @ e.T + bias)
    return out


@pytest.mark.parametrize("gate_mode", ["reference", "gated"])
def test_forward_matches_dense_equations(tiny_batch, gate_mode):
    model = _model(tiny_batch, gate_mode=gate_mode)
    # Make the gated reading non-trivial before comparing.
    rng = np.random.default_rng(0)
    for layer in model.filters + model.fusions:
        for v in layer.weights:
            v.assign(rng.normal(scale=0.3, size=v.shape))
    logits = model(tiny_batch)
    expected = _numpy_forward(model, tiny_batch)
    for b, e in zip(BEHAVIORS, expected, strict=True):
        assert logits[b].shape == (tiny_batch[F.items_key(b)].dense_shape[0], NUM_ITEMS)
        assert logits[b].dtype == tf.float32
        np.testing.assert_allclose(logits[b].numpy(), e, rtol=1e-4, atol=1e-5)


def test_reference_gates_are_identity_and_sum(tiny_batch):
    model = _model(tiny_batch, gate_mode="reference")
    rng = np.random.default_rng(1)
    for layer in model.filters + model.fusions:
        for v in layer.weights:
            v.assign(rng.normal(size=v.shape))
    enc = model.encode(tiny_batch)
    mu = [enc["mu"][b].numpy() for b in BEHAVIORS]
    for m in mu[1:]:
        np.testing.assert_array_equal(m, mu[0])  # GFF: softmax over one logit = 1
    for b in BEHAVIORS:
        np.testing.assert_allclose(enc["z_hat"][b].numpy(), 3 * mu[0], rtol=1e-6)  # TFF sum


def test_gated_reading_starts_at_reference_and_is_not_degenerate(tiny_batch):
    ref = _model(tiny_batch, gate_mode="reference")
    gated = _model(tiny_batch, gate_mode="gated")
    for a, b in zip(
        [ref.mean_encoder, *ref.std_encoders, *ref.decoders],
        [gated.mean_encoder, *gated.std_encoders, *gated.decoders],
        strict=True,
    ):
        b.set_weights(a.get_weights())
    for b in BEHAVIORS:
        np.testing.assert_allclose(ref(tiny_batch)[b], gated(tiny_batch)[b], rtol=1e-5, atol=1e-6)
    gated.filters[0].bias.assign(tf.fill(gated.filters[0].bias.shape, -2.0))
    gated.fusions[1].kernel.assign(tf.random.normal(gated.fusions[1].kernel.shape, seed=1))
    changed = gated(tiny_batch)
    assert not np.allclose(changed["purchase"], ref(tiny_batch)["purchase"])
    assert not np.allclose(changed["click"], ref(tiny_batch)["click"])


def test_gate_trackers_report_gff_gates_and_tff_shares(tiny_batch):
    """At initialisation the gated reading is the reference (gate 1, shares 1/c); with
    random gate weights the trackers equal the gates recomputed from eq. 3-4 and 7-8."""
    model = _model(tiny_batch, gate_mode="gated")
    model.compute_loss(tiny_batch)
    values = {m.name: float(m.result()) for m in model.metrics}
    for t in BEHAVIORS:
        assert values[f"{t}_gff_gate"] == pytest.approx(1.0)
        assert values[f"{t}_gff_gate_std"] == pytest.approx(0.0, abs=1e-7)
        for source in BEHAVIORS:
            assert values[f"{t}_tff_from_{source}"] == pytest.approx(1 / 3)
    rng = np.random.default_rng(2)
    for layer in model.filters + model.fusions:
        for v in layer.weights:
            v.assign(rng.normal(scale=0.5, size=v.shape))
    for m in model.metrics:
        m.reset_state()
    model.compute_loss(tiny_batch)  # evaluation mode: z = mu
    values = {m.name: float(m.result()) for m in model.metrics}
    enc = model.encode(tiny_batch)
    mus = [enc["mu"][t].numpy() for t in BEHAVIORS]
    for i, t in enumerate(BEHAVIORS):
        kernel, bias = (v.numpy() for v in model.filters[i].weights)
        gate = 2.0 / (1.0 + np.exp(-(enc["mean"][t].numpy() @ kernel + bias)))
        assert values[f"{t}_gff_gate"] == pytest.approx(gate.mean(), rel=1e-5)
        assert values[f"{t}_gff_gate_std"] == pytest.approx(gate.std(), rel=1e-4)
        kernel, bias = (v.numpy() for v in model.fusions[i].weights)
        a = np.stack([z @ kernel + bias for z in mus], axis=1)[..., 0]  # [B, c]
        shares = np.exp(a - a.max(1, keepdims=True))
        shares /= shares.sum(1, keepdims=True)
        got = [values[f"{t}_tff_from_{source}"] for source in BEHAVIORS]
        np.testing.assert_allclose(got, shares.mean(0), rtol=1e-5)
        assert sum(got) == pytest.approx(1.0)
    assert not _model(tiny_batch, use_gff=False, use_tff=False).gate_tracker_names()
    reference = _model(tiny_batch, gate_mode="reference")
    reference.compute_loss(tiny_batch)
    values = {m.name: float(m.result()) for m in reference.metrics}
    # A pass-through gate of exactly 1 per user; Keras' float32 running mean of them
    # may round (0.99999994 seen when the order of the sum changed).
    assert values["click_gff_gate"] == pytest.approx(1.0, abs=1e-6)
    assert values["click_tff_from_purchase"] == pytest.approx(1 / 3)


def test_empty_rows_give_finite_outputs_loss_and_gradients(tiny_data):
    # Users 0 (no items at all) and 1 (no clicks) only.
    batch = sparse_batch(
        {F.items_key(b): tiny_data.matrix(F.TRAIN, b) for b in BEHAVIORS}, rows=[0, 1]
    )
    model = _model(batch)
    logits = model(batch)
    assert all(np.isfinite(v.numpy()).all() for v in logits.values())
    with tf.GradientTape() as tape:
        loss = model.compute_loss(batch, training=True)
    grads = tape.gradient(loss, model.trainable_variables)
    assert np.isfinite(loss.numpy())
    for g in grads:
        if g is not None:
            values = g.values if isinstance(g, tf.IndexedSlices) else g
            assert np.isfinite(values.numpy()).all()


def test_single_behavior_is_mult_vae(tiny_data):
    """c = 1: no gates, no SDWL; loss = mean(NLL) + beta * mean(KL) as Mult-VAE."""
    b = "purchase"
    batch = sparse_batch({F.items_key(b): tiny_data.matrix(F.TRAIN, b)})
    model = Mo.build_model(
        Mo.BVAEConfig(behaviors=(b,), num_items=NUM_ITEMS, latent_dim=8, anneal_steps=0)
    )
    model(batch)
    assert not model.filters and not model.fusions and len(model.std_encoders) == 1
    x = _dense(batch, F.items_key(b))
    w_mu, b_mu = (v.numpy() for v in model.mean_encoder.weights)
    w_lv, b_lv = (v.numpy() for v in model.std_encoders[0].weights)
    e, bias = (v.numpy() for v in model.decoders[0].weights)
    # Mult-VAE: one encoder m -> 2d on the normalised row, linear decoder.
    h = _normalised(x) @ np.concatenate([w_mu, w_lv], 1) + np.concatenate([b_mu, b_lv])
    mu, logvar = h[:, :8], h[:, 8:]
    logits = mu @ e.T + bias
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    nll = -(log_softmax * x).sum(1)
    kl = 0.5 * (-logvar + np.exp(logvar) + mu**2 - 1).sum(1)
    expected = nll.mean() + 0.2 * kl.mean()
    np.testing.assert_allclose(model(batch)[b].numpy(), logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.compute_loss(batch).numpy(), expected, rtol=1e-5)


def test_training_mode_uses_shared_dropout_mask_for_single_behavior(tiny_data):
    b = "click"
    batch = sparse_batch({F.items_key(b): tiny_data.matrix(F.TRAIN, b)})
    model = Mo.build_model(Mo.BVAEConfig(behaviors=(b,), num_items=NUM_ITEMS, latent_dim=4))
    model(batch)
    first = model(batch, training=True)[b].numpy()
    again = model(batch, training=True)[b].numpy()
    np.testing.assert_array_equal(first, again)  # seeded by (seed, step)
    model.anneal_step.assign_add(1)
    assert not np.allclose(model(batch, training=True)[b].numpy(), first)


def test_ablation_switches(tiny_batch):
    base = _model(tiny_batch)
    assert len(base.std_encoders) == 3 and len(base.filters) == 3 and len(base.fusions) == 3
    no_base = _model(tiny_batch, use_base=False)
    assert len(no_base.std_encoders) == 1
    enc = no_base.encode(tiny_batch)
    np.testing.assert_array_equal(enc["logvar"]["purchase"], enc["logvar"]["click"])
    assert not _model(tiny_batch, use_gff=False).filters
    assert not _model(tiny_batch, use_tff=False).fusions
    no_sdwl = _model(tiny_batch, use_sdwl=False)
    no_sdwl.compute_loss(tiny_batch)
    assert no_sdwl.metrics[2].name == "purchase_nll"
    weights = {m.name: float(m.result()) for m in no_sdwl.metrics}
    assert weights["purchase_sdwl_weight"] == 1.0
    with_sdwl = _model(tiny_batch)
    with_sdwl.compute_loss(tiny_batch)
    weights = {m.name: float(m.result()) for m in with_sdwl.metrics}
    assert weights["purchase_sdwl_weight"] != 1.0


def test_union_vae_scores_every_behavior_with_one_decoder(tiny_batch):
    model = _model(tiny_batch, variant="union_vae")
    assert len(model.decoders) == 1 and not model.filters and not model.fusions
    logits = model(tiny_batch)
    np.testing.assert_array_equal(logits["purchase"], logits["favorite"])
    recs = model.recommend(tiny_batch, k=5)
    # Exclusions differ per behavior even though the scores are shared.
    assert set(recs) == set(BEHAVIORS)


def test_fit_reduces_loss_and_counts_steps(tiny_data):
    from bvae_tf import data as D

    model = Mo.build_model(_config(learning_rate=1e-2, dropout=0.0), optimizer_jit_compile=False)
    ds = D.train_dataset(tiny_data, batch_size=8, seed=0)
    history = model.fit(ds, epochs=5, verbose=0).history["loss"]
    assert history[-1] < history[0]
    assert int(model.anneal_step.numpy()) == 5 * 3  # 24 users / batch 8 = 3 steps
    assert float(model.beta()) == pytest.approx(0.2 * 15 / 200_000)


def test_same_seed_same_weights_and_noise(tiny_batch):
    a, b = _model(tiny_batch, seed=3), _model(tiny_batch, seed=3)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(
        a(tiny_batch, training=True)["click"], b(tiny_batch, training=True)["click"]
    )
    c = _model(tiny_batch, seed=4)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_recommend_equals_argsort_with_exclusions(tiny_batch):
    model = _model(tiny_batch, gate_mode="gated")
    logits = model(tiny_batch)
    recs = model.recommend(tiny_batch, k=7)
    for b in BEHAVIORS:
        scores, items = (t.numpy() for t in recs[b])
        assert scores.dtype == np.float32 and items.dtype == np.int64
        masked = logits[b].numpy().copy()
        sp_tensor = tiny_batch[F.items_key(b)]
        masked[sp_tensor.indices.numpy()[:, 0], sp_tensor.values.numpy()] = -np.inf
        expected = np.argsort(-masked, axis=1, kind="stable")[:, :7]
        np.testing.assert_array_equal(items, expected)
        np.testing.assert_array_equal(scores, np.take_along_axis(masked, expected, 1))
        for u in range(items.shape[0]):
            seen = set(sp_tensor.values.numpy()[sp_tensor.indices.numpy()[:, 0] == u])
            assert not seen & set(items[u])


def test_recommend_in_serving_function_batch_one_and_zero(tiny_batch):
    model = _model(tiny_batch)
    spec = {F.items_key(b): tf.SparseTensorSpec([None, None], tf.int64) for b in BEHAVIORS}

    @tf.function(input_signature=[spec])
    def serve(features):
        out = {}
        for b, (scores, items) in model.recommend(features, k=4).items():
            out[F.scores_output(b)] = scores
            out[F.item_ids_output(b)] = items
        return out

    one = serve(
        {k: tf.sparse.slice(v, [2, 0], [1, v.dense_shape[1]]) for k, v in tiny_batch.items()}
    )
    full = model.recommend(tiny_batch, k=4)
    for b in BEHAVIORS:
        assert one[F.item_ids_output(b)].shape == (1, 4)
        np.testing.assert_array_equal(one[F.item_ids_output(b)][0], full[b][1][2])
    empty = {
        k: tf.SparseTensor(tf.zeros([0, 2], tf.int64), tf.zeros([0], tf.int64), [0, 0])
        for k in tiny_batch
    }
    zero = serve(empty)
    assert zero[F.scores_output("click")].shape == (0, 4)


def test_recommend_rejects_bad_k(tiny_batch):
    model = _model(tiny_batch)
    with pytest.raises(ValueError, match="k must be"):
        model.recommend(tiny_batch, k=NUM_ITEMS + 1)


def test_keras_saved_model_round_trip(tiny_batch, tmp_path):
    model = _model(tiny_batch, gate_mode="gated")
    for layer in model.filters:
        layer.bias.assign(tf.fill(layer.bias.shape, 0.5))
    model.save(tmp_path / "model", save_traces=False)
    loaded = tf.keras.models.load_model(tmp_path / "model")
    assert isinstance(loaded, Mo.BVAE)
    assert loaded.bvae_config == model.bvae_config
    before, after = model(tiny_batch), loaded(tiny_batch)
    for b in BEHAVIORS:
        np.testing.assert_array_equal(before[b].numpy(), after[b].numpy())
    np.testing.assert_array_equal(
        model.recommend(tiny_batch, 5)["click"][1], loaded.recommend(tiny_batch, 5)["click"][1]
    )


def test_tf_saved_model_function_round_trip(tiny_batch, tmp_path):
    model = _model(tiny_batch)
    spec = {F.items_key(b): tf.SparseTensorSpec([None, None], tf.int64) for b in BEHAVIORS}
    module = tf.Module()
    module.model = model
    module.scores = tf.function(model.call, input_signature=[spec])
    module.top_k = tf.function(
        lambda features: model.recommend(features, 3), input_signature=[spec]
    )
    tf.saved_model.save(module, str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    reference, restored = model(tiny_batch), loaded.scores(tiny_batch)
    for b in BEHAVIORS:
        np.testing.assert_array_equal(reference[b].numpy(), restored[b].numpy())
    np.testing.assert_array_equal(
        loaded.top_k(tiny_batch)["favorite"][1], model.recommend(tiny_batch, 3)["favorite"][1]
    )


def test_config_round_trip_and_validation():
    cfg = _config(gate_mode="reference", logvar_range=(-5, 5))
    assert Mo.BVAEConfig.from_dict(cfg.to_dict()) == cfg
    assert Mo.BVAE.from_config(Mo.BVAE(cfg).get_config()).bvae_config == cfg
    with pytest.raises(ValueError, match=r"gate_mode: 'softmax' \(one of \['reference', 'gated'"):
        _config(gate_mode="softmax")
    with pytest.raises(ValueError, match=r"dropout: 1.0 \(must be in \[0, 1\)\)$"):
        _config(dropout=1.0)
    for size in (2.9, True, 1e9):  # not whole numbers of int32: no silent truncation
        with pytest.raises(ValueError, match=r"invalid BVAEConfig\.latent_dim"):
            _config(latent_dim=size)
    with pytest.raises(ValueError, match=r"invalid BVAEConfig\.anneal_steps"):
        _config(anneal_steps=10.5)
    with pytest.raises(ValueError, match="unknown BVAEConfig keys"):
        Mo.BVAEConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="behavior"):
        _config(behaviors=("a", "a"))
    ref = Mo.reference_config(BEHAVIORS, NUM_ITEMS)
    assert (ref.gate_mode, ref.sdwl_form, ref.beta_schedule) == ("reference",) * 3


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"variant": "vae_pp", "gate_mode": "reference"}, "'vae_pp' does not read gate_mode"),
        ({"variant": "recvae", "use_tff": False}, "use_tff (variant bvae or union_vae)"),
        ({"ease_l2": 5.0}, "'bvae' does not read ease_l2 (variant ease): remove it"),
        ({"variant": "ease", "recvae_gamma": 0.1, "sdwl_form": "reference"}, "remove them"),
        # Closed-form fits train nothing: no latent size, dropout or learning rate.
        ({"variant": "ease", "latent_dim": 8}, "'ease' does not read latent_dim"),
        ({"variant": "popularity", "learning_rate": 0.01}, "does not read learning_rate"),
        ({"variant": "repeat", "precision": "mixed_bfloat16"}, "does not read precision"),
        ({"item_path_scale": 3.0}, "item_path_scale tune the item path, which is off"),
        # RecVAE's KL weight is its own (recvae_gamma), not BVAE's beta ramp.
        ({"variant": "recvae", "beta_cap": 0.5}, "beta_cap (variant bvae or union_vae or vae_pp)"),
    ],
)
def test_a_setting_the_variant_does_not_read_is_refused(settings, message):
    base = dict(behaviors=BEHAVIORS, num_items=NUM_ITEMS)  # _config's latent_dim is one
    with pytest.raises(ValueError, match=re.escape(message)):
        Mo.BVAEConfig(**base, **settings)
    variant = settings.get("variant", "bvae")
    assert Mo.BVAEConfig(**base, variant=variant).variant == variant  # defaults are accepted


def test_input_validation(tiny_batch):
    model = _model(tiny_batch)
    with pytest.raises(ValueError, match="lacks features"):
        model({F.items_key("purchase"): tiny_batch[F.items_key("purchase")]})
    with pytest.raises(ValueError, match="SparseTensor"):
        model({k: tf.sparse.to_dense(v) for k, v in tiny_batch.items()})
    bad = dict(tiny_batch)
    bad[F.items_key("click")] = tf.SparseTensor(
        [[0, 0]], tf.constant([NUM_ITEMS], tf.int64), [1, 1]
    )
    bad = {
        k: (v if k == F.items_key("click") else tf.sparse.slice(v, [0, 0], [1, 100]))
        for k, v in bad.items()
    }
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_items"):
        model(bad)


def test_ragged_input_equals_sparse_input(tiny_batch):
    model = _model(tiny_batch)
    ragged = {k: tf.RaggedTensor.from_sparse(v) for k, v in tiny_batch.items()}
    for b in BEHAVIORS:
        np.testing.assert_array_equal(model(ragged)[b], model(tiny_batch)[b])


def test_mixed_float16_trains_with_loss_scaling(tiny_data):
    from bvae_tf import data as D

    model = Mo.build_model(_config(precision="mixed_float16"), optimizer_jit_compile=False)
    assert isinstance(model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
    history = model.fit(D.train_dataset(tiny_data, batch_size=12), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.decoders[0].item_embeddings.dtype == tf.float32


def test_mixed_bfloat16_outputs_float32(tiny_batch):
    model = _model(tiny_batch, precision="mixed_bfloat16")
    assert model(tiny_batch)["click"].dtype == tf.float32
    assert np.isfinite(model.compute_loss(tiny_batch, training=True).numpy())


def test_mixed_precision_ranks_with_float32_logits():
    decoder = L.ItemDecoder(num_items=50, latent_dim=8, dtype="mixed_bfloat16")
    z = tf.constant(np.random.default_rng(0).normal(size=(3, 8)), tf.float32)
    # Keras casts a layer's inputs to its compute dtype, as the encoders' z_hat is.
    z = tf.cast(tf.cast(z, tf.bfloat16), tf.float32)
    logits = decoder(z)
    expected = z.numpy() @ decoder.item_embeddings.numpy().T + decoder.item_bias.numpy()
    np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-5, atol=1e-6)
    chunk = decoder.chunk_logits(z, 10, 20).numpy()
    np.testing.assert_allclose(chunk, expected[:, 10:20], rtol=1e-5, atol=1e-6)
    # The training loss reads the same table in the compute dtype.
    assert decoder.item_table().dtype == tf.bfloat16
    assert decoder.item_table(tf.float32).dtype == tf.float32


def test_xla_loss_and_gradients_match_plain(tiny_batch):
    plain = _model(tiny_batch)
    jit = _model(tiny_batch, jit_compile=True)
    jit.set_weights(plain.get_weights())
    results = []
    for model in (plain, jit):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(tiny_batch, training=True)
        grad = tape.gradient(loss, model.decoders[1].item_embeddings)
        results.append((loss.numpy(), tf.convert_to_tensor(grad).numpy()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-4, atol=1e-6)


def test_multinomial_nll_value_and_gradient_match_dense_autodiff():
    rng = np.random.default_rng(0)
    q = tf.constant(np.concatenate([rng.normal(size=(5, 3)), np.ones((5, 1))], 1), tf.float32)
    table = tf.constant(rng.normal(size=(9, 4)), tf.float32)
    x = (rng.random((5, 9)) < 0.3).astype(np.float32)
    x[2] = 0.0  # a user without targets
    rows, cols = np.nonzero(x)
    upstream = tf.constant(rng.random(5), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([q, table])
        fused = losses.multinomial_nll(q, table, rows, cols, 5)
        dense = -tf.reduce_sum(tf.nn.log_softmax(tf.matmul(q, table, transpose_b=True)) * x, 1)
        a = tf.reduce_sum(fused * upstream)
        b = tf.reduce_sum(dense * upstream)
    np.testing.assert_allclose(fused.numpy(), dense.numpy(), rtol=1e-5)
    for ga, gb in zip(tape.gradient(a, [q, table]), tape.gradient(b, [q, table]), strict=True):
        np.testing.assert_allclose(ga.numpy(), gb.numpy(), rtol=1e-4, atol=1e-6)


def test_multinomial_nll_in_bfloat16_tracks_float32():
    rng = np.random.default_rng(1)
    q = np.concatenate([rng.normal(size=(6, 8)), np.ones((6, 1))], 1).astype(np.float32)
    table = (0.5 * rng.normal(size=(300, 9))).astype(np.float32)
    x = rng.random((6, 300)) < 0.05
    x[0, :3] = True
    rows, cols = np.nonzero(x)
    results = []
    for dtype in (tf.float32, tf.bfloat16):
        qv, tv = tf.constant(q), tf.constant(table)
        with tf.GradientTape() as tape:
            tape.watch([qv, tv])
            nll = losses.multinomial_nll(tf.cast(qv, dtype), tf.cast(tv, dtype), rows, cols, 6)
            total = tf.reduce_sum(nll)
        assert nll.dtype == tf.float32
        grads = tape.gradient(total, [qv, tv])
        results.append((nll.numpy(), [g.numpy() for g in grads]))
    (nll32, g32), (nll16, g16) = results
    # bfloat16 keeps 8 bits of mantissa: about 0.4% per logit and probability.
    np.testing.assert_allclose(nll16, nll32, rtol=2e-2)
    for a, b in zip(g16, g32, strict=True):
        assert np.linalg.norm(a - b) < 0.05 * np.linalg.norm(b)


def test_multinomial_nll_floors_an_underflowing_target_probability():
    q = tf.constant([[1.0, 1.0]])
    table = tf.constant([[200.0, 0.0], [-200.0, 0.0], [0.0, 0.0]])
    with tf.GradientTape() as tape:
        tape.watch(table)
        nll = losses.multinomial_nll(q, table, [0], [1], 1)
    grad = tape.gradient(nll, table)
    np.testing.assert_allclose(nll.numpy(), [-np.log(np.finfo(np.float32).tiny)], rtol=1e-6)
    assert np.isfinite(grad.numpy()).all()
    # The gradient is the exact softmax gradient: pull target 1 up, push item 0 down.
    assert grad.numpy()[1, 0] < 0 < grad.numpy()[0, 0]


def test_sampled_softmax_over_every_item_equals_the_full_softmax():
    rng = np.random.default_rng(3)
    m, b, d = 12, 4, 5
    queries = tf.constant(rng.normal(size=(b, d + 1)), tf.float32)
    table = tf.Variable(rng.normal(size=(m, d + 1)), dtype=tf.float32)
    rows = tf.constant([0, 0, 1, 3, 3, 3], tf.int64)
    cols = tf.constant([1, 7, 2, 0, 5, 11], tf.int64)
    every = tf.range(m, dtype=tf.int64)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(queries)
        full = losses.multinomial_nll(queries, table, rows, cols, b)
        sampled = losses.sampled_multinomial_nll(
            queries, tf.gather(table, every), rows, cols, b, candidates=every
        )
        shifted = losses.sampled_multinomial_nll(
            queries,
            tf.gather(table, every),
            rows,
            cols,
            b,
            candidates=every,
            log_q=tf.fill([m], -2.5),
        )
    np.testing.assert_allclose(sampled, full, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(shifted, full, rtol=1e-5, atol=1e-5)  # constant log q cancels
    assert sampled.numpy()[2] == 0.0  # a user without targets
    for var in (queries, table):
        got, want = tape.gradient(sampled, var), tape.gradient(full, var)
        np.testing.assert_allclose(
            tf.convert_to_tensor(got), tf.convert_to_tensor(want), rtol=1e-4, atol=1e-5
        )
    # A subset: the softmax over the targets and two negatives, by hand.
    subset = tf.constant([0, 1, 2, 4, 5, 7, 11], tf.int64)
    log_q = tf.constant(rng.normal(size=7), tf.float32)
    got = losses.sampled_multinomial_nll(
        queries, tf.gather(table, subset), rows, cols, b, candidates=subset, log_q=log_q
    )
    logits = (queries.numpy() @ table.numpy()[subset.numpy()].T) - log_q.numpy()[None]
    lse = np.log(np.exp(logits).sum(1))
    pos = {int(i): k for k, i in enumerate(subset.numpy())}
    expected = np.zeros(b)
    for r, c in zip(rows.numpy(), cols.numpy(), strict=True):
        expected[r] += lse[r] - logits[r, pos[int(c)]]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_sampled_softmax_training_touches_only_the_candidate_rows(tiny_batch):
    model = _model(tiny_batch, sampled_softmax=3)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(tiny_batch, training=True)
    assert np.isfinite(loss.numpy())
    decoder = model.decoders[0]
    grads = tape.gradient(loss, [decoder.item_embeddings, model.mean_encoder.kernel])
    assert all(isinstance(g, tf.IndexedSlices) for g in grads)
    touched = set(np.unique(grads[0].indices.numpy()))
    targets = set(tiny_batch[F.items_key(BEHAVIORS[0])].values.numpy())
    assert targets <= touched and len(touched) <= len(targets) + 3
    # Evaluation and serving keep the full softmax.
    full = _model(tiny_batch)
    full.set_weights(model.get_weights())
    np.testing.assert_allclose(model.compute_loss(tiny_batch), full.compute_loss(tiny_batch))
    # LazyAdam: a one-user step moves only that step's candidate rows.
    one_user = {
        key: tf.sparse.slice(x, [0, 0], [1, x.dense_shape[1]]) for key, x in tiny_batch.items()
    }
    lazy = _model(one_user, sampled_softmax=3, sparse_updates=True)
    lazy.compile(optimizer=Mo.make_optimizer(lazy.bvae_config))
    before = lazy.decoders[0].item_embeddings.numpy()
    lazy.fit(tf.data.Dataset.from_tensors(one_user), epochs=1, verbose=0)
    moved = np.any(lazy.decoders[0].item_embeddings.numpy() != before, axis=1)
    own = set(one_user[F.items_key(BEHAVIORS[0])].values.numpy())
    assert own <= set(np.flatnonzero(moved)) and moved.sum() <= len(own) + 3
    for bad in (
        {"sampled_softmax": 10, "item_path": True},
        {"top_k_chunk_size": 10, "item_path": True},
        {"sampled_softmax": -1},
        {"sampled_softmax": 2.5},
        {"sampled_softmax": True},
        {"sparse_updates": "no"},
        {"top_k_chunk_size": True},
        {"top_k_chunk_size": "7"},
        {"sampled_softmax": 10, "variant": "vae_pp"},
        {"sampled_proposal": "popularity"},
        {"sampled_softmax": 10, "sampled_proposal": "zipf"},
    ):
        with pytest.raises(
            ValueError, match=r"sampled_softmax|sparse_updates|top_k_chunk_size|sampled_proposal"
        ):
            _config(**bad)
    # The loss checks its candidates: sorted, holding every target.
    queries = tf.ones([2, 3])
    with pytest.raises(tf.errors.InvalidArgumentError, match="hold every target"):
        losses.sampled_multinomial_nll(
            queries,
            tf.ones([2, 3]),
            tf.constant([0, 1], tf.int64),
            tf.constant([4, 9], tf.int64),
            2,
            candidates=tf.constant([4, 5], tf.int64),
        )
    empty = losses.sampled_multinomial_nll(
        queries,
        tf.zeros([0, 3]),
        tf.zeros([0], tf.int64),
        tf.zeros([0], tf.int64),
        2,
        candidates=tf.zeros([0], tf.int64),
    )
    np.testing.assert_array_equal(empty, [0.0, 0.0])


def test_lazy_adam_updates_only_the_touched_rows_and_equals_adam_on_all_rows():
    # (and on a dense gradient, which takes the fused ResourceApplyAdam kernel)
    from bvae_tf.optimizers import LazyAdam

    rng = np.random.default_rng(4)
    start = rng.normal(size=(6, 3)).astype(np.float32)
    grads = [rng.normal(size=(6, 3)).astype(np.float32) for _ in range(3)]
    dense, lazy, part, fused = (tf.Variable(start) for _ in range(4))
    adam, lazy_adam, part_adam, fused_adam = (
        tf.keras.optimizers.Adam(0.1),
        LazyAdam(0.1),
        LazyAdam(0.1),
        LazyAdam(0.1),
    )
    every = tf.constant([5, 0, 1, 2, 3, 4])
    touched = tf.constant([1, 4, 1])  # row 1 twice: summed
    for g in grads:
        adam.apply_gradients([(tf.constant(g), dense)])
        lazy_adam.apply_gradients([(tf.IndexedSlices(tf.gather(g, every), every), lazy)])
        part_adam.apply_gradients([(tf.IndexedSlices(tf.gather(g, touched), touched), part)])
        fused_adam.apply_gradients([(tf.constant(g), fused)])  # dense: the fused kernel
    np.testing.assert_allclose(lazy.numpy(), dense.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused.numpy(), dense.numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(fused.numpy(), start)
    moved = np.any(part.numpy() != start, axis=1)
    assert moved.tolist() == [False, True, False, False, True, False]
    # Row 1 took the summed gradient of its two entries, as Adam on that dense gradient.
    single, summed = tf.Variable(start[1:2]), tf.keras.optimizers.Adam(0.1)
    for g in grads:
        summed.apply_gradients([(tf.constant(2 * g[1:2]), single)])
    np.testing.assert_allclose(part.numpy()[1], single.numpy()[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sparse_updates", [False, True], ids=["fused-adam", "lazy-adam"])
def test_weight_decay_shrinks_every_variable_before_the_adam_step(sparse_updates):
    # AdamW (decoupled): w <- w - lr * lambda * w, then Adam's step, which does not
    # depend on w; so the two runs differ by exactly lr * lambda * w per step.
    rng = np.random.default_rng(5)
    start = rng.normal(size=(6, 3)).astype(np.float32)
    grad = rng.normal(size=(6, 3)).astype(np.float32)
    plain, decayed = tf.Variable(start), tf.Variable(start)
    settings = dict(learning_rate=0.1, sparse_updates=sparse_updates)
    Mo.make_optimizer(_config(**settings)).apply_gradients([(tf.constant(grad), plain)])
    optimizer = Mo.make_optimizer(_config(weight_decay=0.5, **settings))
    optimizer.apply_gradients([(tf.constant(grad), decayed)])
    np.testing.assert_allclose(decayed.numpy(), plain.numpy() - 0.1 * 0.5 * start, atol=1e-6)
    # Also a row a sparse gradient does not touch.
    untouched = tf.Variable(start)
    rows = tf.constant([0, 2])
    sparse = Mo.make_optimizer(_config(weight_decay=0.5, **settings))
    sparse.apply_gradients([(tf.IndexedSlices(tf.gather(grad, rows), rows, [6, 3]), untouched)])
    np.testing.assert_allclose(untouched.numpy()[1], start[1] * (1 - 0.1 * 0.5), atol=1e-6)
    with pytest.raises(ValueError, match="weight_decay"):
        _config(weight_decay=-0.1)


@pytest.mark.parametrize("sparse_updates", [False, True], ids=["fused-adam", "lazy-adam"])
def test_cosine_learning_rate_follows_the_update_count_to_its_floor(sparse_updates):
    # At update count t the scheduled optimizer steps as Adam at the constant rate
    # lr * (0.9 * 0.5 * (1 + cos(pi * min(t, 4) / 4)) + 0.1).
    config = _config(
        learning_rate=0.1,
        lr_schedule="cosine",
        lr_decay_steps=4,
        lr_final_fraction=0.1,
        sparse_updates=sparse_updates,
    )
    expected = [0.1 * (0.9 * 0.5 * (1 + np.cos(np.pi * min(t, 4) / 4)) + 0.1) for t in range(6)]
    for step, lr in enumerate(expected):
        moved = []
        for each in (config, _config(learning_rate=lr, sparse_updates=sparse_updates)):
            variable = tf.Variable(np.zeros((3, 2), np.float32))
            optimizer = Mo.make_optimizer(each)
            optimizer.iterations.assign(step)
            optimizer.apply_gradients([(tf.ones((3, 2)), variable)])
            moved.append(variable.numpy())
        assert moved[1][0, 0] < 0
        np.testing.assert_allclose(moved[0], moved[1], rtol=1e-5)
    assert Mo.learning_rate(_config(learning_rate=0.1)) == 0.1
    for bad in (
        dict(lr_schedule="cosine"),  # no length
        dict(lr_decay_steps=10),  # a length without the schedule
        dict(lr_schedule="step", lr_decay_steps=10),
        dict(lr_schedule="cosine", lr_decay_steps=10, lr_final_fraction=1.5),
        dict(lr_schedule="cosine", lr_decay_steps=10, lr_final_fraction="0.1"),
        dict(lr_schedule="cosine", lr_decay_steps=10, lr_final_fraction=True),
    ):
        with pytest.raises(ValueError, match="lr_"):
            _config(**bad)


def test_multinomial_nll_with_sparse_extra_logits_matches_dense_autodiff():
    rng = np.random.default_rng(1)
    q = tf.constant(rng.normal(size=(4, 4)), tf.float32)
    table = tf.constant(rng.normal(size=(9, 4)), tf.float32)
    x = (rng.random((4, 9)) < 0.3).astype(np.float32)
    x[0] = 0.0
    x[1, 2] = 1.0
    rows, cols = np.nonzero(x)
    # Extra logits: a repeated pair (summed), one on a target, users without targets.
    e_rows = np.array([1, 1, 2, 3, 3, 0])
    e_cols = np.array([2, 5, 0, 4, 4, 7])
    values = tf.constant(rng.normal(size=6), tf.float32)
    upstream = tf.constant(rng.random(4), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([q, table, values])
        fused = losses.multinomial_nll(q, table, rows, cols, 4, extra=(e_rows, e_cols, values))
        extra = tf.scatter_nd(np.stack([e_rows, e_cols], 1), values, [4, 9])
        logits = tf.matmul(q, table, transpose_b=True) + extra
        dense = -tf.reduce_sum(tf.nn.log_softmax(logits) * x, 1)
        a = tf.reduce_sum(fused * upstream)
        b = tf.reduce_sum(dense * upstream)
    np.testing.assert_allclose(fused.numpy(), dense.numpy(), rtol=1e-5)
    variables = [q, table, values]
    for ga, gb in zip(tape.gradient(a, variables), tape.gradient(b, variables), strict=True):
        np.testing.assert_allclose(ga.numpy(), gb.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["dense", "extra", "sampled", "no_targets"])
def test_decoding_only_the_rows_with_targets_keeps_the_nll_and_its_gradient(kind):
    rng = np.random.default_rng(2)
    b, m = 6, 9
    q = tf.constant(rng.normal(size=(b, 4)), tf.float32)
    table = tf.constant(rng.normal(size=(m, 4)), tf.float32)
    x = (rng.random((b, m)) < 0.3).astype(np.float32)
    x[[0, 3]] = 0.0  # users without targets, first and inside
    x[[1, 5], 2] = 1.0
    if kind == "no_targets":
        x[:] = 0.0
    rows, cols = (tf.constant(a, tf.int64) for a in np.nonzero(x))
    values = tf.constant(rng.normal(size=5), tf.float32)
    kwargs = {}
    if kind == "extra":  # on rows with and without targets, one pair repeated
        kwargs["extra"] = (np.array([0, 1, 1, 3, 5]), np.array([4, 2, 2, 1, 0]), values)
    if kind == "sampled":
        every = tf.range(m, dtype=tf.int64)
        kwargs = {"candidates": every, "log_q": tf.constant(rng.normal(size=m), tf.float32)}
    nll_fn = losses.sampled_multinomial_nll if kind == "sampled" else losses.multinomial_nll
    upstream = tf.constant(rng.random(b), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([q, table, values])
        every_row = nll_fn(q, table, rows, cols, b, **kwargs)
        kept = losses.nll_on_rows_with_targets(q, table, rows, cols, b, nll_fn=nll_fn, **kwargs)
        a = tf.reduce_sum(every_row * upstream)
        c = tf.reduce_sum(kept * upstream)
    assert kept.shape == (b,) and kept.numpy()[0] == 0.0 and kept.numpy()[3] == 0.0
    np.testing.assert_allclose(kept.numpy(), every_row.numpy(), rtol=1e-6, atol=1e-6)
    variables = [q, table, values]
    for ga, gc in zip(tape.gradient(a, variables), tape.gradient(c, variables), strict=True):
        if ga is None:  # values unused
            assert gc is None or not np.any(tf.convert_to_tensor(gc).numpy())
            continue
        np.testing.assert_allclose(
            tf.convert_to_tensor(gc).numpy(), tf.convert_to_tensor(ga).numpy(), atol=1e-6
        )


def test_sdwl_forms_hand_worked():
    nll = tf.constant([4.0, 8.0])
    kl = tf.constant([1.0, 3.0])
    log_sigma = tf.math.log(tf.constant([1.0, 2.0]))
    beta = tf.constant(0.5)
    # reference: mean[nll / (2 s^2) + log s^2] + beta * mean kl
    #   = mean[4/2 + 0, 8/8 + log 4] + 0.5 * 2 = (2 + 1 + 1.3863) / 2 + 1 = 3.1931
    ref, weight = losses.sdwl_term(nll, kl, log_sigma, beta, "reference")
    assert float(ref) == pytest.approx((2 + 1 + np.log(4)) / 2 + 1.0, rel=1e-6)
    np.testing.assert_allclose(weight.numpy(), [0.5, 0.125], rtol=1e-6)
    # paper: mean[(nll + beta kl) / (2 s^2) + log s] = mean[4.5/2, 9.5/8 + log 2]
    paper, _ = losses.sdwl_term(nll, kl, log_sigma, beta, "paper")
    assert float(paper) == pytest.approx((2.25 + 9.5 / 8 + np.log(2)) / 2, rel=1e-6)
    off, ones = losses.sdwl_term(nll, kl, None, beta)
    assert float(off) == pytest.approx(6.0 + 1.0)
    assert ones.numpy().tolist() == [1.0, 1.0]


def test_log_mean_sigma_is_stable():
    logvar = tf.constant([[0.0, 0.0], [2 * np.log(3.0), 0.0], [-200.0, -200.0]])
    np.testing.assert_allclose(
        losses.log_mean_sigma(logvar).numpy(), [0.0, np.log(2.0), -100.0], rtol=1e-6
    )


def test_beta_schedules():
    # Written definition: reaches the cap after anneal_steps.
    assert float(losses.kl_beta(100_000, 0.2, 200_000, "linear")) == pytest.approx(0.1)
    assert float(losses.kl_beta(400_000, 0.2, 200_000, "linear")) == pytest.approx(0.2)
    # Reference code: min(cap, step / steps): the cap after 40,000 steps.
    assert float(losses.kl_beta(20_000, 0.2, 200_000, "reference")) == pytest.approx(0.1)
    assert float(losses.kl_beta(100_000, 0.2, 200_000, "reference")) == pytest.approx(0.2)
    assert float(losses.kl_beta(5, 0.3, 0)) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="schedule"):
        losses.kl_beta(1, 0.2, 10, "cosine")


def test_logvar_is_clamped(tiny_batch):
    model = _model(tiny_batch, logvar_range=(-1.0, 1.0))
    for encoder in model.std_encoders:
        encoder.bias.assign(tf.fill(encoder.bias.shape, 50.0))
    enc = model.encode(tiny_batch)
    assert float(tf.reduce_max(enc["logvar"]["click"])) == 1.0


def test_sparse_rows_dedupes_and_rejects_dense():
    st = tf.SparseTensor([[0, 0], [0, 1], [1, 0]], tf.constant([3, 3, 1], tf.int64), [2, 2])
    rows = L.to_sparse_rows(st, 5)
    assert rows.rows.numpy().tolist() == [0, 1] and rows.cols.numpy().tolist() == [3, 1]
    with pytest.raises(ValueError, match="SparseTensor"):
        L.to_sparse_rows(tf.constant([[1, 2]]), 5)


#: One instance of every Keras object of ``bvae_tf.layers`` (a new one must be added).
_LAYER_FACTORIES = {
    L.SparseLinearEncoder: lambda: L.SparseLinearEncoder(NUM_ITEMS, 8, seed=3, name="enc"),
    L.GlobalFeatureFilter: lambda: L.GlobalFeatureFilter(8, mode="reference", seed=4),
    L.TargetFeatureFusion: lambda: L.TargetFeatureFusion(8, mode="gated", seed=5),
    L.ItemDecoder: lambda: L.ItemDecoder(NUM_ITEMS, 8, seed=6, name="dec"),
    L.DecoderTopK: lambda: L.DecoderTopK(L.ItemDecoder(NUM_ITEMS, 8, seed=7), k=4, name="top"),
    L.CrossBehaviorItemPath: lambda: L.CrossBehaviorItemPath(3, NUM_ITEMS, scale=2.5, name="path"),
}


def test_every_keras_object_serializes_completely():
    public = {
        obj
        for obj in vars(L).values()
        if isinstance(obj, type)
        and issubclass(obj, tf.keras.layers.Layer)
        and obj.__module__ == L.__name__
        and not obj.__name__.startswith("_")
    }
    assert public == set(_LAYER_FACTORIES)
    for cls, make in _LAYER_FACTORIES.items():
        layer = make()
        config = layer.get_config()
        assert config, cls.__name__
        rebuilt = tf.keras.layers.deserialize(tf.keras.layers.serialize(layer))
        assert type(rebuilt) is cls
        assert rebuilt.get_config() == config, cls.__name__


def test_decoder_top_k_rebuilt_from_config_ranks_with_its_decoder():
    top = L.DecoderTopK(L.ItemDecoder(NUM_ITEMS, 8, seed=7), k=4)
    top.decoder.build()
    rebuilt = L.DecoderTopK.from_config(top.get_config())
    rebuilt.decoder.build()
    rebuilt.decoder.set_weights(top.decoder.get_weights())
    z = tf.random.stateless_normal((3, 8), seed=(1, 2))
    scores, items = rebuilt(z)
    want_scores, want_items = top(z)
    assert items.shape == (3, 4)
    np.testing.assert_array_equal(items.numpy(), want_items.numpy())
    np.testing.assert_allclose(scores.numpy(), want_scores.numpy(), rtol=1e-6)


def test_chunked_top_k_equals_the_whole_catalog_top_k_ties_included():
    decoder = L.ItemDecoder(23, 4, seed=1)
    decoder.build()
    rng = np.random.default_rng(5)
    table = rng.normal(size=(23, 4)).astype(np.float32)
    table[[3, 9, 17]] = table[0]  # ties across chunks
    decoder.item_embeddings.assign(table)
    decoder.item_bias.assign(np.zeros(23, np.float32))
    queries = tf.constant(rng.normal(size=(3, 4)), tf.float32)
    exclusions = tf.ragged.constant([[0, 5, 22], [], list(range(20))], dtype=tf.int64)
    whole = L.DecoderTopK(decoder, k=7)
    for chunk in (1, 5, 8, 22):
        chunked = L.DecoderTopK(decoder, k=7, chunk_size=chunk)
        for k in (1, 4, 7):
            want = whole.query_with_exclusions(queries, exclusions, k=k)
            got = chunked.query_with_exclusions(queries, exclusions, k=k)
            np.testing.assert_array_equal(got[1], want[1])
            np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    decoder.add_serving_layout()
    got = L.DecoderTopK(decoder, k=7, chunk_size=5).query_with_exclusions(queries, exclusions)
    np.testing.assert_array_equal(got[1], whole.query_with_exclusions(queries, exclusions)[1])
    for bad in (0, True, 2.5):
        with pytest.raises(ValueError, match="chunk_size"):
            L.DecoderTopK(decoder, chunk_size=bad)
    assert L.DecoderTopK(decoder, chunk_size=np.int64(5)).chunk_size == 5
    big = L.ItemDecoder(L.MAX_TOP_K_CHUNKS * 2 + 1, 4)
    with pytest.raises(ValueError, match="at most 256 chunks"):
        L.DecoderTopK(big, chunk_size=2)
    with pytest.raises(ValueError, match="not a non-empty range"):
        decoder.chunk_logits(queries, 10, 5)


def test_chunked_top_k_scores_one_chunk_after_the_other_in_a_graph():
    """In a graph, TensorFlow runs every op whose inputs are ready: unless each
    chunk's logits wait for the previous chunk, all chunks are scored at once and the
    memory is the whole catalog's again."""
    decoder = L.ItemDecoder(23, 4, seed=1)
    decoder.build()
    chunked = L.DecoderTopK(decoder, k=3, chunk_size=5)
    graph = (
        tf.function(chunked.query_with_exclusions)
        .get_concrete_function(
            tf.TensorSpec([None, 4], tf.float32),
            tf.RaggedTensorSpec([None, None], tf.int64, ragged_rank=1),
        )
        .graph
    )
    matmuls = [op for op in graph.get_operations() if op.type == "MatMul"]
    assert len(matmuls) == 5  # one per chunk
    # Every chunk waits for the one before.
    assert all(runs_after(op, before) for before, op in itertools.pairwise(matmuls))


def test_decoder_logits_equal_the_item_table_form_of_the_loss():
    decoder = L.ItemDecoder(NUM_ITEMS, 8, seed=9)
    decoder.build()
    decoder.item_bias.assign(tf.random.stateless_normal((NUM_ITEMS,), seed=(3, 4)))
    z = tf.random.stateless_normal((5, 8), seed=(5, 6))
    via_table = tf.matmul(decoder.queries(z), decoder.item_table(), transpose_b=True)
    np.testing.assert_allclose(decoder(z).numpy(), via_table.numpy(), rtol=1e-5, atol=1e-6)


def test_serving_layout_gives_the_same_logits_and_top_k():
    decoder = L.ItemDecoder(NUM_ITEMS, 8, seed=9)
    decoder.build()
    decoder.item_bias.assign(tf.random.stateless_normal((NUM_ITEMS,), seed=(3, 4)))
    z = tf.random.stateless_normal((5, 8), seed=(5, 6))
    before = decoder(z).numpy()
    decoder.add_serving_layout()
    assert decoder.item_embeddings_by_dim.shape == (8, NUM_ITEMS)
    assert not decoder.item_embeddings_by_dim.trainable
    assert all(w is not decoder.item_embeddings_by_dim for w in decoder.trainable_weights)
    np.testing.assert_allclose(decoder(z).numpy(), before, rtol=1e-5, atol=1e-6)
    # A second call refreshes the copy from E.
    decoder.item_embeddings.assign(decoder.item_embeddings * 2.0)
    decoder.add_serving_layout()
    np.testing.assert_allclose(
        decoder.item_embeddings_by_dim.numpy(), decoder.item_embeddings.numpy().T
    )


def test_serving_layout_of_a_model_built_under_a_mirrored_strategy(tiny_data):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = Mo.build_model(Mo.BVAEConfig(behaviors=BEHAVIORS, num_items=NUM_ITEMS, seed=3))
    batch = sparse_batch({F.items_key(b): tiny_data.matrix(F.TRAIN, b) for b in BEHAVIORS})
    with strategy.scope():
        before = model.recommend(batch, k=5)
    for decoder in model.decoders:
        decoder.add_serving_layout()
    after = model.recommend(batch, k=5)
    for b in BEHAVIORS:
        np.testing.assert_array_equal(after[b][1].numpy(), before[b][1].numpy())
        np.testing.assert_allclose(after[b][0].numpy(), before[b][0].numpy(), rtol=1e-5)


def _encoder_params(model) -> int:
    """Parameters of the sparse m x d encoders (BASE's budget)."""
    layers = [*model.mean_encoders, *model.std_encoders, *model.experts]
    return sum(int(np.prod(v.shape)) for layer in layers for v in layer.weights)


@pytest.mark.parametrize("encoder", ["exchange", "mmoe", "cgc"])
def test_base_replacements_keep_the_encoder_budget_and_contract(tiny_batch, encoder, tmp_path):
    base = _model(tiny_batch)
    model = _model(tiny_batch, encoder=encoder, gate_mode="gated")
    assert _encoder_params(model) == _encoder_params(base)  # (c + 1) encoders m x d
    out = model(tiny_batch)
    enc = model.encode(tiny_batch)
    for b in BEHAVIORS:
        assert out[b].shape == (int(tiny_batch[F.items_key(b)].dense_shape[0]), NUM_ITEMS)
        assert np.isfinite(out[b].numpy()).all()
    if encoder == "exchange":
        # The roles swapped: one shared log-variance, a mean per behavior.
        lv = [enc["logvar"][b].numpy() for b in BEHAVIORS]
        np.testing.assert_array_equal(lv[0], lv[1])
        assert not np.allclose(enc["mu"]["purchase"].numpy(), enc["mu"]["click"].numpy())
    else:
        # The mean stays mu_0; each behavior's log-variance is its gate's mixture of the
        # experts (MMoE: c shared experts; CGC: its own expert and mu_0).
        gate = model.expert_gates[1]
        assert gate.weights[0].shape == (NUM_ITEMS, 3 if encoder == "mmoe" else 2)
        union = L.union_rows(list(model._inputs(tiny_batch).values()), NUM_ITEMS)
        w = L.normalised_weights(union, 0.0, None)
        mu0 = model.mean_encoder(union, w).numpy()
        if encoder == "mmoe":
            experts = np.stack([e(union, w).numpy() for e in model.experts], axis=1)
        else:
            click = model._inputs(tiny_batch)["click"]
            own = model.experts[1](click, L.normalised_weights(click, 0.0, None)).numpy()
            experts = np.stack([own, mu0], axis=1)
        g = tf.nn.softmax(gate(union, w)).numpy()
        expected = np.clip(np.einsum("be,bed->bd", g, experts), -10, 10)
        np.testing.assert_allclose(enc["logvar"]["click"].numpy(), expected, rtol=1e-5, atol=1e-6)
    loss = model.compute_loss(tiny_batch, training=True)
    assert np.isfinite(loss.numpy())
    model.save(tmp_path / "m", save_traces=False)
    loaded = tf.keras.models.load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded(tiny_batch)["click"].numpy(), out["click"].numpy())


def test_encoder_config_errors_name_the_conflict():
    with pytest.raises(ValueError, match=r"invalid BVAEConfig\.encoder: 'moe'"):
        _config(encoder="moe")
    with pytest.raises(ValueError, match="needs use_base=True"):
        _config(encoder="mmoe", use_base=False)
    with pytest.raises(ValueError, match="variant='union_vae'"):
        _config(encoder="cgc", variant="union_vae")


def test_item_path_adds_learned_cross_behavior_logits_and_round_trips(tiny_batch, tmp_path):
    model = _model(tiny_batch, item_path=True)
    plain = model(tiny_batch)
    # Zero at the start: plain BVAE. Then set weights and check the formula on the
    # dense rows: s_k(u, i) = sum_{b != k} x_b(u, i) (a_kb + w_kbi).
    rng = np.random.default_rng(0)
    path = model.item_path
    path.pair_weights.assign(rng.normal(size=(3, 3)).astype(np.float32))
    path.item_weights.assign(rng.normal(size=(3, 3, NUM_ITEMS)).astype(np.float32))
    logits = model(tiny_batch)
    xs = [_dense(tiny_batch, F.items_key(b)) for b in BEHAVIORS]
    a, w = path.pair_weights.numpy(), path.item_weights.numpy()
    for k, b in enumerate(BEHAVIORS):
        extra = sum(xs[j] * (a[k, j] + w[k, j]) for j in range(3) if j != k)
        np.testing.assert_allclose(
            logits[b].numpy(), plain[b].numpy() + extra, rtol=1e-5, atol=1e-5
        )
        # recommend ranks the same scores, own items excluded.
        masked = logits[b].numpy().copy()
        masked[xs[k] > 0] = -np.inf
        items = model.recommend(tiny_batch, k=6)[b][1].numpy()
        np.testing.assert_array_equal(items, np.argsort(-masked, axis=1, kind="stable")[:, :6])
    model.save(tmp_path / "m", save_traces=False)
    loaded = tf.keras.models.load_model(tmp_path / "m")
    for b in BEHAVIORS:
        np.testing.assert_array_equal(loaded(tiny_batch)[b].numpy(), logits[b].numpy())
    with pytest.raises(ValueError, match="item_path links behaviors"):
        _config(item_path=True, behaviors=("click",))


def test_behavior_mean_starts_as_bvae_adds_scaled_residuals_learns_and_round_trips(
    tiny_batch, tmp_path
):
    plain = _model(tiny_batch)
    model = _model(tiny_batch, behavior_mean=True)
    # a_k = 0 at the start: the same scores and the same training loss as BVAE.
    for b in BEHAVIORS:
        np.testing.assert_array_equal(model(tiny_batch)[b].numpy(), plain(tiny_batch)[b].numpy())
    np.testing.assert_allclose(
        model.compute_loss(tiny_batch, training=True).numpy(),
        plain.compute_loss(tiny_batch, training=True).numpy(),
        rtol=1e-6,
    )
    # mean_k = mu_0 + a_k r_k(x^{B_k}), r_k the behavior's own residual encoder.
    model.residual_scale.assign([0.5, -1.0, 2.0])
    enc, base = model.encode(tiny_batch), plain.encode(tiny_batch)
    for k, b in enumerate(BEHAVIORS):
        rows = enc["inputs"][b]
        r = model.residual_encoders[k](rows, L.normalised_weights(rows, 0.0, None)).numpy()
        np.testing.assert_allclose(
            enc["mean"][b].numpy(), base["mean"][b].numpy() + [0.5, -1.0, 2.0][k] * r, atol=1e-5
        )
    scored = {b: x.numpy() for b, x in model(tiny_batch).items()}
    model.save(tmp_path / "m", save_traces=False)
    loaded = tf.keras.models.load_model(tmp_path / "m")
    for b in BEHAVIORS:
        np.testing.assert_array_equal(loaded(tiny_batch)[b].numpy(), scored[b])
    # Training moves the scales from 0 and, through them, the residual encoders.
    fresh = _model(tiny_batch, behavior_mean=True)
    kernels = [e.kernel.numpy().copy() for e in fresh.residual_encoders]
    for _ in range(3):
        fresh.train_step(tiny_batch)
    assert np.all(fresh.residual_scale.numpy() != 0.0)
    assert all(
        not np.array_equal(e.kernel.numpy(), k0)
        for e, k0 in zip(fresh.residual_encoders, kernels, strict=True)
    )
    for bad in (
        {"encoder": "exchange"},
        {"use_base": False},
        {"behaviors": ("click",)},
        {"variant": "union_vae"},
        {"behavior_mean": 1},
    ):
        with pytest.raises(ValueError, match="behavior_mean"):
            _config(behavior_mean=True, **bad) if "behavior_mean" not in bad else _config(**bad)


def test_cross_behavior_boost_adds_to_scores_only_and_round_trips(tiny_batch, tmp_path):
    model = _model(tiny_batch, cross_behavior_boost=(0.0, 0.0, 0.0))
    plain = model(tiny_batch)
    loss = model.compute_loss(tiny_batch, training=False)
    boost = np.array([2.0, 0.5, 1000.0], np.float32)
    model.cross_behavior_boost.assign(boost)
    logits = model(tiny_batch)
    # Training is unchanged: the loss does not read the boost.
    np.testing.assert_allclose(model.compute_loss(tiny_batch, training=False), loss, rtol=1e-6)
    xs = [_dense(tiny_batch, F.items_key(b)) for b in BEHAVIORS]
    # Some item is under both other behaviors: the boost counts it once.
    assert any((sum(xs[j] for j in range(3) if j != k) > 1).any() for k in range(3))
    for k, b in enumerate(BEHAVIORS):
        touched = np.minimum(sum(xs[j] for j in range(3) if j != k), 1.0)
        np.testing.assert_allclose(
            logits[b].numpy(), plain[b].numpy() + boost[k] * touched, rtol=1e-5, atol=1e-4
        )
        masked = logits[b].numpy().copy()
        masked[xs[k] > 0] = -np.inf
        items = model.recommend(tiny_batch, k=6)[b][1].numpy()
        np.testing.assert_array_equal(items, np.argsort(-masked, axis=1, kind="stable")[:, :6])
    # A boost of 1000: every user's touched items (not their own favourites) come first.
    fav = BEHAVIORS.index("favorite")
    top = model.recommend(tiny_batch, k=NUM_ITEMS)["favorite"][1].numpy()
    touched = np.minimum(sum(xs[j] for j in range(3) if j != fav), 1.0) * (xs[fav] == 0)
    for row, ranked in enumerate(top):
        n = int(touched[row].sum())
        assert set(ranked[:n]) == set(np.flatnonzero(touched[row]))
    model.save(tmp_path / "m", save_traces=False)
    loaded = tf.keras.models.load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.cross_behavior_boost.numpy(), boost)
    for b in BEHAVIORS:
        np.testing.assert_array_equal(loaded(tiny_batch)[b].numpy(), logits[b].numpy())
    for bad in ((1.0, 1.0), (1.0, -1.0, 0.0), (1.0, float("inf"), 0.0)):
        with pytest.raises(ValueError, match="cross_behavior_boost"):
            _config(cross_behavior_boost=bad)
    with pytest.raises(ValueError, match="cross_behavior_boost"):
        _config(cross_behavior_boost=(1.0, 1.0, 1.0), top_k_chunk_size=4)


def test_item_path_learns_that_clicked_items_get_bought():
    # Planted: every purchase is of an item the user clicked (among 4 of 20), the rest
    # of the catalog is unstructured. The path's purchase <- click weight turns positive
    # and ranks the clicked, unbought items first.
    rng = np.random.default_rng(0)
    n, m = 200, 20
    click = np.zeros((n, m), np.float32)
    buy = np.zeros_like(click)
    for u in range(n):
        items = rng.choice(m, 4, replace=False)
        click[u, items] = 1
        buy[u, items[:2]] = 1
    batch = sparse_batch({F.items_key("purchase"): buy, F.items_key("click"): click})
    cfg = Mo.BVAEConfig(
        behaviors=("purchase", "click"),
        num_items=m,
        latent_dim=4,
        item_path=True,
        learning_rate=0.05,
        anneal_steps=0,
    )
    model = Mo.build_model(cfg)
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(), epochs=1, steps_per_epoch=60, verbose=0)
    assert model.item_path.pair_weights.numpy()[0, 1] > 0.5
    scores = model(batch)["purchase"].numpy()
    scores[buy > 0] = -np.inf
    top2 = np.argsort(-scores, axis=1)[:, :2]
    assert click[np.arange(n)[:, None], top2].mean() > 0.9


def test_item_path_scale_multiplies_the_pair_weights_adam_steps(tiny_batch):
    # From zero, Adam's first step moves every weight by about its learning rate,
    # whatever the gradient's scale: both paths get the same weights (up to items whose
    # gradient is near Adam's epsilon), and the logits their pair weights add differ by
    # the scale; the per-item weights are not scaled.
    runs = {}
    for scale in (1.0, 10.0):
        model = _model(tiny_batch, item_path=True, item_path_scale=scale)
        model.compile(optimizer=Mo.make_optimizer(model.bvae_config))
        model.fit(tf.data.Dataset.from_tensors(tiny_batch), epochs=1, verbose=0)
        path = model.item_path
        weights = [path.pair_weights.numpy(), path.item_weights.numpy()]
        path.item_weights.assign(tf.zeros_like(path.item_weights))
        with_pairs = model(tiny_batch)
        path.pair_weights.assign(tf.zeros_like(path.pair_weights))
        without = model(tiny_batch)
        runs[scale] = weights, [with_pairs[b].numpy() - without[b].numpy() for b in BEHAVIORS]
    (w10, added10), (w1, added1) = runs[10.0], runs[1.0]
    assert np.abs(w1[0]).max() > 5e-4  # the step did move the path: about 1e-3
    np.testing.assert_allclose(w10[0], w1[0], rtol=1e-3)
    np.testing.assert_allclose(w10[1], w1[1], atol=1e-4)
    assert np.abs(w1[1]).max() > 5e-4
    for big, small in zip(added10, added1, strict=True):
        assert np.abs(big).max() > 5e-3
        np.testing.assert_allclose(big, 10.0 * small, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="item_path_scale"):
        _config(item_path=True, item_path_scale=0.0)
    with pytest.raises(ValueError, match="scale must be > 0"):
        L.CrossBehaviorItemPath(3, NUM_ITEMS, scale=-1.0)


def test_item_path_drop_overlap_hides_only_co_occurring_items_in_training(tiny_batch):
    path = L.CrossBehaviorItemPath(2, 6)
    # Row 0: target {1, 2}; source {1, 3}. Row 1: target {}; source {2}. Row 2: target
    # {5}; source {0, 5}. Overlaps: (0, 1) and (2, 5).
    target = L.SparseRows(tf.constant([0, 0, 2], tf.int64), tf.constant([1, 2, 5], tf.int64), 3)
    source = L.SparseRows(
        tf.constant([0, 0, 1, 2, 2], tf.int64), tf.constant([1, 3, 2, 0, 5], tf.int64), 3
    )
    seed = tf.constant([1, 2], tf.int64)

    def pairs(rate, target_rows=target):
        rows, cols, _ = path.entries([target_rows, source], 0, drop_overlap=rate, seed=seed)
        return sorted(zip(rows.numpy().tolist(), cols.numpy().tolist(), strict=True))

    everything = [(0, 1), (0, 3), (1, 2), (2, 0), (2, 5)]
    assert pairs(0.0) == everything
    assert pairs(1.0) == [(0, 3), (1, 2), (2, 0)]
    empty = L.SparseRows(tf.zeros([0], tf.int64), tf.zeros([0], tf.int64), 3)
    assert pairs(1.0, empty) == everything  # no target items: nothing overlaps
    assert pairs(0.5) == pairs(0.5)  # seeded
    # In the model: only the training loss changes.
    plain = _model(tiny_batch, item_path=True)
    drop = _model(tiny_batch, item_path=True, item_path_drop_overlap=0.9)
    for m in (plain, drop):
        m.item_path.pair_weights.assign(tf.fill([3, 3], 2.0))
    assert float(drop.compute_loss(tiny_batch)) == pytest.approx(
        float(plain.compute_loss(tiny_batch)), rel=1e-6
    )
    assert float(drop.compute_loss(tiny_batch, training=True)) != pytest.approx(
        float(plain.compute_loss(tiny_batch, training=True)), rel=1e-3
    )
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="item_path_drop_overlap"):
            _config(item_path=True, item_path_drop_overlap=bad)


def test_loss_weights_replace_sdwl_with_fixed_weights(tiny_batch):
    equal = _model(tiny_batch, loss_weights=(1.0, 1.0, 1.0))
    plain = _model(tiny_batch, use_sdwl=False)
    heavy = _model(tiny_batch, loss_weights=(3.0, 1.0, 1.0))
    base = float(equal.compute_loss(tiny_batch))
    # Weights of one are SDWL off: the same loss (same seed, same weights).
    assert base == pytest.approx(float(plain.compute_loss(tiny_batch)), rel=1e-6)
    # beta = 0 at step 0: the purchase term is its mean NLL, counted twice more.
    purchase_nll = float(equal._trackers["purchase_nll"].result())
    assert float(heavy.compute_loss(tiny_batch)) == pytest.approx(
        base + 2.0 * purchase_nll, rel=1e-5
    )
    with pytest.raises(ValueError, match="one finite positive weight per behavior"):
        _config(loss_weights=(1.0, 1.0))
    round_trip = Mo.BVAEConfig.from_dict(heavy.bvae_config.to_dict())
    assert round_trip.loss_weights == (3.0, 1.0, 1.0)


def test_popularity_proposal_draws_popular_items_and_corrects_with_log_q(tiny_batch):
    """fit_proposal counts each item's train users; negatives follow count + 1; the
    loss subtracts log q of every candidate (logQ correction)."""
    model = _model(tiny_batch, sampled_softmax=400, sampled_proposal="popularity")
    dataset = tf.data.Dataset.from_tensors(tiny_batch)
    counts = model.fit_proposal(dataset)
    behavior = BEHAVIORS[0]
    expected = np.bincount(tiny_batch[F.items_key(behavior)].values.numpy(), minlength=NUM_ITEMS)
    np.testing.assert_array_equal(counts[behavior], expected)
    q = (expected + 1) / (expected + 1).sum()
    candidates, log_q = model._candidates(tf.constant([0], tf.int64), 1, 0)
    np.testing.assert_allclose(np.exp(log_q.numpy()), q[candidates.numpy()], rtol=1e-5)
    # The draws follow q: 400 draws cover the popular items, rarely the rare ones.
    draws = tf.random.stateless_categorical(
        model.proposal_logits[0][None, :], 20000, seed=[1, 2]
    ).numpy()[0]
    freq = np.bincount(draws, minlength=NUM_ITEMS) / len(draws)
    np.testing.assert_allclose(freq, q, atol=0.01)
    with tf.GradientTape():
        assert np.isfinite(model.compute_loss(tiny_batch, training=True).numpy())
    # Uniform: no correction, no proposal weights.
    uniform = _model(tiny_batch, sampled_softmax=3)
    assert uniform.proposal_logits == []
    assert uniform._candidates(tf.constant([0], tf.int64), 1, 0)[1] is None
    with pytest.raises(ValueError, match="popularity"):
        uniform.fit_proposal(dataset)


def test_latent_dims_keep_each_behaviors_first_coordinates(tiny_batch, tmp_path):
    """latent_dims: behavior k's mu, logvar, z and z_hat are 0 beyond d_k, its KL and
    SDWL sigma_bar are over the d_k kept coordinates, its decoder reads only those;
    all d_k = d is plain BVAE."""
    plain = _model(tiny_batch)
    full = _model(tiny_batch, latent_dims=(8, 8, 8))
    for b in BEHAVIORS:
        np.testing.assert_array_equal(full(tiny_batch)[b].numpy(), plain(tiny_batch)[b].numpy())
    assert float(full.compute_loss(tiny_batch, training=True)) == float(
        plain.compute_loss(tiny_batch, training=True)
    )

    dims = (8, 4, 2)
    model = _model(tiny_batch, latent_dims=dims)
    for training in (False, True):
        enc = model.encode(tiny_batch, training=training)
        for b, d_k in zip(BEHAVIORS, dims, strict=True):
            for key in ("mean", "mu", "logvar", "z", "z_hat"):
                tail = enc[key][b].numpy()[:, d_k:]
                np.testing.assert_array_equal(tail, np.zeros_like(tail), err_msg=f"{key} {b}")
            if training and d_k < 8:  # the kept coordinates are sampled
                assert not np.allclose(enc["z"][b].numpy(), enc["mu"][b].numpy())
    # The decoders' columns beyond d_k change nothing.
    scores = {b: x.numpy() for b, x in model(tiny_batch).items()}
    for dec, d_k in zip(model.decoders, dims, strict=True):
        kernel = dec.weights[0]
        kernel.assign(tf.concat([kernel[:, :d_k], 1e3 * tf.ones_like(kernel[:, d_k:])], 1))
    for b in BEHAVIORS:
        np.testing.assert_allclose(model(tiny_batch)[b].numpy(), scores[b], rtol=1e-6)
    # Without TFF, behavior k reads only the first d_k coordinates of the union mean
    # (its GFF gate too): the others change no score of it.
    alone = _model(tiny_batch, latent_dims=dims, use_tff=False)
    before = {b: x.numpy() for b, x in alone(tiny_batch).items()}
    kernel = alone.mean_encoder.weights[0]
    kernel.assign(tf.concat([kernel[:, :2], 5.0 * tf.ones_like(kernel[:, 2:])], 1))
    after = {b: x.numpy() for b, x in alone(tiny_batch).items()}
    np.testing.assert_allclose(after["favorite"], before["favorite"], rtol=1e-6)  # d_k = 2
    assert not np.allclose(after["purchase"], before["purchase"])  # d_k = 8
    # KL, sigma_bar and the GFF gate's tracker read the kept coordinates only (beta = 0
    # at step 0).
    model.compute_loss(tiny_batch)
    enc = model.encode(tiny_batch)
    for k, (b, d_k) in enumerate(zip(BEHAVIORS, dims, strict=True)):
        gate = model.filters[k].gate(enc["mean"][b])[:, :d_k]
        assert float(model._trackers[f"{b}_gff_gate"].result()) == pytest.approx(
            float(tf.reduce_mean(gate)), rel=1e-5
        )
        mu, logvar = enc["mu"][b][:, :d_k], enc["logvar"][b][:, :d_k]
        assert float(model._trackers[f"{b}_kl"].result()) == pytest.approx(
            float(tf.reduce_mean(losses.gaussian_kl(mu, logvar))), rel=1e-5
        )
        assert float(model._trackers[f"{b}_sigma"].result()) == pytest.approx(
            float(tf.reduce_mean(tf.exp(losses.log_mean_sigma(logvar)))), rel=1e-5
        )
    # Training leaves the unread decoder columns where they are, and round-trips.
    trained = _model(tiny_batch, latent_dims=dims)
    before = [dec.weights[0].numpy().copy() for dec in trained.decoders]
    for _ in range(3):
        trained.train_step(tiny_batch)
    for dec, k0, d_k in zip(trained.decoders, before, dims, strict=True):
        np.testing.assert_array_equal(dec.weights[0].numpy()[:, d_k:], k0[:, d_k:])
        assert not np.array_equal(dec.weights[0].numpy()[:, :d_k], k0[:, :d_k])
    assert Mo.BVAEConfig.from_dict(trained.bvae_config.to_dict()).latent_dims == dims
    scored = {b: x.numpy() for b, x in trained(tiny_batch).items()}
    trained.save(tmp_path / "m", save_traces=False)
    loaded = tf.keras.models.load_model(tmp_path / "m")
    for b in BEHAVIORS:
        np.testing.assert_array_equal(loaded(tiny_batch)[b].numpy(), scored[b])
    for bad in (
        {"latent_dims": (8, 4)},
        {"latent_dims": (8, 4, 9)},
        {"latent_dims": (8, 0, 2)},
        {"latent_dims": (8, True, 2)},
        {"latent_dims": "842"},
        {"latent_dims": (4,), "behaviors": ("click",)},
        {"latent_dims": (8, 4, 2), "variant": "union_vae"},
        {"latent_dims": (4, 4, 2)},  # coordinates 5-8 unused
        {"latent_dims": (8, 4, 2), "approximate_top_k": 0.5},
    ):
        with pytest.raises(ValueError, match="latent_dims must be one int in"):
            _config(**bad)


def test_training_memory_floor_counts_the_decoders_and_one_batch_of_logits():
    # 3 decoders of [100, 1000] float32 with 2 Adam slots; 3 x [50, 1000] logits.
    assert Mo.training_memory_floor(1000, 3, 100, 50, True) == 12 * 300_000 + 4 * 150_000
    assert Mo.training_memory_floor(1000, 3, 100, 50, False) == 12 * 300_000
    Mo.check_training_memory(1000, 3, 100, 50, True, flags="x", available=4_200_000)
    with pytest.raises(
        ValueError, match=r"needs at least 0.0 GB .* and 0.0 GB is available: lower x"
    ):
        Mo.check_training_memory(1000, 3, 100, 50, True, flags="x", available=4_199_999)


@pytest.mark.parametrize(
    "overrides, decoders, square",
    [
        ({}, 3, 3),  # gated GFF: one [d, d] kernel per behavior
        ({"gate_mode": "reference"}, 3, 0),  # its GFF kernel is [d, 1]
        ({"use_gff": False}, 3, 0),
        ({"variant": "union_vae"}, 1, 0),  # one decoder, of the union
    ],
)
def test_a_configs_memory_floor_counts_its_tasks_and_gate_kernels(overrides, decoders, square):
    config = Mo.BVAEConfig(
        behaviors=("purchase", "click", "favorite"), num_items=1000, latent_dim=100, **overrides
    )
    assert Mo.config_square_kernels(config) == square
    floor = 12 * (decoders * 100 * 1000 + square * 100**2) + 4 * decoders * 50 * 1000
    with pytest.raises(ValueError, match=rf"with {decoders} decoder"):
        Mo.check_config_memory(config, 50, flags="x", available=floor - 1)
    if square:
        with pytest.raises(ValueError, match=rf"{square} \[d, d\] gate kernel"):
            Mo.check_config_memory(config, 50, flags="x", available=floor - 1)
    import psutil

    assert floor < psutil.virtual_memory().available  # the check passes on this machine
    Mo.check_config_memory(config, 50, flags="x")
