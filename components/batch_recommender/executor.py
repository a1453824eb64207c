"""``BatchRecommender`` executor: runs ``recommend.build`` on a blessed model."""

from __future__ import annotations

import collections
import json
import os
import time
from collections.abc import Callable
from typing import Any

from absl import logging
from tfx import types
from tfx.components.util import model_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, path_utils

from bvae_tf import export
from components.batch_recommender import recommend

EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
MODEL_KEY = standard_component_specs.MODEL_KEY
BLESSING_KEY = standard_component_specs.MODEL_BLESSING_KEY
OUTPUT_KEY = "recommendations"
SPLITS_KEY = "splits"
USERS_FILE_KEY = "users_file"
FORMATS_KEY = "formats"
BATCH_SIZE_KEY = "batch_size"


def read_users(
    path: str, name: str = "batch_inference.users_file", warn: Callable[[str], None] | None = None
) -> list[str]:
    """User ids of a users file: one per line, surrounding whitespace stripped (as the
    ExampleGen strips ids), blank lines skipped, a UTF-8 byte-order mark dropped (as
    the ExampleGen's CSV reader drops it). Repeated ids are returned as listed and
    logged as a warning (``recommend.build`` serves each user once).

    Args:
      path: the users file.
      name: what the messages call it (the config key, or the CLI's flag).
      warn: where the repeated-ids warning goes (a CLI's ``warning:`` line);
        ``None``: ``logging.warning``.

    Raises:
      ValueError: if the file cannot be read or lists no user.
    """
    try:
        text = io_utils.read_string_file(path)
    except Exception as e:
        raise ValueError(f"{name} {path!r} cannot be read: {e}") from e
    listed = [line.strip() for line in text.removeprefix("\ufeff").splitlines() if line.strip()]
    if not listed:
        raise ValueError(f"{name} {path!r} lists no user id")
    repeated = [user for user, n in collections.Counter(listed).items() if n > 1]
    if repeated:
        (warn or logging.warning)(
            f"{name} {path!r} lists {len(repeated)} user ids more than once (first: "
            f"{repeated[0]!r}); each user gets one set of rows"
        )
    return listed


class Executor(base_beam_executor.BaseBeamExecutor):
    """Writes top-K rows per user and behavior, or nothing for an unblessed model."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        output = artifact_utils.get_single_instance(output_dict[OUTPUT_KEY])
        blessings = input_dict.get(BLESSING_KEY) or []
        if blessings:
            blessing = artifact_utils.get_single_instance(blessings)
            if not model_utils.is_model_blessed(blessing):
                output.set_int_custom_property("blessed", 0)
                logging.info("BatchRecommender: the model is not blessed; nothing written")
                return
        output.set_int_custom_property("blessed", 1)
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        model_dir = path_utils.serving_model_path(model.uri)
        info = export.read_export_info(model_dir)
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        available = artifact_utils.decode_split_names(examples.split_names)
        splits = json.loads(exec_properties.get(SPLITS_KEY) or "null") or available
        missing = sorted(set(splits) - set(available))
        if missing:
            raise ValueError(
                f"batch_inference.splits {missing} are not in the examples (splits: {available})"
            )
        patterns = [
            os.path.join(artifact_utils.get_split_uri([examples], split), "*") for split in splits
        ]
        users_file = exec_properties.get(USERS_FILE_KEY) or ""
        users = read_users(users_file) if users_file else None
        formats = json.loads(exec_properties.get(FORMATS_KEY) or "null") or list(recommend.FORMATS)
        batch_size = int(exec_properties.get(BATCH_SIZE_KEY) or recommend.DEFAULT_BATCH_SIZE)
        start = time.perf_counter()
        with self._make_beam_pipeline() as pipeline:
            recommend.build(
                pipeline,
                patterns,
                model_dir,
                output.uri,
                behaviors=info.behaviors,
                users=users,
                formats=formats,
                batch_size=batch_size,
            )
        seconds = time.perf_counter() - start
        summary = recommend.read_summary(output.uri)
        for key in ("users", "rows", "users_without_history"):
            output.set_int_custom_property(key, int(summary.get(key, 0)))
        output.set_int_custom_property("top_k", info.top_k)
        output.set_string_custom_property("formats", ",".join(formats))
        logging.info(
            "BatchRecommender: %d users, %d rows (top %d of %s) in %.1f s -> %s",
            summary.get("users", 0),
            summary.get("rows", 0),
            info.top_k,
            ", ".join(info.behaviors),
            seconds,
            output.uri,
        )
