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

import os
import pathlib
import sys

# Keras 2 (tf_keras) for TFX 1.16 and TFRS: set before anything imports TensorFlow.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
if __package__ in (None, ""):  # run as a script: import the repository's packages
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import bvae_tf

if __name__ == "__main__":  # the CLI: quiet TensorFlow and Google-library start-up
    bvae_tf.quiet_cli()

from tfx import v1 as tfx

from pipeline import configs, report, runtime
from pipeline import pipeline as pipeline_lib


def build(
    config: configs.PipelineConfig, beam_pipeline_args: list[str] | None = None
) -> tfx.dsl.Pipeline:
    """The pipeline of ``config`` with local roots and a SQLite metadata store.

    Args:
      config: the pipeline config.
      beam_pipeline_args: Beam options replacing ``config.beam_pipeline_args``
        (``None``: the config's).
    """
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
    runtime.ensure_input(config)
    tfx.orchestration.LocalDagRunner().run(build(config))


def latest_run_id(config: configs.PipelineConfig) -> str | None:
    """The id of the latest run of the config's pipeline in its MLMD store, if any."""
    try:
        run_id, _ = report.latest_run(
            report.open_store(config.resolved_metadata_path), config.pipeline_name
        )
    except ValueError:
        return None
    return run_id


def print_summary(config: configs.PipelineConfig) -> dict:
    """Prints the latest run's summary (accounting, metrics, blessing, pushed path)
    and how to serve the pushed model; returns the summary (``report.summarize``)."""
    summary = report.summarize(config.resolved_metadata_path, config.pipeline_name)
    print()
    print(report.format_summary(summary))
    print(f"Artifacts: {config.resolved_pipeline_root}")
    if summary.get("pushed"):
        python = os.path.relpath(sys.executable) if sys.executable else "python"
        print(
            f"Serve it: {python} -m serving.server --model_base_path "
            f"{config.resolved_serving_model_dir} --model_name {config.model_name}"
        )
    return summary


def run_and_report(config: configs.PipelineConfig, run_pipeline) -> None:
    """Calls ``run_pipeline()`` and prints the summary of the run it made.

    Under ``tfx pipeline create`` the TFX CLI only compiles (the runner's ``run`` is
    patched and runs nothing): then no new run is in the metadata store and nothing
    is printed.
    """
    before = latest_run_id(config)
    run_pipeline()
    if latest_run_id(config) not in (None, before):
        print_summary(config)


def main(argv=None) -> None:
    config = runtime.parse_and_start(__doc__.split("\n\n")[0], "local_runner", argv)
    run_and_report(config, lambda: run(config))


if __name__ == "__main__":
    sys.exit(runtime.main_guard(main))
