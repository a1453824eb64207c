"""TFX Trainer entry point (``run_fn``) of the BVAE model.

``run_fn`` trains a :class:`bvae_tf.model.BVAE` on the Transform output (train split,
early stopping on the eval split, ``bvae_tf.training.fit``) and exports it with
``bvae_tf.export.export_serving_model`` (the signatures are described there).

Trainer ``custom_config``::

    {"behaviors": [...],                      # from the pipeline config
     "model": {...},                          # BVAEConfig fields (not behaviors/num_items)
     "training": {"epochs": 200, "patience": 20, "batch_size": 500,
                  "eval_batch_size": 2000, "seed": 0,
                  "distribution_strategy": "auto", "devices": null},
     "top_k": 10}

With ``"model": {"variant": "popularity" | "repeat" | "ease", ...}`` the Trainer fits
that closed-form baseline (``bvae_tf.baselines``) on the train split's item matrices
instead (no epochs; the training settings other than ``eval_batch_size`` are unused)
and exports it with the same signatures, so the Evaluator, Pusher, server and client
work unchanged. ``"variant": "vae_pp"`` (VAE++) and ``"recvae"`` (RecVAE (T.), one
RecVAE per behavior) train with the same loop and export the same signatures;
``training.warm_start`` is for BVAE and VAE (U.) only.

With a ``"tuning"`` section (``bvae_tf.tuning``) the pipeline puts TFX's Tuner before
the Trainer: :func:`tuner_fn` searches on the eval split, and ``run_fn`` applies its
``best_hyperparameters`` (``fn_args.hyperparameters``) to ``model``/``training``.

``distribution_strategy``: ``"auto"`` (MultiWorkerMirrored when ``TF_CONFIG`` names
several workers, Mirrored over ``devices`` when they are given, Mirrored over all GPUs
when there are several, else the default strategy: one GPU if present, else the CPU),
``"default"``, ``"mirrored"`` (over ``devices``, default all GPUs or the CPU; each
device must exist on the machine, checked by :func:`make_strategy`) or
``"multi_worker_mirrored"`` (cluster
from ``TF_CONFIG``; only the chief writes the exported model, ``fit_result.json`` and
the TensorBoard logs into the Trainer's directories, every other worker into a
temporary directory it removes; ``tests/bvae_tf/test_multi_worker.py`` runs two).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging

from bvae_tf import config as bvae_config
from bvae_tf import console, export, features, training, tuning
from bvae_tf import model as model_lib
from bvae_tf.config import (  # noqa: F401
    DEFAULT_TRAINING,
    STRATEGIES,
    check_top_k,
    training_settings,
)

#: File in the model run directory with the training outcome (epochs, best epoch, history).
FIT_RESULT_FILE = "fit_result.json"


def _worker_count() -> int:
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}").get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def make_strategy(
    name: str = "auto", devices: Sequence[str] | None = None
) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy named by the training settings (module docstring).

    Raises:
      ValueError: if ``name`` is unknown, ``TF_CONFIG`` names several tasks for a
        single-worker strategy or with ``devices``, or ``devices`` names a device this
        machine lacks (TensorFlow would otherwise place it silently on another one),
        one twice, or a string that is no device name.
    """
    workers = _worker_count()
    if workers > 1 and (name not in ("auto", "multi_worker_mirrored") or devices):
        raise ValueError(
            f"TF_CONFIG names {workers} tasks, but training.distribution_strategy is "
            f"{name!r}{' with training.devices' if devices else ''}: each task would "
            "train alone and write the outputs; use 'auto' or 'multi_worker_mirrored' "
            "without devices"
        )
    if name == "auto":
        if workers > 1:
            name = "multi_worker_mirrored"
        elif devices or len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=_local_devices(devices) if devices else None)
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown distribution strategy {name!r}; expected one of {list(STRATEGIES)}")


def _local_devices(devices: Sequence[str]) -> list[str]:
    """``devices`` as given, once each checked to name a device of this machine."""
    present = {
        (spec.device_type, spec.device_index)
        for spec in map(
            tf.DeviceSpec.from_string, (d.name for d in tf.config.list_logical_devices())
        )
    }
    seen = set()
    for device in devices:
        try:
            spec = tf.DeviceSpec.from_string(device)
        except ValueError as e:
            raise ValueError(f"training.devices: {device!r} is no device name ({e})") from None
        key = (spec.device_type, spec.device_index)
        if spec.device_type is None or spec.device_index is None or key not in present:
            raise ValueError(
                f"training.devices: {device!r} is not a device of this machine "
                f"(it has {sorted(f'/{t.lower()}:{i}' for t, i in present)})"
            )
        if key in seen:
            raise ValueError(f"training.devices names {device!r} twice")
        seen.add(key)
    return list(devices)


def _strategy_name(strategy: tf.distribute.Strategy) -> str:
    """The ``distribution_strategy`` setting that gives ``strategy`` (not "auto")."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi_worker_mirrored"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    return "default"


def is_chief_task(task_type: str | None, task_id: int | None, cluster: Mapping[str, Any]) -> bool:
    """Whether a task writes the outputs: the ``chief`` task when the cluster has one
    (Vertex AI's worker pool 0), else worker 0 (as ``tf.distribute``'s
    ``multi_worker_util.is_chief``); a task without a type (no cluster) too."""
    if task_type in (None, "chief"):
        return True
    return task_type == "worker" and task_id == 0 and not cluster.get("chief")


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    cluster = resolver.cluster_spec().as_dict()
    return is_chief_task(resolver.task_type, resolver.task_id, cluster)


def _record_files(file_patterns: Sequence[str]) -> list[str]:
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(f"no TFRecord files match {list(file_patterns)}")
    return files


def examples_dataset(
    file_patterns: Sequence[str],
    feature_spec: Mapping[str, Any],
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of parsed (transformed) tf.Examples from gzipped TFRecord files.

    The serialized examples are cached in memory after the first pass; with
    ``shuffle`` they are reshuffled every epoch from ``seed`` (one pass = one epoch),
    starting from a canonical order (the examples re-serialized deterministically,
    ``SerializeToString(deterministic=True)``, and sorted): the order in which a
    runner's workers wrote the files, and the order of the features within an
    example's bytes, differ between runners (a 2-worker Beam run's from the local
    runner's, measured on the demo data) and between runs, and the seeded shuffle of
    another order is another model. So the trained model depends on the examples and
    the seed only.

    Args:
      file_patterns: TFRecord file globs (TFX ``fn_args.train_files`` and the like).
      feature_spec: the features to parse (``tf.io`` feature spec).
      batch_size: examples per batch.
      shuffle: reshuffle the examples every epoch.
      seed: the shuffle seed.

    Returns:
      ``tf.data.Dataset`` of feature dicts (VarLen features as ``[batch, None]``
      SparseTensors).

    Raises:
      ValueError: if no file matches.
    """
    files = _record_files(file_patterns)
    compression = "GZIP" if files[0].endswith(".gz") else None
    ds = tf.data.TFRecordDataset(files, compression_type=compression)
    if shuffle:
        # Held in memory, as the cache holds them, in the canonical order; a known
        # cardinality: training.fit then reads all epochs through one iterator.
        records = sorted(
            tf.train.Example.FromString(r).SerializeToString(deterministic=True)
            for r in ds.as_numpy_iterator()
        )
        ds = tf.data.Dataset.from_tensor_slices(tf.constant(records, dtype=tf.string))
        ds = ds.shuffle(max(len(records), 1), seed=seed, reshuffle_each_iteration=True)
    else:
        ds = ds.cache()
    spec = dict(feature_spec)
    ds = ds.batch(batch_size).map(
        lambda records: tf.io.parse_example(records, spec),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    # Under MultiWorkerMirroredStrategy each worker takes every n-th batch: the split
    # may have fewer files than there are workers, so file sharding could not work.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _spec_of(tf_transform_output: tft.TFTransformOutput, keys: Sequence[str]) -> dict[str, Any]:
    spec = tf_transform_output.transformed_feature_spec()
    missing = [k for k in keys if k not in spec]
    if missing:
        raise ValueError(f"the Transform output lacks features {missing}; it has {sorted(spec)}")
    return {k: spec[k] for k in keys}


def train_feature_keys(behaviors: Sequence[str]) -> list[str]:
    """Transformed features the model trains on: ``<b>_items``."""
    return [features.items_key(b) for b in behaviors]


def eval_feature_keys(behaviors: Sequence[str]) -> list[str]:
    """Transformed features ``metrics.evaluate`` reads: items, held-out, unknown counts."""
    keys = []
    for b in behaviors:
        keys += [
            features.items_key(b),
            features.heldout_key(b),
            features.oov_key(features.heldout_key(b)),
        ]
    return keys


def train_matrices(
    file_patterns: Sequence[str], behaviors: Sequence[str], num_items: int
) -> dict[str, sp.csr_matrix]:
    """``{b: [n, m] 0/1 float32 CSR}`` of the transformed train examples (one row per
    example, in file order), for the closed-form baselines.

    Raises:
      ValueError: if no file matches.
    """
    keys = {b: features.items_key(b) for b in behaviors}
    spec = {key: tf.io.VarLenFeature(tf.int64) for key in keys.values()}
    parts: dict[str, list[sp.csr_matrix]] = {b: [] for b in behaviors}
    for batch in examples_dataset(file_patterns, spec, batch_size=4096):
        for b, key in keys.items():
            items = batch[key]
            rows, cols = items.indices[:, 0].numpy(), items.values.numpy()
            shape = (int(items.dense_shape[0]), num_items)
            part = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)
            part.sum_duplicates()
            part.data[:] = 1.0
            parts[b].append(part)
    return {
        b: sp.vstack(p).tocsr() if p else sp.csr_matrix((0, num_items), dtype=np.float32)
        for b, p in parts.items()
    }


def _fit_closed_form(model_config, train_files, eval_ds, behaviors, log_dir: str):
    """Fits a closed-form baseline (``bvae_tf.baselines``) and scores the eval split:
    the model and a one-"epoch" :class:`training.FitResult`; the eval metrics also go
    to TensorBoard (``log_dir/valid``, step 1) like a trained model's."""
    from bvae_tf import baselines
    from bvae_tf import metrics as M

    start = time.perf_counter()
    train = train_matrices(train_files, behaviors, model_config.num_items)
    model = baselines.fit(baselines.build(model_config), model_config, train)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    scored = M.evaluate(model, eval_ds, behaviors=behaviors)
    eval_seconds = time.perf_counter() - start
    logging.info(
        "Fitted %s on %d train users in %.1f s.",
        model_config.variant,
        next(iter(train.values())).shape[0],
        train_seconds,
        extra={console.CONSOLE: True},
    )
    with tf.summary.create_file_writer(os.path.join(log_dir, "valid")).as_default():
        for key, value in scored.flat().items():
            tf.summary.scalar(key, value, step=1)
    history = [
        {
            "epoch": 1,
            **{f"valid/{k}": v for k, v in scored.flat().items()},
            "selection_score": scored.metric_sum(),
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
        }
    ]
    result = training.FitResult(
        best_epoch=1,
        best_score=scored.metric_sum(),
        epochs_run=1,
        stopped_early=False,
        history=history,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
    )
    return model, result


def _train_dataset(train_files, tf_transform_output, behaviors, settings) -> tf.data.Dataset:
    """The shuffled training batches of ``run_fn`` and of every Tuner trial."""
    return examples_dataset(
        train_files,
        _spec_of(tf_transform_output, train_feature_keys(behaviors)),
        settings["batch_size"],
        shuffle=True,
        seed=settings["seed"],
    )


def _trainable_model(model_config, train_ds: tf.data.Dataset, batch_size: int):
    """The model of a trained variant, ready for :func:`training.fit`, after
    :func:`bvae_tf.model.check_training_memory` (``batch_size``: the training batch;
    counted only when the data fills more than one batch).

    Returns:
      ``(model, train_dataset, steps_per_epoch)``: for BVAE, VAE (U.) and VAE++ the
      compiled model, ``train_ds`` and None (one pass is an epoch); for RecVAE (T.),
      whose alternating phases count batches, the prepared model, ``train_ds``
      repeated and one RecVAE epoch's batches (``PerBehaviorRecVAE.steps_per_epoch``).
    """
    model_lib.check_config_memory(
        model_config,
        batch_size if int(train_ds.cardinality()) > 1 else 0,
        flags="model.latent_dim or training.batch_size",
    )
    if model_config.variant != "recvae":
        return model_lib.build_model(model_config), train_ds, None
    steps_per_pass = int(train_ds.cardinality())  # known: the examples are held in memory
    model = model_lib.build_model(model_config, steps_per_pass=steps_per_pass)
    model.prepare(next(iter(train_ds)))
    return model, train_ds.repeat(), model.steps_per_epoch


def _check_variant_settings(model_config, settings, strategy) -> None:
    """Refuses, before training, what a baseline variant cannot do.

    Raises:
      ValueError: ``training.warm_start`` with a model other than BVAE or VAE (U.)
        (``bvae_tf.warm_start`` maps BVAE's weights), or RecVAE (T.) on more than one
        replica (its phase counter and two optimizers per behavior are not
        distributed).
    """
    if settings["warm_start"] and model_config.variant not in ("bvae", "union_vae"):
        raise ValueError(
            f"training.warm_start carries BVAE's weights over; variant "
            f"{model_config.variant!r} trains cold: set training.warm_start=false"
        )
    if model_config.variant == "recvae" and strategy.num_replicas_in_sync > 1:
        raise ValueError(
            f"variant 'recvae' trains on one replica; the strategy has "
            f"{strategy.num_replicas_in_sync}: set training.distribution_strategy='default'"
        )


def count_examples(file_patterns: Sequence[str]) -> int:
    """Number of (transformed) examples in gzipped TFRecord files: users per epoch."""
    files = _record_files(file_patterns)
    compression = "GZIP" if files[0].endswith(".gz") else None
    return int(
        tf.data.TFRecordDataset(files, compression_type=compression)
        .reduce(np.int64(0), lambda n, _: n + 1)
        .numpy()
    )


# TFX Tuner calls this.
def tuner_fn(fn_args: Any) -> Any:
    """A KerasTuner search over BVAE's hyperparameters (``bvae_tf.tuning``).

    Each trial trains BVAE with the training loop of :func:`run_fn` (early stopping
    on the eval split) and scores the sum over behaviors of eval NDCG@5 at its
    selected epoch; nothing reads the test split. Progress: one line per trial.

    Args:
      fn_args: TFX ``FnArgs`` of the Tuner: ``train_files``, ``eval_files``,
        ``transform_output``, ``working_dir`` and ``custom_config`` (the Trainer's,
        with its ``tuning`` section).

    Returns:
      ``tfx.components.TunerFnResult`` (the tuner; ``search`` needs no arguments).

    Raises:
      ValueError: on a bad ``tuning`` section or the errors of :func:`run_fn`.
    """
    from tfx import v1 as tfx

    config = dict(fn_args.custom_config or {})
    behaviors = features.validate_behaviors(config.get("behaviors") or ())
    base_settings = training_settings(config.get("training"))
    search = tuning.tuning_settings(config.get("tuning"))
    # The Tuner's FnArgs carry the Transform output as transform_graph_path only.
    transform_path = getattr(fn_args, "transform_graph_path", None) or fn_args.transform_output
    tf_transform_output = tft.TFTransformOutput(transform_path)
    num_items = tf_transform_output.vocabulary_size_by_name(features.ITEM_VOCABULARY)
    base_model = dict(config.get("model") or {})
    bvae_config.model_config(behaviors, num_items, base_model)  # fail before any trial
    num_users = count_examples(fn_args.train_files)
    eval_ds = examples_dataset(
        fn_args.eval_files,
        _spec_of(tf_transform_output, eval_feature_keys(behaviors)),
        base_settings["eval_batch_size"],
    )
    trials = []

    def train_trial(values):
        model_section, settings = tuning.apply(values, base_model, base_settings, num_users)
        model_config = bvae_config.model_config(behaviors, num_items, model_section)
        tf.keras.utils.set_random_seed(settings["seed"])
        train_ds = _train_dataset(fn_args.train_files, tf_transform_output, behaviors, settings)
        model, train_ds, steps_per_epoch = _trainable_model(
            model_config, train_ds, settings["batch_size"]
        )
        result = training.fit(
            model,
            train_ds,
            eval_ds,
            epochs=settings["epochs"],
            patience=settings["patience"],
            steps_per_epoch=steps_per_epoch,
            verbose=0,
            weight_average=model_config.weight_average,
        )
        trials.append(result.best_score)
        logging.info(
            "Tuner trial %d/%d: %s -> eval score %.4f (epoch %d of %d; best so far %.4f)",
            len(trials),
            search["max_trials"],
            values,
            result.best_score,
            result.best_epoch,
            result.epochs_run,
            max(trials),
            extra={console.CONSOLE: True},
        )
        return result

    tuner = tuning.make_tuner(train_trial, search, os.path.join(fn_args.working_dir, "trials"))
    return tfx.components.TunerFnResult(tuner=tuner, fit_kwargs={})


def _maybe_warm_start(model, fn_args, tf_transform_output, settings) -> dict | None:
    """Warm start from ``fn_args.base_model`` when ``training.warm_start`` is on and a
    base model exists (``bvae_tf.warm_start``); returns what was carried over."""
    if not settings["warm_start"]:
        return None
    base = getattr(fn_args, "base_model", None)
    if not base:
        logging.info(
            "training.warm_start: no blessed model yet, training from scratch.",
            extra={console.CONSOLE: True},
        )
        return None
    if not tf.io.gfile.exists(base):
        raise ValueError(
            f"training.warm_start: the latest blessed model's export {base} is missing "
            "(moved or deleted); restore it, or set training.warm_start=false to train cold"
        )
    from bvae_tf import warm_start

    vocabulary = tf_transform_output.vocabulary_file_by_name(features.ITEM_VOCABULARY)
    with tf.io.gfile.GFile(vocabulary) as f:
        item_ids = [line.rstrip("\n") for line in f]
    report = warm_start.warm_start(model, base, item_ids)
    logging.info(
        "Warm start from the latest blessed model: %d items kept, %d new, %d dropped.",
        report.items_kept,
        report.items_new,
        report.items_dropped,
        extra={console.CONSOLE: True},
    )
    return {"base_model": base, **dataclasses.asdict(report)}


# TFX Trainer calls this.
def run_fn(fn_args: Any) -> None:
    """Trains the BVAE on the Transform output and exports the serving model.

    Args:
      fn_args: TFX ``FnArgs``: ``train_files`` / ``eval_files`` (transformed
        examples of the train / eval split), ``transform_output``,
        ``serving_model_dir``, ``model_run_dir`` (TensorBoard logs and
        ``fit_result.json``) and ``custom_config`` (module docstring).

    Raises:
      ValueError: on a bad ``custom_config`` (the message names the value), e.g. a
        ``top_k`` above the item vocabulary's size, before the first epoch.
    """
    config = dict(fn_args.custom_config or {})
    behaviors = features.validate_behaviors(config.get("behaviors") or ())
    settings = training_settings(config.get("training"))
    top_k = config.get("top_k", features.DEFAULT_TOP_K)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    num_items = tf_transform_output.vocabulary_size_by_name(features.ITEM_VOCABULARY)
    check_top_k(top_k, num_items)  # before training, not after it
    model_section = dict(config.get("model") or {})
    tuned = tuning.hyperparameter_values(getattr(fn_args, "hyperparameters", None))
    if tuned:
        model_section, settings = tuning.apply(
            tuned, model_section, settings, count_examples(fn_args.train_files)
        )
        logging.info("Tuned hyperparameters: %s", tuned, extra={console.CONSOLE: True})
    model_config = bvae_config.model_config(behaviors, num_items, model_section)
    boost_grid = settings["boost_grid"]
    if boost_grid is not None and model_config.cross_behavior_boost is None:
        # Built with a boost (raises here, before training, for a model without one).
        model_config = dataclasses.replace(
            model_config, cross_behavior_boost=(0.0,) * len(model_config.behaviors)
        )

    tf.keras.utils.set_random_seed(settings["seed"])
    strategy = make_strategy(settings["distribution_strategy"], settings["devices"])
    _check_variant_settings(model_config, settings, strategy)
    logging.info(
        "Training %s on %d items, behaviors %s, with %s (%d replicas).",
        model_config.variant,
        num_items,
        list(behaviors),
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
    )
    train_ds = _train_dataset(fn_args.train_files, tf_transform_output, behaviors, settings)
    eval_ds = examples_dataset(
        fn_args.eval_files,
        _spec_of(tf_transform_output, eval_feature_keys(behaviors)),
        settings["eval_batch_size"],
    )
    started_from = None
    # Wall seconds of the Trainer's parts (fit_result.json): "fit" (model building and
    # training.fit, or a closed-form baseline's fit and scoring), "boost_choice" and
    # "export".
    seconds: dict[str, float] = {}
    chief = _is_chief(strategy)
    # Every worker saves a model and logs (collective ops); a non-chief worker does so
    # in its own temporary directory, removed at the end (TF's multi-worker guide).
    worker_dir = None if chief else tempfile.mkdtemp(prefix="bvae-worker-")
    log_dir = os.path.join(worker_dir or fn_args.model_run_dir, "tensorboard")
    fit_started = time.perf_counter()
    if model_config.variant in bvae_config.CLOSED_FORM_VARIANTS:
        model, result = _fit_closed_form(
            model_config,
            fn_args.train_files,
            eval_ds,
            behaviors,
            log_dir=log_dir,
        )
    else:  # BVAE, VAE (U.), VAE++ or RecVAE (T.)
        if settings["patience"] >= settings["epochs"] - 1:
            logging.warning(
                "training.patience (%d) >= training.epochs - 1 (%d): early stopping "
                "cannot end training before its last epoch; the best eval epoch's "
                "weights are still the ones exported",
                settings["patience"],
                settings["epochs"] - 1,
                extra={console.CONSOLE: True},
            )
        with strategy.scope():
            model, train_ds, steps_per_epoch = _trainable_model(
                model_config, train_ds, settings["batch_size"]
            )
            started_from = _maybe_warm_start(model, fn_args, tf_transform_output, settings)
            if model_config.sampled_softmax and model_config.sampled_proposal == "popularity":
                model.fit_proposal(train_ds)  # this span's counts, after any warm start
        result = training.fit(
            model,
            train_ds,
            eval_ds,
            epochs=settings["epochs"],
            patience=settings["patience"],
            log_dir=log_dir,
            steps_per_epoch=steps_per_epoch,
            verbose=settings["verbose"],
            weight_average=model_config.weight_average,
        )
    seconds["fit"] = time.perf_counter() - fit_started
    logging.info(
        "Best epoch %d of %d (valid score %.4f).",
        result.best_epoch,
        result.epochs_run,
        result.best_score,
        extra={console.CONSOLE: True},
    )
    boost_trials = None
    if boost_grid is not None:
        started = time.perf_counter()
        boost, tried = training.choose_cross_behavior_boost(model, eval_ds, boost_grid)
        model_config = dataclasses.replace(model_config, cross_behavior_boost=tuple(boost))
        boost_trials = [{"value": value, "eval": r.flat()} for value, r in tried]
        logging.info(
            "Cross-behavior boost chosen on the eval split: %s.",
            ", ".join(f"{b} {v:g}" for b, v in zip(model_config.behaviors, boost, strict=True)),
            extra={console.CONSOLE: True},
        )
        seconds["boost_choice"] = time.perf_counter() - started
    export_dir = os.path.join(worker_dir, "export") if worker_dir else fn_args.serving_model_dir
    started = time.perf_counter()
    export.export_serving_model(model, tf_transform_output, export_dir, top_k=top_k)
    seconds["export"] = time.perf_counter() - started
    if chief:
        tf.io.gfile.makedirs(fn_args.model_run_dir)
        summary = {
            "best_epoch": result.best_epoch,
            "best_score": result.best_score,
            "epochs_run": result.epochs_run,
            "stopped_early": result.stopped_early,
            "diverged_at": result.diverged_at,
            "train_seconds": result.train_seconds,
            "eval_seconds": result.eval_seconds,
            "seconds": seconds,
            "model_config": model_config.to_dict(),
            "training": settings,
            "tuned_hyperparameters": tuned,
            "boost_trials": boost_trials,
            "warm_start": started_from,
            "top_k": top_k,
            "strategy": _strategy_name(strategy),
            "replicas": strategy.num_replicas_in_sync,
            "history": result.history,
        }
        with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, FIT_RESULT_FILE), "w") as f:
            json.dump(summary, f, indent=1, sort_keys=True)
    else:
        tf.io.gfile.rmtree(worker_dir)
