"""Executor of the multi-behavior ExampleGen: one Beam pipeline, then the accounting.

Output layout (the stock ExampleGen's, so StatisticsGen, SchemaGen, ExampleValidator
and Transform read it as is)::

    <examples.uri>/Split-train/data_tfrecord-*-of-*.gz   gzipped TFRecords of tf.Example
    <examples.uri>/Split-eval/...
    <examples.uri>/Split-test/...
    <examples.uri>/accounting.json                        the accounting record

Artifact properties: ``split_names`` ``["train", "eval", "test"]``; custom properties
``payload_format`` ``FORMAT_TF_EXAMPLE``, ``file_format`` ``tfrecords_gzip``, ``span``,
``version`` (when set), ``input_fingerprint``, ``accounting`` (the record as JSON) and
``accounting_<figure>`` integers (``accounting.flat_properties``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from absl import logging
from tfx import types
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs

from bvae_tf import features
from components.multi_behavior_example_gen import accounting, checks, inputs, transforms
from components.multi_behavior_example_gen.config import ExampleGenConfig
from components.multi_behavior_example_gen.inputs import input_fingerprint, resolve_input_files

SPAN_KEY = "span"
VERSION_KEY = "version"
FINGERPRINT_KEY = inputs.FINGERPRINT_KEY


class Executor(base_beam_executor.BaseBeamExecutor):
    """Reads multi-behavior logs and writes per-user tf.Examples split by time."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Runs the ExampleGen.

        Args:
          input_dict: unused (the component has no input channel).
          output_dict: ``examples``: one ``Examples`` artifact.
          exec_properties: the component's parameters (``ExampleGenConfig`` fields,
            ``span``, ``version``).

        Raises:
          ValueError: on a bad parameter, a missing input path, an input without valid
            rows, or data unfit for training (``checks.data_problems``: no train
            example, an empty eval/test split, too many events dropped by the
            cold-user step, a behavior without train events that is not
            evaluation-only).
          RuntimeError: if the accounting identity does not hold.
        """
        self._log_startup(input_dict, output_dict, exec_properties)
        config = ExampleGenConfig.from_exec_properties(exec_properties)
        files, skipped = resolve_input_files(config)
        paths = [f if isinstance(f, str) else f[0] for f in files]
        logging.info(
            "MultiBehaviorExampleGen: %d input file(s) from %s", len(paths), config.input_base
        )

        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY]
        )
        examples.split_names = artifact_utils.encode_split_names(list(features.SPLITS))
        accounting_uri = os.path.join(examples.uri, accounting.ACCOUNTING_FILE)
        with self._make_beam_pipeline() as pipeline:
            splits = pipeline | "GenerateExamples" >> transforms.GenerateExamples(
                config, files, accounting_uri, skipped
            )
            for split, serialized in splits.items():
                _ = serialized | f"WriteSplit[{split}]" >> write_split.WriteSplit(
                    artifact_utils.get_split_uri([examples], split),
                    example_gen_pb2.FORMAT_TFRECORDS_GZIP,
                )

        with fileio.open(accounting_uri, "r") as f:
            record = json.load(f)
        logging.info(
            "MultiBehaviorExampleGen: %s; examples %s",
            accounting.describe_flow(record),
            {s: record["splits"][s]["examples"] for s in features.SPLITS},
        )
        checks.check_record(record, config.input_base)

        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(
            examples, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP)
        )
        examples.set_int_custom_property(SPAN_KEY, int(exec_properties.get(SPAN_KEY) or 0))
        if exec_properties.get(VERSION_KEY) is not None:
            examples.set_int_custom_property(VERSION_KEY, int(exec_properties[VERSION_KEY]))
        examples.set_string_custom_property(FINGERPRINT_KEY, input_fingerprint(paths))
        examples.set_string_custom_property(
            accounting.ACCOUNTING_PROPERTY, json.dumps(record, sort_keys=True)
        )
        for name, value in accounting.flat_properties(record).items():
            examples.set_int_custom_property(name, value)
