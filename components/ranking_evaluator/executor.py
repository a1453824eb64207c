"""Executor of ``RankingEvaluator``: score, decide, write ModelEvaluation + ModelBlessing.

Each model is scored on the raw examples through its own exported graphs
(``transform_features``, then ``score_items``), so a baseline trained with another
vocabulary, or exported by older code, is scored as it was exported, and the ranking
numbers come from ``bvae_tf.metrics.evaluate``, so they are those of
``bvae_tf.metrics`` by construction.

ModelEvaluation directory::

    evaluation.json   {"model", "baseline_model", "splits": {split: {behavior:
                        {"num_users", "num_excluded", "<metric>@K", ...}}},
                        "baseline": {eval split: ...} | null, "gate": {...}}
    metrics.md        the same numbers as Markdown tables

ModelBlessing directory: an empty ``BLESSED`` or ``NOT_BLESSED`` file, and the custom
properties of TFX's Evaluator (``blessed``, ``current_model``, ``current_model_id``,
``baseline_model``, ``baseline_model_id``, ``blessing_message``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.evaluator import constants
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, path_utils

from bvae_tf import export, features
from bvae_tf import metrics as metrics_lib
from components.ranking_evaluator import gate as gate_lib

EVALUATION_FILE = "evaluation.json"
MARKDOWN_FILE = "metrics.md"
GATE_CONFIG_KEY = "gate_config"


def example_files(examples: types.Artifact, split: str) -> list[str]:
    """The TFRecord files of one split of an Examples artifact.

    Raises:
      ValueError: if the artifact has no such split or the split has no files.
    """
    splits = artifact_utils.decode_split_names(examples.split_names)
    if split not in splits:
        raise ValueError(f"Examples at {examples.uri} have no split {split!r} (it has {splits})")
    directory = artifact_utils.get_split_uri([examples], split)
    files = sorted(
        os.path.join(directory, name)
        for name in fileio.listdir(directory)
        if not fileio.isdir(os.path.join(directory, name))
    )
    if not files:
        raise ValueError(f"split {split!r} at {directory} has no files")
    return files


def _dataset(
    transform, files: Sequence[str], behaviors: Sequence[str], batch_size: int
) -> tf.data.Dataset:
    """Batches of ``metrics.evaluate`` inputs from raw examples via ``transform``."""
    compression = "GZIP" if files[0].endswith(".gz") else None
    keys = [features.items_key(b) for b in behaviors] + [features.heldout_key(b) for b in behaviors]

    def to_inputs(serialized):
        out = transform(examples=serialized)
        missing = [key for key in keys if key not in out]
        if missing:
            raise ValueError(
                f"the model's {features.TRANSFORM_SIGNATURE} signature lacks {missing}; "
                f"does the split hold {features.HELDOUT_SUFFIX!r} features?"
            )
        batch = {key: export.padded_to_sparse(out[key]) for key in keys}
        for b in behaviors:
            oov = features.oov_key(features.heldout_key(b))
            batch[oov] = tf.reshape(out[oov], [-1])
        return batch

    records = tf.data.TFRecordDataset(list(files), compression_type=compression)
    return records.batch(batch_size).map(to_inputs)


class ScoringModel:
    """An exported model, loaded for scoring through its own signatures only.

    ``transform_features`` maps raw examples to vocabulary indices and ``score_items``
    gives the logits, both graphs saved with the model: a blessed model exported by
    older code is scored exactly as it was exported, without its Python classes.
    The object is the ``model`` argument of ``bvae_tf.metrics.evaluate``:
    ``scorer(features, training=False) -> {b: [batch, num_items] float32}``.

    Args:
      model_dir: the exported SavedModel (``bvae_tf.export.export_serving_model``).

    Raises:
      ValueError: if the SavedModel lacks one of the two signatures or its
        ``bvae_tf.export.EXPORT_INFO_FILE``.
    """

    def __init__(self, model_dir: str):
        self._loaded = tf.saved_model.load(model_dir)
        signatures = self._loaded.signatures
        for name in (features.TRANSFORM_SIGNATURE, features.SCORE_SIGNATURE):
            if name not in signatures:
                raise ValueError(
                    f"model {model_dir} has no {name!r} signature (it has {sorted(signatures)})"
                )
        self.transform = signatures[features.TRANSFORM_SIGNATURE]
        self._score = signatures[features.SCORE_SIGNATURE]
        if tf.io.gfile.exists(os.path.join(model_dir, export.EXPORT_INFO_FILE)):
            self.behaviors = export.read_export_info(model_dir).behaviors
        else:
            # Exported before the export described itself (e.g. an old blessed
            # baseline): its score_items inputs name the behaviors; metrics are keyed
            # by behavior, so their order (here by name) changes no number.
            inputs = self._score.structured_input_signature[1]
            self.behaviors = tuple(sorted(key[: -len(features.ITEMS_SUFFIX)] for key in inputs))
            logging.warning(
                "%s has no %s (exported by an older version); behaviors %s read from "
                "its %s signature",
                model_dir,
                export.EXPORT_INFO_FILE,
                list(self.behaviors),
                features.SCORE_SIGNATURE,
            )

    def __call__(self, inputs: Mapping[str, Any], training: bool = False) -> dict[str, tf.Tensor]:
        del training  # an exported model always scores deterministically
        padded = {
            features.items_key(b): tf.sparse.to_dense(
                inputs[features.items_key(b)], default_value=export.PADDING
            )
            for b in self.behaviors
        }
        logits = self._score(**padded)
        return {b: logits[features.logits_output(b)] for b in self.behaviors}

    def score(
        self, files: Sequence[str], ks: Sequence[int], batch_size: int
    ) -> metrics_lib.EvaluationResult:
        """Ranking metrics on raw examples.

        Args:
          files: TFRecord files of raw per-user examples with ``<b>_items`` and
            ``<b>_heldout`` (an eval or test split).
          ks: cut-offs.
          batch_size: users per batch.

        Returns:
          ``bvae_tf.metrics.evaluate`` of the model on the examples transformed by
          the model's own Transform graph.
        """
        return metrics_lib.evaluate(
            self,
            _dataset(self.transform, files, self.behaviors, batch_size),
            ks=ks,
            behaviors=self.behaviors,
        )


def as_metrics(result: metrics_lib.EvaluationResult) -> dict[str, dict[str, float]]:
    """``{behavior: {"num_users": n, "num_excluded": m, "ndcg@5": ..., ...}}``."""
    return {
        b: {
            gate_lib.USERS_KEY: r.num_users,
            gate_lib.EXCLUDED_KEY: r.num_excluded,
            **{k: float(v) for k, v in sorted(r.metrics.items())},
        }
        for b, r in result.behaviors.items()
    }


def markdown(report: Mapping[str, Any], ks: Sequence[int]) -> str:
    """Markdown tables of an ``evaluation.json`` report (one per split)."""
    lines = []
    tables = [(f"{split} split", m) for split, m in report["splits"].items()]
    if report.get("baseline"):
        tables += [(f"baseline, {split} split", m) for split, m in report["baseline"].items()]
    for title, per_behavior in tables:
        names = [metrics_lib.metric_key(m, k) for k in ks for m in metrics_lib.METRICS]
        lines += [f"### {title}", "", "| behavior | users | " + " | ".join(names) + " |"]
        lines.append("|---" * (len(names) + 2) + "|")
        for b, values in per_behavior.items():
            cells = " | ".join(f"{values[n]:.4f}" for n in names)
            lines.append(f"| {b} | {values[gate_lib.USERS_KEY]} | {cells} |")
        lines.append("")
    lines += ["### gate", "", report["gate"]["message"], ""]
    lines += [f"- {c}" for c in report["gate"]["checks_text"]]
    return "\n".join(lines) + "\n"


class Executor(base_executor.BaseExecutor):
    """Scores the candidate (and baseline) and writes the evaluation and blessing."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Runs the evaluation.

        Args:
          input_dict: ``examples`` (raw Examples), ``model``, optional
            ``baseline_model`` (zero or one Model).
          output_dict: ``evaluation`` (ModelEvaluation), ``blessing`` (ModelBlessing).
          exec_properties: ``gate_config`` (``GateConfig.to_json()``).

        Raises:
          ValueError: on a bad gate configuration, missing splits or signatures.
        """
        self._log_startup(input_dict, output_dict, exec_properties)
        gate = gate_lib.GateConfig.from_json(exec_properties.get(GATE_CONFIG_KEY))
        examples = artifact_utils.get_single_instance(
            input_dict[standard_component_specs.EXAMPLES_KEY]
        )
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        baselines = input_dict.get(standard_component_specs.BASELINE_MODEL_KEY) or []
        if len(baselines) > 1:
            raise ValueError(f"expected at most one baseline model, got {len(baselines)}")
        baseline = baselines[0] if baselines else None
        evaluation = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EVALUATION_KEY]
        )
        blessing = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.BLESSING_KEY]
        )

        files = {s: example_files(examples, s) for s in (gate.eval_split, *gate.report_splits)}
        candidate = ScoringModel(
            path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
        )
        splits: dict[str, dict[str, dict[str, float]]] = {}
        for split, split_files in files.items():
            logging.info("Scoring the model on the %s split.", split)
            splits[split] = as_metrics(candidate.score(split_files, gate.ks, gate.batch_size))
        baseline_metrics = None
        if baseline is not None:
            baseline_dir = path_utils.serving_model_path(
                baseline.uri, path_utils.is_old_model_artifact(baseline)
            )
            logging.info("Scoring the baseline %s on the %s split.", baseline_dir, gate.eval_split)
            result = ScoringModel(baseline_dir).score(
                files[gate.eval_split], gate.ks, gate.batch_size
            )
            baseline_metrics = {gate.eval_split: as_metrics(result)}
        decision = gate_lib.decide(
            gate,
            splits[gate.eval_split],
            None if baseline_metrics is None else baseline_metrics[gate.eval_split],
        )
        logging.info("Gate: %s", decision.message)

        report = {
            "model": model.uri,
            "model_id": model.id,
            "baseline_model": None if baseline is None else baseline.uri,
            "baseline_model_id": None if baseline is None else baseline.id,
            "gate_config": json.loads(gate.to_json()),
            "splits": splits,
            "baseline": baseline_metrics,
            "gate": {
                "blessed": decision.blessed,
                "message": decision.message,
                "checks": [c.to_dict() for c in decision.checks],
                "checks_text": [c.describe() for c in decision.checks],
            },
        }
        io_utils.write_string_file(
            os.path.join(evaluation.uri, EVALUATION_FILE), json.dumps(report, indent=1)
        )
        io_utils.write_string_file(
            os.path.join(evaluation.uri, MARKDOWN_FILE), markdown(report, gate.ks)
        )
        for split, per_behavior in splits.items():
            for b, values in per_behavior.items():
                for name in gate.regression_metrics:
                    evaluation.set_float_custom_property(f"{split}/{b}/{name}", values[name])
        evaluation.set_int_custom_property(
            constants.ARTIFACT_PROPERTY_BLESSED_KEY, int(decision.blessed)
        )

        name = constants.BLESSED_FILE_NAME if decision.blessed else constants.NOT_BLESSED_FILE_NAME
        io_utils.write_string_file(os.path.join(blessing.uri, name), "")
        blessing.set_int_custom_property(
            constants.ARTIFACT_PROPERTY_BLESSED_KEY,
            constants.BLESSED_VALUE if decision.blessed else constants.NOT_BLESSED_VALUE,
        )
        blessing.set_string_custom_property(
            constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri
        )
        blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
        if baseline is not None:
            blessing.set_string_custom_property(
                constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, baseline.uri
            )
            blessing.set_int_custom_property(
                constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY, baseline.id
            )
        blessing.set_string_custom_property(
            constants.ARTIFACT_PROPERTY_BLESSING_MESSAGE_KEY, decision.message[:10_000]
        )
