"""Runs the pipeline with BeamDagRunner (the orchestration itself is a Beam job);
Beam pipeline options go after ``--`` (e.g. ``-- --direct_num_workers=2``).

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
  workers from its sdist, built first with ``python -m build --sdist``, or a custom
  container with ``--sdk_container_image``; the project has no ``setup.py``)::

    -- --runner=DataflowRunner --project=PROJECT --region=REGION \\
       --temp_location=gs://BUCKET/tmp --extra_package=dist/bvae_tfx-0.1.0.tar.gz

MLMD is the SQLite file of the config, as for the local runner.
"""

import sys

if __package__ in (None, ""):  # run as a script (the TFX CLI): pipeline/ is on sys.path
    import bootstrap  # noqa: F401
import bvae_tf

if __name__ == "__main__":  # the CLI: quiet TensorFlow and Google-library start-up
    bvae_tf.quiet_cli()

from pipeline import configs, local_runner, runtime


def build(config: configs.PipelineConfig, beam_pipeline_args=None):
    """The ``tfx.dsl.Pipeline`` of ``config`` with local roots, SQLite MLMD and the
    Beam options (``None``: the config's ``beam_pipeline_args``)."""
    return local_runner.build(config, beam_pipeline_args)


def main(argv=None) -> None:
    argv, beam_args = runtime.split_beam_args(sys.argv[1:] if argv is None else argv)
    if beam_args is not None:
        runtime.check_beam_options(beam_args, "the Beam options after --")
    config = runtime.parse_and_start(__doc__.split("\n\n")[0], "beam_runner", argv)
    runtime.ensure_input(config)
    # TFX 1.16 exports no BeamDagRunner under tfx.v1: the IR-based runner's own module.
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    from pipeline import report

    runner = BeamDagRunner()
    report.run_and_report(config, lambda: runner.run(build(config, beam_args)))


if __name__ == "__main__":
    sys.exit(runtime.main_guard(main))
