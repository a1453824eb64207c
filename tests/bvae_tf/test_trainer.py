"""Tests for the TFX Trainer run_fn and the serving export (signatures, reload)."""

import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.python.tools import saved_model_cli
from tfx.components.trainer.fn_args_utils import FnArgs

import bvae_tf  # noqa: F401
from bvae_tf import export, features, trainer
from bvae_tf import model as model_lib
from tests.pipeline import tiny

pytestmark = pytest.mark.unit

TOP_K = 5


@pytest.fixture(scope="module")
def data(tiny_pipeline_data):
    return tiny_pipeline_data


def _fn_args(data, tmp_path, model=None, **training):
    return FnArgs(
        train_files=data.transformed_files(features.TRAIN),
        eval_files=data.transformed_files(features.EVAL),
        transform_output=data.transform_output,
        serving_model_dir=str(tmp_path / "model" / "Format-Serving"),
        model_run_dir=str(tmp_path / "model_run"),
        custom_config={
            "behaviors": list(tiny.BEHAVIORS),
            "model": {"latent_dim": 8, **(model or {})},
            "training": {"epochs": 2, "patience": 2, "batch_size": 16, "verbose": 0, **training},
            "top_k": TOP_K,
        },
    )


#: The large-catalog settings (sampled softmax with the popularity proposal, chunked
#: ranking), run under a MirroredStrategy: the proposal is set in cross-replica context.
LARGE_CATALOG = {"sampled_softmax": 5, "sampled_proposal": "popularity", "top_k_chunk_size": 7}


@pytest.mark.parametrize(
    "strategy",
    [
        {},
        {"distribution_strategy": "mirrored", "devices": ["/cpu:0"], "model": LARGE_CATALOG},
        # Weight averaging's variables are made and updated under the strategy too.
        {
            "distribution_strategy": "mirrored",
            "devices": ["/cpu:0"],
            "model": {"weight_average": 0.9},
        },
    ],
    ids=["default", "mirrored-1-device-large-catalog", "mirrored-weight-average"],
)
def test_run_fn_trains_and_exports(data, tmp_path, strategy, caplog):
    args = _fn_args(data, tmp_path, **strategy)
    with caplog.at_level(logging.WARNING):
        trainer.run_fn(args)
    # 2 epochs, patience 2: early stopping cannot act, and the log says so.
    assert "training.patience (2) >= training.epochs - 1 (1)" in caplog.text
    with open(os.path.join(args.model_run_dir, trainer.FIT_RESULT_FILE)) as f:
        result = json.load(f)
    assert result["epochs_run"] == 2
    assert 1 <= result["best_epoch"] <= 2
    assert result["model_config"]["num_items"] == 30
    # The Trainer's parts, timed; training.fit's own train and eval time lie within.
    assert sorted(result["seconds"]) == ["export", "fit"]
    assert result["seconds"]["fit"] > result["train_seconds"] + result["eval_seconds"] > 0
    for key, value in strategy.get("model", {}).items():
        assert result["model_config"][key] == value
    assert os.listdir(os.path.join(args.model_run_dir, "tensorboard"))
    loaded = tf.saved_model.load(args.serving_model_dir)
    out = loaded.signatures[features.SERVING_SIGNATURE](
        examples=tf.constant(data.serialized(features.EVAL)[:3])
    )
    for b in tiny.BEHAVIORS:
        assert out[features.item_ids_output(b)].shape == (3, TOP_K)
        assert out[features.scores_output(b)].dtype == tf.float32


@pytest.fixture(scope="module")
def exported(data, tmp_path_factory):
    """An (untrained, seeded) model exported next to the same model kept in memory."""
    output = tft.TFTransformOutput(data.transform_output)
    num_items = output.vocabulary_size_by_name(features.ITEM_VOCABULARY)
    model = model_lib.build_model(
        model_lib.BVAEConfig(behaviors=tiny.BEHAVIORS, num_items=num_items, latent_dim=8)
    )
    ds = trainer.examples_dataset(
        data.transformed_files(features.TRAIN),
        output.transformed_feature_spec(),
        batch_size=16,
    )
    model.fit(ds, epochs=1, verbose=0)
    export_dir = str(tmp_path_factory.mktemp("export") / "serving")
    export.export_serving_model(model, output, export_dir, top_k=TOP_K)
    return model, output, export_dir


@pytest.fixture(scope="module")
def signatures(exported):
    return tf.saved_model.load(exported[2]).signatures


def _serve(signatures, serialized):
    return signatures[features.SERVING_SIGNATURE](examples=tf.constant(serialized, dtype=tf.string))


def test_saved_model_cli_lists_both_signatures(exported, capsys):
    _, _, export_dir = exported
    # What `saved_model_cli show --dir <export> --all` prints, run in this process (the
    # CLI's own function: a subprocess would spend ~10 s importing TensorFlow again).
    saved_model_cli._show_all(export_dir)
    shown = capsys.readouterr().out
    assert f"signature_def['{features.SERVING_SIGNATURE}']" in shown
    assert f"signature_def['{features.TRANSFORM_SIGNATURE}']" in shown
    assert f"signature_def['{features.SCORE_SIGNATURE}']" in shown
    assert f"inputs['{features.SERVING_INPUT}'] tensor_info:" in shown
    for b in tiny.BEHAVIORS:
        assert f"outputs['{features.item_ids_output(b)}']" in shown
    assert f"outputs['{features.OOV_COUNT}']" in shown
    assert f"outputs['{features.UNKNOWN_FEATURE_COUNT}']" in shown


def test_reloaded_model_answers_like_the_in_memory_model(data, exported, signatures):
    model, output, _ = exported
    serialized = data.serialized(features.EVAL)
    out = _serve(signatures, serialized)
    vocab = [v.decode() for v in output.vocabulary_by_name(features.ITEM_VOCABULARY)]
    transformed = output.transform_features_layer()(
        tf.io.parse_example(
            serialized,
            {features.items_key(b): tf.io.VarLenFeature(tf.string) for b in tiny.BEHAVIORS},
        )
    )
    inputs = {features.items_key(b): transformed[features.items_key(b)] for b in tiny.BEHAVIORS}
    expected = model.recommend(inputs, k=TOP_K)
    logits = model(inputs)
    for b in tiny.BEHAVIORS:
        scores, items = expected[b]
        ids = out[features.item_ids_output(b)].numpy().astype(str)
        assert ids.tolist() == [[vocab[i] for i in row] for row in items.numpy()]
        np.testing.assert_allclose(
            out[features.scores_output(b)].numpy(), scores.numpy(), rtol=1e-5
        )
        # Scores are the logits of those items, descending, and never the user's own items.
        np.testing.assert_allclose(
            np.take_along_axis(logits[b].numpy(), items.numpy(), axis=1), scores.numpy(), rtol=1e-5
        )
        assert np.all(np.diff(scores.numpy(), axis=1) <= 0)
        for row, raw in zip(ids, data.raw_rows[features.EVAL], strict=True):
            own = {v.decode() for v in raw[features.items_key(b)]}
            assert not own & set(row)


def test_an_approximate_export_serves_from_its_index_and_keeps_exact_scores(data, tmp_path):
    """``approximate_top_k``: the export holds the IVF index (and no [d, m] serving
    copy), serving_default answers from it after a reload, the scores are the exact
    logits of the items returned, and the user's own items never come back."""
    output = tft.TFTransformOutput(data.transform_output)
    num_items = output.vocabulary_size_by_name(features.ITEM_VOCABULARY)
    model = model_lib.build_model(
        model_lib.BVAEConfig(
            behaviors=tiny.BEHAVIORS, num_items=num_items, latent_dim=8, approximate_top_k=0.3
        )
    )
    export_dir = str(tmp_path / "serving")
    export.export_serving_model(model, output, export_dir, top_k=TOP_K)
    names = [
        n for n, _ in tf.train.list_variables(os.path.join(export_dir, "variables", "variables"))
    ]
    assert any("approximate_indexes" in n for n in names)
    assert not any("item_embeddings_by_dim" in n for n in names)
    serialized = data.serialized(features.EVAL)
    out = _serve(tf.saved_model.load(export_dir).signatures, serialized)
    vocab = [v.decode() for v in output.vocabulary_by_name(features.ITEM_VOCABULARY)]
    position = {item: i for i, item in enumerate(vocab)}
    transformed = output.transform_features_layer()(
        tf.io.parse_example(
            serialized,
            {features.items_key(b): tf.io.VarLenFeature(tf.string) for b in tiny.BEHAVIORS},
        )
    )
    logits = model(
        {features.items_key(b): transformed[features.items_key(b)] for b in tiny.BEHAVIORS}
    )
    for b in tiny.BEHAVIORS:
        ids = out[features.item_ids_output(b)].numpy().astype(str)
        assert ids.shape == (len(serialized), TOP_K) and (ids != "").all()
        items = np.vectorize(position.get)(ids)
        np.testing.assert_allclose(
            out[features.scores_output(b)].numpy(),
            np.take_along_axis(logits[b].numpy(), items, axis=1),
            rtol=1e-5,
            atol=1e-6,
        )
        for row, raw in zip(ids, data.raw_rows[features.EVAL], strict=True):
            assert not {v.decode() for v in raw[features.items_key(b)]} & set(row)


def test_score_items_gives_the_in_memory_logits(data, exported, signatures):
    model, output, _ = exported
    batch = data.transformed_batch(features.EVAL, output)
    inputs = {features.items_key(b): batch[features.items_key(b)] for b in tiny.BEHAVIORS}
    score = signatures[features.SCORE_SIGNATURE]
    got = score(**{k: tf.sparse.to_dense(v, default_value=-1) for k, v in inputs.items()})
    expected = model(inputs)
    for b in tiny.BEHAVIORS:
        np.testing.assert_allclose(
            got[features.logits_output(b)].numpy(), expected[b].numpy(), rtol=1e-5, atol=1e-6
        )


def test_batch_of_one_and_of_zero_keep_their_shapes(data, signatures):
    one = _serve(signatures, data.serialized(features.EVAL)[:1])
    zero = _serve(signatures, [])
    for b in tiny.BEHAVIORS:
        assert one[features.item_ids_output(b)].shape == (1, TOP_K)
        assert one[features.scores_output(b)].shape == (1, TOP_K)
        assert zero[features.item_ids_output(b)].shape == (0, TOP_K)
    assert one[features.OOV_COUNT].shape == (1,)
    assert zero[features.OOV_COUNT].shape == (0,)
    assert zero[features.UNKNOWN_FEATURE_COUNT].shape == (0,)


def test_unknown_ids_are_counted_and_an_empty_history_is_ranked(signatures):
    request = tiny.serialize(
        {
            features.items_key("purchase"): [b"item-001", b"nope", b"never-seen"],
            features.items_key("click"): [b"nope-again"],
        }
    )
    empty = tiny.serialize({})
    out = _serve(signatures, [request, empty])
    assert out[features.OOV_COUNT].numpy().tolist() == [3, 0]
    assert b"item-001" not in out[features.item_ids_output("purchase")].numpy()[0]
    assert np.all(np.isfinite(out[features.scores_output("purchase")].numpy()))


def test_a_misspelt_history_key_is_counted_not_taken_for_an_empty_history(data, signatures):
    typo = tiny.serialize({"purchase_item": [b"item-001"], "buy_items": [b"item-002"]})
    own_format = data.serialized(features.EVAL)[:1]  # user_id, <b>_items and <b>_heldout
    out = _serve(signatures, [typo, *own_format, tiny.serialize({})])
    assert out[features.UNKNOWN_FEATURE_COUNT].numpy().tolist() == [2, 0, 0]
    assert out[features.OOV_COUNT].numpy().tolist()[0] == 0  # no history was read
    with pytest.raises(tf.errors.InvalidArgumentError, match="parse"):
        _serve(signatures, [b"not an Example"])


def test_transform_features_matches_the_materialized_transform(data, exported, signatures):
    _, output, _ = exported
    got = signatures[features.TRANSFORM_SIGNATURE](
        examples=tf.constant(data.serialized(features.EVAL))
    )
    expected = data.transformed_batch(features.EVAL, output)
    for key, value in expected.items():
        if isinstance(value, tf.SparseTensor):
            np.testing.assert_array_equal(
                tf.sparse.to_dense(export.padded_to_sparse(got[key])).numpy(),
                tf.sparse.to_dense(value).numpy(),
            )
        else:
            np.testing.assert_array_equal(got[key].numpy(), value.numpy())
    assert int(tf.reduce_sum(got[features.oov_key(features.heldout_key("purchase"))])) > 0


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"epochs": 0}, "training.epochs"),
        ({"distribution_strategy": "tpu"}, "distribution_strategy"),
        ({"bogus": 1}, "unknown training settings"),
        ({"boost_grid": [1, -1]}, "training.boost_grid"),
        ({"boost_grid": []}, "training.boost_grid"),
        ({"devices": []}, "non-empty list of device names"),
        ({"devices": "/gpu:0"}, "non-empty list of device names"),
        ({"devices": ["/gpu:0", ""]}, "non-empty list of device names"),
        (
            {"devices": ["/gpu:0"], "distribution_strategy": "default"},
            "distribution_strategy 'default' does not read it",
        ),
        (
            {"devices": ["/gpu:0"], "distribution_strategy": "multi_worker_mirrored"},
            "'multi_worker_mirrored' does not read it",
        ),
    ],
)
def test_bad_training_settings_are_clear_errors(training, message):
    with pytest.raises(ValueError, match=message):
        trainer.training_settings(training)


@pytest.mark.parametrize(
    ("devices", "message"),
    [
        (["/gpu:7"], r"'/gpu:7' is not a device of this machine \(it has \[.*'/cpu:0'"),
        (["bogus"], "'bogus' is no device name"),
        (["/cpu:0", "CPU:0"], "names 'CPU:0' twice"),
    ],
)
def test_devices_this_machine_lacks_are_refused_not_placed_elsewhere(devices, message):
    # TensorFlow itself would build a Mirrored replica on "/gpu:7" and run it on the CPU.
    for name in ("mirrored", "auto"):
        with pytest.raises(ValueError, match=message):
            trainer.make_strategy(name, devices)


def test_auto_with_devices_mirrors_over_them():
    strategy = trainer.make_strategy("auto", ["/cpu:0"])
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.extended.worker_devices == ("/job:localhost/replica:0/task:0/device:CPU:0",)


def test_top_k_out_of_range_is_a_clear_error(exported, tmp_path):
    model, output, _ = exported
    with pytest.raises(ValueError, match="top_k"):
        export.export_serving_model(model, output, str(tmp_path / "x"), top_k=10_000)


def test_top_k_above_the_vocabulary_fails_before_the_first_epoch(data, tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("training started although top_k cannot be served")

    monkeypatch.setattr(trainer.training, "fit", no_training)
    args = _fn_args(data, tmp_path)
    args.custom_config["top_k"] = 200
    with pytest.raises(ValueError, match=r"top_k must be an integer in \[1, 30\].*got 200"):
        trainer.run_fn(args)


@pytest.mark.parametrize(
    "model, available",
    [
        ({"latent_dim": 2**30}, None),
        ({"variant": "recvae", "latent_dim": 2**30}, None),
        ({}, 1),  # a machine with 1 byte free
    ],
)
def test_a_training_that_cannot_fit_in_memory_fails_before_any_weight(
    data, tmp_path, monkeypatch, model, available
):
    """A typo in latent_dim (or a machine too small) is refused with the floor and the
    memory available, not ended by the kernel's OOM kill."""
    built = []
    monkeypatch.setattr(trainer.model_lib, "build_model", lambda *a, **k: built.append(a))
    if available is not None:
        memory = type("Memory", (), {"available": available})
        monkeypatch.setattr("psutil.virtual_memory", memory)
    args = _fn_args(data, tmp_path, model=model)
    with pytest.raises(ValueError, match=r"needs at least .* GB .* available: lower model.latent"):
        trainer.run_fn(args)
    assert not built


def test_the_export_describes_itself(exported):
    model, output, export_dir = exported
    info = export.read_export_info(export_dir)
    # The model's order, not the names' (click < purchase).
    assert info.behaviors == tuple(model.behaviors) == tiny.BEHAVIORS
    assert (info.top_k, info.num_items) == (TOP_K, model.num_items)
    vocabulary = [v.decode() for v in output.vocabulary_by_name(features.ITEM_VOCABULARY)]
    assert info.item_ids() == vocabulary


def test_an_export_without_its_description_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="export it again"):
        export.read_export_info(str(tmp_path))
    (tmp_path / "assets.extra").mkdir()
    (tmp_path / export.EXPORT_INFO_FILE).write_text('{"format": 99}')
    with pytest.raises(ValueError, match="format-1 export description"):
        export.read_export_info(str(tmp_path))


@pytest.mark.parametrize(
    "model",
    [{"variant": "popularity"}, {"variant": "repeat"}, {"variant": "ease", "ease_l2": 5.0}],
    ids=["popularity", "repeat", "ease"],
)
def test_run_fn_fits_a_closed_form_baseline_and_exports_the_same_signatures(
    data, tmp_path, model, caplog
):
    args = _fn_args(data, tmp_path)
    args.custom_config["model"] = model
    with caplog.at_level(logging.WARNING):
        trainer.run_fn(args)
    assert "training.patience" not in caplog.text  # a closed form has no epochs
    with open(os.path.join(args.model_run_dir, trainer.FIT_RESULT_FILE)) as f:
        result = json.load(f)
    assert result["model_config"]["variant"] == model["variant"]
    assert result["epochs_run"] == 1 and result["best_score"] > 0.0
    assert os.listdir(os.path.join(args.model_run_dir, "tensorboard", "valid"))
    loaded = tf.saved_model.load(args.serving_model_dir)
    serialized = data.serialized(features.EVAL)[:4]
    out = loaded.signatures[features.SERVING_SIGNATURE](examples=tf.constant(serialized))
    transformed = loaded.signatures[features.TRANSFORM_SIGNATURE](examples=tf.constant(serialized))
    vocabulary = export.read_export_info(args.serving_model_dir).item_ids()
    for b in tiny.BEHAVIORS:
        items = out[features.item_ids_output(b)].numpy()
        assert items.shape == (4, TOP_K)
        seen = transformed[features.items_key(b)].numpy()
        for row, own in zip(items, seen, strict=True):
            own_ids = {vocabulary[i].encode() for i in own if i >= 0}
            assert not own_ids & set(row.tolist())  # own items of b never recommended
    logits = loaded.signatures[features.SCORE_SIGNATURE](
        **{
            features.items_key(b): tf.constant(transformed[features.items_key(b)].numpy())
            for b in tiny.BEHAVIORS
        }
    )
    assert logits[features.logits_output(tiny.BEHAVIORS[0])].shape[1] == 30


@pytest.mark.parametrize(
    "model",
    [{"variant": "vae_pp", "latent_dim": 4}, {"variant": "recvae", "recvae_hidden": 8}],
    ids=["vae_pp", "recvae"],
)
def test_run_fn_trains_a_baseline_and_exports_the_same_signatures(data, tmp_path, model):
    args = _fn_args(data, tmp_path)
    args.custom_config["model"] = model
    trainer.run_fn(args)
    with open(os.path.join(args.model_run_dir, trainer.FIT_RESULT_FILE)) as f:
        result = json.load(f)
    assert result["model_config"]["variant"] == model["variant"]
    assert result["epochs_run"] == 2 and np.isfinite(result["history"][0]["loss"])
    if model["variant"] == "recvae":
        # One RecVAE per behavior, each with its own loss in the history.
        for b in tiny.BEHAVIORS:
            assert np.isfinite(result["history"][1][f"{b}_loss"])
    loaded = tf.saved_model.load(args.serving_model_dir)
    serialized = data.serialized(features.EVAL)[:3]
    out = loaded.signatures[features.SERVING_SIGNATURE](examples=tf.constant(serialized))
    for b in tiny.BEHAVIORS:
        assert out[features.item_ids_output(b)].shape == (3, TOP_K)
        assert np.isfinite(out[features.scores_output(b)].numpy()).all()


def test_run_fn_chooses_the_cross_behavior_boost_on_eval_and_exports_it(data, tmp_path):
    # The per-behavior choice itself: test_experiment's boost-grid test (the same
    # training.choose_cross_behavior_boost). Plain BVAE (0) is always tried.
    args = _fn_args(data, tmp_path, boost_grid=[7])
    trainer.run_fn(args)
    with open(os.path.join(args.model_run_dir, trainer.FIT_RESULT_FILE)) as f:
        result = json.load(f)
    trials = result["boost_trials"]
    assert [t["value"] for t in trials] == [0.0, 7.0]
    chosen = result["model_config"]["cross_behavior_boost"]
    for b, value in zip(tiny.BEHAVIORS, chosen, strict=True):
        scores = [t["eval"][f"{b}/ndcg@5"] for t in trials]
        assert value == trials[scores.index(max(scores))]["value"]  # 0 on a tie
    loaded = tf.saved_model.load(args.serving_model_dir)
    np.testing.assert_array_equal(loaded.cross_behavior_boost.numpy(), chosen)
    # With the boost at 7, the served scores are the logits plus 7 on the items of
    # the other behaviors.
    loaded.cross_behavior_boost.assign(tf.fill(loaded.cross_behavior_boost.shape, 7.0))
    serialized = data.serialized(features.EVAL)[:4]
    transformed = loaded.signatures[features.TRANSFORM_SIGNATURE](examples=tf.constant(serialized))
    items = {b: transformed[features.items_key(b)].numpy() for b in tiny.BEHAVIORS}
    inputs = {features.items_key(b): tf.constant(v) for b, v in items.items()}
    boosted = loaded.signatures[features.SCORE_SIGNATURE](**inputs)
    loaded.cross_behavior_boost.assign(tf.zeros_like(loaded.cross_behavior_boost))
    plain = loaded.signatures[features.SCORE_SIGNATURE](**inputs)
    for b in tiny.BEHAVIORS:
        key = features.logits_output(b)
        expected = np.zeros_like(plain[key].numpy())
        for o in tiny.BEHAVIORS:
            for row, own in enumerate(items[o]):
                if o != b:
                    expected[row, own[own >= 0]] = 7.0
        assert expected.any()
        np.testing.assert_allclose(boosted[key].numpy() - plain[key].numpy(), expected, atol=1e-4)
    # A model without a boost cannot take one: refused before training.
    bad = _fn_args(data, tmp_path / "bad", model={"variant": "vae_pp"}, boost_grid=[1])
    with pytest.raises(ValueError, match="cross_behavior_boost"):
        trainer.run_fn(bad)


@pytest.mark.parametrize("variant", ["vae_pp", "recvae", "ease"])
def test_run_fn_refuses_warm_start_for_a_baseline_before_training(data, tmp_path, variant):
    args = _fn_args(data, tmp_path, warm_start=True)
    args.custom_config["model"] = {"variant": variant}  # EASE refuses the fixture's latent_dim
    with pytest.raises(ValueError, match=r"training\.warm_start=false"):
        trainer.run_fn(args)
    assert not os.path.exists(args.model_run_dir)


def test_train_matrices_hold_every_train_example(data):
    matrices = trainer.train_matrices(data.transformed_files(features.TRAIN), tiny.BEHAVIORS, 30)
    count = len(data.serialized(features.TRAIN))
    for b in tiny.BEHAVIORS:
        assert matrices[b].shape == (count, 30)
        assert set(np.unique(matrices[b].data)) <= {1.0}
    assert sum(m.nnz for m in matrices.values()) > 0


def test_tuner_fn_searches_on_eval_and_run_fn_applies_the_best(data, tmp_path, monkeypatch):
    args = _fn_args(data, tmp_path, epochs=1, patience=1)
    args.working_dir = str(tmp_path / "tuner")
    # As TFX's Tuner passes it: transform_graph_path, no transform_output.
    args.transform_graph_path, args.transform_output = args.transform_output, None
    args.custom_config["tuning"] = {
        "enabled": True,
        "algorithm": "grid",
        "max_trials": 2,
        # Two learning rates, one ramp length (the other names removed): 2 trials.
        "space": {
            "learning_rate": [1e-4, 3e-2],
            "anneal_epochs": [3],
            "beta_cap": None,
            "dropout": None,
            "batch_size": None,
        },
    }
    found = trainer.tuner_fn(args)
    found.tuner.search(**found.fit_kwargs)
    trials = found.tuner.oracle.get_best_trials(num_trials=10)
    assert sorted(t.hyperparameters.values["learning_rate"] for t in trials) == [1e-4, 3e-2]
    scores = [t.score for t in trials]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.0
    best = found.tuner.get_best_hyperparameters()[0]
    assert best.values == trials[0].hyperparameters.values
    # The Trainer applies the best values (anneal_epochs -> anneal_steps by the
    # number of train users and the batch size).
    args.hyperparameters = best.get_config()
    args.transform_output = args.transform_graph_path
    # The export is tested above; here only what the Trainer trained matters.
    monkeypatch.setattr(trainer.export, "export_serving_model", lambda *a, **k: None)
    trainer.run_fn(args)
    with open(os.path.join(args.model_run_dir, trainer.FIT_RESULT_FILE)) as f:
        result = json.load(f)
    assert result["tuned_hyperparameters"] == best.values
    assert result["model_config"]["learning_rate"] == best.values["learning_rate"]
    users = trainer.count_examples(args.train_files)
    steps = -(-users // 16)
    assert result["model_config"]["anneal_steps"] == best.values["anneal_epochs"] * steps


def _warm_model(num_items, **overrides):
    config = model_lib.BVAEConfig(
        behaviors=tiny.BEHAVIORS, num_items=num_items, latent_dim=8, **overrides
    )
    model = model_lib.build_model(config)
    model(
        {
            features.items_key(b): tf.SparseTensor(
                tf.zeros([0, 2], tf.int64), tf.zeros([0], tf.int64), [0, 0]
            )
            for b in tiny.BEHAVIORS
        }
    )
    return model


def _short(name: str) -> str:
    """``<layer>/<weight>:0`` whatever scopes the model's name adds in front."""
    return "/".join(name.split("/")[-2:])


def test_warm_start_carries_rows_by_item_id_and_keeps_new_items_fresh(exported):
    from bvae_tf import warm_start

    base, _, export_dir = exported
    old_ids = export.read_export_info(export_dir).item_ids()
    # Tomorrow's vocabulary: 3 items gone, 2 new ones, another order.
    new_ids = ["new-a", *reversed(old_ids[3:]), "new-b"]
    model = _warm_model(len(new_ids))
    fresh = {w.name: w.numpy() for w in model.weights}
    report = warm_start.warm_start(model, export_dir, new_ids)
    assert (report.items_kept, report.items_new, report.items_dropped) == (27, 2, 3)
    # The exported model also holds the decoders' serving layout (``*_by_dim``); the
    # rest pairs up with a fresh model's weights in order.
    trained = [w for w in base.weights if "_by_dim" not in w.name]
    position = {item: i for i, item in enumerate(old_ids)}
    checked = set()
    for old_weight, weight in zip(trained, model.weights, strict=True):
        name, old = _short(weight.name), old_weight.numpy()
        value = weight.numpy()
        if name in ("decoder_purchase/item_embeddings:0", "mu0/kernel:0"):
            for row, item in enumerate(new_ids):
                if item in position:
                    np.testing.assert_array_equal(value[row], old[position[item]])
                else:  # a new item keeps its fresh initialisation
                    np.testing.assert_array_equal(value[row], fresh[weight.name][row])
            checked.add(name)
        if name in ("gff_click/kernel:0", "tff_purchase/bias:0", "anneal_step:0"):
            np.testing.assert_array_equal(value, old)
            checked.add(name)
    assert len(checked) == 5
    assert report.weights_remapped >= 2 * len(tiny.BEHAVIORS) + 1


def test_warm_start_refuses_other_settings_and_behaviors(exported):
    from bvae_tf import warm_start

    _, _, export_dir = exported
    ids = export.read_export_info(export_dir).item_ids()
    wider = model_lib.build_model(
        model_lib.BVAEConfig(behaviors=tiny.BEHAVIORS, num_items=len(ids), latent_dim=12)
    )
    # Named up front, not as a TensorFlow variable's shapes after a misleading warning.
    with pytest.raises(ValueError, match=r"base model's model.latent_dim is 8, this run's 12"):
        warm_start.warm_start(wider, export_dir, ids)
    other = model_lib.build_model(
        model_lib.BVAEConfig(
            behaviors=tiny.BEHAVIORS, num_items=len(ids), latent_dim=8, variant="union_vae"
        )
    )
    with pytest.raises(
        ValueError, match=r"do not fit this run's model settings \(model.variant 'bvae' -> "
    ):
        warm_start.warm_start(other, export_dir, ids)
    fewer = model_lib.build_model(
        model_lib.BVAEConfig(behaviors=tiny.BEHAVIORS[:1], num_items=len(ids), latent_dim=8)
    )
    with pytest.raises(ValueError, match=r"behaviors .* differ"):
        warm_start.warm_start(fewer, export_dir, ids)
    with pytest.raises(ValueError, match="item ids for a model of"):
        warm_start.warm_start(_warm_model(len(ids)), export_dir, ids[:-1])


def test_warm_start_warns_when_the_per_behavior_latent_sizes_differ(exported, caplog):
    # The sizes are masks, so the weights fit either way: the copy goes ahead, with a
    # warning, which needs the export to record its settings.
    from bvae_tf import warm_start

    _, _, export_dir = exported
    info = export.read_export_info(export_dir)
    assert info.model_config["latent_dim"] == 8 and info.model_config["latent_dims"] is None
    ids = info.item_ids()
    dims = (8,) + (4,) * (len(tiny.BEHAVIORS) - 1)
    with caplog.at_level(logging.WARNING):
        report = warm_start.warm_start(_warm_model(len(ids), latent_dims=dims), export_dir, ids)
    assert report.items_kept == len(ids)
    warned = [r.getMessage() for r in caplog.records if "latent sizes" in r.getMessage()]
    assert len(warned) == 1 and f"this run's {list(dims)}" in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the same sizes, spelled out: no warning
        same = (8,) * len(tiny.BEHAVIORS)
        warm_start.warm_start(_warm_model(len(ids), latent_dims=same), export_dir, ids)
    assert not [r for r in caplog.records if "latent sizes" in r.getMessage()]
    # An export that did not record its settings is not checked.
    config = _warm_model(len(ids), latent_dims=dims).bvae_config
    assert not warm_start._warn_on_other_latent_dims(None, config, export_dir)


def test_warm_start_leaves_the_cross_behavior_boost_to_the_run(exported, tmp_path):
    # The boost is scoring-time only: a base without one warm-starts a model with one
    # (the configured values stay), and an export with one warm-starts a model without.
    from bvae_tf import warm_start

    _, output, export_dir = exported
    ids = export.read_export_info(export_dir).item_ids()
    boost = tuple(float(i + 1) for i in range(len(tiny.BEHAVIORS)))
    boosted = _warm_model(len(ids), cross_behavior_boost=boost)
    plain = _warm_model(len(ids))
    report = warm_start.warm_start(boosted, export_dir, ids)
    assert report.items_kept == len(ids)
    np.testing.assert_array_equal(boosted.cross_behavior_boost.numpy(), boost)
    warm_start.warm_start(plain, export_dir, ids)
    carried = [w for w in boosted.weights if w is not boosted.cross_behavior_boost]
    for a, b in zip(plain.weights, carried, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # the same weights carried
    boosted_dir = str(tmp_path / "boosted")
    chosen = [0.5 * v for v in boost]  # as choose_boost sets it after the configuration
    boosted.cross_behavior_boost.assign(chosen)
    export.export_serving_model(boosted, output, boosted_dir, top_k=TOP_K)
    recorded = export.read_export_info(boosted_dir).model_config["cross_behavior_boost"]
    assert recorded == chosen  # the boost the export scores with
    again = _warm_model(len(ids))
    warm_start.warm_start(again, boosted_dir, ids)
    for a, b in zip(again.weights, plain.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_run_fn_warm_starts_from_a_base_model_and_records_it(data, exported, tmp_path):
    _, _, export_dir = exported
    args = _fn_args(data, tmp_path, epochs=1, patience=1, warm_start=True)
    args.base_model = export_dir
    trainer.run_fn(args)
    with open(os.path.join(args.model_run_dir, trainer.FIT_RESULT_FILE)) as f:
        result = json.load(f)
    assert result["warm_start"]["base_model"] == export_dir
    assert result["warm_start"]["items_kept"] == 30 and result["warm_start"]["items_new"] == 0
    # A blessed model whose files were moved away is named, with the way out.
    gone = _fn_args(data, tmp_path / "gone", epochs=1, patience=1, warm_start=True)
    gone.base_model = str(tmp_path / "moved" / "Format-Serving")
    with pytest.raises(ValueError, match=r"export .*moved/Format-Serving is missing"):
        trainer.run_fn(gone)
    # Without a base model (the first run) it trains from scratch.
    cold = _fn_args(data, tmp_path / "cold", epochs=1, patience=1, warm_start=True)
    trainer.run_fn(cold)
    with open(os.path.join(cold.model_run_dir, trainer.FIT_RESULT_FILE)) as f:
        assert json.load(f)["warm_start"] is None


def _example(**features) -> bytes:
    """A serialized tf.Example with int64 features, written in the order given."""
    return b"".join(  # an Example's bytes concatenated merge: one map entry each
        tf.train.Example(
            features=tf.train.Features(
                feature={k: tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))}
            )
        ).SerializeToString()
        for k, v in features.items()
    )


def test_the_shuffled_training_order_depends_on_the_examples_and_seed_not_the_files(tmp_path):
    """Two runners write the same examples in other orders and shards, and with the
    features in another order within an example's bytes (a 2-worker Beam run's differ so
    from the local runner's): the seeded epochs must be the same batches."""
    values = list(range(40))
    with tf.io.TFRecordWriter(str(tmp_path / "one-00000-of-00001.gz"), options="GZIP") as w:
        for v in values:
            w.write(_example(x=v, y=-v))
    for i, part in enumerate((values[27:], values[:13][::-1], values[13:27])):
        with tf.io.TFRecordWriter(str(tmp_path / f"three-0000{i}-of-00003.gz"), "GZIP") as w:
            for v in part:
                w.write(_example(y=-v, x=v))
    spec = {k: tf.io.FixedLenFeature([], tf.int64) for k in "xy"}

    def epochs(pattern, seed):
        ds = trainer.examples_dataset([str(tmp_path / pattern)], spec, 8, shuffle=True, seed=seed)
        return [
            [(int(x), int(y)) for b in ds for x, y in zip(b["x"], b["y"], strict=True)]
            for _ in range(2)
        ]

    one, three = epochs("one-*", seed=3), epochs("three-*", seed=3)
    assert one == three
    assert sorted(one[0]) == [(v, -v) for v in values] and one[0] != one[1]  # reshuffled
    assert epochs("one-*", seed=4) != one
