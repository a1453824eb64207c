"""What the last pipeline run did, read back from its ML Metadata store.

``summarize`` collects, for the latest run of a pipeline: each component's state
(``COMPLETE``, ``CACHED``, ...) and wall time, the ExampleGen accounting record, the
Evaluators' TFMA results (eval and test metrics per behavior and slice, the gate's
decision; ``components.tfma_ranking.results``) and the Pusher's outcome.
``format_summary`` prints it for ``make demo``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2

from bvae_tf import features
from components.tfma_ranking import gate as gate_lib
from components.tfma_ranking import results as tfma_results
from pipeline import configs
from pipeline import pipeline as pipeline_lib

_RUN_CONTEXT = "pipeline_run"
_NODE_CONTEXT = "node"
_ACCOUNTING_FILE = "accounting.json"
#: Markdown tables of the run's evaluation, written beside the gate Evaluator's
#: TFMA output by ``print_summary``.
METRICS_FILE = "metrics.md"


@dataclasses.dataclass
class NodeRun:
    """One component execution of a run.

    Attributes:
      node_id: the component id (``pipeline.NODE_IDS``).
      state: MLMD execution state name (``COMPLETE``, ``CACHED``, ``FAILED``, ...).
      seconds: wall time from the execution's creation to its last update.
      outputs: output key -> artifacts.
      properties: the execution's properties as TFX records them (exec properties
        such as an Evaluator's ``example_splits``, JSON text for lists).
    """

    node_id: str
    state: str
    seconds: float
    outputs: dict[str, list[metadata_store_pb2.Artifact]]
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)


def open_store(metadata_path: str) -> mlmd.MetadataStore:
    """A read-only connection to a SQLite MLMD file.

    Raises:
      ValueError: if the file does not exist.
    """
    if not os.path.isfile(metadata_path):
        raise ValueError(f"no metadata store at {metadata_path!r}: has the pipeline run?")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return mlmd.MetadataStore(config)


def latest_run(store: mlmd.MetadataStore, pipeline_name: str) -> tuple[str, dict[str, NodeRun]]:
    """The latest run of ``pipeline_name``: its id and its component executions.

    Raises:
      ValueError: if the store has no run of that pipeline.
    """
    prefix = f"{pipeline_name}."
    runs = []
    for context in store.get_contexts_by_type(_RUN_CONTEXT):
        executions = store.get_executions_by_context(context.id)
        nodes = {}
        for execution in executions:
            for ctx in store.get_contexts_by_execution(execution.id):
                if ctx.type == _NODE_CONTEXT and ctx.name.startswith(prefix):
                    nodes[execution.id] = ctx.name[len(prefix) :]
        if nodes:
            runs.append((context.create_time_since_epoch, context.name, executions, nodes))
    if not runs:
        raise ValueError(f"the metadata store has no run of pipeline {pipeline_name!r}")
    _, run_id, executions, nodes = max(runs, key=lambda r: r[0])
    result: dict[str, NodeRun] = {}
    for execution in executions:
        if execution.id not in nodes:
            continue
        outputs: dict[str, list[metadata_store_pb2.Artifact]] = {}
        events = [
            e
            for e in store.get_events_by_execution_ids([execution.id])
            if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
        ]
        artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
        for event in events:
            key = event.path.steps[0].key if event.path.steps else ""
            outputs.setdefault(key, []).append(artifacts[event.artifact_id])
        state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
        seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1e3
        properties = {
            key: getattr(value, value.WhichOneof("value"))
            for key, value in execution.custom_properties.items()
            if value.WhichOneof("value") in ("string_value", "int_value", "double_value")
        }
        result[nodes[execution.id]] = NodeRun(
            nodes[execution.id], state, seconds, outputs, properties
        )
    return run_id, result


def _custom(artifact: metadata_store_pb2.Artifact, key: str) -> Any:
    if key not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[key]
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


def _read_json(path: str) -> Any:
    from tfx.dsl.io import fileio

    with fileio.open(path, "r") as f:
        return json.loads(f.read())


#: Components in pipeline order (the baseline resolver before the Trainer, which it
#: feeds with training.warm_start), the optional Tuner after Transform and the
#: optional BatchRecommender last.
_ORDER = (
    pipeline_lib.PREVIOUS_STATISTICS_RESOLVER,
    *pipeline_lib.NODE_IDS[: pipeline_lib.NODE_IDS.index(pipeline_lib.BASELINE_RESOLVER)],
    pipeline_lib.TUNER,
    *pipeline_lib.NODE_IDS[
        pipeline_lib.NODE_IDS.index(pipeline_lib.BASELINE_RESOLVER) : pipeline_lib.NODE_IDS.index(
            pipeline_lib.TEST_EVALUATOR
        )
    ],
    *(pipeline_lib.report_evaluator_id(split) for split in features.SPLITS),
    *pipeline_lib.NODE_IDS[pipeline_lib.NODE_IDS.index(pipeline_lib.TEST_EVALUATOR) + 1 :],
    pipeline_lib.BATCH_RECOMMENDER,
)
#: The validator's drift record in its anomalies artifact
#: (``components.strict_example_validator``).
_DRIFT_FILE = "drift.json"
#: File the TFX Tuner writes in its ``best_hyperparameters`` artifact.
_BEST_HP_FILE = "best_hyperparameters.txt"


def summarize(metadata_path: str, pipeline_name: str) -> dict[str, Any]:
    """Summary of the latest run (see the module docstring); plain JSON types.

    Raises:
      ValueError: if there is no such run.
    """
    run_id, nodes = latest_run(open_store(metadata_path), pipeline_name)
    summary: dict[str, Any] = {
        "run_id": run_id,
        "components": {
            node_id: {"state": nodes[node_id].state, "seconds": round(nodes[node_id].seconds, 1)}
            for node_id in _ORDER
            if node_id in nodes
        },
    }
    tuner = nodes.get(pipeline_lib.TUNER)
    if tuner and tuner.outputs.get("best_hyperparameters"):
        from bvae_tf import tuning

        path = os.path.join(tuner.outputs["best_hyperparameters"][0].uri, _BEST_HP_FILE)
        summary["tuned_hyperparameters"] = tuning.hyperparameter_values(_read_json(path))
    example_gen = nodes.get(pipeline_lib.EXAMPLE_GEN)
    if example_gen and example_gen.outputs.get("examples"):
        uri = example_gen.outputs["examples"][0].uri
        summary["examples_uri"] = uri
        summary["accounting"] = _read_json(os.path.join(uri, _ACCOUNTING_FILE))
    statistics_gen = nodes.get(pipeline_lib.STATISTICS_GEN)
    if statistics_gen and statistics_gen.outputs.get("statistics"):
        summary["statistics_uri"] = statistics_gen.outputs["statistics"][0].uri
    validator = nodes.get(pipeline_lib.EXAMPLE_VALIDATOR)
    if validator and validator.outputs.get("anomalies"):
        drift_file = os.path.join(validator.outputs["anomalies"][0].uri, _DRIFT_FILE)
        if os.path.isfile(drift_file):
            record = _read_json(drift_file)
            summary["drift"] = {
                "file": drift_file,
                "measurements": len(record["measurements"]),
                "drifted": sum(m["drifted"] for m in record["measurements"]),
            }
    trainer = nodes.get(pipeline_lib.TRAINER)
    if trainer and trainer.outputs.get("model_run"):
        summary["tensorboard_logdir"] = os.path.join(
            trainer.outputs["model_run"][0].uri, "tensorboard"
        )
    evaluation = _evaluation(nodes)
    if evaluation:
        summary["evaluation"] = evaluation
    evaluator = nodes.get(pipeline_lib.EVALUATOR)
    if evaluator and evaluator.outputs.get("blessing"):
        blessing = evaluator.outputs["blessing"][0]
        summary["blessed"] = bool(_custom(blessing, "blessed"))
        summary["blessing_message"] = (
            tfma_results.blessing_message(
                evaluation.get("validation"), evaluation.get("baseline") is not None
            )
            if evaluation
            else "no evaluation"
        )
    pusher = nodes.get(pipeline_lib.PUSHER)
    if pusher and pusher.outputs.get("pushed_model"):
        pushed = pusher.outputs["pushed_model"][0]
        summary["pushed"] = bool(_custom(pushed, "pushed"))
        summary["pushed_destination"] = _custom(pushed, "pushed_destination")
        summary["pushed_version"] = _custom(pushed, "pushed_version")
    batch = nodes.get(pipeline_lib.BATCH_RECOMMENDER)
    if batch and batch.outputs.get("recommendations"):
        output = batch.outputs["recommendations"][0]
        summary["batch_recommendations"] = {
            "uri": output.uri,
            "blessed": bool(_custom(output, "blessed")),
            "users": _custom(output, "users"),
            "rows": _custom(output, "rows"),
            "top_k": _custom(output, "top_k"),
        }
    return summary


def _evaluation(nodes: Mapping[str, NodeRun]) -> dict[str, Any] | None:
    """The gate Evaluator's and the report Evaluators' results (overall and slices)."""
    evaluators = {
        split: nodes.get(pipeline_lib.report_evaluator_id(split)) for split in features.SPLITS
    }
    gate = nodes.get(pipeline_lib.EVALUATOR)
    if not gate or not gate.outputs.get("evaluation"):
        return None
    gate_uri = gate.outputs["evaluation"][0].uri
    read = tfma_results.read(gate_uri)
    gate_split = _custom_split(gate) or features.EVAL
    evaluators[gate_split] = gate
    out: dict[str, Any] = {
        "gate_split": gate_split,
        "uri": gate_uri,
        "splits": {},
        "slices": {},
        "baseline": None,
        "validation": read["validation"],
    }
    for split, node in evaluators.items():
        if not node or not node.outputs.get("evaluation"):
            continue
        this = read if node is gate else tfma_results.read(node.outputs["evaluation"][0].uri)
        slices = this["models"].get(gate_lib.CANDIDATE, {})
        out["splits"][split] = slices.get(tfma_results.OVERALL, {})
        out["slices"][split] = slices
    if gate_lib.BASELINE in read["models"]:
        out["baseline"] = {gate_split: read["models"][gate_lib.BASELINE]}
    return out


def _custom_split(node: NodeRun) -> str | None:
    """The split an Evaluator execution scored (its ``example_splits`` property)."""
    splits = node.properties.get("example_splits")
    try:
        values = json.loads(splits) if isinstance(splits, str) else None
    except json.JSONDecodeError:
        return None
    return values[0] if isinstance(values, list) and len(values) == 1 else None


def metrics_table(
    per_behavior: Mapping[str, Mapping[str, float]],
    ks: Sequence[int] = (5,),
    metrics: Sequence[str] = ("precision", "recall", "ndcg", "hit_rate"),
) -> list[str]:
    """Lines of a fixed-width table: behavior x metric@K (+ users scored)."""
    names = [f"{m}@{k}" for k in ks for m in metrics]
    lines = [f"{'behavior':<12}{'users':>7}" + "".join(f"{n:>13}" for n in names)]
    for behavior, values in per_behavior.items():
        cells = "".join(f"{values[n]:>13.4f}" for n in names)
        lines.append(f"{behavior:<12}{values.get('num_users', 0):>7}" + cells)
    return lines


def _slice_cell(values: dict) -> str:
    """A slice's NDCG@5 to 4 decimals; "-" when it scored no user (NaN or absent)."""
    value = values.get("ndcg@5", float("nan"))
    return "-" if not values.get("num_users") or math.isnan(value) else f"{value:.4f}"


def format_summary(summary: Mapping[str, Any]) -> str:
    """Human-readable report of ``summarize``'s output."""
    lines = [f"Pipeline run {summary['run_id']}"]
    lines.append("Components:")
    for node_id, info in summary["components"].items():
        lines.append(f"  {node_id:<32}{info['state']:<10}{info['seconds']:>8.1f} s")
    if summary.get("tuned_hyperparameters"):
        tuned = json.dumps(summary["tuned_hyperparameters"], sort_keys=True)
        lines.append(f"Tuner's best hyperparameters (eval split), used by the Trainer: {tuned}")
    accounting = summary.get("accounting")
    if accounting:
        lines.append("Accounting (ExampleGen):")
        lines.append(f"  rows read            {accounting.get('rows_read')}")
        rejected = accounting.get("rows_rejected", {})
        lines.append(
            f"  rows rejected        {sum(rejected.values())} "
            + json.dumps({k: v for k, v in rejected.items() if v})
        )
        # valid rows of a mapped behavior the config does not model (data.behaviors)
        lines.append(f"  behavior not kept    {accounting.get('behavior_not_kept', 0)}")
        lines.append(f"  duplicates dropped   {accounting.get('duplicates_dropped')}")
        for step in ("item_filter", "user_filter", "cold_eval_users"):
            info = accounting.get(step)
            if not isinstance(info, Mapping):
                continue
            if step != "cold_eval_users" and not info.get("min_target_events"):
                lines.append(f"  {step:<20} off")  # it did not run: nothing to count
            else:
                lines.append(f"  {step:<20} {json.dumps(info, sort_keys=True)}")
        lines.append(f"  events kept          {accounting.get('events_kept')}")
        for split, info in accounting.get("splits", {}).items():
            lines.append(
                f"  {split:<6} users {info.get('examples'):>6}  events "
                + json.dumps(info.get("events_per_behavior", {}), sort_keys=True)
            )
    evaluation = summary.get("evaluation")
    if evaluation:
        for split, per_behavior in evaluation["splits"].items():
            role = "gate" if split == evaluation["gate_split"] else "reported"
            lines.append(f"Metrics on the {split} split ({role}), K=5 and 10:")
            lines += ["  " + line for line in metrics_table(per_behavior, ks=(5, 10))]
        gate_slices = evaluation["slices"].get(evaluation["gate_split"], {})
        sliced = [s for s in gate_slices if s != tfma_results.OVERALL]
        if sliced:
            lines.append(
                f"NDCG@5 by slice ({evaluation['gate_split']} split; users scored; "
                "- where no user of the slice has held-out items of the behavior):"
            )
            for name in sliced:
                cells = "  ".join(
                    f"{b} {_slice_cell(v)} ({v.get('num_users', 0)})"
                    for b, v in gate_slices[name].items()
                )
                lines.append(f"  {name:<20}{cells}")
    if "blessed" in summary:
        lines.append(
            f"Blessed: {'yes' if summary['blessed'] else 'no'} -- {summary['blessing_message']}"
        )
    if "pushed" in summary:
        if summary["pushed"]:
            lines.append(
                f"Pushed: version {summary['pushed_version']} at {summary['pushed_destination']}"
            )
        else:
            lines.append(
                "Pushed: nothing (the model was not blessed; the gate is the config's "
                "evaluation.lower_bounds and evaluation.regression_tolerance)"
            )
    batch = summary.get("batch_recommendations")
    if batch:
        if batch["blessed"]:
            lines.append(
                f"Batch recommendations: top {batch['top_k']} for {batch['users']} users "
                f"({batch['rows']} rows) in {batch['uri']}"
            )
        else:
            lines.append("Batch recommendations: none (the model was not blessed)")
    drift = summary.get("drift")
    if drift:
        lines.append(
            f"Drift vs the previous span: {drift['drifted']} of {drift['measurements']} "
            f"measurements above their threshold ({drift['file']})"
        )
    if summary.get("examples_uri"):
        lines.append(
            f"Examples (for components.batch_recommender --examples): {summary['examples_uri']}"
        )
    if summary.get("statistics_uri"):
        lines.append(
            f"Statistics (for pipeline.schema_tool --statistics): {summary['statistics_uri']}"
        )
    if summary.get("tensorboard_logdir"):
        tensorboard = os.path.join(os.path.dirname(sys.executable), "tensorboard")
        if os.path.isfile(tensorboard):
            tensorboard = os.path.relpath(tensorboard)
        lines.append(f"Training curves: {tensorboard} --logdir {summary['tensorboard_logdir']}")
    return "\n".join(lines)


# --- what the runners print after a run ----------------------------------------------
def latest_run_id(config: configs.PipelineConfig) -> str | None:
    """The id of the latest run of the config's pipeline in its MLMD store, if any."""
    try:
        run_id, _ = latest_run(open_store(config.resolved_metadata_path), config.pipeline_name)
    except ValueError:
        return None
    return run_id


def print_summary(config: configs.PipelineConfig) -> dict:
    """Prints the latest run's summary (accounting, metrics, blessing, pushed path)
    and how to serve the pushed model; returns the summary (``report.summarize``)."""
    summary = summarize(config.resolved_metadata_path, config.pipeline_name)
    evaluation = summary.get("evaluation")
    if evaluation and "://" not in evaluation["uri"] and os.path.isdir(evaluation["uri"]):
        path = os.path.join(evaluation["uri"], METRICS_FILE)
        with open(path, "w") as f:
            f.write(
                tfma_results.markdown(
                    evaluation["slices"],
                    config.gate_config().ks,
                    (evaluation["baseline"] or {}).get(evaluation["gate_split"]),
                    summary.get("blessing_message"),
                )
            )
        summary["metrics_file"] = path
    print()
    print(format_summary(summary))
    print(f"Artifacts: {config.resolved_pipeline_root}")
    if summary.get("pushed"):
        python = os.path.relpath(sys.executable) if sys.executable else "python"
        print(
            f"Serve it: {python} -m serving.server --model_base_path "
            f"{config.resolved_serving_model_dir} --model_name {config.model_name} "
            "--rest_api_port 8501 --enable_batching"
        )
    return summary


def run_and_report(config: configs.PipelineConfig, run_pipeline) -> None:
    """Calls ``run_pipeline()`` and prints the summary of the run it made.

    Under ``tfx pipeline create`` the TFX CLI only compiles (the runner's ``run`` is
    patched and runs nothing): then no new run is in the metadata store and nothing
    is printed.
    """
    before = latest_run_id(config)
    run_pipeline()
    if latest_run_id(config) not in (None, before):
        print_summary(config)
