"""Executor of ``VersionedPusher``: publish a blessed model as a complete version.

TF Serving watches ``<base>/<model_name>/`` and loads the highest numeric
sub-directory. The stock Pusher copies files straight into ``<base>/<version>/``
(``saved_model.pb`` last), so a server polling mid-copy can see a half-written
version (tensorflow/serving#1086). Here the version is assembled in a hidden
staging directory next to it (``.staging-<version>-<random>``: not numeric, so
every model server ignores it), the warm-up requests are written into it, and only
then is it renamed to ``<version>``: on a local or POSIX file system the rename is
atomic, so a version directory is either absent or complete.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, json_utils, proto_utils

from bvae_tf import export

#: Prefix of staging directories; model servers only load numeric directory names.
STAGING_PREFIX = ".staging-"
#: ``custom_config`` key: write ``assets.extra/tf_serving_warmup_requests`` (bool).
WARMUP_KEY = "write_warmup_requests"
#: ``custom_config`` key: the model name servers know the model under.
MODEL_NAME_KEY = "model_name"
_SAVED_MODEL_PB = "saved_model.pb"


def existing_versions(base_directory: str) -> list[int]:
    """Numeric version directories under ``base_directory`` (ascending; ``[]`` if absent)."""
    if not fileio.exists(base_directory):
        return []
    versions = []
    for entry in fileio.listdir(base_directory):
        name = entry.rstrip("/")
        if name.isdigit() and fileio.isdir(os.path.join(base_directory, name)):
            versions.append(int(name))
    return sorted(versions)


def next_version(base_directory: str, now: float | None = None) -> int:
    """The version to publish: the current unix time in seconds, or one more than the
    highest existing version if that is not older, so versions only grow."""
    stamp = int(time.time() if now is None else now)
    versions = existing_versions(base_directory)
    return max(stamp, versions[-1] + 1) if versions else stamp


def _is_local(path: str) -> bool:
    return "://" not in path


def publish_version(
    model_path: str,
    base_directory: str,
    prepare: Callable[[str], None] | None = None,
    now: float | None = None,
    max_attempts: int = 5,
) -> tuple[int, str]:
    """Copies a SavedModel to ``<base_directory>/<version>/`` so that it appears whole.

    Args:
      model_path: the SavedModel directory to publish.
      base_directory: ``<serving_model_dir>/<model_name>``; created if absent.
      prepare: optional callable run on the staging directory before it is
        published (e.g. to write warm-up requests into ``assets.extra/``).
      now: unix time in seconds for the version number (default: the clock).
      max_attempts: versions tried when another publisher takes the same number.

    Returns:
      ``(version, version_directory)``.

    Raises:
      ValueError: if ``model_path`` holds no ``saved_model.pb``.
      FileExistsError: if no free version number was found in ``max_attempts``.
    """
    if not fileio.exists(os.path.join(model_path, _SAVED_MODEL_PB)):
        raise ValueError(f"{model_path!r} is not a SavedModel: no {_SAVED_MODEL_PB} in it")
    fileio.makedirs(base_directory)
    version = next_version(base_directory, now)
    staging = os.path.join(base_directory, f"{STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
    try:
        io_utils.copy_dir(model_path, staging)
        if prepare is not None:
            prepare(staging)
        for _ in range(max_attempts):
            target = os.path.join(base_directory, str(version))
            if not fileio.exists(target):
                try:
                    _move_into_place(staging, target)
                    return version, target
                except OSError as e:  # another publisher took the number just now
                    logging.warning(
                        "Could not publish %s (%s); trying the next version.", target, e
                    )
            version += 1
        raise FileExistsError(
            f"no free version under {base_directory!r} after {max_attempts} attempts"
        )
    finally:
        if fileio.exists(staging):
            fileio.rmtree(staging)


def _move_into_place(staging: str, target: str) -> None:
    """Renames ``staging`` to ``target`` (atomic on a local file system).

    Object stores have no directory rename; there the files are copied with
    ``saved_model.pb`` last, the file TF Serving waits for before loading.
    """
    if _is_local(staging):
        os.rename(staging, target)  # fails if target exists and is not empty
        return
    io_utils.copy_dir(staging, target, deny_regex_patterns=[r"saved_model\.pb$"])
    io_utils.copy_file(
        os.path.join(staging, _SAVED_MODEL_PB), os.path.join(target, _SAVED_MODEL_PB)
    )


def write_warmup_requests(version_dir: str, model_name: str) -> None:
    """Writes ``assets.extra/tf_serving_warmup_requests`` into a version directory.

    The requests are built as the serving client builds its own
    (``bvae_tf.export.write_warmup_requests``), so TF Serving replays what clients send.
    """
    export.write_warmup_requests(version_dir, model_name=model_name)


class Executor(pusher_executor.Executor):
    """Pushes a blessed model to ``<base_directory>/<version>/`` atomically."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Publishes the model if it is blessed; marks the PushedModel either way.

        Args:
          input_dict: ``model`` (Model) and ``model_blessing`` (ModelBlessing).
          output_dict: ``pushed_model`` (PushedModel): custom properties ``pushed``
            (0/1), ``pushed_destination`` and ``pushed_version``.
          exec_properties: ``push_destination`` (a filesystem PushDestination
            whose ``base_directory`` is ``<serving_model_dir>/<model_name>``) and
            ``custom_config`` (``model_name``, ``write_warmup_requests``).
        """
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination
        )
        if destination.WhichOneof("destination") != "filesystem":
            raise ValueError(
                f"VersionedPusher pushes to a filesystem destination, got {destination}"
            )
        config = (
            json_utils.loads(
                exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null"
            )
            or {}
        )
        base_directory = destination.filesystem.base_directory
        model_name = config.get(MODEL_NAME_KEY) or os.path.basename(base_directory.rstrip("/"))

        def prepare(staging_dir: str) -> None:
            if config.get(WARMUP_KEY, True):
                write_warmup_requests(staging_dir, model_name)

        version, target = publish_version(model_path, base_directory, prepare=prepare)
        logging.info("Model version %d published at %s.", version, target)
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=target, pushed_version=str(version))
