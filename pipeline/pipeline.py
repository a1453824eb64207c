"""The BVAE TFX pipeline: raw multi-behavior logs -> a blessed, versioned SavedModel.

::

    MultiBehaviorExampleGen -> StatisticsGen -> ImportSchemaGen (curated) | SchemaGen
        -> StrictExampleValidator (anomalies fail the run, before Transform)
        -> Transform (one item vocabulary; OOV dropped and counted)
        -> [Tuner (bvae_tf.trainer.tuner_fn; when the config's tuning is enabled)]
        -> Trainer (bvae_tf.trainer.run_fn; serving signatures with the Transform graph)
        -> Evaluator (TFX's, on TFMA: per-behavior ranking metrics of the exported
                      model's rank_heldout signature, sliced; eval split gated by
                      thresholds vs bounds and the latest blessed model)
                      <- Resolver(LatestBlessedModelStrategy)
        -> TestEvaluator (the same metrics on the test split: reported, never gated)
        -> VersionedPusher (<serving_model_dir>/<model_name>/<version>/, atomic)
        -> [BatchRecommender (top-K rows per user and behavior as CSV / TFRecord files,
                              blessed models only; when the config enables it)]

``create_pipeline`` is pure: every environment detail (roots, metadata store, Beam
options) is an argument; the runners in this package work them out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tfx import v1 as tfx

from bvae_tf import features
from components.batch_recommender import BatchRecommender
from components.multi_behavior_example_gen import MultiBehaviorExampleGen
from components.strict_example_validator.component import StrictExampleValidator
from components.strict_example_validator.resolver import LatestValidatedStatisticsStrategy
from components.tfma_ranking import gate as gate_lib
from components.tfma_ranking.gate import GateConfig
from components.versioned_pusher import VersionedPusher
from pipeline import configs

#: Node ids (stable names in MLMD, the pipeline JSON and the run logs).
EXAMPLE_GEN = "MultiBehaviorExampleGen"
STATISTICS_GEN = "StatisticsGen"
SCHEMA_GEN = "SchemaGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
TRANSFORM = "Transform"
TRAINER = "Trainer"
#: Only in pipelines whose config enables tuning (not in ``NODE_IDS``).
TUNER = "Tuner"
#: Only in pipelines whose config enables drift checks (not in ``NODE_IDS``).
PREVIOUS_STATISTICS_RESOLVER = "previous_statistics_resolver"
#: Only in pipelines whose config enables batch_inference (not in ``NODE_IDS``).
BATCH_RECOMMENDER = "BatchRecommender"
BASELINE_RESOLVER = "latest_blessed_model_resolver"
EVALUATOR = "Evaluator"
PUSHER = "Pusher"


def report_evaluator_id(split: str) -> str:
    """Node id of the Evaluator that reports (never gates) a split: ``TestEvaluator``."""
    return f"{split.capitalize()}Evaluator"


#: The default report split's Evaluator (``evaluation.report_splits``).
TEST_EVALUATOR = report_evaluator_id(features.TEST)
NODE_IDS: tuple[str, ...] = (
    EXAMPLE_GEN,
    STATISTICS_GEN,
    SCHEMA_GEN,
    EXAMPLE_VALIDATOR,
    TRANSFORM,
    # Before the Trainer: with training.warm_start the Trainer starts from its model.
    BASELINE_RESOLVER,
    TRAINER,
    EVALUATOR,
    TEST_EVALUATOR,
    PUSHER,
)


def vertex_trainer_config(
    *, project: str, region: str, image: str, workers: int = 1, machine_type: str = "n1-standard-8"
) -> dict[str, Any]:
    """The Trainer ``custom_config`` keys that make TFX's Vertex AI Trainer run
    ``run_fn`` as one custom job of ``workers`` replicas of ``image``.

    Worker pool 0 is the chief (1 replica), pool 1 the other ``workers - 1``. Vertex AI
    sets ``TF_CONFIG`` on each replica (task types ``chief`` and ``worker``), so
    ``run_fn``'s ``"auto"`` strategy is ``MultiWorkerMirroredStrategy`` when
    ``workers > 1`` and only the chief writes the model (``bvae_tf.trainer``). Keys:
    ``tfx.v1.extensions.google_cloud_ai_platform`` (ENABLE_VERTEX_KEY,
    VERTEX_REGION_KEY, TRAINING_ARGS_KEY); job spec:
    https://cloud.google.com/vertex-ai/docs/reference/rest/v1/CustomJobSpec

    Raises:
      ValueError: if ``workers`` is not an int >= 1 or a name is not a non-blank string.
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"vertex training: workers must be an int >= 1, got {workers!r}")
    named = (("project", project), ("region", region), ("image", image))
    for name, value in (*named, ("machine_type", machine_type)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"vertex training: {name} must be a non-empty string, got {value!r}")
    pool = {"machine_spec": {"machine_type": machine_type}, "container_spec": {"image_uri": image}}
    pools = [{**pool, "replica_count": 1}]
    if workers > 1:
        pools.append({**pool, "replica_count": workers - 1})
    vertex = tfx.extensions.google_cloud_ai_platform
    return {
        vertex.ENABLE_VERTEX_KEY: True,
        vertex.VERTEX_REGION_KEY: region,
        vertex.TRAINING_ARGS_KEY: {
            "project": project,
            "job_spec": {"worker_pool_specs": pools},
        },
    }


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    example_gen_config: Mapping[str, Any],
    schema_path: str | None,
    transform_config: Mapping[str, Any],
    trainer_config: Mapping[str, Any],
    gate_config: GateConfig | Mapping[str, Any],
    serving_model_dir: str,
    model_name: str,
    metadata_connection_config: Any | None = None,
    beam_pipeline_args: Sequence[str] = (),
    enable_cache: bool = False,
    batch_inference: Mapping[str, Any] | None = None,
    drift_config: Any | None = None,
    vertex_training: Mapping[str, Any] | None = None,
) -> tfx.dsl.Pipeline:
    """Assembles the pipeline.

    Args:
      pipeline_name: TFX pipeline name (the MLMD context of its runs).
      pipeline_root: root of the component outputs (local path or URI).
      example_gen_config: ``MultiBehaviorExampleGen`` keyword arguments (input path
        and format, behaviors, filters, split).
      schema_path: a curated text-format schema to import, or ``None`` to infer one
        from the statistics with SchemaGen.
      transform_config: Transform ``custom_config`` (``bvae_tf.preprocessing``).
      trainer_config: Trainer ``custom_config`` (``bvae_tf.trainer.run_fn``); with a
        ``tuning`` key the Tuner runs first and the Trainer uses its best values.
      gate_config: the evaluator's gate (``GateConfig`` or its keyword arguments).
      serving_model_dir: model base path of the model servers.
      model_name: the served model's name (a sub-directory of ``serving_model_dir``).
      metadata_connection_config: MLMD connection (``None``: the orchestrator's).
      beam_pipeline_args: Beam options of ExampleGen, StatisticsGen, Transform, ...
      enable_cache: reuse outputs of unchanged component executions.
      batch_inference: ``BatchRecommender`` keyword arguments (``splits``,
        ``users_file``, ``formats``, ``batch_size``); ``None``: no batch output.
      drift_config: a ``drift.DriftConfig`` of the validator: this span's statistics
        are compared with the latest earlier run's that passed validation (a
        resolver that runs before StatisticsGen); ``None``: no drift check.
      vertex_training: train as a Vertex AI custom job (TFX's
        ``google_cloud_ai_platform.Trainer``, the same ``run_fn``): the keys of
        :func:`vertex_trainer_config`; ``None``: the Trainer runs where the
        orchestrator runs it.

    Returns:
      The ``tfx.dsl.Pipeline``.

    Raises:
      ValueError: if a component argument is invalid (the message names it).
    """
    example_gen = MultiBehaviorExampleGen(**example_gen_config).with_id(EXAMPLE_GEN)
    examples = example_gen.outputs["examples"]
    statistics_gen = tfx.components.StatisticsGen(examples=examples).with_id(STATISTICS_GEN)
    if schema_path is None:
        schema_gen = tfx.components.SchemaGen(
            statistics=statistics_gen.outputs["statistics"], infer_feature_shape=False
        )
    else:
        schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_path)
    schema_gen = schema_gen.with_id(SCHEMA_GEN)
    schema = schema_gen.outputs["schema"]
    previous_statistics = None
    if drift_config is not None:
        # Resolved before this run's StatisticsGen executes: the latest earlier span's
        # that a validator accepted (a drifted span is never its own baseline).
        previous_statistics = tfx.dsl.Resolver(
            strategy_class=LatestValidatedStatisticsStrategy,
            statistics=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ExampleStatistics),
        ).with_id(PREVIOUS_STATISTICS_RESOLVER)
        statistics_gen.add_upstream_node(previous_statistics)
    example_validator = StrictExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema,
        baseline_statistics=None
        if previous_statistics is None
        else previous_statistics.outputs["statistics"],
        drift_config=drift_config,
        behaviors=example_gen_config.get("behaviors") or features.DEFAULT_BEHAVIORS,
    ).with_id(EXAMPLE_VALIDATOR)

    transform = tfx.components.Transform(
        examples=examples,
        schema=schema,
        preprocessing_fn=configs.PREPROCESSING_FN,
        splits_config=tfx.proto.SplitsConfig(
            analyze=[features.TRAIN], transform=[features.TRAIN, features.EVAL]
        ),
        custom_config=dict(transform_config),
        # StatisticsGen and the validator already cover the data; no span-incremental
        # analysis is done, so neither pre/post-transform statistics nor an analyzer
        # cache are worth their time.
        disable_statistics=True,
        disable_analyzer_cache=True,
        # The TF1-compatible Transform graph analyzes about twice as fast here (19 s
        # vs 35 s on the synthetic log) and serves the same way (tests/bvae_tf).
        force_tf_compat_v1=True,
    ).with_id(TRANSFORM)
    # Data that fails validation must stop the run before anything is fitted on it.
    transform.add_upstream_node(example_validator)

    tuner = None
    if "tuning" in trainer_config:
        tuner = tfx.components.Tuner(
            tuner_fn=configs.TUNER_FN,
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            train_args=tfx.proto.TrainArgs(splits=[features.TRAIN]),
            eval_args=tfx.proto.EvalArgs(splits=[features.EVAL]),
            custom_config=dict(trainer_config),
        ).with_id(TUNER)
    baseline_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(BASELINE_RESOLVER)

    warm_start = bool(dict(trainer_config.get("training") or {}).get("warm_start", False))
    trainer_class, trainer_custom_config = tfx.components.Trainer, dict(trainer_config)
    if vertex_training is not None:
        trainer_class = tfx.extensions.google_cloud_ai_platform.Trainer
        trainer_custom_config.update(vertex_trainer_config(**vertex_training))
    trainer = trainer_class(
        run_fn=configs.RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        train_args=tfx.proto.TrainArgs(splits=[features.TRAIN]),
        eval_args=tfx.proto.EvalArgs(splits=[features.EVAL]),
        hyperparameters=None if tuner is None else tuner.outputs["best_hyperparameters"],
        # training.warm_start: start from the latest blessed model (bvae_tf.warm_start).
        base_model=baseline_resolver.outputs["model"] if warm_start else None,
        custom_config=trainer_custom_config,
    ).with_id(TRAINER)

    gate = gate_config if isinstance(gate_config, GateConfig) else GateConfig.from_dict(gate_config)
    behaviors = example_gen_config.get("behaviors") or features.DEFAULT_BEHAVIORS
    # TFX's Evaluator on the raw examples: the model's own rank_heldout signature
    # (Transform graph inside) ranks each user's held-out items, so an older blessed
    # baseline is scored as it was exported (components.tfma_ranking).
    evaluator = tfx.components.Evaluator(
        examples=examples,
        model=trainer.outputs["model"],
        baseline_model=baseline_resolver.outputs["model"],
        eval_config=gate_lib.eval_config(gate, behaviors),
        example_splits=[gate.eval_split],
        module_path=gate_lib.MODEL_LOADER,
    ).with_id(EVALUATOR)
    # The report splits (test): scored once, after training; no thresholds, so their
    # Evaluators write no blessing and gate nothing.
    report_evaluators = [
        tfx.components.Evaluator(
            examples=examples,
            model=trainer.outputs["model"],
            eval_config=gate_lib.eval_config(gate, behaviors, gated=False),
            example_splits=[split],
            module_path=gate_lib.MODEL_LOADER,
        ).with_id(report_evaluator_id(split))
        for split in gate.report_splits
    ]

    pusher = VersionedPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        serving_model_dir=serving_model_dir,
        model_name=model_name,
    ).with_id(PUSHER)

    batch_recommender = None
    if batch_inference is not None:
        batch_recommender = BatchRecommender(
            examples=examples,
            model=trainer.outputs["model"],
            model_blessing=evaluator.outputs["blessing"],
            **batch_inference,
        ).with_id(BATCH_RECOMMENDER)

    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[
            *([] if previous_statistics is None else [previous_statistics]),
            example_gen,
            statistics_gen,
            schema_gen,
            example_validator,
            transform,
            *([] if tuner is None else [tuner]),
            baseline_resolver,
            trainer,
            evaluator,
            *report_evaluators,
            pusher,
            *([] if batch_recommender is None else [batch_recommender]),
        ],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )


def pipeline_arguments(config: configs.PipelineConfig) -> dict[str, Any]:
    """The environment-independent ``create_pipeline`` arguments of a config.

    The runners add the roots, the metadata connection and the Beam options.

    Raises:
      ValueError: if the config's local ``schema_path`` cannot be read or does not
        hold exactly the behaviors' features.
    """
    schema_path = configs.checked_schema_path(config)
    return {
        "pipeline_name": config.pipeline_name,
        "example_gen_config": config.example_gen_arguments(),
        "schema_path": schema_path,
        "transform_config": config.transform_custom_config(),
        "trainer_config": config.trainer_custom_config(),
        "gate_config": config.gate_config(),
        "model_name": config.model_name,
        "enable_cache": config.enable_cache,
        "batch_inference": config.batch_recommender_arguments(),
        "drift_config": config.drift_config(),
    }
