"""``VersionedPusher``: TFX Pusher whose versions appear atomically, with warm-up."""

from __future__ import annotations

import os

from tfx import types
from tfx.components.pusher import component as pusher_component
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2

from components.versioned_pusher import executor


class VersionedPusher(pusher_component.Pusher):
    """Pushes blessed models to ``<serving_model_dir>/<model_name>/<version>/``.

    Same inputs and output as the TFX Pusher (``model``, ``model_blessing`` ->
    ``pushed_model``); a model whose blessing is not ``blessed == 1`` is not pushed.
    The version (unix seconds, strictly increasing) is assembled in a hidden staging
    directory, gets ``assets.extra/tf_serving_warmup_requests``, and is renamed into
    place, so a model server never loads a half-copied version
    (tensorflow/serving#1086).
    """

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        *,
        model: types.BaseChannel,
        model_blessing: types.BaseChannel,
        serving_model_dir: str,
        model_name: str,
        write_warmup_requests: bool = True,
    ):
        """Builds the component.

        Args:
          model: the Trainer's Model channel.
          model_blessing: the evaluator's ModelBlessing channel.
          serving_model_dir: the model base path servers watch (local path or URI).
          model_name: the name servers know the model under; a path component.
          write_warmup_requests: write TF Serving warm-up requests into the version.

        Raises:
          ValueError: if ``model_name`` is empty or not a single path component.
        """
        if not model_name or "/" in model_name or model_name in {".", ".."}:
            raise ValueError(f"model_name must be one path component, got {model_name!r}")
        if not serving_model_dir:
            raise ValueError("serving_model_dir must be a path, got an empty value")
        super().__init__(
            model=model,
            model_blessing=model_blessing,
            push_destination=pusher_pb2.PushDestination(
                filesystem=pusher_pb2.PushDestination.Filesystem(
                    base_directory=os.path.join(serving_model_dir, model_name)
                )
            ),
            custom_config={
                executor.MODEL_NAME_KEY: model_name,
                executor.WARMUP_KEY: write_warmup_requests,
            },
        )
