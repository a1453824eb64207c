"""Runs the pipeline with BeamDagRunner (the orchestration itself is a Beam job).

::

    python -m pipeline.beam_runner [--config FILE] [--set k=v ...] [-- BEAM_ARGS ...]

Arguments after ``--`` are Beam pipeline options for the data components
(ExampleGen, StatisticsGen, Transform); they replace ``beam_pipeline_args`` of the
config. Examples:

* all cores of this machine, one process per core (exercises the distributed code
  path: every transform must pickle and run in a worker)::

    -- --direct_running_mode=multi_processing --direct_num_workers=0

* Apache Flink (a job server must be reachable)::

    -- --runner=FlinkRunner --flink_master=HOST:8081 --environment_type=LOOPBACK

* Apache Spark::

    -- --runner=SparkRunner --spark_master_url=spark://HOST:7077 --environment_type=LOOPBACK

* Google Cloud Dataflow (roots and data on gs://, the project installed in the
  workers with ``--setup_file`` or a custom container)::

    -- --runner=DataflowRunner --project=PROJECT --region=REGION \\
       --temp_location=gs://BUCKET/tmp --setup_file=./setup.py

MLMD is the SQLite file of the config, as for the local runner.
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

from pipeline import configs, local_runner, runtime
from pipeline import pipeline as pipeline_lib


def build(config: configs.PipelineConfig, beam_pipeline_args=None) -> tfx.dsl.Pipeline:
    """The pipeline of ``config`` with local roots, SQLite MLMD and the Beam options."""
    return pipeline_lib.create_pipeline(
        **pipeline_lib.pipeline_arguments(config),
        pipeline_root=config.resolved_pipeline_root,
        serving_model_dir=config.resolved_serving_model_dir,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.resolved_metadata_path
        ),
        beam_pipeline_args=config.beam_pipeline_args
        if beam_pipeline_args is None
        else beam_pipeline_args,
    )


def main(argv=None) -> None:
    logging.set_verbosity(logging.INFO)
    argv = list(sys.argv[1:] if argv is None else argv)
    beam_args = None
    if "--" in argv:
        split = argv.index("--")
        argv, beam_args = argv[:split], argv[split + 1 :]
    config = runtime.parse(__doc__.split("\n\n")[0], argv)
    runtime.ensure_input(config)
    before = local_runner.latest_run_id(config)
    tfx.orchestration.experimental.BeamDagRunner().run(build(config, beam_args))
    if local_runner.latest_run_id(config) not in (None, before):  # not a CLI compile
        local_runner.print_summary(config)


if __name__ == "__main__":
    main()
