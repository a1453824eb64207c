"""Compiles the pipeline for Vertex AI Pipelines / Kubeflow Pipelines v2 (a JSON file).

::

    python -m pipeline.kubeflow_v2_runner --config FILE \\
        --pipeline_root gs://BUCKET/pipelines --serving_model_dir gs://BUCKET/serving \\
        --image REGISTRY/bvae-tfx:TAG --output out/kubeflow/bvae.json \\
        [--schema_path /path/in/image/schema.pbtxt] [-- BEAM_ARGS ...]

The image must hold this project installed (``pip install .``) on the TFX 1.16 base
image, so the dotted entry points (``bvae_tf.trainer.run_fn``,
``bvae_tf.preprocessing.preprocessing_fn``) and the custom components import there;
``data.input_base`` of the config should be a ``gs://`` path. Submit the JSON with
the Vertex AI SDK (``aiplatform.PipelineJob(template_path=...)``) or the KFP client.
Nothing here contacts a cluster.
"""

import argparse
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


def compile_pipeline(
    config: configs.PipelineConfig,
    *,
    pipeline_root: str,
    serving_model_dir: str,
    image: str,
    output: str,
    schema_path: str | None = None,
    beam_pipeline_args=None,
) -> str:
    """Writes the Kubeflow V2 pipeline JSON of ``config``.

    Args:
      config: the pipeline configuration.
      pipeline_root: artifact root seen by the cluster (e.g. ``gs://...``).
      serving_model_dir: model base path of the model servers (e.g. ``gs://...``).
      image: container image of every component.
      output: path of the JSON file to write.
      schema_path: the curated schema's path inside the image (default: the
        config's; ``None`` in the config infers one with SchemaGen).
      beam_pipeline_args: Beam options (default: the config's).

    Returns:
      ``output``.
    """
    arguments = pipeline_lib.pipeline_arguments(config)
    if schema_path is not None:
        arguments["schema_path"] = schema_path
    pipeline = pipeline_lib.create_pipeline(
        **arguments,
        pipeline_root=pipeline_root,
        serving_model_dir=serving_model_dir,
        beam_pipeline_args=config.beam_pipeline_args
        if beam_pipeline_args is None
        else beam_pipeline_args,
    )
    output_dir, filename = os.path.split(os.path.abspath(output))
    os.makedirs(output_dir, exist_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=output_dir,
        output_filename=filename,
    )
    runner.run(pipeline, write_out=True)
    return os.path.join(output_dir, filename)


def main(argv=None) -> None:
    logging.set_verbosity(logging.INFO)
    argv, beam_args = runtime.split_beam_args(sys.argv[1:] if argv is None else argv)
    parser: argparse.ArgumentParser = runtime.argument_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline_root", required=True, help="artifact root (gs://...)")
    parser.add_argument("--serving_model_dir", required=True, help="model base path (gs://...)")
    parser.add_argument("--image", required=True, help="container image with the project")
    parser.add_argument("--output", default="out/kubeflow/pipeline.json", help="JSON to write")
    parser.add_argument("--schema_path", default=None, help="curated schema path in the image")
    args = parser.parse_args(argv)
    path = compile_pipeline(
        runtime.load(args),
        pipeline_root=args.pipeline_root,
        serving_model_dir=args.serving_model_dir,
        image=args.image,
        output=args.output,
        schema_path=args.schema_path,
        beam_pipeline_args=beam_args,
    )
    print(f"Kubeflow V2 pipeline written to {path}")


if __name__ == "__main__":
    main()
