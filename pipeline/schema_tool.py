"""Drafts a curated schema from StatisticsGen output (then review it and commit it).

::

    python -m pipeline.schema_tool --statistics <StatisticsGen artifact dir> \\
        --behaviors purchase,click,favorite,cart --output pipeline/schema/default/schema.pbtxt

TFDV infers a schema from the train split's statistics and extends it with the eval
split's (where the held-out features appear); the rules below turn the inference,
which over-fits the sample, into the data contract of ``bvae_tf.features``:

* environments ``TRAINING`` (train split), ``EVALUATION`` (eval/test splits) and
  ``SERVING`` (requests: only the item histories);
* ``user_id``: one bytes value in every example; not part of serving requests;
* ``<b>_items``: a bytes list in every example, possibly empty (a user may lack a
  behavior), no value domain (item ids are an open set: the vocabulary is
  Transform's job);
* ``<b>_heldout``: like ``<b>_items``, only in ``EVALUATION``;
* every split must hold at least one example.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils, standard_artifacts

from bvae_tf import features
from components.strict_example_validator import component as validation

HEADER = (
    "# Curated schema of the per-user tf.Examples (see bvae_tf/features.py).\n"
    "# Drafted by `python -m pipeline.schema_tool` from StatisticsGen output; review it\n"
    "# (domains, presence, value counts) before pointing schema_path at it.\n"
    "# Imported by ImportSchemaGen; validated per split environment by\n"
    "# components.strict_example_validator.StrictExampleValidator\n"
    "# (TRAINING: train; EVALUATION: eval, test).\n"
)


def curate(inferred: schema_pb2.Schema, behaviors: Sequence[str]) -> schema_pb2.Schema:
    """Applies the module's rules to an inferred schema.

    Args:
      inferred: TFDV's inferred schema (train + eval statistics).
      behaviors: the configured behaviors.

    Returns:
      The curated schema.

    Raises:
      ValueError: if the inferred schema lacks a feature of the contract.
    """
    behaviors = features.validate_behaviors(behaviors)
    by_name = {f.name: f for f in inferred.feature}
    expected = [features.USER_ID] + [
        key(b) for b in behaviors for key in (features.items_key, features.heldout_key)
    ]
    missing = [name for name in expected if name not in by_name]
    if missing:
        suffix = features.items_key("")  # "_items": one feature per behavior the data has
        present = sorted(n.removesuffix(suffix) for n in by_name if n.endswith(suffix))
        raise ValueError(
            f"the statistics lack features {missing} (behaviors {list(behaviors)}); the "
            f"statistics have behaviors {present}"
        )
    schema = schema_pb2.Schema()
    for name in expected:
        feature = schema.feature.add(name=name, type=by_name[name].type)
        if feature.type != schema_pb2.BYTES:
            raise ValueError(f"feature {name!r} must be bytes, inferred {feature.type}")
        feature.presence.min_fraction = 1.0
        feature.presence.min_count = 1
        if name == features.USER_ID:
            feature.value_count.min = 1
            feature.value_count.max = 1
            feature.not_in_environment.append(validation.SERVING_ENVIRONMENT)
    schema.dataset_constraints.min_examples_count = 1
    # The environments, and the held-out features only in EVALUATION.
    return validation.with_split_environments(schema)


def statistics_dir(path: str) -> str:
    """The StatisticsGen artifact directory that ``path`` names.

    ``path`` is an artifact directory (holding ``Split-train/`` and ``Split-eval/``)
    or the folder of a pipeline's artifacts of that kind
    (``<pipeline_root>/StatisticsGen/statistics``), whose newest execution is used.

    Raises:
      ValueError: naming ``path`` and what it should hold.
    """

    def holds_splits(folder: str) -> bool:
        return all(
            os.path.isdir(os.path.join(folder, f"Split-{split}"))
            for split in (features.TRAIN, features.EVAL)
        )

    if holds_splits(path):
        return path
    executions = []
    if os.path.isdir(path):
        executions = [
            name
            for name in os.listdir(path)
            if name.isdigit() and holds_splits(os.path.join(path, name))
        ]
    if executions:
        return os.path.join(path, max(executions, key=int))
    raise ValueError(
        f"--statistics {path!r} holds no StatisticsGen output: give "
        "<pipeline_root>/StatisticsGen/statistics or one of its numbered folders "
        f"(with Split-{features.TRAIN}/ and Split-{features.EVAL}/)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.schema_tool", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--statistics",
        required=True,
        help="StatisticsGen artifact directory, or <pipeline_root>/StatisticsGen/statistics "
        "(its newest execution)",
    )
    parser.add_argument("--behaviors", required=True, help="comma-separated behaviors")
    parser.add_argument("--output", required=True, help="schema.pbtxt to write")
    args = parser.parse_args(argv)
    try:
        uri = statistics_dir(args.statistics)
    except ValueError as e:
        parser.error(str(e))
    if os.path.isdir(args.output):
        parser.error(f"--output {args.output!r} is a folder: give the schema file's path")
    behaviors = args.behaviors.split(",")
    try:
        features.validate_behaviors(behaviors)
    except ValueError as e:
        parser.error(f"--behaviors {args.behaviors!r}: {e}")
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = uri
    artifact.split_names = artifact_utils.encode_split_names(list(features.SPLITS))
    train = stats_artifact_utils.load_statistics(artifact, features.TRAIN).proto()
    evaluation = stats_artifact_utils.load_statistics(artifact, features.EVAL).proto()
    inferred = tfdv.update_schema(tfdv.infer_schema(train), evaluation)
    try:
        schema = curate(inferred, behaviors)
    except ValueError as e:  # e.g. a behavior the statistics lack
        parser.error(f"--behaviors {args.behaviors!r}: {e}")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    tfdv.write_schema_text(schema, args.output)
    with open(args.output, encoding="utf-8") as f:
        body = f.read()
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(HEADER + body)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
