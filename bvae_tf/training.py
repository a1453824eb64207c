"""The one training loop (experiment CLI and TFX Trainer): fit with early stopping.

``fit`` runs Keras ``Model.fit`` on a :class:`bvae_tf.model.BVAE` (so it works under
any ``tf.distribute`` strategy the model was built in) and, after every epoch, scores
the validation dataset with ``metrics.evaluate`` (full ranking). Model selection is
the sum over behaviors of valid NDCG@5; training stops after ``patience`` epochs
without improvement and the best epoch's weights are restored. Per epoch it writes
TensorBoard scalars (loss, per-behavior reconstruction NLL, KL, SDWL weight, mean
sigma, beta, the learning rate, every ranking metric) and logs one progress line. With a
``checkpoint_dir`` it keeps the run's state after every epoch, so that a killed run
resumes at its next epoch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from bvae_tf import console
from bvae_tf import metrics as M


@dataclasses.dataclass
class FitResult:
    """Outcome of :func:`fit`.

    Attributes:
      best_epoch: 1-based epoch whose weights the model holds (0: no epoch ran).
      best_score: its selection score (sum over behaviors of valid ``selection_metric``).
      epochs_run: epochs trained.
      stopped_early: whether patience ran out before ``epochs``.
      history: one dict per epoch: ``epoch``, train trackers (``loss``,
        ``<task>_nll`` ...), ``<name>/<behavior>/<metric>@K`` for the validation
        (``valid``) and every monitored dataset, ``selection_score``, ``train_seconds``
        and ``eval_seconds``.
      train_seconds: the epochs' wall time in training steps, summed (evaluation and
        the state kept for ``checkpoint_dir`` excluded; over every resumed part).
      eval_seconds: the epochs' wall time in evaluation, summed.
      resumed_at: epochs after which a killed run was resumed (``checkpoint_dir``).
      diverged_at: the epoch whose training loss was not finite, which stopped the run
        with the best epoch before it (0: none).
    """

    best_epoch: int
    best_score: float
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]]
    train_seconds: float
    eval_seconds: float
    resumed_at: list[int] = dataclasses.field(default_factory=list)
    diverged_at: int = 0


def compile_model(model, optimizer_jit_compile: bool = False) -> None:
    """Compiles ``model`` with ``model.make_optimizer`` in its distribution scope.

    No-op if the model is already compiled.

    Args:
      model: a :class:`bvae_tf.model.BVAE`.
      optimizer_jit_compile: Keras' Adam compiled by XLA instead of the fused Adam
        kernel (see ``make_optimizer``).
    """
    from bvae_tf import model as Mo

    if getattr(model, "optimizer", None) is not None and model._is_compiled:
        return
    with model.distribute_strategy.scope():
        model.compile(optimizer=Mo.make_optimizer(model.bvae_config, optimizer_jit_compile))


def build_for_fit(model, train_dataset) -> None:
    """Creates a compiled model's variables and its optimizer's slots before ``fit``.

    A ``tf.function`` that creates variables on its first call is traced twice (once
    to create them, once more without; TensorFlow's guide "Better performance with
    tf.function", section "Creating tf.Variables"), and Keras' train function would
    otherwise create the layers' weights and Adam's slots inside its first trace.
    Building them here traces the train step once: about 40% less time to the first
    epoch of a small model, with the same numbers (the weights are initialised in the
    same order and the optimizer's slots are zeros). Models that build themselves
    (a ``prepare`` method, e.g. RecVAE's two optimizers) and models already built
    with built optimizers are left alone.

    Args:
      model: a compiled ``tf.keras.Model``.
      train_dataset: the ``tf.data.Dataset`` given to ``fit``; one batch is read when
        the model is not built yet.
    """
    optimizer = getattr(model, "optimizer", None)
    if hasattr(model, "prepare") or optimizer is None:
        return
    with model.distribute_strategy.scope():
        if not model.built:
            model(next(iter(train_dataset)), training=False)
        inner = getattr(optimizer, "inner_optimizer", optimizer)  # under loss scaling
        if hasattr(inner, "build") and not getattr(inner, "_built", False):
            inner.build(model.trainable_variables)


def _summary_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_./-]", "_", key.replace("@", "_at_"))


def choose_cross_behavior_boost(
    model, eval_dataset, values: Sequence[float]
) -> tuple[list[float], list[tuple[float, M.EvaluationResult]]]:
    """Chooses a trained BVAE's scoring-time ``cross_behavior_boost`` on the eval split,
    per behavior, and sets it.

    The boost of every behavior is set to each of ``values`` and 0 (plain BVAE, always
    tried) in turn and the eval split scored (``metrics.evaluate``); each behavior keeps
    the value with its best NDCG@5 (the smallest on a tie, as the values are tried in
    ascending order). The model's
    weights are not changed: the boost only adds to the logits
    (``BVAEConfig.cross_behavior_boost``).

    Args:
      model: a ``BVAE`` built with ``cross_behavior_boost`` set (any values).
      eval_dataset: the eval split, as for :func:`fit`.
      values: candidate boosts, each finite and >= 0.

    Returns:
      ``(boost, trials)``: the chosen boost per behavior in the model's ``behaviors``
      order (now set on the model), and ``(value, eval result)`` per tried value, 0
      first.

    Raises:
      ValueError: if the model has no boost or ``values`` is empty.
    """
    if getattr(model, "cross_behavior_boost", None) is None or not len(values):
        raise ValueError(
            "choose_cross_behavior_boost needs a BVAE built with cross_behavior_boost and "
            f"at least one value, got {list(values)!r}"
        )
    behaviors = list(model.bvae_config.behaviors)
    trials = []
    for value in sorted({float(v) for v in values} | {0.0}):
        model.cross_behavior_boost.assign([value] * len(behaviors))
        trials.append((value, M.evaluate(model, eval_dataset, behaviors=behaviors)))
    boost = [
        max(trials, key=lambda t, b=b: t[1].behaviors[b].metrics[M.SELECTION_METRIC])[0]
        for b in behaviors
    ]
    model.cross_behavior_boost.assign(boost)
    return boost, trials


def fit(
    model,
    train_dataset,
    eval_dataset,
    *,
    epochs: int = 200,
    patience: int = 20,
    ks: Sequence[int] = M.DEFAULT_KS,
    selection_metric: str = M.SELECTION_METRIC,
    log_dir: str | pathlib.Path | None = None,
    monitor_datasets: Mapping[str, object] | None = None,
    steps_per_epoch: int | None = None,
    verbose: int = 1,
    checkpoint_dir: str | pathlib.Path | None = None,
    checkpoint_key: str = "",
    checkpoint_key_matches: Callable[[str], bool] | None = None,
    weight_average: float = 0.0,
) -> FitResult:
    """Trains with validation-based early stopping and restores the best weights.

    Args:
      model: a :class:`bvae_tf.model.BVAE` (compiled with Adam at its configured
        learning rate if it is not compiled yet).
      train_dataset: ``tf.data.Dataset`` of ``{items_key(b): SparseTensor}``; one pass
        is an epoch unless ``steps_per_epoch`` is given (then it should repeat). A
        finite dataset of known cardinality is repeated and read through one iterator
        for the whole run (not under ``MultiWorkerMirroredStrategy``): Keras would
        otherwise build and tear down its input pipeline every epoch, about 0.8 s per
        JD epoch on 2 cores. The batches and their order are the same either way.
      eval_dataset: ``tf.data.Dataset`` for ``metrics.evaluate`` (``items_key(b)``,
        ``heldout_key(b)``, optional unknown-id counts): the selection split.
      epochs: maximum epochs.
      patience: epochs without a better selection score before stopping.
      ks: cut-offs of the reported metrics (must include the selection K).
      selection_metric: metric summed over behaviors for selection, e.g. ``"ndcg@5"``.
      log_dir: TensorBoard folder (None: no summaries).
      monitor_datasets: ``{name: dataset}`` also scored every epoch and recorded in
        the history, never used for selection (e.g. the test split for the paper's
        optimistic protocol).
      steps_per_epoch: batches per epoch (for repeated datasets).
      verbose: 0 silent, 1 one log line per epoch, 2 also the Keras progress bar.
      checkpoint_dir: folder for the run's state, written after every epoch: the
        model's and optimizer's variables (``tf.train.Checkpoint``), the best epoch's
        weights and the history. When it holds the state of the same
        ``checkpoint_key``, training resumes after its last epoch (or, if that run
        had finished, returns its result with the best weights loaded, without
        training). A resumed run sees the batches an uninterrupted one would (the
        shuffle of ``train_dataset`` is advanced past the finished epochs), so on the
        same machine it is bit-identical to it; ``FitResult.resumed_at`` says where
        it resumed. ``None``: no state is kept.
      checkpoint_key: identifies the run (e.g. its command line); state of another
        key is discarded.
      checkpoint_key_matches: decides whether a saved state's key is this run's
        (``None``: equal to ``checkpoint_key``), e.g. to accept the key of a run
        started before a setting with a neutral default existed. A resumed state
        is saved under ``checkpoint_key`` from then on.
      weight_average: decay ``rho`` in [0, 1) of an exponential moving average of
        the trainable weights after every step (``BVAEConfig.weight_average``); each
        epoch is evaluated, selected and kept with the bias-corrected average in place
        of the weights, which go back for the next epoch's training. 0: none.

    Returns:
      :class:`FitResult`.

    Raises:
      ValueError: on non-positive ``epochs`` / negative ``patience``, a
        ``selection_metric`` whose K is not in ``ks`` or ``weight_average`` outside
        [0, 1).
    """
    if epochs < 1 or patience < 0:
        raise ValueError(f"need epochs >= 1 and patience >= 0, got {epochs}, {patience}")
    if not 0.0 <= weight_average < 1.0:
        raise ValueError(f"weight_average must be in [0, 1), got {weight_average}")
    ks = tuple(ks)
    name, _, k = selection_metric.partition("@")
    if name not in M.METRICS or not k.isdigit() or int(k) not in ks:
        raise ValueError(f"selection_metric {selection_metric!r} must be <metric>@K, K in {ks}")
    compile_model(model)
    build_for_fit(model, train_dataset)
    average = _WeightAverage(model, weight_average) if weight_average else None
    state = (
        None
        if checkpoint_dir is None
        else _RunState(
            model, checkpoint_dir, checkpoint_key, checkpoint_key_matches, average=average
        )
    )
    monitor = _RankingMonitor(
        eval_dataset,
        dict(monitor_datasets or {}),
        ks=ks,
        selection_metric=selection_metric,
        patience=patience,
        log_dir=log_dir,
        verbose=verbose,
        state=state,
        average=average,
    )
    monitor.set_model(model)  # fit() sets it too; restore() needs it when fit() is skipped
    saved = None if state is None else state.load(monitor, epochs=epochs, patience=patience)
    if saved is None or not saved["finished"]:
        if saved is not None:
            train_dataset = _skip_epochs(train_dataset, len(monitor.history), steps_per_epoch)
        if steps_per_epoch is None:
            train_dataset, steps_per_epoch = _one_iterator(model, train_dataset)
        model.fit(
            train_dataset,
            epochs=epochs,
            initial_epoch=len(monitor.history),
            steps_per_epoch=steps_per_epoch,
            callbacks=[monitor],
            verbose=2 if verbose >= 2 else 0,
        )
        if state is not None:
            state.save(monitor, finished=True)
    monitor.restore()
    return FitResult(
        best_epoch=monitor.best_epoch,
        best_score=monitor.best_score,
        epochs_run=len(monitor.history),
        stopped_early=len(monitor.history) < epochs,
        history=monitor.history,
        train_seconds=sum(h["train_seconds"] for h in monitor.history),
        eval_seconds=sum(h["eval_seconds"] for h in monitor.history),
        resumed_at=monitor.resumed_at,
        diverged_at=monitor.diverged_at,
    )


def _skip_epochs(train_dataset, epochs: int, steps_per_epoch: int | None):
    """``train_dataset`` advanced past ``epochs`` finished epochs, so that a resumed
    run's next epoch gets the batches an uninterrupted run's would.

    - One pass is one epoch (``steps_per_epoch`` None, or the dataset's size): Keras
      (or ``_one_iterator``) makes a new iterator per epoch, and a
      ``shuffle(..., seed=s, reshuffle_each_iteration=True)`` draws each pass's order
      from a seed generator that every new iterator advances once; making and
      dropping ``epochs`` iterators replays those draws (cheap: an iterator reads
      nothing until its first batch).
    - Otherwise (e.g. RecVAE's ``repeat()`` of several passes per epoch, NGCF's
      endless generator): Keras reads one iterator for the whole run, so the resumed
      run skips the ``epochs * steps_per_epoch`` batches already trained on.

    The noise of the models is stateless, keyed on the restored step counter, so it
    needs nothing.
    """
    if epochs == 0:
        return train_dataset
    if steps_per_epoch is not None and int(train_dataset.cardinality()) != steps_per_epoch:
        return train_dataset.skip(epochs * steps_per_epoch)
    for _ in range(epochs):
        iter(train_dataset)
    return train_dataset


def _one_iterator(model, train_dataset):
    """``(dataset, steps_per_epoch)`` for Keras ``fit``: a finite ``train_dataset`` of
    known cardinality repeated, with its batch count as the epoch (one iterator for
    the whole run; a shuffle with ``reshuffle_each_iteration`` reshuffles every pass as
    before); otherwise ``(train_dataset, None)``: one pass is an epoch."""
    strategy = getattr(model, "distribute_strategy", None)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return train_dataset, None  # each worker reads a shard: its own batch count
    batches = int(train_dataset.cardinality())
    if batches <= 0:  # unknown, infinite or empty: Keras' own handling
        return train_dataset, None
    # Keras' per-epoch path makes one iterator before its first epoch's and drops it,
    # which advances a seeded reshuffle once; so does this one, so that epoch e sees
    # the same batches in the same order on either path (same results as before).
    iter(train_dataset)
    return train_dataset.repeat(), batches


class _RunState:
    """The files of :func:`fit`'s ``checkpoint_dir``.

    ``state.json`` (history, best epoch, patience count, whether the run finished)
    names the files it goes with: ``epoch-<n>/`` (a ``tf.train.Checkpoint`` of the
    model and its optimizer after epoch ``n``) and ``best-<b>.npz`` (the best epoch's
    weights). Each epoch writes its files first and ``state.json`` last, by an atomic
    rename, then removes the files no longer named: a kill at any moment leaves a
    ``state.json`` whose files exist.
    """

    def __init__(self, model, directory, key: str, matches=None, average=None):
        self.model = model
        self.dir = pathlib.Path(directory)
        self.key = key
        self.matches = matches or (lambda saved: saved == key)
        extra = {} if average is None else {"average": average.checkpoint()}
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, **extra)

    def load(self, monitor, *, epochs: int, patience: int) -> dict | None:
        """Restores a saved run into ``model`` and ``monitor``; ``None`` if there is
        none (state of another key, or unreadable, is removed). The returned state's
        ``finished`` is also true when the saved epochs or patience are used up."""
        try:  # everything is read and checked before the model or monitor changes
            saved = json.loads((self.dir / "state.json").read_text())
            if not self.matches(saved.get("key")):
                raise ValueError("another run's state")
            last = saved["last"] and self.dir / saved["last"] / "ckpt"
            best = saved["best"] and self.dir / saved["best"]
            if (best and not best.is_file()) or (last and not last.parent.is_dir()):
                raise ValueError("files missing")
            history, wait = list(saved["history"]), int(saved["wait"])
            best_epoch, best_score = saved["best_epoch"], saved["best_score"]
            best_weights = None
            if best:
                with np.load(best) as weights:
                    best_weights = [weights[f"arr_{i}"] for i in range(len(weights.files))]
            if last:  # a truncated or damaged checkpoint fails here, not half-restored
                reader = tf.train.load_checkpoint(str(last))
                for name in reader.get_variable_to_shape_map():
                    reader.get_tensor(name)
        except Exception as e:  # any unreadable state: train afresh
            if self.dir.is_dir() and any(self.dir.iterdir()):
                logging.warning(
                    "starting over: cannot resume from %s (%s: %s)",
                    self.dir,
                    type(e).__name__,
                    e,
                    extra={console.CONSOLE: True},
                )
            shutil.rmtree(self.dir, ignore_errors=True)
            return None
        monitor.history = history
        monitor.best_epoch, monitor.best_score = best_epoch, best_score
        monitor.wait = wait
        if best_weights is not None:
            monitor.best_weights = best_weights
        # fit() stops after `patience` epochs without improvement (and never right
        # after an improving epoch); a run killed before its final save stopped too.
        done = len(monitor.history) >= epochs or monitor.wait >= max(1, patience)
        saved["finished"] = bool(saved["finished"] or done or not last)
        if saved["finished"]:
            monitor.resumed_at = saved["resumed_at"]
            return saved
        monitor.resumed_at = [*saved["resumed_at"], len(monitor.history)]
        optimizer = getattr(self.model, "optimizer", None)
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        if hasattr(inner, "build") and not getattr(inner, "_built", False):
            with self.model.distribute_strategy.scope():
                inner.build(self.model.trainable_variables)
        self.checkpoint.read(str(last)).assert_consumed()
        logging.info(
            "resuming after epoch %d (best %.4f at epoch %d) from %s",
            len(monitor.history),
            monitor.best_score,
            monitor.best_epoch,
            self.dir,
            extra={console.CONSOLE: True},
        )
        return saved

    def save(self, monitor, *, finished: bool = False, improved: bool = False) -> None:
        """Writes the state after an epoch (``improved``: also the best weights);
        ``finished``: the run is over, no checkpoint to resume from is kept."""
        self.dir.mkdir(parents=True, exist_ok=True)
        epoch = len(monitor.history)
        best = f"best-{monitor.best_epoch}.npz" if monitor.best_epoch else None
        if improved:
            np.savez(self.dir / "best.tmp.npz", *monitor.best_weights)
            (self.dir / "best.tmp.npz").replace(self.dir / best)
        last = None if finished else f"epoch-{epoch}"
        if last:
            shutil.rmtree(self.dir / last, ignore_errors=True)
            self.checkpoint.write(str(self.dir / last / "ckpt"))
        state = {
            "key": self.key,
            "finished": finished,
            "last": last,
            "best": best,
            "history": monitor.history,
            "best_epoch": monitor.best_epoch,
            "best_score": monitor.best_score,
            "wait": monitor.wait,
            "resumed_at": monitor.resumed_at,
        }
        (self.dir / "state.tmp.json").write_text(json.dumps(state))
        (self.dir / "state.tmp.json").replace(self.dir / "state.json")  # the commit point
        for path in self.dir.iterdir():
            if path.name not in (last, best, "state.json"):
                shutil.rmtree(path) if path.is_dir() else path.unlink()


def _current_learning_rate(optimizer) -> float | None:
    """The learning rate of ``optimizer``'s last update (Keras keeps a schedule's value
    of the latest ``apply_gradients``; through a ``LossScaleOptimizer``); None for no
    Keras optimizer."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    try:
        return float(inner.learning_rate)
    except (AttributeError, TypeError, ValueError):
        return None


class _WeightAverage:
    """An exponential moving average of a model's trainable weights (Polyak averaging,
    ``BVAEConfig.weight_average``): ``a_t = rho a_{t-1} + (1 - rho) w_t`` after every
    step from ``a_0 = 0``, read bias-corrected as ``a_t / (1 - rho^t)`` (as Adam's
    moments, Kingma and Ba 2015, Algorithm 1).

    Args:
      model: a built model (its trainable variables exist).
      decay: ``rho`` in (0, 1).

    Raises:
      ValueError: if the model has no trainable variables yet.
    """

    def __init__(self, model, decay: float):
        self.variables = list(model.trainable_variables)
        if not self.variables:
            raise ValueError("weight_average needs a built model with trainable variables")
        self.decay = float(decay)
        with model.distribute_strategy.scope():
            self.averages = [
                tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False) for v in self.variables
            ]
            self.steps = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._swapped: list[tf.Tensor] | None = None

    def checkpoint(self) -> tf.train.Checkpoint:
        """The averages and the step count, for the run's ``tf.train.Checkpoint``."""
        return tf.train.Checkpoint(averages=self.averages, steps=self.steps)

    @tf.function
    def update(self) -> None:
        """One step of the average (after an optimizer step)."""
        for average, variable in zip(self.averages, self.variables, strict=True):
            average.assign(self.decay * average + (1.0 - self.decay) * variable)
        self.steps.assign_add(1)

    def swap(self) -> None:
        """Puts the bias-corrected averages in place of the weights, or (called again)
        the weights back, exactly. Before any step the weights stay as they are."""
        if self._swapped is not None:
            for variable, kept in zip(self.variables, self._swapped, strict=True):
                variable.assign(kept)
            self._swapped = None
            return
        steps = int(self.steps.numpy())
        self._swapped = [tf.identity(v) for v in self.variables]
        if steps:
            correction = 1.0 - self.decay**steps
            for variable, average in zip(self.variables, self.averages, strict=True):
                variable.assign(average / correction)


class _RankingMonitor(tf.keras.callbacks.Callback):
    """Epoch-end ranking evaluation, early stopping, best weights, TensorBoard."""

    def __init__(
        self,
        eval_dataset,
        monitor_datasets,
        *,
        ks,
        selection_metric,
        patience,
        log_dir,
        verbose,
        state: _RunState | None = None,
        average: _WeightAverage | None = None,
    ):
        super().__init__()
        self.average = average
        self.eval_dataset = eval_dataset
        self.monitor_datasets = monitor_datasets
        self.ks = ks
        self.selection_metric = selection_metric
        self.patience = patience
        self.verbose = verbose
        self.history: list[dict[str, float]] = []
        self.best_epoch = 0
        self.diverged_at = 0
        self.best_score = float("-inf")
        self.best_weights = None
        self.wait = 0
        self.resumed_at: list[int] = []
        self.state = state
        self._epoch_start = 0.0
        self._writer = None
        if log_dir is not None:
            self._writer = tf.summary.create_file_writer(str(log_dir))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.average is not None:
            self.average.update()

    def on_epoch_end(self, epoch, logs=None):
        train_seconds = time.perf_counter() - self._epoch_start
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            # Diverged: its weights rank nothing. Stop; keep the best epoch if any.
            if self.best_epoch == 0:
                raise FloatingPointError(
                    f"the training loss is {float(loss)} after epoch {epoch + 1}, before any "
                    "evaluated epoch: training diverged (lower the learning rate or the "
                    "weight decay)"
                )
            logging.warning(
                "the training loss is %s after epoch %d: training diverged; stopping with "
                "the best epoch (%d)",
                float(loss),
                epoch + 1,
                self.best_epoch,
                extra={console.CONSOLE: True},
            )
            self.diverged_at = epoch + 1
            self.model.stop_training = True
            return
        record = {"epoch": float(epoch + 1)}
        record.update({k: float(v) for k, v in (logs or {}).items()})
        learning_rate = _current_learning_rate(getattr(self.model, "optimizer", None))
        if learning_rate is not None:
            record["learning_rate"] = learning_rate
        start = time.perf_counter()
        if self.average is not None:
            self.average.swap()  # evaluate, select and keep the averaged weights
        try:
            valid = M.evaluate(self.model, self.eval_dataset, ks=self.ks)
            record.update({f"valid/{k}": v for k, v in valid.flat().items()})
            for name, dataset in self.monitor_datasets.items():
                result = M.evaluate(self.model, dataset, ks=self.ks)
                record.update({f"{name}/{k}": v for k, v in result.flat().items()})
            score = valid.metric_sum(self.selection_metric)
            improved = score > self.best_score
            if improved:
                self.best_weights = self.model.get_weights()
        finally:
            if self.average is not None:
                self.average.swap()  # the trained weights back, for the next epoch
        eval_seconds = time.perf_counter() - start
        record.update(selection_score=score, train_seconds=train_seconds, eval_seconds=eval_seconds)
        self.history.append(record)
        if logs is not None:
            logs.update({k: v for k, v in record.items() if "/" in k or k == "selection_score"})
        if improved:
            self.best_score, self.best_epoch, self.wait = score, epoch + 1, 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True
        if self.state is not None:
            self.state.save(self, improved=improved)
        if self._writer is not None:
            with self._writer.as_default(step=epoch + 1):
                for key, value in record.items():
                    if key != "epoch":
                        tf.summary.scalar(_summary_name(key), value)
            self._writer.flush()
        if self.verbose:
            per_behavior = " ".join(
                f"{b}={r.metrics[self.selection_metric]:.4f}" for b, r in valid.behaviors.items()
            )
            last = self.model.stop_training or epoch + 1 == (self.params or {}).get("epochs")
            logging.info(
                "epoch %d: loss %.3f, valid %s %s (sum %.4f%s), train %.2fs, eval %.2fs",
                epoch + 1,
                record.get("loss", float("nan")),
                self.selection_metric,
                per_behavior,
                score,
                ", best" if improved else f", best {self.best_score:.4f}@{self.best_epoch}",
                train_seconds,
                eval_seconds,
                # On a quiet console (bvae_tf.console): the first, every 10th and the
                # last epoch; the log file has all of them.
                extra={console.CONSOLE: epoch == 0 or (epoch + 1) % 10 == 0 or last},
            )

    def restore(self):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
