"""ExampleValidator that validates each split in its schema environment and fails
the run on anomalies, with TFDV's report.

The stock ExampleValidator validates every split against every feature and only
records anomalies (letting the pipeline continue). Here:

* a split is validated in its TFDV schema environment: ``TRAINING`` for the train
  split (no ``<b>_heldout`` there), ``EVALUATION`` for eval and test (the held-out
  targets must be present); see ``pipeline/schema/*/schema.pbtxt``. A schema
  inferred by SchemaGen gets these environments first (:func:`with_split_environments`);
* the anomalies are written as usual (``Split-<split>/SchemaDiff.pb``, a binary
  ``tensorflow_metadata`` ``Anomalies`` proto), then the execution raises with every anomaly's
  feature, severity, short and long description, so bad data stops the run before
  Transform and training;
* with ``baseline_statistics`` (the previous run's, from a resolver) and an enabled
  ``drift_config``, the span is compared with the previous one (``drift.py``: item
  frequency, behavior mix, events per user); past a threshold the run stops (or
  warns), naming the feature and its distance. Every measurement is written to
  ``drift.json`` in the anomalies artifact.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import tensorflow_data_validation as tfdv
from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx import types
from tfx.components.example_validator import component as example_validator_component
from tfx.components.example_validator import executor as example_validator_executor
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils, json_utils, writer_utils

from bvae_tf import features
from components.strict_example_validator import drift as drift_lib

BASELINE_STATISTICS_KEY = "baseline_statistics"
DRIFT_CONFIG_KEY = "drift_config"
BEHAVIORS_KEY = "behaviors"
DRIFT_FILE = "drift.json"

#: Schema environments (``default_environment`` in the curated schemas).
TRAINING_ENVIRONMENT = "TRAINING"
EVALUATION_ENVIRONMENT = "EVALUATION"
SERVING_ENVIRONMENT = "SERVING"


class DataAnomaliesError(RuntimeError):
    """Raised when the examples do not match the schema."""


class DataDriftError(DataAnomaliesError):
    """Raised when a span drifted from the previous one beyond the thresholds."""


def environment_for(split: str, schema: schema_pb2.Schema) -> str | None:
    """The schema environment a split is validated in (``None`` if the schema has none)."""
    if not schema.default_environment:
        return None
    wanted = TRAINING_ENVIRONMENT if split == features.TRAIN else EVALUATION_ENVIRONMENT
    return wanted if wanted in schema.default_environment else None


def with_split_environments(schema: schema_pb2.Schema) -> schema_pb2.Schema:
    """An inferred schema made fit to validate the splits, if it has no environments.

    A schema inferred by SchemaGen (``schema_path: null``) has no environments, yet
    the ``<b>_heldout`` features exist only in the eval and test examples: validated
    as is, the train split would report them as dropped columns. This adds the
    ``TRAINING``/``EVALUATION``/``SERVING`` environments, marks every ``<b>_heldout``
    feature as absent from ``TRAINING`` and ``SERVING``, and drops value domains that
    inference may have put on ``user_id`` and the item-id features (ids are an open
    set; the vocabulary is Transform's job), as the curated schemas do
    (``pipeline.schema_tool``). A schema that declares environments is returned
    unchanged.

    Args:
      schema: a TFDV schema.

    Returns:
      The adjusted copy, or ``schema`` itself.
    """
    if schema.default_environment:
        return schema
    out = schema_pb2.Schema()
    out.CopyFrom(schema)
    out.default_environment.extend(
        [TRAINING_ENVIRONMENT, EVALUATION_ENVIRONMENT, SERVING_ENVIRONMENT]
    )
    id_suffixes = (features.ITEMS_SUFFIX, features.HELDOUT_SUFFIX)
    domains = {d.name for d in out.string_domain if d.name}
    used: set[str] = set()
    for feature in out.feature:
        is_id = feature.name == features.USER_ID or feature.name.endswith(id_suffixes)
        if is_id:
            feature.ClearField("domain_info")
        elif feature.HasField("domain"):
            used.add(feature.domain)
        if feature.name.endswith(features.HELDOUT_SUFFIX):
            feature.not_in_environment.extend([TRAINING_ENVIRONMENT, SERVING_ENVIRONMENT])
    kept = [d for d in out.string_domain if d.name in used or d.name not in domains]
    del out.string_domain[:]
    out.string_domain.extend(kept)
    return out


def describe_anomalies(anomalies: anomalies_pb2.Anomalies) -> list[str]:
    """One line per anomaly: ``feature [severity]: short description -- description``."""
    lines = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        severity = anomalies_pb2.AnomalyInfo.Severity.Name(info.severity)
        lines.append(f"{feature} [{severity}]: {info.short_description} -- {info.description}")
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        lines.append(f"<dataset>: {info.short_description} -- {info.description}")
    return lines


class Executor(example_validator_executor.Executor):
    """Validates each split in its environment; raises if any split has an anomaly."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Writes each split's anomalies, then fails if there are any.

        Args:
          input_dict: ``statistics`` (ExampleStatistics) and ``schema`` (Schema).
          output_dict: ``anomalies`` (ExampleAnomalies), one ``SchemaDiff.pb`` per split.
          exec_properties: ``exclude_splits`` (JSON list) and optional
            ``custom_validation_config``.

        Raises:
          DataAnomaliesError: listing each split's anomalies and where they are stored.
        """
        self._log_startup(input_dict, output_dict, exec_properties)
        exclude = (
            json_utils.loads(
                exec_properties.get(standard_component_specs.EXCLUDE_SPLITS_KEY, "null")
            )
            or []
        )
        statistics = artifact_utils.get_single_instance(
            input_dict[standard_component_specs.STATISTICS_KEY]
        )
        splits = [
            s for s in artifact_utils.decode_split_names(statistics.split_names) if s not in exclude
        ]
        anomalies_artifact = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.ANOMALIES_KEY]
        )
        anomalies_artifact.split_names = artifact_utils.encode_split_names(splits)
        anomalies_artifact.span = statistics.span
        schema = with_split_environments(
            io_utils.SchemaReader().read(
                io_utils.get_only_uri_in_dir(
                    artifact_utils.get_single_uri(input_dict[standard_component_specs.SCHEMA_KEY])
                )
            )
        )
        custom_validation = exec_properties.get(
            standard_component_specs.CUSTOM_VALIDATION_CONFIG_KEY
        )
        report: list[str] = []
        blessed: dict[str, int] = {}
        for split in splits:
            environment = environment_for(split, schema)
            stats = stats_artifact_utils.load_statistics(statistics, split).proto()
            anomalies = tfdv.validate_statistics(
                statistics=stats,
                schema=schema,
                environment=environment,
                custom_validation_config=custom_validation,
            )
            path = os.path.join(
                artifact_utils.get_split_uri([anomalies_artifact], split),
                example_validator_executor.DEFAULT_FILE_NAME,
            )
            writer_utils.write_anomalies(path, anomalies)
            lines = describe_anomalies(anomalies)
            blessed[split] = (
                example_validator_executor.NOT_BLESSED_VALUE
                if lines
                else example_validator_executor.BLESSED_VALUE
            )
            logging.info(
                "Split %s validated in environment %s: %d anomalies (%s).",
                split,
                environment,
                len(lines),
                path,
            )
            if lines:
                report.append(f"split {split!r}, environment {environment} ({path}):")
                report.extend(f"  {line}" for line in lines)
        anomalies_artifact.set_json_value_custom_property(
            example_validator_executor.ARTIFACT_PROPERTY_BLESSED_KEY, blessed
        )
        if report:
            raise DataAnomaliesError(
                "the examples do not match the schema (TFDV anomalies):\n" + "\n".join(report)
            )
        self._check_drift(input_dict, exec_properties, statistics, schema, anomalies_artifact)

    def _check_drift(self, input_dict, exec_properties, statistics, schema, output) -> None:
        """Compares the span with the previous run's statistics (module docstring)."""
        config = drift_lib.config_from(json.loads(exec_properties.get(DRIFT_CONFIG_KEY) or "{}"))
        baselines = input_dict.get(BASELINE_STATISTICS_KEY) or []
        if not config.enabled:
            return
        if not baselines:
            logging.info("Drift check: no earlier statistics (first run); nothing to compare.")
            return
        previous = artifact_utils.get_single_instance(baselines)
        if previous.uri == statistics.uri:  # the cached statistics of this very span
            logging.info("Drift check: the statistics are this span's own; nothing to compare.")
            return
        behaviors: Sequence[str] = json.loads(exec_properties.get(BEHAVIORS_KEY) or "[]")
        measurements = drift_lib.measure(
            stats_artifact_utils.load_statistics(statistics, config.split).proto(),
            stats_artifact_utils.load_statistics(previous, config.split).proto(),
            schema,
            behaviors,
            config,
        )
        record = {
            "previous_statistics": previous.uri,
            "split": config.split,
            "action": config.action,
            "measurements": drift_lib.to_json(measurements),
        }
        with open(os.path.join(output.uri, DRIFT_FILE), "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1, sort_keys=True)
        drifted = [m for m in measurements if m.drifted]
        output.set_int_custom_property("drifted_features", len(drifted))
        if not drifted:
            logging.info("Drift check: %d measurements, none drifted.", len(measurements))
            return
        message = (
            f"the {config.split} split drifted from the previous span's "
            f"({previous.uri}):\n"
            + "\n".join(f"  {m.describe()}" for m in drifted)
            + f"\n(thresholds: the config's drift section; all measurements in "
            f"{os.path.join(output.uri, DRIFT_FILE)})"
        )
        if config.action == "fail":
            message += (
                "\nIf the new span is right, rerun with --set drift.action=warn (it "
                "then becomes the next run's baseline), or raise the thresholds named above."
            )
        if config.action == "fail":
            raise DataDriftError(message)
        logging.warning("Drift check (drift.action=warn): %s", message)


class StrictExampleValidatorSpec(standard_component_specs.ExampleValidatorSpec):
    """The stock ExampleValidator's spec plus the previous span's statistics and the
    drift check's settings."""

    PARAMETERS = {
        **standard_component_specs.ExampleValidatorSpec.PARAMETERS,
        DRIFT_CONFIG_KEY: ExecutionParameter(type=str, optional=True),
        BEHAVIORS_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        **standard_component_specs.ExampleValidatorSpec.INPUTS,
        BASELINE_STATISTICS_KEY: ChannelParameter(
            type=standard_artifacts.ExampleStatistics, optional=True
        ),
    }


class StrictExampleValidator(example_validator_component.ExampleValidator):
    """``ExampleValidator`` that validates per environment, fails on anomalies and,
    given the previous span's statistics, on drift (module docstring)."""

    SPEC_CLASS = StrictExampleValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        statistics,
        schema,
        *,
        baseline_statistics=None,
        drift_config: drift_lib.DriftConfig | None = None,
        behaviors: Sequence[str] = (),
        exclude_splits: Sequence[str] | None = None,
    ):
        """Builds the component.

        Args:
          statistics: this run's ExampleStatistics.
          schema: the Schema.
          baseline_statistics: the previous run's ExampleStatistics (e.g. a
            LatestArtifactStrategy resolver's output); ``None``: no drift check.
          drift_config: thresholds and action (default: off).
          behaviors: the modelled behaviors (the ``<b>_items`` features compared).
          exclude_splits: splits not validated.
        """
        config = drift_config or drift_lib.DriftConfig()
        spec = StrictExampleValidatorSpec(
            statistics=statistics,
            schema=schema,
            exclude_splits=json_utils.dumps(list(exclude_splits or [])),
            baseline_statistics=baseline_statistics,
            drift_config=json.dumps(dataclasses.asdict(config)),
            behaviors=json.dumps(list(behaviors)),
            anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies),
        )
        base_component.BaseComponent.__init__(self, spec=spec)
