"""Runs the pipeline on this machine: LocalDagRunner, SQLite MLMD (the main job).

::

    python -m pipeline.local_runner [--config FILE] [--set section.key=value ...]
    python pipeline/local_runner.py                        # same, as a script
    tfx pipeline create --engine local --pipeline_path pipeline/local_runner.py
    tfx run create --engine local --pipeline_name bvae

The TFX CLI runs this file without arguments: point ``$BVAE_PIPELINE_CONFIG`` at a
config file to change what it runs. Outputs go under ``output_root`` (default
``out/``): ``pipelines/<name>/`` (artifacts), ``metadata/<name>/metadata.db``
(MLMD) and ``serving/<model_name>/<version>/`` (pushed models).
"""

import os
import pathlib
import sys

# Keras 2 (tf_keras) for TFX 1.16 and TFRS: set before anything imports TensorFlow.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
if __package__ in (None, ""):  # run as a script: import the repository's packages
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import logging
from tfx import v1 as tfx

from pipeline import configs, runtime
from pipeline import pipeline as pipeline_lib


def build(config: configs.PipelineConfig) -> tfx.dsl.Pipeline:
    """The pipeline of ``config`` with local roots and a SQLite metadata store."""
    return pipeline_lib.create_pipeline(
        **pipeline_lib.pipeline_arguments(config),
        pipeline_root=config.resolved_pipeline_root,
        serving_model_dir=config.resolved_serving_model_dir,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.resolved_metadata_path
        ),
        beam_pipeline_args=config.beam_pipeline_args,
    )


def run(config: configs.PipelineConfig) -> None:
    """Generates the synthetic input if needed and runs the pipeline once."""
    runtime.ensure_input(config)
    tfx.orchestration.LocalDagRunner().run(build(config))


def main(argv=None) -> None:
    logging.set_verbosity(logging.INFO)
    run(runtime.parse(__doc__.split("\n\n")[0], argv))


if __name__ == "__main__":
    main()
