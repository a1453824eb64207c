"""Hyperparameter search for BVAE with KerasTuner (the pipeline's Tuner component).

``bvae_tf.trainer.tuner_fn`` builds a :class:`BVAEHyperModel` over the Transform
output and returns a KerasTuner tuner; TFX's Tuner runs ``tuner.search()`` and writes
the best trial's values as ``best_hyperparameters``, which the Trainer applies
(:func:`apply`) before it trains. A trial is one full training run with BVAE's own
loop (``training.fit``: validation early stopping, best weights restored); its
objective is ``selection_score``, the sum over behaviors of **eval-split** NDCG@5 at
the selected epoch. The test split plays no part.

The ``tuning`` section of a pipeline config (``tuning_settings``)::

    {"enabled": false, "algorithm": "random", "max_trials": 8, "seed": 0,
     "space": {"learning_rate": [1e-4, 1e-3, 1e-2], "dropout": null}}

``space`` overrides :data:`DEFAULT_SPACE` name by name (a list of values to try;
``null`` removes the name, which then keeps the ``model``/``training`` value).
``anneal_epochs`` is the length of the beta ramp in epochs (``anneal_steps`` =
``anneal_epochs`` x steps per epoch at the trial's batch size), so the same value
means the same schedule on any dataset size; likewise ``lr_decay_epochs`` is the
length of a cosine decay of the learning rate (``lr_schedule="cosine"``,
``lr_decay_steps``; 0: the constant learning rate).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Mapping
from typing import Any

from absl import logging

from bvae_tf import console
from bvae_tf.config import reject_unknown

ALGORITHMS = ("random", "bayesian", "grid")
#: The search space: name -> values tried. The learning rates are the BVAE paper's
#: {1e-4, 1e-3, 1e-2} and between; ``latent_dim`` stays at the model's (the paper
#: fixes d = 100 for its comparison).
DEFAULT_SPACE: Mapping[str, tuple] = {
    "learning_rate": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    "anneal_epochs": (1, 10, 50, 200),
    "beta_cap": (0.1, 0.2, 0.5),
    "dropout": (0.2, 0.5),
    "batch_size": (100, 250, 500),
}
#: Where each searchable name goes: the ``model`` section (``BVAEConfig``) or the
#: ``training`` section; ``anneal_epochs`` becomes ``model.anneal_steps``.
#: ``lr_decay_epochs`` becomes ``model.lr_schedule`` and ``model.lr_decay_steps``.
#: ``latent_dim``, ``weight_decay`` and ``lr_decay_epochs`` are searched only when
#: ``space`` names them.
#: The most epochs a ``*_epochs`` value may count (its updates must fit an int32).
MAX_EPOCHS = 100_000
#: What each searched value must be (besides finite): a check and its wording.
_VALUE_RANGES = {
    "learning_rate": (lambda v: v > 0, "finite values > 0"),
    "beta_cap": (lambda v: v >= 0, "finite values >= 0"),
    "dropout": (lambda v: 0 <= v < 1, "values in [0, 1)"),
    "latent_dim": (lambda v: v >= 1 and float(v).is_integer(), "whole numbers >= 1"),
    "batch_size": (lambda v: v >= 1 and float(v).is_integer(), "whole numbers >= 1"),
    "weight_decay": (lambda v: v >= 0, "finite values >= 0"),
}
TARGETS = {
    "learning_rate": "model",
    "beta_cap": "model",
    "dropout": "model",
    "latent_dim": "model",
    "weight_decay": "model",
    "anneal_epochs": "model",
    "lr_decay_epochs": "model",
    "batch_size": "training",
}
DEFAULT_TUNING: Mapping[str, Any] = {
    "enabled": False,
    "algorithm": "random",
    "max_trials": 8,
    "seed": 0,
    "space": {},
}
#: The objective every trial reports (``training.FitResult.best_score``).
OBJECTIVE = "selection_score"


def tuning_settings(section: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``tuning`` section with defaults filled in and ``space`` resolved.

    Returns:
      ``{"enabled", "algorithm", "max_trials", "seed", "space": {name: tuple}}``.

    Raises:
      ValueError: on unknown keys, an unknown algorithm or space name, a bad count,
        or a space entry that is not a non-empty list of numbers.
    """
    section = dict(section or {})
    reject_unknown("tuning settings", section, DEFAULT_TUNING)
    settings = {**DEFAULT_TUNING, **section}
    if not isinstance(settings["enabled"], bool):
        raise ValueError(f"tuning.enabled must be true or false, got {settings['enabled']!r}")
    if settings["algorithm"] not in ALGORITHMS:
        raise ValueError(
            f"tuning.algorithm must be one of {list(ALGORITHMS)}, got {settings['algorithm']!r}"
        )
    for name in ("max_trials", "seed"):
        value = settings[name]
        least = 1 if name == "max_trials" else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"tuning.{name} must be an integer >= {least}, got {value!r}")
    overrides = settings["space"]
    if not isinstance(overrides, Mapping):
        raise ValueError(f"tuning.space must be a mapping of name -> values, got {overrides!r}")
    reject_unknown("tuning.space names", overrides, TARGETS)
    space = dict(DEFAULT_SPACE)
    for name, values in overrides.items():
        if values is None:
            space.pop(name, None)
            continue
        if (
            isinstance(values, str | bytes)
            or not hasattr(values, "__len__")
            or not values
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        ):
            raise ValueError(
                f"tuning.space.{name} must be a non-empty list of numbers, got {values!r}"
            )
        if name.endswith("_epochs") and not all(
            0 <= v <= MAX_EPOCHS and float(v).is_integer() for v in values
        ):
            raise ValueError(
                f"tuning.space.{name} counts epochs: whole numbers in [0, {MAX_EPOCHS}], "
                f"got {values!r}"
            )
        ok, wanted = _VALUE_RANGES.get(name, (lambda v: True, ""))
        if not all(math.isfinite(v) and ok(v) for v in values):
            raise ValueError(f"tuning.space.{name} takes {wanted}, got {values!r}")
        space[name] = tuple(values)
    if not space:
        raise ValueError("tuning.space removes every name: nothing to search")
    settings["space"] = space
    return settings


#: Searched names a ``model.variant`` does not read (RecVAE (T.) has its own KL scale
#: and optimizer: ``bvae_tf.baselines.recvae``); searching them would only repeat trials.
UNREAD_BY_VARIANT: Mapping[str, tuple[str, ...]] = {
    "recvae": ("beta_cap", "anneal_epochs", "weight_decay", "lr_decay_epochs"),
}


def check_space_for_variant(space: Mapping[str, Any], variant: str) -> None:
    """Refuses a resolved ``space`` (:func:`tuning_settings`) that searches a name
    ``variant`` does not read (:data:`UNREAD_BY_VARIANT`).

    Raises:
      ValueError: naming those names and how to drop them.
    """
    unread = [n for n in UNREAD_BY_VARIANT.get(variant, ()) if n in space]
    if unread:
        raise ValueError(
            f"tuning.space: model.variant {variant!r} does not read {', '.join(unread)}; "
            f"drop {'it' if len(unread) == 1 else 'them'} with "
            + ", ".join(f'"{n}": null' for n in unread)
        )


def check_space_for_latent_dims(space: Mapping[str, Any], latent_dims) -> None:
    """Refuses a resolved ``space`` whose ``latent_dim`` values go below the largest of
    the model's per-behavior ``latent_dims`` (``BVAEConfig.latent_dims``; ``None``:
    nothing to check), before any trial rather than at the trial that sets one.

    Raises:
      ValueError: naming the values.
    """
    small = [int(v) for v in space.get("latent_dim") or () if latent_dims and v < max(latent_dims)]
    if small:
        raise ValueError(
            f"tuning.space: latent_dim {small} is below the largest per-behavior latent "
            f"size of model.latent_dims {list(latent_dims)}; search latent_dim >= "
            f'{max(latent_dims)} or drop it with "latent_dim": null'
        )


def apply(
    values: Mapping[str, Any],
    model: Mapping[str, Any],
    training: Mapping[str, Any],
    num_train_users: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``model`` and ``training`` sections with a trial's (or the best) values set.

    Args:
      values: ``{name: value}`` of searched names (``HyperParameters.values``).
      model: the config's ``model`` section.
      training: the config's ``training`` section with defaults filled in
        (``config.training_settings``).
      num_train_users: train examples per epoch (for ``anneal_epochs`` and
        ``lr_decay_epochs``).

    Returns:
      ``(model, training)`` copies.

    Raises:
      ValueError: on a name that is not searchable.
    """
    reject_unknown("hyperparameters", values, TARGETS)
    model, training = dict(model), dict(training)
    for name, value in values.items():
        if name == "batch_size":
            training["batch_size"] = int(value)
        elif name not in ("anneal_epochs", "lr_decay_epochs"):
            model[name] = int(value) if name == "latent_dim" else float(value)
    steps_per_epoch = math.ceil(num_train_users / training["batch_size"])
    if "anneal_epochs" in values:
        model["anneal_steps"] = int(values["anneal_epochs"]) * steps_per_epoch
    if "lr_decay_epochs" in values:
        decay_steps = int(values["lr_decay_epochs"]) * steps_per_epoch
        model["lr_schedule"] = "cosine" if decay_steps else "constant"
        model["lr_decay_steps"] = decay_steps
    return model, training


def hyperparameter_values(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{name: value}`` of a ``HyperParameters.get_config()`` dict (the Tuner's
    ``best_hyperparameters``, the Trainer's ``fn_args.hyperparameters``); ``{}`` for
    None."""
    if not config:
        return {}
    import keras_tuner

    return dict(keras_tuner.HyperParameters.from_config(config).values)


def make_tuner(
    train_trial: Callable[[Mapping[str, Any]], Any],
    settings: Mapping[str, Any],
    directory: str,
    project_name: str = "bvae",
    overwrite: bool = True,
):
    """A KerasTuner tuner whose trials call ``train_trial(values)``.

    The search is repeatable: ``settings["seed"]`` seeds the oracle (as ``seed + 1``:
    KerasTuner reads a seed of 0 as none given and draws a random one).

    Args:
      train_trial: trains one trial from ``{name: value}`` and returns its
        ``training.FitResult``; the trial's score is ``result.best_score``.
      settings: :func:`tuning_settings`.
      directory: where KerasTuner keeps its trial records.
      project_name: sub-folder of ``directory``.
      overwrite: True: start afresh; False: reload the search kept under
        ``directory/project_name`` (its trials, scores and random state) and run only
        its remaining trials; a trial that was running when it stopped runs again with
        the same values.

    Returns:
      A ``keras_tuner.Tuner`` (RandomSearch, BayesianOptimization or GridSearch).
    """
    import keras_tuner

    hyperparameters = keras_tuner.HyperParameters()
    for name, values in settings["space"].items():
        hyperparameters.Choice(name, list(values))
    algorithms = {
        "random": keras_tuner.RandomSearch,
        "bayesian": keras_tuner.BayesianOptimization,
        "grid": keras_tuner.GridSearch,
    }

    class BVAETuner(algorithms[settings["algorithm"]]):
        """One trial = one BVAE training run with BVAE's own loop (the model is
        built per trial: its batch size and beta schedule depend on the values)."""

        #: ``(trial id, message)`` of each trial that failed, in order.
        failures: list[tuple[str, str]] = []

        def run_trial(self, trial, *args, **kwargs):
            try:
                result = train_trial(dict(trial.hyperparameters.values))
            except (ValueError, FloatingPointError, MemoryError) as e:
                # Settings a trial's values make impossible (a diverged loss, a model
                # too large): the trial fails, the search goes on; the traceback goes
                # to the log, one line to the console.
                logging.info("Tuner trial %s failed", trial.trial_id, exc_info=True)
                logging.warning(
                    "Tuner trial %s %s failed: %s",
                    trial.trial_id,
                    dict(trial.hyperparameters.values),
                    e,
                    extra={console.CONSOLE: True},
                )
                self.failures.append((trial.trial_id, str(e)))
                raise keras_tuner.errors.FailedTrialError(str(e)) from e
            return {OBJECTIVE: float(result.best_score)}

        def search(self, *fit_args, **fit_kwargs):
            # KerasTuner prints each failed trial's traceback to stderr
            # (keras_tuner.config.DEBUG): to the log instead.
            with contextlib.redirect_stderr(io.StringIO()) as printed:
                try:
                    return super().search(*fit_args, **fit_kwargs)
                finally:
                    if printed.getvalue().strip():
                        logging.info("KerasTuner printed:\n%s", printed.getvalue())

        # TFX's Tuner prints these summaries; ``train_trial`` reports each trial in
        # one line, so they go to the log (file), not to stdout.
        def search_space_summary(self, extended=False):
            logging.info("Tuner search space: %s", dict(settings["space"]))

        def results_summary(self, num_trials=10):
            for trial in self.oracle.get_best_trials(num_trials):
                logging.info(
                    "Tuner trial %s: %s, score %s",
                    trial.trial_id,
                    trial.hyperparameters.values,
                    trial.score,
                )

    tuner = BVAETuner(
        hyperparameters=hyperparameters,
        objective=keras_tuner.Objective(OBJECTIVE, direction="max"),
        max_trials=settings["max_trials"],
        seed=settings["seed"] + 1,
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
    )
    tuner.oracle.verbose = 0  # KerasTuner's per-trial tables (stdout)
    return tuner
