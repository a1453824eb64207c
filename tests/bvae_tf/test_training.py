"""Training loop and streaming evaluation on tiny synthetic data."""

import json

import numpy as np
import pytest
import tensorflow as tf

from bvae_tf import data as D
from bvae_tf import features as F
from bvae_tf import metrics as M
from bvae_tf import model as Mo
from bvae_tf import training as T

from .conftest import BEHAVIORS, NUM_ITEMS

pytestmark = pytest.mark.unit


def _model(**overrides):
    cfg = Mo.BVAEConfig(behaviors=BEHAVIORS, num_items=NUM_ITEMS, latent_dim=8, **overrides)
    return Mo.build_model(cfg, optimizer_jit_compile=False)


def _kill_at_evaluation(monkeypatch, n):
    """Makes ``metrics.evaluate`` raise ``KeyboardInterrupt`` at its ``n``-th call (a kill
    after that epoch's steps, before its state is saved); returns the function that
    puts the real ``evaluate`` back."""
    evaluate, calls = M.evaluate, []

    def killed(model, *args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt("killed")
        return evaluate(model, *args, **kwargs)

    monkeypatch.setattr(M, "evaluate", killed)
    return lambda: monkeypatch.setattr(M, "evaluate", evaluate)


def test_evaluate_equals_numpy_metrics_on_full_scores(tiny_data):
    model = _model()
    ds = D.eval_dataset(tiny_data, F.TEST, batch_size=7)
    # Unknown held-out ids (dropped by the vocabulary) count in |H|.
    unknown = np.arange(tiny_data.num_users) % 3
    users = tiny_data.split_users(F.TEST)
    key = F.oov_key(F.heldout_key("click"))
    ds_oov = D.eval_dataset(tiny_data, F.TEST, batch_size=len(users)).map(
        lambda b: {**b, key: tf.constant(unknown[users], tf.int64)}
    )
    streamed = M.evaluate(model, ds)
    streamed_oov = M.evaluate(model, ds_oov)
    train_batch = next(iter(D.eval_dataset(tiny_data, F.TEST, batch_size=1000)))
    logits = model(train_batch)
    for b in BEHAVIORS:
        expected = M.ranking_metrics(
            logits[b].numpy(),
            tiny_data.matrix(F.TEST, b)[users],
            tiny_data.matrix(F.TRAIN, b)[users],
        )
        assert streamed.behaviors[b].num_users == expected.num_users
        assert streamed.behaviors[b].num_excluded == expected.num_excluded
        for k, v in expected.metrics.items():
            assert streamed.behaviors[b].metrics[k] == pytest.approx(v, abs=1e-12), (b, k)
    with_unknown = M.ranking_metrics(
        logits["click"].numpy(),
        tiny_data.matrix(F.TEST, "click")[users],
        tiny_data.matrix(F.TRAIN, "click")[users],
        num_unknown=unknown[users],
    )
    assert streamed_oov.behaviors["click"].metrics == pytest.approx(with_unknown.metrics)
    assert streamed_oov.behaviors["click"].num_users == with_unknown.num_users
    assert with_unknown.metrics["recall@20"] < streamed.behaviors["click"].metrics["recall@20"]
    flat = streamed.flat()
    assert "favorite/ndcg@5" in flat and "favorite/num_users" in flat
    assert streamed.metric_sum() == pytest.approx(sum(flat[f"{b}/ndcg@5"] for b in BEHAVIORS))


def _count_train_step_traces(monkeypatch) -> list[int]:
    """Counts the Python calls of ``BVAE.train_step``: one per trace of Keras' train
    function (in a traced function it runs only while tracing)."""
    traces = [0]
    original = Mo.BVAE.train_step

    def counted(self, data):
        traces[0] += 1
        return original(self, data)

    monkeypatch.setattr(Mo.BVAE, "train_step", counted)
    return traces


def test_fit_early_stops_restores_best_and_logs(tiny_data, tmp_path, monkeypatch):
    traces = _count_train_step_traces(monkeypatch)
    model = _model(learning_rate=3e-2)
    train = D.train_dataset(tiny_data, batch_size=12, seed=0)
    valid = D.eval_dataset(tiny_data, F.EVAL)
    test = D.eval_dataset(tiny_data, F.TEST)
    result = T.fit(
        model,
        train,
        valid,
        epochs=12,
        patience=2,
        log_dir=tmp_path / "tb",
        monitor_datasets={"test": test},
    )
    assert 1 <= result.best_epoch <= result.epochs_run <= 12
    scores = [h["selection_score"] for h in result.history]
    assert result.best_score == max(scores) == scores[result.best_epoch - 1]
    if result.stopped_early:
        assert result.epochs_run - result.best_epoch == 2
    # The model holds the best epoch's weights.
    assert M.evaluate(model, valid).metric_sum() == pytest.approx(result.best_score, abs=1e-9)
    record = result.history[0]
    for key in (
        "loss",
        "purchase_nll",
        "click_kl",
        "favorite_sdwl_weight",
        "beta",
        "learning_rate",
        "valid/click/ndcg@5",
        "test/purchase/recall@20",
        "eval_seconds",
    ):
        assert key in record, key
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    # Weights and Adam's slots exist before fit (T.build_for_fit): one trace, not two.
    assert traces == [1]


def test_fit_reads_a_finite_dataset_through_one_iterator_with_the_same_batches(
    tiny_data, monkeypatch
):
    """A dataset of known cardinality is repeated (one iterator for the whole run) and
    trains exactly as Keras' one iterator per epoch does."""
    seen = []
    original_fit = tf.keras.Model.fit

    def recording_fit(self, x=None, *args, **kwargs):
        seen.append((int(x.cardinality()), kwargs.get("steps_per_epoch")))
        return original_fit(self, x, *args, **kwargs)

    monkeypatch.setattr(tf.keras.Model, "fit", recording_fit)
    histories, weights = [], []
    for per_epoch_iterators in (False, True):
        if per_epoch_iterators:
            monkeypatch.setattr(T, "_one_iterator", lambda model, dataset: (dataset, None))
        tf.keras.utils.set_random_seed(3)
        model = _model()
        train = D.train_dataset(tiny_data, batch_size=12, seed=0)
        result = T.fit(model, train, D.eval_dataset(tiny_data, F.EVAL), epochs=3, verbose=0)
        histories.append([(h["loss"], h["selection_score"]) for h in result.history])
        weights.append(model.get_weights())
    batches = int(D.train_dataset(tiny_data, batch_size=12).cardinality())
    assert batches == 2
    assert seen == [(tf.data.INFINITE_CARDINALITY, batches), (batches, None)]
    assert histories[0] == histories[1]
    for repeated, per_epoch in zip(*weights, strict=True):
        np.testing.assert_array_equal(repeated, per_epoch)


def test_fit_keeps_one_pass_per_epoch_for_a_dataset_of_unknown_size(tiny_data, monkeypatch):
    seen = []
    original_fit = tf.keras.Model.fit

    def recording_fit(self, x=None, *args, **kwargs):
        seen.append(kwargs.get("steps_per_epoch"))
        return original_fit(self, x, *args, **kwargs)

    monkeypatch.setattr(tf.keras.Model, "fit", recording_fit)
    train = D.train_dataset(tiny_data, batch_size=12).filter(lambda batch: True)
    result = T.fit(_model(), train, D.eval_dataset(tiny_data, F.EVAL), epochs=2, verbose=0)
    assert seen == [None] and result.epochs_run == 2


def test_fit_under_one_device_mirrored_strategy(tiny_data, monkeypatch):
    traces = _count_train_step_traces(monkeypatch)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = _model()
    result = T.fit(
        model,
        D.train_dataset(tiny_data, batch_size=12),
        D.eval_dataset(tiny_data, F.EVAL),
        epochs=2,
        patience=5,
        verbose=0,
    )
    assert result.epochs_run == 2 and np.isfinite(result.history[-1]["loss"])
    assert int(model.anneal_step.numpy()) in (2, 4)  # restored best epoch's step
    assert traces == [1]  # built under the strategy's scope before fit


def test_a_diverged_epoch_stops_training_or_fails_clearly(tiny_data):
    model = _model()
    monitor = T._RankingMonitor(
        D.eval_dataset(tiny_data, F.EVAL),
        {},
        ks=M.DEFAULT_KS,
        selection_metric=M.SELECTION_METRIC,
        patience=5,
        log_dir=None,
        verbose=0,
    )
    monitor.set_model(model)
    monitor.on_epoch_begin(0)
    # Before any evaluated epoch there is nothing to keep: a clear error.
    with pytest.raises(FloatingPointError, match="diverged"):
        monitor.on_epoch_end(0, {"loss": float("nan")})
    monitor.on_epoch_end(0, {"loss": 1.0})
    assert monitor.best_epoch == 1 and not model.stop_training
    # After one: stop and keep the best epoch; the diverged epoch is not scored.
    monitor.on_epoch_begin(1)
    monitor.on_epoch_end(1, {"loss": float("inf")})
    assert model.stop_training and len(monitor.history) == 1 and monitor.best_epoch == 1
    assert monitor.diverged_at == 2  # FitResult.diverged_at, the run's "diverged_at"


def test_fit_rejects_bad_arguments(tiny_data):
    model = _model()
    ds = D.train_dataset(tiny_data)
    with pytest.raises(ValueError, match="epochs"):
        T.fit(model, ds, ds, epochs=0)
    with pytest.raises(ValueError, match="selection_metric"):
        T.fit(model, ds, ds, selection_metric="ndcg@7")
    with pytest.raises(ValueError, match="weight_average"):
        T.fit(model, ds, ds, weight_average=1.0)


def test_weight_average_scores_and_keeps_the_average_and_trains_on(tiny_data, monkeypatch):
    train = D.train_dataset(tiny_data, batch_size=12, seed=0)
    valid = D.eval_dataset(tiny_data, F.EVAL)
    steps, rho = sum(1 for _ in train), 0.6
    evaluate, update, swap = M.evaluate, T._WeightAverage.update, T._WeightAverage.swap
    scored, trained, swaps = [], [], []  # weights at each evaluation / step / swap

    def recording_evaluate(model, *args, **kwargs):
        scored.append([v.numpy().copy() for v in model.trainable_variables])
        return evaluate(model, *args, **kwargs)

    def recording_update(self):
        trained.append([v.numpy().copy() for v in self.variables])
        return update(self)

    def recording_swap(self):
        before = [v.numpy().copy() for v in self.variables]
        swap(self)
        swaps.append((before, [v.numpy().copy() for v in self.variables]))

    monkeypatch.setattr(M, "evaluate", recording_evaluate)
    monkeypatch.setattr(T._WeightAverage, "update", recording_update)
    monkeypatch.setattr(T._WeightAverage, "swap", recording_swap)
    model = _model()
    result = T.fit(model, train, valid, epochs=3, patience=9, verbose=0, weight_average=rho)
    assert len(trained) == 3 * steps and len(scored) == 3 and len(swaps) == 6
    for epoch in range(3):
        # Scored: the bias-corrected average of every step's weights so far.
        t = (epoch + 1) * steps
        for i, got in enumerate(scored[epoch]):
            average = sum((1 - rho) * rho ** (t - 1 - s) * trained[s][i] for s in range(t))
            np.testing.assert_allclose(got, average / (1 - rho**t), rtol=1e-4, atol=1e-6)
            assert not np.array_equal(got, trained[t - 1][i])
        # Training goes on from the trained weights, exactly: the second swap of an
        # epoch puts back what the first one took away.
        (trained_weights, averaged), (_, back) = swaps[2 * epoch], swaps[2 * epoch + 1]
        for got, want in zip(trained_weights, trained[t - 1], strict=True):
            np.testing.assert_array_equal(got, want)
        for got, want in zip(averaged, scored[epoch], strict=True):
            np.testing.assert_array_equal(got, want)
        for got, want in zip(back, trained_weights, strict=True):
            np.testing.assert_array_equal(got, want)
    final = [v.numpy() for v in model.trainable_variables]
    # Kept: the selected epoch's average.
    for got, want in zip(final, scored[result.best_epoch - 1], strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_killed_fit_resumes_its_weight_average(tiny_data, tmp_path, monkeypatch):
    train = D.train_dataset(tiny_data, batch_size=12, seed=0)
    valid = D.eval_dataset(tiny_data, F.EVAL)
    steps = sum(1 for _ in train)
    averages, init = [], T._WeightAverage.__init__

    def kept(self, *args, **kwargs):
        init(self, *args, **kwargs)
        averages.append(self)

    monkeypatch.setattr(T._WeightAverage, "__init__", kept)
    revive = _kill_at_evaluation(monkeypatch, 2)
    kwargs = dict(epochs=3, patience=9, verbose=0, checkpoint_dir=tmp_path, checkpoint_key="k")
    with pytest.raises(KeyboardInterrupt):
        T.fit(_model(), train, valid, weight_average=0.5, **kwargs)
    revive()
    result = T.fit(_model(), train, valid, weight_average=0.5, **kwargs)
    assert result.resumed_at == [1]
    # The average's state came back with the epoch: its steps count all 3 epochs.
    assert int(averages[1].steps.numpy()) == 3 * steps


def test_a_killed_fit_resumes_at_its_next_epoch(tiny_data, tmp_path, monkeypatch):
    train = D.train_dataset(tiny_data, batch_size=12, seed=0)
    valid = D.eval_dataset(tiny_data, F.EVAL)
    steps = sum(1 for _ in train)
    evaluate, calls = M.evaluate, []

    def killed_at_the_third_evaluation(model, *args, **kwargs):
        calls.append([w.copy() for w in model.get_weights()])  # after that epoch's steps
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return evaluate(model, *args, **kwargs)

    monkeypatch.setattr(M, "evaluate", killed_at_the_third_evaluation)
    kwargs = dict(epochs=4, patience=9, verbose=0, checkpoint_dir=tmp_path, checkpoint_key="a")
    first = _model()
    with pytest.raises(KeyboardInterrupt):
        T.fit(first, train, valid, **kwargs)
    monkeypatch.setattr(M, "evaluate", evaluate)

    second = _model()
    restored = {}
    fit = second.fit

    def fit_after_restore(*args, **kwargs):
        restored["weights"] = second.get_weights()
        restored["iterations"] = int(second.optimizer.iterations.numpy())
        restored["initial_epoch"] = kwargs["initial_epoch"]
        return fit(*args, **kwargs)

    second.fit = fit_after_restore
    result = T.fit(second, train, valid, **kwargs)
    # The state after epoch 2 came back: weights, Adam's step count, the beta ramp's step.
    assert restored["initial_epoch"] == 2 and restored["iterations"] == 2 * steps
    for got, want in zip(restored["weights"], calls[1], strict=True):
        np.testing.assert_array_equal(got, want)
    assert [h["epoch"] for h in result.history] == [1.0, 2.0, 3.0, 4.0]
    assert result.resumed_at == [2] and int(second.optimizer.iterations.numpy()) == 4 * steps
    assert int(second.anneal_step.numpy()) in {e * steps for e in range(1, 5)}

    # A finished run returns its result with the best weights, without training.
    third = _model()
    third.fit = None  # training would fail
    again = T.fit(third, train, valid, **kwargs)
    assert again.history == result.history and again.best_epoch == result.best_epoch
    assert M.evaluate(third, valid).metric_sum() == pytest.approx(result.best_score, abs=1e-9)

    # State of another key is discarded: the run starts over.
    fourth = _model()
    fresh = T.fit(fourth, train, valid, **{**kwargs, "epochs": 1, "checkpoint_key": "b"})
    assert fresh.resumed_at == [] and fresh.epochs_run == 1


@pytest.mark.parametrize("feed", ["one_pass", "two_passes", "unknown_size"])
def test_a_resumed_fit_sees_the_batches_of_an_uninterrupted_one(
    tiny_data, tmp_path, monkeypatch, feed
):
    # A killed run resumed by a new process (a new dataset, a new model) must train its
    # later epochs on the same shuffled batches, with the same step counts (Adam's bias
    # correction, the beta ramp and the noise seeds read them), as a run never killed:
    # same losses, bit for bit. Feeds: one pass per epoch (fit repeats it), a repeat()
    # read for two passes per epoch (RecVAE's), a dataset of unknown size (Keras'
    # per-epoch path and its end-of-data probe, which must count no step).
    valid = D.eval_dataset(tiny_data, F.EVAL)
    kwargs = dict(epochs=3, patience=9, verbose=0, checkpoint_key="k")
    batches = int(D.train_dataset(tiny_data, batch_size=12, seed=3).cardinality())

    def run(folder):
        tf.keras.utils.set_random_seed(0)
        model = _model(dropout=0.5)
        train = D.train_dataset(tiny_data, batch_size=12, seed=3)
        steps = None
        if feed == "two_passes":
            train, steps = train.repeat(), 2 * batches
        elif feed == "unknown_size":
            train = train.filter(lambda batch: tf.constant(True))
        extra = {"steps_per_epoch": steps} if steps else {}
        result = T.fit(model, train, valid, checkpoint_dir=tmp_path / folder, **extra, **kwargs)
        return result, int(model.optimizer.iterations.numpy())

    whole, whole_steps = run("whole")
    revive = _kill_at_evaluation(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run("killed")
    revive()
    resumed, resumed_steps = run("killed")
    assert resumed.resumed_at == [1] and whole.resumed_at == []
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]
    assert resumed_steps == whole_steps == 3 * batches * (2 if feed == "two_passes" else 1)


def test_a_kill_while_saving_resumes_from_the_last_committed_epoch(
    tiny_data, tmp_path, monkeypatch
):
    train = D.train_dataset(tiny_data, batch_size=12, seed=0)
    valid = D.eval_dataset(tiny_data, F.EVAL)
    steps = sum(1 for _ in train)
    save, saves = T._RunState.save, []

    def killed_before_the_second_commit(state, monitor, **kwargs):
        saves.append(1)
        if len(saves) == 2:  # epoch 2's checkpoint is written, its state.json is not
            state.checkpoint.write(str(state.dir / "epoch-2" / "ckpt"))
            raise KeyboardInterrupt("killed")
        return save(state, monitor, **kwargs)

    monkeypatch.setattr(T._RunState, "save", killed_before_the_second_commit)
    kwargs = dict(epochs=3, patience=9, verbose=0, checkpoint_dir=tmp_path, checkpoint_key="k")
    with pytest.raises(KeyboardInterrupt):
        T.fit(_model(), train, valid, **kwargs)
    monkeypatch.setattr(T._RunState, "save", save)
    model = _model()
    result = T.fit(model, train, valid, **kwargs)
    assert result.resumed_at == [1] and result.epochs_run == 3
    assert int(model.optimizer.iterations.numpy()) == 3 * steps  # epoch 2 trained once
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"best-{result.best_epoch}.npz",
        "state.json",
    ]

    # Files named by the state are missing: the run starts over, it does not crash.
    (tmp_path / f"best-{result.best_epoch}.npz").unlink()
    again = T.fit(_model(), train, valid, **{**kwargs, "epochs": 1})
    assert again.resumed_at == [] and again.epochs_run == 1


def test_a_run_killed_after_it_stopped_early_trains_no_further(tiny_data, tmp_path, monkeypatch):
    train = D.train_dataset(tiny_data, batch_size=12, seed=0)
    valid = D.eval_dataset(tiny_data, F.EVAL)
    save = T._RunState.save

    def killed_at_the_final_save(state, monitor, *, finished=False, **kwargs):
        if finished:
            raise KeyboardInterrupt("killed")
        return save(state, monitor, **kwargs)

    monkeypatch.setattr(T._RunState, "save", killed_at_the_final_save)
    # A learning rate of ~0 keeps the score: no improvement after epoch 1, stop after 2.
    kwargs = dict(epochs=6, patience=1, verbose=0, checkpoint_dir=tmp_path, checkpoint_key="k")
    with pytest.raises(KeyboardInterrupt):
        T.fit(_model(learning_rate=1e-30), train, valid, **kwargs)
    monkeypatch.setattr(T._RunState, "save", save)
    model = _model(learning_rate=1e-30)
    model.fit = None  # training again would fail
    result = T.fit(model, train, valid, **kwargs)
    assert result.epochs_run == 2 and result.best_epoch == 1 and result.stopped_early


@pytest.mark.parametrize("damage", ["best_weights", "checkpoint_data", "state_fields"])
def test_a_damaged_kept_state_starts_over_untouched(tiny_data, tmp_path, monkeypatch, damage):
    train = D.train_dataset(tiny_data, batch_size=12, seed=0)
    valid = D.eval_dataset(tiny_data, F.EVAL)
    revive = _kill_at_evaluation(monkeypatch, 3)
    kwargs = dict(epochs=1, patience=9, verbose=0, checkpoint_dir=tmp_path, checkpoint_key="k")
    with pytest.raises(KeyboardInterrupt):
        T.fit(_model(), train, valid, **{**kwargs, "epochs": 4})
    revive()
    state = json.loads((tmp_path / "state.json").read_text())
    if damage == "best_weights":
        path = tmp_path / state["best"]
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "checkpoint_data":
        (path,) = (tmp_path / state["last"]).glob("ckpt.data-*")
        path.write_bytes(path.read_bytes()[:100])
    else:
        del state["history"]
        (tmp_path / "state.json").write_text(json.dumps(state))

    def weights_at_fit(**kw):
        model, restored = _model(), []
        fit = model.fit

        def fit_after_restore(*args, **fit_kwargs):
            restored.append([w.copy() for w in model.get_weights()])
            return fit(*args, **fit_kwargs)

        model.fit = fit_after_restore
        return T.fit(model, train, valid, **{**kwargs, **kw}), restored[0]

    result, weights = weights_at_fit()
    _, fresh = weights_at_fit(checkpoint_dir=tmp_path / "none")
    # Nothing of the damaged state reached the model: a fresh run from its own init.
    assert result.resumed_at == [] and result.epochs_run == 1
    for got, want in zip(weights, fresh, strict=True):
        np.testing.assert_array_equal(got, want)
