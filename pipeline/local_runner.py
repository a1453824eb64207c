"""Runs the pipeline on this machine: LocalDagRunner, SQLite MLMD (the main job).

::

    python -m pipeline.local_runner [--config FILE] [--set section.key=value ...]
    python pipeline/local_runner.py                        # same, as a script
    tfx pipeline create --engine local --pipeline_path pipeline/local_runner.py
    tfx run create --engine local --pipeline_name bvae

The TFX CLI runs this file without arguments: point ``$BVAE_PIPELINE_CONFIG`` at a
config file to change what it runs. Outputs go under ``output_root`` (default
``out/``): ``pipelines/<name>/`` (artifacts), ``metadata/<name>/metadata.db``
(MLMD) and ``serving/<model_name>/<version>/`` (pushed models). After a run it prints
a summary: the ExampleGen's accounting, eval and test metrics per behavior, the
blessing and the pushed path.
"""

import sys

if __package__ in (None, ""):  # run as a script (the TFX CLI): pipeline/ is on sys.path
    import bootstrap  # noqa: F401
import bvae_tf

if __name__ == "__main__":  # the CLI: quiet TensorFlow and Google-library start-up
    bvae_tf.quiet_cli()

from pipeline import configs, runtime

# TFX, MLMD and the pipeline definition load when the pipeline is built, so that a
# bad configuration fails in about a second instead of after TFX's imports.


def build(config: configs.PipelineConfig, beam_pipeline_args: list[str] | None = None):
    """The ``tfx.dsl.Pipeline`` of ``config`` with local roots and a SQLite
    metadata store.

    Args:
      config: the pipeline config.
      beam_pipeline_args: Beam options replacing ``config.beam_pipeline_args``
        (``None``: the config's).
    """
    from tfx import v1 as tfx

    from pipeline import pipeline as pipeline_lib

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


def run(config: configs.PipelineConfig) -> None:
    """Generates the synthetic input if needed and runs the pipeline once."""
    from tfx import v1 as tfx

    runtime.ensure_input(config)
    tfx.orchestration.LocalDagRunner().run(build(config))


def main(argv=None) -> None:
    config = runtime.parse_and_start(__doc__.split("\n\n")[0], "local_runner", argv)
    from pipeline import report

    report.run_and_report(config, lambda: run(config))


if __name__ == "__main__":
    sys.exit(runtime.main_guard(main))
