"""``RankingEvaluator``: per-behavior ranking metrics and the blessing gate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.ranking_evaluator import executor
from components.ranking_evaluator.gate import GateConfig

GATE_CONFIG_KEY = "gate_config"


class RankingEvaluatorSpec(ComponentSpec):
    """Inputs, outputs and parameters of ``RankingEvaluator``."""

    PARAMETERS = {GATE_CONFIG_KEY: ExecutionParameter(type=str)}
    INPUTS = {
        standard_component_specs.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        standard_component_specs.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        standard_component_specs.BASELINE_MODEL_KEY: ChannelParameter(
            type=standard_artifacts.Model, optional=True
        ),
    }
    OUTPUTS = {
        standard_component_specs.EVALUATION_KEY: ChannelParameter(
            type=standard_artifacts.ModelEvaluation
        ),
        standard_component_specs.BLESSING_KEY: ChannelParameter(
            type=standard_artifacts.ModelBlessing
        ),
    }


class RankingEvaluator(base_component.BaseComponent):
    """Scores a model (and the latest blessed one) and writes ModelEvaluation + ModelBlessing.

    On the raw ``examples`` (the ExampleGen's splits), each model is run through its
    own exported graphs (``transform_features``, ``score_items`` signatures) and
    scored with ``bvae_tf.metrics`` (full ranking, the user's train items of the
    behavior excluded): P/R/NDCG/HR@K per behavior on the gate split and on the report
    splits (test: scored once, reported, never gated). The blessing is always
    written, blessed or not (tensorflow/tfx#5148), with TFX's Evaluator custom
    properties (``blessed``, ``current_model_id``, ...), so the
    ``LatestBlessedModelStrategy`` resolver and the Pusher read it as theirs.
    """

    SPEC_CLASS = RankingEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        *,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        baseline_model: types.BaseChannel | None = None,
        gate_config: GateConfig | Mapping[str, Any] | None = None,
    ):
        """Builds the component.

        Args:
          examples: raw Examples with the gate split and the report splits.
          model: the candidate Model (Trainer output).
          baseline_model: the latest blessed Model (a LatestBlessedModelStrategy
            resolver output); when it resolves to nothing only absolute bounds apply.
          gate_config: a ``GateConfig`` or its keyword arguments (default: all
            defaults, i.e. no absolute bound and no NDCG@5 drop against the baseline).

        Raises:
          ValueError: if the gate configuration is invalid.
        """
        if gate_config is None:
            gate = GateConfig()
        elif isinstance(gate_config, GateConfig):
            gate = gate_config
        else:
            gate = GateConfig.from_dict(gate_config)
        spec = RankingEvaluatorSpec(
            examples=examples,
            model=model,
            baseline_model=baseline_model,
            gate_config=gate.to_json(),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        )
        super().__init__(spec=spec)
