"""The one configuration surface of the pipeline: defaults, a JSON file, overrides.

A run is configured by ``PipelineConfig``: its defaults run on the embedded
synthetic log; a JSON file (``--config``, or the ``BVAE_PIPELINE_CONFIG``
environment variable for the TFX CLI, which runs the runner without arguments)
changes any field; ``--set section.key=value`` overrides one value (JSON-decoded
when it parses, else taken as a string). Example (``pipeline/config/jd.json``)::

    {"pipeline_name": "bvae-jd",
     "data": {"input_base": "../shared/data/bvae/JD_events.csv.gz",
              "behaviors": ["purchase", "click", "favorite"],
              "split_method": "cut_timestamps",
              "split_boundaries": [1522454400, 1523145600]},
     "evaluation": {"lower_bounds": {"*": {"ndcg@5": 0.05}}}}

Sections:

* ``data``: the ExampleGen's parameters (``components.multi_behavior_example_gen``
  ``ExampleGenConfig``: input path and format, behaviors and their mapping, target
  behavior, item/user filters, split method and boundaries, cold-user step).
  ``input_base: null`` (the default) means the embedded synthetic log.
* ``synthetic``: ``components.synthetic_logs.SyntheticLogConfig`` arguments of that
  log, generated (seeded, byte-identical for the same arguments) at
  ``<output_root>/data/synthetic_events-<hash of the arguments>.csv.gz`` when it
  does not exist yet.
* ``vocab_frequency_threshold``: Transform's minimum item frequency.
* ``model``, ``training``: the Trainer's ``custom_config`` (``bvae_tf.trainer``).
* ``tuning``: ``{"enabled": true, ...}`` puts TFX's Tuner before the Trainer: a
  KerasTuner search on the eval split whose best values the Trainer uses
  (``bvae_tf.tuning``: algorithm, max_trials, seed, space overrides). Off by default.
* ``top_k``: items returned per behavior by ``serving_default``.
* ``drift``: ``{"enabled": true, ...}`` compares each run's train statistics with
  the latest earlier run's before Transform (item frequency, behavior mix, events per
  user; ``components.strict_example_validator.drift``) and stops the run past a
  threshold (``action: "warn"`` only logs). Off by default.
* ``batch_inference``: ``{"enabled": true, ...}`` adds the ``BatchRecommender``
  after the Pusher: a blessed model's top-``top_k`` per user and behavior, from each
  user's whole history, as files (``components.batch_recommender``). Keys:
  ``users_file`` (one user id per line; default every user), ``formats`` (``csv``,
  ``tfrecord``), ``batch_size``, ``splits`` (default all). Off by default.
* ``evaluation``: the Evaluator's gate and slices (``components.tfma_ranking.gate``).
* roots: ``output_root`` (default ``out``) holds ``pipelines/<name>``,
  ``metadata/<name>/metadata.db`` and ``serving/``; each can be set on its own.

Relative local paths are resolved against the current directory (run from the
repository root); URIs (``gs://...``) are kept as they are.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from absl import logging

from bvae_tf import config as model_config
from bvae_tf import features
from bvae_tf.config import reject_unknown
from components.multi_behavior_example_gen.config import CUT_TIMESTAMPS, ExampleGenConfig
from components.tfma_ranking.gate import ALL_BEHAVIORS, GateConfig

_T = TypeVar("_T")

#: Environment variable naming a JSON config file (used when no --config is given).
CONFIG_ENV = "BVAE_PIPELINE_CONFIG"
PIPELINE_DIR = pathlib.Path(__file__).resolve().parent
#: Curated schemas (generated once by ``pipeline.schema_tool``, reviewed, committed).
SCHEMA_DIR = PIPELINE_DIR / "schema"
DEFAULT_SCHEMA = str(SCHEMA_DIR / "default" / "schema.pbtxt")
#: Preset configurations shipped with the repository.
CONFIG_DIR = PIPELINE_DIR / "config"

DEFAULT_PIPELINE_NAME = "bvae"
DEFAULT_MODEL_NAME = "bvae"
DEFAULT_OUTPUT_ROOT = "out"
#: The training loop's keys a closed-form variant (``model.variant`` ease, popularity,
#: repeat) ignores, with a warning.
CLOSED_FORM_IGNORED = ("epochs", "patience", "batch_size")
#: File name prefix of the synthetic log under ``<output_root>/data/``.
SYNTHETIC_LOG_PREFIX = "synthetic_events"

#: Trainer entry points (dotted paths: the image/venv must have the package installed).
RUN_FN = "bvae_tf.trainer.run_fn"
TUNER_FN = "bvae_tf.trainer.tuner_fn"
PREPROCESSING_FN = "bvae_tf.preprocessing.preprocessing_fn"

#: Beam options of the local runs: the DirectRunner in this process (fastest for
#: small inputs; see ``beam_runner.py`` for multi-process and cluster runners).
DEFAULT_BEAM_PIPELINE_ARGS: tuple[str, ...] = ()


def _default_data() -> dict[str, Any]:
    return {"input_base": None}


def _default_synthetic() -> dict[str, Any]:
    return {"seed": 0}


def _default_training() -> dict[str, Any]:
    return {}


def _default_model() -> dict[str, Any]:
    return {}


def _default_tuning() -> dict[str, Any]:
    return {}


def _default_batch_inference() -> dict[str, Any]:
    return {}


#: Keys of the ``batch_inference`` section besides ``enabled``.
BATCH_INFERENCE_KEYS = ("users_file", "formats", "batch_size", "splits")


def _default_drift() -> dict[str, Any]:
    return {}


def _default_evaluation() -> dict[str, Any]:
    # Random ranking of the synthetic log's ~130 items scores NDCG@5 ~0.03; a trained
    # model ~0.3 (eval split). A retrained model may lose at most 0.01 NDCG@5.
    return {"lower_bounds": {"*": {"ndcg@5": 0.1}}, "regression_tolerance": 0.01}


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Every setting of a pipeline run (see the module docstring).

    Attributes:
      pipeline_name: TFX pipeline name (MLMD context); letters, digits, ``-``, ``_``.
      model_name: name servers know the model under (``<serving_model_dir>/<name>/``).
      output_root: parent of the default roots below.
      pipeline_root, metadata_path, serving_model_dir: explicit roots (``None``:
        under ``output_root``).
      data: ``ExampleGenConfig`` keyword arguments.
      synthetic: keyword arguments of the synthetic log generator.
      schema_path: curated ``schema.pbtxt`` imported by ImportSchemaGen; ``None``
        infers a schema with SchemaGen instead (for new data).
      vocab_frequency_threshold: minimum train frequency of a vocabulary item.
      model: BVAE hyperparameters (Trainer ``custom_config["model"]``).
      training: training loop settings (Trainer ``custom_config["training"]``).
      tuning: the Tuner's search (``bvae_tf.tuning.tuning_settings``); off by default.
      top_k: K of ``serving_default``.
      evaluation: ``GateConfig`` keyword arguments.
      batch_inference: the ``BatchRecommender`` (module docstring); off by default.
      drift: the validator's drift check against the previous span; off by default.
      beam_pipeline_args: Beam options of the Beam-based components.
      enable_cache: reuse unchanged component outputs from earlier runs.
    """

    pipeline_name: str = DEFAULT_PIPELINE_NAME
    model_name: str = DEFAULT_MODEL_NAME
    output_root: str = DEFAULT_OUTPUT_ROOT
    pipeline_root: str | None = None
    metadata_path: str | None = None
    serving_model_dir: str | None = None
    data: Mapping[str, Any] = dataclasses.field(default_factory=_default_data)
    synthetic: Mapping[str, Any] = dataclasses.field(default_factory=_default_synthetic)
    schema_path: str | None = DEFAULT_SCHEMA
    vocab_frequency_threshold: int = 1
    model: Mapping[str, Any] = dataclasses.field(default_factory=_default_model)
    training: Mapping[str, Any] = dataclasses.field(default_factory=_default_training)
    tuning: Mapping[str, Any] = dataclasses.field(default_factory=_default_tuning)
    top_k: int = features.DEFAULT_TOP_K
    evaluation: Mapping[str, Any] = dataclasses.field(default_factory=_default_evaluation)
    batch_inference: Mapping[str, Any] = dataclasses.field(default_factory=_default_batch_inference)
    drift: Mapping[str, Any] = dataclasses.field(default_factory=_default_drift)
    beam_pipeline_args: Sequence[str] = DEFAULT_BEAM_PIPELINE_ARGS
    enable_cache: bool = False

    def __post_init__(self) -> None:
        for name in ("pipeline_name", "model_name"):
            value = getattr(self, name)
            if (
                not isinstance(value, str)
                or not value.isascii()
                or not value.replace("-", "").replace("_", "").isalnum()
            ):
                quote = (
                    f" (a number: quote it, e.g. --set '{name}=\"{value}\"')"
                    if isinstance(value, int | float) and not isinstance(value, bool)
                    else ""
                )
                raise ValueError(
                    f"{name} must be ASCII letters, digits, '-' and '_', got {value!r}{quote}"
                )
        _check_path("output_root", self.output_root, optional=False)
        for name in ("pipeline_root", "metadata_path", "serving_model_dir", "schema_path"):
            _check_path(name, getattr(self, name), optional=True)
        # "~/out" is the user's home, as in a shell, not a folder named "~" here.
        for name in ("output_root", "pipeline_root", "metadata_path", "serving_model_dir"):
            value = getattr(self, name)
            if value is not None and value.startswith("~"):
                object.__setattr__(self, name, os.path.expanduser(value))
        for name in ("output_root", "pipeline_root", "serving_model_dir"):
            if getattr(self, name) is not None:
                _check_local_folder(name, getattr(self, name))
        if self.metadata_path is not None and "://" not in self.metadata_path:
            path = pathlib.Path(self.metadata_path)
            if path.is_dir():
                raise ValueError(
                    f"metadata_path {self.metadata_path!r} is a folder; it names the MLMD "
                    "SQLite file, e.g. .../metadata.db"
                )
            _check_local_folder("metadata_path's folder", str(path.parent))
        for name in (
            "data",
            "synthetic",
            "model",
            "training",
            "tuning",
            "evaluation",
            "batch_inference",
            "drift",
        ):
            if not isinstance(getattr(self, name), Mapping):
                raise ValueError(f"{name} must be a mapping, got {getattr(self, name)!r}")
        self._check_data_section()
        for name in ("vocab_frequency_threshold", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.beam_pipeline_args, str) or not all(
            isinstance(a, str) for a in self.beam_pipeline_args
        ):
            raise ValueError(
                f"beam_pipeline_args must be a list of strings, got {self.beam_pipeline_args!r}"
            )
        object.__setattr__(self, "beam_pipeline_args", tuple(self.beam_pipeline_args))
        if not isinstance(self.enable_cache, bool):
            raise ValueError(f"enable_cache must be a bool, got {self.enable_cache!r}")
        # Fail now, naming the value, rather than inside a component at run time.
        self._check_split()
        self._check_gate()
        self._check_trainer_sections()
        self._check_synthetic_section()
        self._check_batch_inference()
        _build("drift", self.drift_config)

    def _check_data_section(self) -> None:
        reject_unknown("data settings", self.data, ExampleGenConfig)
        base = self.data.get("input_base")
        if base is not None and (not isinstance(base, str) or not base.strip()):
            raise ValueError(
                f"data.input_base must be a path, or null for the synthetic log; got {base!r}"
            )

    def _check_split(self) -> None:
        data = self.example_gen_config()
        if data.split_method == CUT_TIMESTAMPS and all(0 <= v <= 1 for v in data.split_boundaries):
            raise ValueError(
                f"data.split_boundaries {list(data.split_boundaries)} look like fractions, "
                f"but split_method {CUT_TIMESTAMPS!r} takes unix seconds (every event would "
                "fall in the test split); set split_method to time_fractions or "
                "event_fractions, or give timestamps"
            )

    def _check_gate(self) -> None:
        gate = _build("evaluation", self.gate_config)
        behaviors = self.behaviors
        for behavior, bounds in gate.lower_bounds.items():
            if behavior != ALL_BEHAVIORS and behavior not in behaviors:
                raise ValueError(
                    f"evaluation.lower_bounds names behavior {behavior!r}, which is not "
                    f"modelled (behaviors: {list(behaviors)}); its bounds would never apply"
                )
            for name, value in bounds.items():
                if not 0 <= value <= 1:
                    raise ValueError(
                        f"evaluation.lower_bounds[{behavior!r}][{name!r}] must lie in [0, 1] "
                        f"(as the metrics do; a higher bound could never pass), got {value!r}"
                    )
        if gate.activity_buckets:
            from components.tfma_ranking.gate import activity_sql

            _build("evaluation", lambda: activity_sql(behaviors, gate.activity_buckets))

    def _check_synthetic_section(self) -> None:
        from components import synthetic_logs

        reject_unknown("synthetic settings", self.synthetic, synthetic_logs.SyntheticLogConfig)
        if not self.uses_synthetic_data:
            return
        seed = self.synthetic.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"synthetic.seed must be an integer >= 0, got {seed!r}")
        try:  # its messages start with the setting's name
            _build("synthetic", lambda: synthetic_logs.SyntheticLogConfig(**self.synthetic))
        except ValueError as e:
            raise ValueError(
                f"synthetic.{e}" if not str(e).startswith("synthetic") else str(e)
            ) from e

    def _check_trainer_sections(self) -> None:
        training = _build("training", lambda: model_config.training_settings(self.training))
        # num_items is only known after Transform; any valid size checks the rest.
        try:
            model = _build(
                "model", lambda: model_config.model_config(self.behaviors, 1, self.model)
            )
        except ValueError as e:  # the config file's keys, not the class's fields
            message = str(e)
            if "BVAEConfig" not in message:
                raise
            raise ValueError(
                message.replace("BVAEConfig.", "model.").replace("BVAEConfig:", "model:")
            ) from e
        self._check_unread_keys(model)
        if training["boost_grid"] is not None and (
            model.variant != "bvae" or len(model.behaviors) < 2
        ):
            raise ValueError(
                "training.boost_grid chooses BVAE's cross-behavior boost: it needs "
                f"model.variant 'bvae' and at least 2 behaviors (got {model.variant!r}, "
                f"behaviors {list(model.behaviors)}); remove it"
            )
        if training["warm_start"] and model.variant not in ("bvae", "union_vae"):
            raise ValueError(
                f"training.warm_start carries BVAE's weights over; model.variant "
                f"{model.variant!r} trains cold: set training.warm_start=false"
            )
        from bvae_tf import tuning  # keras_tuner is imported only when a search runs

        if self.tuning_enabled and model.variant in model_config.CLOSED_FORM_VARIANTS:
            raise ValueError(
                f"tuning.enabled: the closed-form model.variant {model.variant!r} has no "
                "training to tune; turn tuning off or train a model"
            )
        settings = _build("tuning", lambda: tuning.tuning_settings(self.tuning))
        if self.tuning_enabled:
            tuning.check_space_for_variant(settings["space"], model.variant)
            tuning.check_space_for_latent_dims(settings["space"], model.latent_dims)
            widths = settings["space"].get("latent_dim") or ()
            searched = [v for v in widths if v != model.latent_dim]
            if training["warm_start"] and searched:
                # The latent width sets the layers' shapes: a trial's other width cannot
                # take the blessed model's weights, which the Trainer finds after the search.
                raise ValueError(
                    f"tuning.space searches latent_dim {sorted(set(searched))} while "
                    "training.warm_start carries the blessed model's weights over, which "
                    f"need model.latent_dim ({model.latent_dim}); drop it from the space "
                    '("latent_dim": null) or set training.warm_start=false'
                )

    def _check_unread_keys(self, model) -> None:
        """Refuses a key the config sets that the model never reads, even at its
        default value (``BVAEConfig`` sees values only, so ``latent_dim: 100`` with
        ``ease`` would pass it and be silently unused)."""
        variant = model.variant
        unread = [
            f"model.{key}"
            for key in self.model
            if variant not in model_config.VARIANT_FIELDS.get(key, (variant,))
        ]
        if not model.item_path:
            unread += [
                f"model.{key} (it tunes model.item_path, which is off)"
                for key in ("item_path_scale", "item_path_drop_overlap")
                if key in self.model
            ]
        if variant in model_config.CLOSED_FORM_VARIANTS:
            # A closed-form fit has no initialisation, batches or epochs. The model's
            # seed is refused as any unread model setting; the training loop's keys
            # belong to the config's other variants (a config written for BVAE, as
            # example.json, compares with EASE by one line), so they are ignored, said.
            unread += ["model.seed"] if "seed" in self.model else []
            loop = [f"training.{k}" for k in CLOSED_FORM_IGNORED if k in self.training]
            if loop:
                logging.warning(
                    "model.variant %r is fitted in closed form, without a training loop: "
                    "%s ignored",
                    variant,
                    ", ".join(loop),
                )
        if unread:
            raise ValueError(
                f"model.variant {variant!r} does not read {', '.join(unread)}: remove "
                f"{'it' if len(unread) == 1 else 'them'} from the config"
            )

    def _check_batch_inference(self) -> None:
        section = self.batch_inference
        unknown = sorted(set(section) - {"enabled", *BATCH_INFERENCE_KEYS})
        if unknown:
            raise ValueError(
                f"batch_inference: unknown key(s) {unknown}; known: "
                f"{['enabled', *BATCH_INFERENCE_KEYS]}"
            )
        if not isinstance(section.get("enabled", False), bool):
            raise ValueError(f"batch_inference.enabled must be a bool, got {section['enabled']!r}")
        users_file = section.get("users_file")
        if users_file is not None:
            _check_path("batch_inference.users_file", users_file, optional=False)
            if "://" not in users_file and not pathlib.Path(resolve_path(users_file)).is_file():
                raise ValueError(f"batch_inference.users_file {users_file!r} is not a file")
        splits = section.get("splits")
        if splits is not None and (
            isinstance(splits, str)
            or not isinstance(splits, Sequence)
            or not set(splits) <= set(features.SPLITS)
            or not splits
        ):
            raise ValueError(
                f"batch_inference.splits must be a non-empty list of {list(features.SPLITS)}, "
                f"got {splits!r}"
            )
        # Checked even when the job is off, so that turning it on cannot fail later.
        from components.batch_recommender import options

        options.check_arguments(
            section.get("formats", options.FORMATS),
            section.get("batch_size", options.DEFAULT_BATCH_SIZE),
        )

    def drift_config(self):
        """The validator's ``DriftConfig``, or ``None`` when the check is off.

        Raises:
          ValueError: on an unknown key or a bad value of the ``drift`` section.
        """
        from components.strict_example_validator import drift

        config = drift.config_from(self.drift)
        return config if config.enabled else None

    @property
    def batch_inference_enabled(self) -> bool:
        """Whether the pipeline writes batch recommendations after the Pusher."""
        return bool(self.batch_inference.get("enabled", False))

    def batch_recommender_arguments(self) -> dict[str, Any] | None:
        """``BatchRecommender`` keyword arguments (checked at load), or ``None`` when
        it is off."""
        if not self.batch_inference_enabled:
            return None
        arguments = {
            k: self.batch_inference[k] for k in BATCH_INFERENCE_KEYS if k in self.batch_inference
        }
        if arguments.get("users_file") and "://" not in arguments["users_file"]:
            arguments["users_file"] = resolve_path(arguments["users_file"])
        return arguments

    @property
    def tuning_enabled(self) -> bool:
        """Whether the pipeline runs the Tuner before the Trainer."""
        return bool(self.tuning.get("enabled", False))

    # --- derived values -----------------------------------------------------------------
    @property
    def uses_synthetic_data(self) -> bool:
        """Whether the input is the embedded synthetic log (``data.input_base`` null)."""
        return self.data.get("input_base") is None

    @property
    def synthetic_log_path(self) -> str:
        """Where the synthetic log lives (generated on demand by the runners)."""
        digest = hashlib.sha256(
            json.dumps(dict(self.synthetic), sort_keys=True).encode("utf-8")
        ).hexdigest()[:10]
        name = f"{SYNTHETIC_LOG_PREFIX}-{digest}.csv.gz"
        return resolve_path(os.path.join(self.output_root, "data", name))

    def example_gen_arguments(self) -> dict[str, Any]:
        """``MultiBehaviorExampleGen`` keyword arguments, with the input path resolved."""
        values = dict(self.data)
        values["input_base"] = (
            self.synthetic_log_path
            if self.uses_synthetic_data
            else resolve_path(values["input_base"])
        )
        return values

    def example_gen_config(self) -> ExampleGenConfig:
        """The validated ExampleGen configuration (built once).

        Raises:
          ValueError: naming the ``data`` value that is not accepted.
        """
        return self._example_gen_config

    @functools.cached_property
    def _example_gen_config(self) -> ExampleGenConfig:
        return _build(
            "data",
            lambda: ExampleGenConfig(**self.example_gen_arguments()),
            keys=[f.name for f in dataclasses.fields(ExampleGenConfig)],
        )

    def gate_config(self) -> GateConfig:
        """The validated evaluator gate.

        Raises:
          ValueError: naming the ``evaluation`` value that is not accepted.
        """
        return _build("evaluation", lambda: GateConfig.from_dict(self.evaluation), keys=())

    @property
    def behaviors(self) -> tuple[str, ...]:
        """The behaviors the pipeline models, in order."""
        return tuple(self.example_gen_config().behaviors)

    @property
    def resolved_pipeline_root(self) -> str:
        return resolve_path(
            self.pipeline_root or os.path.join(self.output_root, "pipelines", self.pipeline_name)
        )

    @property
    def resolved_metadata_path(self) -> str:
        return resolve_path(
            self.metadata_path
            or os.path.join(self.output_root, "metadata", self.pipeline_name, "metadata.db")
        )

    @property
    def resolved_serving_model_dir(self) -> str:
        return resolve_path(self.serving_model_dir or os.path.join(self.output_root, "serving"))

    def transform_custom_config(self) -> dict[str, Any]:
        """``custom_config`` of Transform (``bvae_tf.preprocessing``)."""
        return {
            "behaviors": list(self.behaviors),
            "vocab_frequency_threshold": self.vocab_frequency_threshold,
        }

    def trainer_custom_config(self) -> dict[str, Any]:
        """``custom_config`` of the Trainer (``bvae_tf.trainer.run_fn``)."""
        return {
            "behaviors": list(self.behaviors),
            "model": dict(self.model),
            "training": dict(self.training),
            "top_k": self.top_k,
            **({"tuning": dict(self.tuning)} if self.tuning_enabled else {}),
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (round-trips through ``from_dict``)."""
        values = dataclasses.asdict(self)
        values["beam_pipeline_args"] = list(self.beam_pipeline_args)
        return json.loads(json.dumps(values))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PipelineConfig:
        """Builds a config from a mapping of (some) fields.

        Raises:
          ValueError: on unknown keys or bad values.
        """
        if not isinstance(values, Mapping):
            raise ValueError(f"a pipeline config must be a JSON object, got {values!r}")
        reject_unknown("pipeline config keys", values, cls)
        return cls(**values)


def _build(section: str, factory: Callable[[], _T], keys: Sequence[str] | None = None) -> _T:
    """``factory()``, with a ``TypeError`` (a value of the wrong type reaching a
    constructor or a comparison) turned into a ``ValueError`` naming the section; with
    ``keys`` (the section's keys, possibly none), also a ``ValueError`` that does not
    name the section prefixed with it: ``"{section}."`` when the message starts with
    one of ``keys`` (``behaviors must ...`` becomes ``data.behaviors must ...``), else
    ``"{section}: "``."""
    try:
        return factory()
    except TypeError as e:
        raise ValueError(f"{section}: a value has the wrong type ({e})") from e
    except ValueError as e:
        message = str(e)
        if keys is None or message.startswith(section):
            raise
        first = re.match(r"[A-Za-z_]+", message)
        sep = "." if first and first.group() in keys else ": "
        raise ValueError(f"{section}{sep}{message}") from e


def _check_path(name: str, value: Any, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"{name} must be a non-empty path{' or null' if optional else ''}, got {value!r}"
        )


def _check_local_folder(name: str, path: str) -> None:
    """Refuses a local ``path`` that is, or is below, a file (it could never be
    created as a folder; a URI is not checked)."""
    if "://" in path:
        return
    if any(
        parent.exists() and not parent.is_dir()
        for parent in (pathlib.Path(path), *pathlib.Path(path).parents)
    ):
        raise ValueError(f"{name} {path!r} is (or is below) a file, not a folder")


def resolve_path(path: str) -> str:
    """An absolute path for a local path; a URI (``scheme://...``) unchanged."""
    return path if "://" in path else os.path.abspath(path)


def _parse_override(override: str) -> tuple[list[str], Any]:
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"an override must look like 'section.key=value', got {override!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(values: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Returns a copy of ``values`` with ``section.key=value`` overrides applied.

    Raises:
      ValueError: if an override is malformed or goes through a non-mapping value.
    """
    result = copy.deepcopy(dict(values))
    for override in overrides:
        path, value = _parse_override(override)
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"override {override!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return result


def load_config(path: str | None = None, overrides: Sequence[str] = ()) -> PipelineConfig:
    """Defaults, updated by the JSON file at ``path`` (sections replace wholesale
    only for non-mapping values; mappings merge one level), then by ``overrides``.

    Args:
      path: a JSON config file, or ``None`` for the defaults.
      overrides: ``section.key=value`` strings.

    Raises:
      ValueError: if the file is missing or not a JSON object, or a value is bad.
    """
    values = PipelineConfig().to_dict()
    if path is not None and not str(path).strip():
        raise ValueError(
            f"the pipeline config path is empty (--config or ${CONFIG_ENV}); give a JSON "
            "file, or leave both unset for the built-in defaults"
        )
    if path:
        try:
            text = pathlib.Path(path).read_text(encoding="utf-8-sig")
        except OSError as e:
            raise ValueError(f"cannot read pipeline config {path!r}: {e}") from e
        except UnicodeDecodeError as e:
            raise ValueError(f"pipeline config {path!r} is not UTF-8 text: {e}") from e
        try:
            loaded = json.loads(text, object_pairs_hook=model_config.unique_keys)
        except ValueError as e:  # json.JSONDecodeError, or a key given twice
            raise ValueError(f"pipeline config {path!r} is not valid JSON: {e}") from e
        except RecursionError as e:
            raise ValueError(f"pipeline config {path!r} is nested too deeply") from e
        if not isinstance(loaded, Mapping):
            raise ValueError(f"pipeline config {path!r} must hold a JSON object")
        for key, value in loaded.items():
            if isinstance(value, Mapping) and isinstance(values.get(key), Mapping):
                values[key] = {**values[key], **value}
            else:
                values[key] = value
    return PipelineConfig.from_dict(apply_overrides(values, overrides))


def schema_features(schema_path: str) -> set[str]:
    """Feature names of a text-format TFMD schema file.

    Raises:
      ValueError: if the file cannot be read or parsed.
    """
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    try:
        text = pathlib.Path(schema_path).read_text(encoding="utf-8")
        schema = text_format.Parse(text, schema_pb2.Schema())
    except (OSError, UnicodeDecodeError, text_format.ParseError) as e:
        raise ValueError(f"cannot read the schema {schema_path!r}: {e}") from e
    return {feature.name for feature in schema.feature}


def check_schema_covers(schema_path: str, behaviors: Sequence[str]) -> None:
    """Checks that a curated schema describes exactly the configured behaviors.

    Raises:
      ValueError: if a behavior's ``<b>_items`` / ``<b>_heldout`` is missing from the
        schema or the schema has item features of other behaviors.
    """
    names = schema_features(schema_path)
    expected = {features.USER_ID} | {
        key(b) for b in behaviors for key in (features.items_key, features.heldout_key)
    }
    missing = sorted(expected - names)
    extra = sorted(n for n in names - expected)
    if missing or extra:
        raise ValueError(
            f"schema {schema_path!r} does not match behaviors {list(behaviors)}: "
            f"missing {missing}, unexpected {extra}; set schema_path to a matching "
            "curated schema, or to null to infer one"
        )


def checked_schema_path(config: PipelineConfig) -> str | None:
    """The config's ``schema_path``, resolved; a local one is checked to hold exactly
    the behaviors' features (:func:`check_schema_covers`). None: the schema is inferred.

    Raises:
      ValueError: if a local schema cannot be read or does not match the behaviors.
    """
    schema_path = None if config.schema_path is None else resolve_path(config.schema_path)
    if schema_path is not None and "://" not in schema_path:
        check_schema_covers(schema_path, config.behaviors)
    return schema_path
