"""``BatchRecommender``: top-K per user and behavior from a blessed model, as files."""

from __future__ import annotations

import json
from collections.abc import Sequence

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.batch_recommender import executor, recommend


class BatchRecommendations(types.Artifact):
    """Files of top-K recommendations per user and behavior and their ``summary.json``
    (``components.batch_recommender.recommend``)."""

    # "<namespace>.<Title>": the form the Kubeflow V2 compiler requires of custom types.
    TYPE_NAME = "bvae.BatchRecommendations"


class BatchRecommenderSpec(ComponentSpec):
    """Inputs, outputs and parameters of ``BatchRecommender``."""

    PARAMETERS = {
        executor.SPLITS_KEY: ExecutionParameter(type=str, optional=True),
        executor.USERS_FILE_KEY: ExecutionParameter(type=str, optional=True),
        executor.FORMATS_KEY: ExecutionParameter(type=str, optional=True),
        executor.BATCH_SIZE_KEY: ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.BLESSING_KEY: ChannelParameter(
            type=standard_artifacts.ModelBlessing, optional=True
        ),
    }
    OUTPUTS = {executor.OUTPUT_KEY: ChannelParameter(type=BatchRecommendations)}


class BatchRecommender(base_beam_component.BaseBeamComponent):
    """Precomputes recommendations for every user (or a list) with a blessed model.

    A Beam job (``recommend.build``) merges each user's history over the ExampleGen's
    splits, runs the exported ``serving_default`` signature in batches and writes
    ``recommendations-*.csv`` (one row per user, behavior and rank) and/or
    ``recommendations-*.tfrecord.gz`` (one example per user and behavior with its
    ranked ``item_ids`` and ``scores``) plus ``summary.json`` into its ``recommendations``
    artifact. With a ``model_blessing`` that is not blessed it writes nothing and
    marks the artifact ``blessed = 0``, as the stock BulkInferrer does.
    """

    SPEC_CLASS = BatchRecommenderSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        *,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        model_blessing: types.BaseChannel | None = None,
        splits: Sequence[str] | None = None,
        users_file: str | None = None,
        formats: Sequence[str] = recommend.FORMATS,
        batch_size: int = recommend.DEFAULT_BATCH_SIZE,
    ):
        """Builds the component.

        Args:
          examples: the ExampleGen's Examples (the users' histories).
          model: the Trainer's Model (its ``Format-Serving`` SavedModel).
          model_blessing: the Evaluator's blessing; when given, an unblessed model
            writes nothing.
          splits: splits whose histories are merged (default: all).
          users_file: a text file of user ids, one per line (default: every user).
          formats: output formats, any of ``recommend.FORMATS``.
          batch_size: histories per model call.

        Raises:
          ValueError: on an unknown or empty ``formats`` or a ``batch_size`` below 1.
        """
        recommend.check_arguments(formats, batch_size)
        spec = BatchRecommenderSpec(
            examples=examples,
            model=model,
            model_blessing=model_blessing,
            splits=json.dumps(list(splits)) if splits else None,
            users_file=users_file or None,
            formats=json.dumps(list(formats)),
            batch_size=batch_size,
            recommendations=types.Channel(type=BatchRecommendations),
        )
        super().__init__(spec=spec)
